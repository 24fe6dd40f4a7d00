//! What a release build of drctl contains, read from cargo's own resolution
//! of features (`cargo tree -e features`), not from a built binary: the
//! failover engine's test hooks (`DRCTL_FAULT_CRASH_AT`, `…_PAUSE_AT`,
//! `…_FAIL_AT`, which abort, stop or fail the process on an environment
//! variable) must not ship in `cargo build -p drctl --release`, while the
//! workspace build that the tests use keeps them.

use std::process::Command;

/// `cargo tree -e features -i drctl-failover`: who turns on which feature
/// of the failover engine, for the packages `args` select.
fn feature_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "features,normal",
            "-i",
            "drctl-failover",
            "--prefix",
            "none",
        ])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "{cargo} tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

const FAULT_FEATURE: &str = "drctl-failover feature \"fault-injection\"";

#[test]
fn fault_injection_hooks_are_not_built_into_drctl_alone() {
    let drctl = feature_tree(&["-p", "drctl"]);
    assert!(
        drctl.contains("drctl v"),
        "drctl no longer depends on drctl-failover? cargo tree printed:\n{drctl}"
    );
    assert!(
        !drctl.contains(FAULT_FEATURE),
        "`cargo build -p drctl` would ship the DRCTL_FAULT_* hooks:\n{}",
        drctl
            .lines()
            .filter(|l| l.contains("fault"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_workspace_build_the_tests_use_has_the_fault_injection_hooks() {
    // tests/run.sh builds with --workspace: the root package's dependency
    // turns the feature on for every crate in that build, drctl included.
    let workspace = feature_tree(&["--workspace"]);
    assert!(
        workspace.contains(FAULT_FEATURE),
        "a workspace build has no DRCTL_FAULT_* hooks: the fault tests cannot crash drctl"
    );
    let opted_in = feature_tree(&["-p", "drctl", "--features", "fault-injection"]);
    assert!(
        opted_in.contains(FAULT_FEATURE),
        "drctl's fault-injection feature does not reach the engine"
    );
}
