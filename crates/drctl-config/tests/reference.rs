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

/// The reference and the checks agree on `[services.health]` (the keys the
/// guard reads): each documented key parses, its documented default is the
/// one applied, and a misspelt key is refused naming the documented one.
#[test]
fn health_keys_as_documented_are_the_ones_accepted_and_applied() {
    let reference = drctl_config::config_reference();
    let health = reference
        .split("## `[services.health]`")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the reference has [services.health]");
    assert!(
        health.contains("| `interval` | duration | `\"1s\"` |"),
        "{health}"
    );
    assert!(
        health.contains("| `timeout` | duration | `\"2s\"` |"),
        "{health}"
    );
    assert!(
        health.contains("| `failures` | integer | `3` |"),
        "{health}"
    );

    let base = "[[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
                [[services]]\nname = \"web\"\ntier = \"warm\"\nregions = [\"a\", \"b\"]\nprimary = \"a\"\n";
    let dir = std::path::Path::new(".");
    let config = drctl_config::parse("t.toml", base, dir).expect("minimal config");
    let applied = config.services[0].health;
    assert_eq!(
        (
            applied.interval.as_secs(),
            applied.timeout.as_secs(),
            applied.failures
        ),
        (1, 2, 3)
    );

    let written =
        format!("{base}[services.health]\ninterval = \"5s\"\ntimeout = \"4s\"\nfailures = 5\n");
    let config = drctl_config::parse("t.toml", &written, dir).expect("every documented key");
    assert_eq!(config.services[0].health.failures, 5);

    let misspelt = format!("{base}[services.health]\nfailure = 5\n");
    let errors = drctl_config::parse("t.toml", &misspelt, dir)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("unknown key") && errors.contains("failures"),
        "{errors}"
    );
}
