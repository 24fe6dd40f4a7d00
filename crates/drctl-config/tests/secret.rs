//! Secrets never print: not through Debug, Display, Serialize, nor DSN errors.

use std::collections::HashMap;
use std::env::VarError;
use std::path::Path;

use drctl_config::{DsnError, DsnSource, KeySource, Secret, TsigSecret};

const PASSWORD: &str = "s3cr3t-pa55";

fn every_rendering(secret: &Secret) -> [String; 3] {
    [
        format!("{secret:?}"),
        format!("{secret}"),
        serde_json::to_string(secret).unwrap(),
    ]
}

#[test]
fn url_dsn_keeps_where_it_points_and_hides_the_password() {
    let secret = Secret::new(format!("postgres://app:{PASSWORD}@10.0.0.5:5432/orders"));
    let [debug, display, json] = every_rendering(&secret);
    assert_eq!(debug, "Secret(\"postgres://app:***@10.0.0.5:5432/orders\")");
    assert_eq!(display, "postgres://app:***@10.0.0.5:5432/orders");
    assert_eq!(json, "\"postgres://app:***@10.0.0.5:5432/orders\"");
    assert!(
        secret.expose().contains(PASSWORD),
        "expose is the one way in"
    );
}

#[test]
fn password_in_url_query_is_hidden() {
    let secret = Secret::new(format!(
        "postgresql://app@db/orders?password={PASSWORD}&sslmode=require"
    ));
    for shown in every_rendering(&secret) {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
    }
}

#[test]
fn key_value_dsn_hides_password() {
    for raw in [
        format!("host=10.0.0.5 port=5432 user=app password={PASSWORD} dbname=orders"),
        format!("host=10.0.0.5 password='{PASSWORD} with spaces' dbname=orders"),
        format!("password = {PASSWORD} host=db"),
    ] {
        let secret = Secret::new(raw.clone());
        for shown in every_rendering(&secret) {
            assert!(!shown.contains(PASSWORD), "{raw} shown as {shown}");
            assert!(shown.contains("password=***"), "{raw} shown as {shown}");
        }
    }
}

#[test]
fn unparseable_secret_is_masked_whole() {
    for raw in [
        PASSWORD.to_string(),
        format!("app:{PASSWORD}"),
        format!("{PASSWORD} {PASSWORD}"),
    ] {
        let secret = Secret::new(raw);
        let [debug, display, json] = every_rendering(&secret);
        assert_eq!(debug, "Secret(\"***\")");
        assert_eq!(display, "***");
        assert_eq!(json, "\"***\"");
    }
}

#[test]
fn a_parsed_config_never_shows_an_inline_password() {
    let text = format!(
        r#"
[store]
url = "postgres://drctl:{PASSWORD}@state-db:5432/drctl"

[[regions]]
name = "eu-west"

[[services]]
name = "catalog"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"

[services.postgres.eu-west]
dsn = "postgres://catalog:{PASSWORD}@10.0.0.7:5432/catalog"
"#
    );
    let config = drctl_config::parse("p.toml", &text, Path::new("/")).unwrap();
    for shown in [
        format!("{config:?}"),
        serde_json::to_string(&config).unwrap(),
    ] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    let dsn = config.service("catalog").unwrap().postgres["eu-west"]
        .resolve()
        .unwrap();
    assert!(dsn.expose().contains(PASSWORD));
}

#[test]
fn a_broken_store_url_is_reported_redacted() {
    let text = format!(
        "[store]\nurl = \"mysql://drctl:{PASSWORD}@db/drctl\"\n[[regions]]\nname = \"a\"\n"
    );
    let errors = drctl_config::parse("p.toml", &text, Path::new("/")).unwrap_err();
    assert!(!errors.to_string().contains(PASSWORD), "{errors}");
    assert!(
        errors.to_string().contains("mysql://drctl:***@db/drctl"),
        "{errors}"
    );
}

/// An environment to resolve against: tests run in parallel threads of one
/// process, so none of them changes the real one (see
/// [`the_real_environment_is_read_in_a_child_process`] for that path).
fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Result<String, VarError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |var| vars.get(var).cloned().ok_or(VarError::NotPresent)
}

