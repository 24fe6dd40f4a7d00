//! Snapshot tests of broken configs: every `tests/broken/NAME.toml` must be
//! rejected with exactly the report in `tests/broken/NAME.expected`.
//!
//! The report is the operator's interface to a wrong config, so its exact
//! text (position, path, message, hint) is pinned. To accept new output after
//! an intended change, run `DRCTL_BLESS=1 cargo test -p drctl-config --test
//! broken` and review the `.expected` diff before committing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The directory of the cases, relative to the crate (cargo runs tests
/// there), so reports name files the way an operator would see them.
const CASES: &str = "tests/broken";

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(CASES)
        .expect("tests/broken exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

/// What `drctl config validate` would print for the file.
fn render(case: &Path) -> String {
    match drctl_config::load(case) {
        Ok(_) => "(no error: the config was accepted)\n".to_string(),
        Err(errors) => format!("{errors}\n"),
    }
}

/// A line-by-line diff, enough to see which error changed.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => writeln!(out, "  {x}").unwrap(),
            (x, y) => {
                if let Some(x) = x {
                    writeln!(out, "- {x}").unwrap();
                }
                if let Some(y) = y {
                    writeln!(out, "+ {y}").unwrap();
                }
            }
        }
    }
    out
}

#[test]
fn broken_configs_report_every_error_as_expected() {
    let bless = std::env::var("DRCTL_BLESS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= 12,
        "expected at least 12 broken configs, found {}",
        cases.len()
    );

    let mut mismatches = Vec::new();
    for case in &cases {
        let actual = render(case);
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write .expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "--- {} (- expected, + actual)\n{}",
                expected_path.display(),
                diff(&expected, &actual)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} broken configs report something else than expected \
         (DRCTL_BLESS=1 accepts the new output):\n\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

/// The same cases inline, through `parse`, for the ones the brief names by
/// example: the rendered string is the contract.
#[test]
fn unknown_tier_is_located_on_its_value_with_a_suggestion() {
    let text = r#"
[[regions]]
name = "eu-west"

[[regions]]
name = "us-east"

[[services]]
name = "orders"
tier = "hott"
regions = ["eu-west", "us-east"]
primary = "eu-west"
"#;
    let errors =
        drctl_config::parse("config/prod.toml", text, Path::new("/etc/drctl")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        r#"config/prod.toml:10:8: services[0] (orders).tier: "hott" is not one of hot, warm, cold (did you mean "hot"?)"#
    );
    let error = &errors.errors[0];
    assert_eq!((error.line, error.column), (10, 8));
    assert_eq!(error.path, "services[0] (orders).tier");
    assert_eq!(error.hint.as_deref(), Some("did you mean \"hot\"?"));
}

/// `cooldown = "300000y"` once passed validation and overflowed the guard's
/// date arithmetic (a panic exactly when a failover was needed). Every
/// config duration is capped, and the error names the place and the cap.
#[test]
fn a_cooldown_of_300000_years_is_refused_where_it_is_written_with_the_maximum() {
    let text = r#"
[[regions]]
name = "eu-west"

[[regions]]
name = "us-east"

[[services]]
name = "orders"
tier = "hot"
regions = ["eu-west", "us-east"]
primary = "eu-west"
postgres = { eu-west = { dsn = "postgres://a@127.0.0.1/x" }, us-east = { dsn = "postgres://a@127.0.0.1/x" } }

[services.failover]
cooldown = "300000y"

[monitor]
rollup_retention = "99999999999999999999999s"
"#;
    let errors =
        drctl_config::parse("config/prod.toml", text, Path::new("/etc/drctl")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "config/prod.toml:16:12: services[0] (orders).failover.cooldown: \"300000y\" is too long; \
         durations are at most 36525d (100 years) (use a shorter duration, e.g. \"30d\" or \"1y\")\n\
         config/prod.toml:19:20: monitor.rollup_retention: \"99999999999999999999999s\" is too long; \
         durations are at most 36525d (100 years) (use a shorter duration, e.g. \"30d\" or \"1y\")"
    );
    assert_eq!(drctl_config::MAX_CONFIG_DURATION.as_secs(), 36_525 * 86_400);
    // The cap itself is accepted.
    let at_cap = text
        .replace("300000y", "36525d")
        .replace("99999999999999999999999s", "30d");
    drctl_config::parse("config/prod.toml", &at_cap, Path::new("/etc/drctl")).unwrap();
}

/// S3 keys belong to the AWS credential chain; one pasted into the config
/// is refused by its key, and the report never shows the value, whatever
/// the key is called or where it hides.
#[test]
fn s3_credentials_in_the_config_are_refused_without_echoing_them() {
    let text = r#"
[[regions]]
name = "eu-west"

[[object_stores]]
name = "dr-bucket"
kind = "s3"
bucket = "shop-backups"
endpoint = "https://AKIAENDPOINTKEY:endpoint-secret-value@s3.example.com"
aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"
aws-secret-access-key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
session_token = "session-token-value"
"#;
    let errors =
        drctl_config::parse("config/prod.toml", text, Path::new("/etc/drctl")).unwrap_err();
    let report = errors.to_string();
    for secret in [
        "AKIAENDPOINTKEY",
        "endpoint-secret-value",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI",
        "session-token-value",
    ] {
        assert!(!report.contains(secret), "{secret} leaked:\n{report}");
    }
    assert_eq!(errors.len(), 4, "{report}");
    for error in &errors {
        assert!(
            error
                .hint
                .as_deref()
                .unwrap()
                .contains("standard AWS chain"),
            "{error}"
        );
    }
}

#[test]
fn unreadable_file_is_one_error_without_position() {
    let errors = drctl_config::load(Path::new("tests/broken/does-not-exist.toml")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "tests/broken/does-not-exist.toml: cannot read the config file: no such file or directory \
         (os error 2) (check the path, or pass another with --config)"
    );
}

/// No input may panic the parser: every prefix of the reference example
/// (cut mid-key, mid-string, mid-header) must come back as Ok or located errors.
#[test]
fn no_prefix_of_the_example_panics() {
    let text = std::fs::read_to_string("../../config/shop.example.toml").unwrap();
    for (end, _) in text.char_indices() {
        if let Err(errors) = drctl_config::parse("x.toml", &text[..end], Path::new("/etc")) {
            assert!(!errors.is_empty());
            // Whatever got cut, the inline DSN's password is never echoed.
            assert!(!errors.to_string().contains("lab-only"), "{errors}");
            for e in &errors {
                assert!(
                    e.line >= 1 && e.column >= 1,
                    "unlocated error at cut {end}: {e}"
                );
            }
        }
    }
}