#[test]
fn dsn_from_env_and_file_are_trimmed_and_errors_name_the_source_not_the_value() {
    let var = "DRCTL_CONFIG_TEST_DSN_7F3A";
    let padded = format!("  postgres://app:{PASSWORD}@db/orders\n");
    let secret = DsnSource::Env(var.into())
        .resolve_with(&env_of(&[(var, &padded)]))
        .unwrap();
    assert_eq!(
        secret.expose(),
        format!("postgres://app:{PASSWORD}@db/orders")
    );

    let err = DsnSource::Env(var.into())
        .resolve_with(&env_of(&[(var, "   ")]))
        .unwrap_err();
    assert_eq!(err, DsnError::EnvEmpty { var: var.into() });
    let err = DsnSource::Env(var.into())
        .resolve_with(&env_of(&[]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("environment variable {var} is not set (export it with the connection string)")
    );

    let dir = std::env::temp_dir().join(format!("drctl-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orders.dsn");
    std::fs::write(&file, format!("postgres://app:{PASSWORD}@db/orders\n")).unwrap();
    let secret = DsnSource::File(file.clone()).resolve().unwrap();
    assert_eq!(
        secret.expose(),
        format!("postgres://app:{PASSWORD}@db/orders")
    );
    std::fs::remove_file(&file).unwrap();
    let err = DsnSource::File(file.clone()).resolve().unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "cannot read DSN file {}: no such file",
            file.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains(PASSWORD));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_dsn_pasted_into_dsn_env_is_not_echoed() {
    let text = format!(
        r#"
[[regions]]
name = "eu-west"

[[services]]
name = "catalog"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
postgres.eu-west.dsn_env = "postgres://catalog:{PASSWORD}@db/catalog"
"#
    );
    let errors = drctl_config::parse("p.toml", &text, Path::new("/")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "p.toml:10:28: services[0] (catalog).postgres.eu-west.dsn_env: the value is not an \
         environment variable name (this looks like a connection string; use dsn = \"…\", or put \
         it in an environment variable and name that)"
    );
}

#[test]
fn backup_key_from_env_and_file_is_trimmed_and_errors_name_the_source_not_the_value() {
    const KEY: &str = "k3y-m4t3r14l-base64==";
    let var = "DRCTL_CONFIG_TEST_BACKUP_KEY_9C1E";
    let source = KeySource::Env(var.into());
    let key = source
        .resolve_with(&env_of(&[(var, &format!("  {KEY}\n"))]))
        .unwrap();
    assert_eq!(key.expose(), KEY);
    for shown in [format!("{key:?}"), format!("{key}"), format!("{source:?}")] {
        assert!(!shown.contains(KEY), "{shown}");
    }

    let err = source.resolve_with(&env_of(&[(var, " \n ")])).unwrap_err();
    assert_eq!(err, DsnError::KeyEnvEmpty { var: var.into() });
    assert_eq!(
        err.to_string(),
        format!("environment variable {var} is empty (set it to the backup encryption key)")
    );
    let err = source.resolve_with(&env_of(&[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("environment variable {var} is not set (export it with the backup encryption key)")
    );

    let dir = std::env::temp_dir().join(format!("drctl-config-key-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("backup.key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let source = KeySource::File(file.clone());
    assert_eq!(source.resolve().unwrap().expose(), KEY);

    std::fs::write(&file, "\n").unwrap();
    let err = source.resolve().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key file {} is empty (write the backup encryption key into it)",
            file.display()
        )
    );

    std::fs::remove_file(&file).unwrap();
    let shown = source.resolve().unwrap_err().to_string();
    assert!(
        shown.starts_with(&format!(
            "cannot read key file {}: no such file",
            file.display()
        )),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A key pasted where its variable's name belongs, or under a key of its
/// own, is refused without being shown.
#[test]
fn a_key_pasted_into_the_config_is_not_echoed() {
    for (line, key) in [
        // Not a variable name at all (base64 with '+', '/', '=').
        ("encryption_key_env", "q8Jx+3vW/0aZ9kL2mN4pR6tY8uI0oP1s=="),
        // A valid name, but hex key material.
        (
            "encryption_key_env",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
        ),
        ("encryption_key_env", "a3f9c0d2e4b6a8c0d2e4f6a8b0c2d4e6"),
        // The model's name for it, not a key of the file.
        ("encryption_key", "a3f9c0d2e4b6a8c0d2e4f6a8b0c2d4e6"),
    ] {
        let text = format!(
            r#"
[[regions]]
name = "eu-west"

[[object_stores]]
name = "dr-bucket"
kind = "s3"
bucket = "shop-backups"

[[services]]
name = "orders"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
postgres.eu-west.dsn_env = "ORDERS_DSN"
backup.store = "dr-bucket"
backup.{line} = "{key}"
"#
        );
        let errors = drctl_config::parse("p.toml", &text, Path::new("/")).unwrap_err();
        let report = errors.to_string();
        assert!(!report.contains(key), "{key} leaked:\n{report}");
        assert_eq!(errors.len(), 1, "{report}");
        assert!(
            errors.errors[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("encryption_key_env")
                || errors.errors[0]
                    .hint
                    .as_deref()
                    .unwrap()
                    .contains("DRCTL_BACKUP_KEY"),
            "{report}"
        );
    }
}

/// Base64 key material (`…==`) would pass for a libpq `key=value` pair:
/// an inline TSIG secret is masked whole, and reading one that is not
/// base64 names where it came from, never the value.
#[test]
fn tsig_secrets_never_print_and_errors_name_their_source() {
    let key = "c2VjcmV0LXRzaWcta2V5LTAxMjM0NTY3ODk=";
    let text = format!(
        "[[regions]]\nname = \"a\"\n[[dns_providers]]\nname = \"lab\"\nkind = \"rfc2136\"\n\
         server = \"127.0.0.1:53\"\nzone = \"lab.\"\ntsig_key = \"k.\"\ntsig_secret = \"{key}\"\n"
    );
    let config = drctl_config::parse("t.toml", &text, Path::new("/etc")).unwrap();
    let rendered = [
        format!("{config:?}"),
        serde_json::to_string(&config).unwrap(),
    ];
    for shown in &rendered {
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
    let drctl_config::DnsProviderKind::Rfc2136 {
        tsig: Some(tsig), ..
    } = &config.dns_providers[0].kind
    else {
        panic!("a signed rfc2136 provider");
    };
    assert_eq!(
        tsig.secret.resolve_base64().unwrap(),
        b"secret-tsig-key-0123456789"
    );

    let dir = tempfile_dir();
    let file = dir.join("bad.key");
    std::fs::write(&file, "not base64 !!! hunter2\n").unwrap();
    let error = TsigSecret::File(file.clone()).resolve_base64().unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let good = dir.join("good.key");
    std::fs::write(&good, format!("  {key}\n")).unwrap();
    assert_eq!(
        TsigSecret::File(good).resolve_base64().unwrap(),
        b"secret-tsig-key-0123456789",
        "surrounding whitespace is trimmed"
    );
    assert_eq!(
        TsigSecret::Env("DRCTL_TEST_TSIG_UNSET_VAR".into())
            .resolve_base64()
            .unwrap_err(),
        DsnError::TsigEnvNotSet {
            var: "DRCTL_TEST_TSIG_UNSET_VAR".into()
        }
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh directory under the system's temp dir.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("drctl-config-tsig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The production path, `resolve()` reading the real environment: proved in
/// a child process (this test binary run again, this test alone) whose
/// environment holds the variables from its start, so no thread of this
/// process ever sees its environment change.
#[test]
fn the_real_environment_is_read_in_a_child_process() {
    const NAME: &str = "the_real_environment_is_read_in_a_child_process";
    const DSN_VAR: &str = "DRCTL_CONFIG_TEST_CHILD_DSN_51B2";
    const KEY_VAR: &str = "DRCTL_CONFIG_TEST_CHILD_KEY_51B2";
    const UNSET_VAR: &str = "DRCTL_CONFIG_TEST_CHILD_UNSET_51B2";
    const KEY: &str = "k3y-fr0m-th3-r34l-3nv==";
    if std::env::var_os(DSN_VAR).is_some() {
        // The child.
        assert_eq!(
            DsnSource::Env(DSN_VAR.into()).resolve().unwrap().expose(),
            format!("postgres://app:{PASSWORD}@db/orders")
        );
        assert_eq!(
            KeySource::Env(KEY_VAR.into()).resolve().unwrap().expose(),
            KEY
        );
        assert_eq!(
            DsnSource::Env(UNSET_VAR.into()).resolve().unwrap_err(),
            DsnError::EnvNotSet {
                var: UNSET_VAR.into()
            }
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--test-threads", "1"])
        .env(DSN_VAR, format!("  postgres://app:{PASSWORD}@db/orders\n"))
        .env(KEY_VAR, format!("{KEY}\n"))
        .env_remove(UNSET_VAR)
        .output()
        .expect("running this test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the child failed or did not run this test:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
