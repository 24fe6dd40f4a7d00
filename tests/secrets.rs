//! Planted secrets never leave the process: a config whose every secret is
//! a known string (DSN passwords inline and from the environment, API
//! tokens from a file and the environment, the backup encryption key, a
//! TSIG key, AWS credentials), a real `drctl serve` logging at debug level,
//! every endpoint read with the admin token, jobs that fail against
//! servers that are not there (where connection strings like to leak into
//! error messages), the CLI's commands — and then every log line, every
//! response, every CLI output and the state store's files are searched for
//! each secret.

use std::process::Command;
use std::time::Duration;

use drctl_tests::{drctl_bin, wait_for, Service, TestConfig, TokenSecret};
use serde_json::{json, Value};

const DSN_PASSWORD: &str = "planted-dsn-password-7f3a";
const ENV_DSN_PASSWORD: &str = "planted-env-dsn-password-91c2";
const OPERATOR_TOKEN: &str = "planted-operator-token-5d0e";
const ADMIN_TOKEN: &str = "planted-admin-token-c4b8";
const BACKUP_KEY: &str = "deadbeefcafef00ddeadbeefcafef00ddeadbeefcafef00ddeadbeefcafef00d";
/// base64 of "PLANTEDTSIGSECRET!"
const TSIG_SECRET: &str = "UExBTlRFRFRTSUdTRUNSRVQh";
const AWS_SECRET: &str = "planted/aws+secret/access/key/0b1e";

fn config(api_port: u16, dead_port: u16) -> String {
    let dsn = |host: &str| {
        format!(
            "dsn = \"postgres://app:{DSN_PASSWORD}@{host}:{dead_port}/orders?connect_timeout=1\""
        )
    };
    TestConfig::new()
        .store_url("sqlite://state.db")
        .api(&format!("listen = \"127.0.0.1:{api_port}\""))
        .token("oncall", "operator", TokenSecret::File("tokens/operator"))
        .token("lead", "admin", TokenSecret::Env("DRCTL_SECRETS_TEST_ADMIN"))
        .section("[monitor]\ninterval = \"500ms\"\nprobe_timeout = \"1s\"")
        .section(&format!(
            "[[object_stores]]\nname = \"dr-bucket\"\nkind = \"s3\"\nbucket = \"shop-backups\"\n\
             endpoint = \"http://127.0.0.1:{dead_port}\"\npath_style = true"
        ))
        .section(&format!(
            "[[dns_providers]]\nname = \"internal-dns\"\nkind = \"rfc2136\"\n\
             server = \"127.0.0.1:{dead_port}\"\nzone = \"shop.internal.\"\n\
             tsig_key = \"drctl.\"\ntsig_secret_file = \"tsig.key\""
        ))
        .service(
            Service::hot("orders")
                .postgres("eu-west", &dsn("127.0.0.1"))
                .postgres("us-east", &dsn("127.0.0.2"))
                .table(
                    "[services.dns]\nprovider = \"internal-dns\"\nrecord = \"orders.shop.internal.\"\n\
                     [services.dns.targets]\neu-west = \"10.0.0.1\"\nus-east = \"10.1.0.1\"",
                ),
        )
        .service(
            Service::cold("catalog")
                .postgres("eu-west", r#"dsn_env = "DRCTL_SECRETS_TEST_CATALOG_DSN""#)
                .table("[services.backup]\nstore = \"dr-bucket\"\nencryption_key_file = \"backup.key\""),
        )
        .toml()
}

/// Everything the secrets could have leaked into.
#[derive(Default)]
struct Evidence {
    texts: Vec<(String, String)>,
}

impl Evidence {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_appear_in_no_log_line_response_or_output() {
    let dir = tempfile::tempdir().unwrap();
    let api_port = drctl_lab::free_port();
    let dead_port = drctl_lab::free_port();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    std::fs::write(dir.path().join("tokens/operator"), OPERATOR_TOKEN).unwrap();
    std::fs::write(dir.path().join("tsig.key"), TSIG_SECRET).unwrap();
    std::fs::write(dir.path().join("backup.key"), BACKUP_KEY).unwrap();
    let config_path = dir.path().join("drctl.toml");
    std::fs::write(&config_path, config(api_port, dead_port)).unwrap();
    let config = config_path.to_str().unwrap().to_string();
    let envs = [
        ("DRCTL_SECRETS_TEST_ADMIN", ADMIN_TOKEN.to_string()),
        (
            "DRCTL_SECRETS_TEST_CATALOG_DSN",
            format!(
                "postgres://app:{ENV_DSN_PASSWORD}@127.0.0.1:{dead_port}/catalog?connect_timeout=1"
            ),
        ),
        ("AWS_ACCESS_KEY_ID", "AKIAPLANTEDKEYID".to_string()),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET.to_string()),
        ("DRCTL_CONFIG", config.clone()),
    ];
    let mut evidence = Evidence::default();

    // Output to files, not pipes: a daemon logging at debug level fills a
    // pipe nobody reads until it exits, and then blocks on its next line.
    let (out_path, err_path) = (dir.path().join("serve.out"), dir.path().join("serve.err"));
    let mut serve = Command::new(drctl_bin())
        .args(["--log-level", "debug", "serve"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("drctl serve starts");
    let api = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::new();
    wait_for("the API", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), format!("{api}/healthz"));
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;

    // Every read, as admin (the most any caller can see).
    for path in [
        "/",
        "/metrics",
        "/api/v1/services",
        "/api/v1/rpo-rto",
        "/api/v1/services/orders/lag?since=1h",
        "/api/v1/services/orders/lag?since=1h&bucket=1m",
        "/api/v1/backups",
        "/api/v1/restore-tests",
        "/api/v1/schedule-runs",
        "/api/v1/operations",
        "/api/v1/audit",
        "/api/v1/audit/verify",
    ] {
        let r = http
            .get(format!("{api}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        evidence.add(path, r.text().await.unwrap());
    }
    // Jobs that fail on servers that are not there: the errors they record.
    let mut started = Vec::new();
    for (path, body) in [
        ("/api/v1/services/catalog/backups", None),
        ("/api/v1/services/catalog/restore-tests", None),
        (
            "/api/v1/services/orders/operations",
            Some(json!({ "kind": "failover", "dry_run": true })),
        ),
        (
            "/api/v1/services/orders/operations",
            Some(json!({ "kind": "drill" })),
        ),
    ] {
        let mut req = http
            .post(format!("{api}{path}"))
            .bearer_auth(OPERATOR_TOKEN);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(!status.is_server_error(), "{path}: {status} {text}");
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if let Some(id) = v["operation"]["id"].as_str() {
                started.push(id.to_string());
            }
        }
        evidence.add(format!("POST {path}"), text);
    }
    for id in &started {
        let done = wait_for("the job to end", Duration::from_secs(60), || {
            let (http, url) = (http.clone(), format!("{api}/api/v1/operations/{id}"));
            async move {
                let v: Value = http
                    .get(url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (v["operation"]["status"] != "running").then_some(v)
            }
        })
        .await;
        evidence.add(format!("operation {id}"), done.to_string());
    }
    // Refused requests: their errors, too.
    for token in ["wrong", OPERATOR_TOKEN] {
        let r = http
            .get(format!("{api}/api/v1/audit"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        evidence.add("refused", r.text().await.unwrap());
    }
    // Let the monitor fail a few more probes, then stop the daemon.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = serve.wait().unwrap();
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        status.success(),
        "drctl serve exits cleanly on SIGTERM: {err}"
    );
    assert!(
        err.contains("127.0.0.1") && err.lines().count() > 10,
        "the daemon logged its failures (the search below must have something to search):\n{err}"
    );
    evidence.add("drctl serve stdout", out);
    evidence.add("drctl serve stderr", err);

    // The CLI, on the same config and environment.
    for args in [
        vec!["config", "validate", config.as_str()],
        vec!["status", "--output", "json"],
        vec!["failover", "orders", "--dry-run"],
        vec!["backup", "run", "catalog"],
        vec!["backup", "list", "--output", "json"],
        vec!["audit", "list", "--output", "json"],
        vec!["operations", "--output", "json"],
    ] {
        let o = Command::new(drctl_bin())
            .args(["--log-level", "debug"])
            .args(&args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env("DRCTL_API", &api)
            .env("DRCTL_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        evidence.add(
            format!("drctl {}", args.join(" ")),
            String::from_utf8_lossy(&o.stdout),
        );
        evidence.add(
            format!("drctl {} (stderr)", args.join(" ")),
            String::from_utf8_lossy(&o.stderr),
        );
    }
    // The state store's files: samples, operations, journals, audit rows.
    for name in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
            evidence.add(name, String::from_utf8_lossy(&bytes));
        }
    }

    let secrets = [
        DSN_PASSWORD,
        ENV_DSN_PASSWORD,
        OPERATOR_TOKEN,
        ADMIN_TOKEN,
        BACKUP_KEY,
        TSIG_SECRET,
        AWS_SECRET,
    ];
    let mut leaks = Vec::new();
    for (what, text) in &evidence.texts {
        for secret in secrets {
            if text.contains(secret) {
                let line = text
                    .lines()
                    .find(|l| l.contains(secret))
                    .unwrap_or_default();
                leaks.push(format!("{what}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    assert!(evidence.texts.len() > 30, "everything was searched");
}

const CHILD_DSN_PASSWORD: &str = "planted-child-dsn-password-2b9e";
const CHILD_AWS_SECRET: &str = "planted/child/aws/secret/6c0d";
const CHILD_TOKEN: &str = "planted-child-token-secret-8a47";

/// A directory of PostgreSQL programs that record their argv and their
/// environment (what every local user, or the postgres user, could read in
/// /proc) and then exec the real one: drctl runs the real servers and
/// tools, and the test sees exactly what each child was given.
fn recording_pg_bin(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = drctl_pg::find_pg_bin()
        .expect("PostgreSQL binaries (apt-get install postgresql, or set PG_BIN)");
    let bin = dir.join("recording-bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(log, "").unwrap();
    std::fs::set_permissions(log, std::fs::Permissions::from_mode(0o666)).unwrap();
    for entry in std::fs::read_dir(&real).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let script = format!(
            "#!/bin/sh\n{{\n  printf 'ARGV %s' \"$0\"; for a in \"$@\"; do printf ' %s' \"$a\"; done; printf '\\n'\n  \
             tr '\\000' '\\n' < /proc/$$/environ | sed 's/^/ENV /'\n}} >> '{}' 2>/dev/null\nexec '{}' \"$@\"\n",
            log.display(),
            entry.path().display()
        );
        let path = bin.join(&name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `drctl ARGS…` with the planted secrets in its environment and the
/// recording PostgreSQL programs.
fn drctl_with_secrets(config: &str, pg_bin: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(drctl_bin())
        .args(args)
        .args(["--config", config])
        .env("PG_BIN", pg_bin)
        .env("AWS_ACCESS_KEY_ID", "AKIAPLANTEDCHILDKEY")
        .env("AWS_SECRET_ACCESS_KEY", CHILD_AWS_SECRET)
        .env("DRCTL_TOKEN", CHILD_TOKEN)
        .output()
        .expect("running drctl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// DSN passwords went to `pg_basebackup -d` and `pg_rewind --source-server`
/// on the command line, and every program drctl started (pg_ctl, and so the
/// postmaster and its backends) inherited drctl's whole environment. Here
/// a real lab whose DSNs need a password (SCRAM) is backed up, drilled,
/// switched over and rejoined through the CLI, and no child's argv or
/// environment, nor any live server process's, holds a planted secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planted_secrets_reach_no_child_argv_or_environment_in_a_backup_drill_or_rejoin() {
    use drctl_lab::{REGION_A, REGION_B};
    use std::os::unix::fs::PermissionsExt;
    let (lab, dir) = drctl_tests::start_lab(vec![drctl_tests::orders()]).await;
    lab.workload().pause();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // A role that must authenticate with its password, on both servers.
    let mut c = drctl_tests::connect(&lab.cluster("orders", REGION_A).dsn("postgres")).await;
    sqlx::query(&format!(
        "CREATE ROLE drctl_app LOGIN SUPERUSER REPLICATION PASSWORD '{CHILD_DSN_PASSWORD}'"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    drop(c);
    for region in [REGION_A, REGION_B] {
        let cluster = lab.cluster("orders", region);
        let hba = cluster.data_dir.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!(
                "host all drctl_app 127.0.0.1/32 scram-sha-256\n\
                 host replication drctl_app 127.0.0.1/32 scram-sha-256\n{text}"
            ),
        )
        .unwrap();
        let mut c = drctl_tests::connect(&cluster.dsn("postgres")).await;
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut c)
            .await
            .unwrap();
    }
    // The password is really needed: without it the role is refused.
    let a = lab.cluster("orders", REGION_A);
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "postgres://drctl_app@127.0.0.1:{}/orders",
        a.port
    ))
    .await;
    assert!(refused.is_err(), "drctl_app connects without its password");
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let text = text.replace(
        "postgres://postgres@127.0.0.1:",
        &format!("postgres://drctl_app:{CHILD_DSN_PASSWORD}@127.0.0.1:"),
    );
    let config_path = lab.config_path().with_file_name("secrets.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = config_path.to_str().unwrap();
    let log = dir.path().join("children.log");
    let bin = recording_pg_bin(dir.path(), &log);

    let mut outputs = Vec::new();
    for args in [
        vec!["backup", "run", "orders", "-o", "json"],
        vec!["drill", "orders", "--yes", "-o", "json"],
        vec![
            "switchover",
            "orders",
            "--to",
            REGION_B,
            "--yes",
            "-o",
            "json",
        ],
        vec![
            "rejoin", "orders", "--region", REGION_A, "--yes", "-o", "json",
        ],
    ] {
        let (code, out) = drctl_with_secrets(config, &bin, &args);
        assert_eq!(code, 0, "drctl {}: {out}", args.join(" "));
        outputs.push((args.join(" "), out));
    }
    assert_eq!(
        drctl_tests::role(&lab, REGION_A).await,
        Some((true, false)),
        "region-a rejoined as a standby"
    );

    // What the children were given.
    let children = std::fs::read_to_string(&log).unwrap();
    for program in ["pg_basebackup", "pg_ctl", "pg_rewind"] {
        assert!(
            children
                .lines()
                .any(|l| l.starts_with("ARGV") && l.contains(&format!("/{program} "))),
            "{program} ran through the recording bin:\n{children}"
        );
    }
    // And what every live server process holds now (the rejoined server was
    // started by drctl).
    let mut live = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&*lab.config_path().parent().unwrap().to_string_lossy())
            || cmdline.contains(&*dir.path().to_string_lossy())
        {
            let environ = std::fs::read(p.join("environ")).unwrap_or_default();
            live.push_str(&format!(
                "{cmdline}\n{}\n",
                String::from_utf8_lossy(&environ).replace('\0', "\n")
            ));
        }
    }
    let mut leaks = Vec::new();
    for secret in [CHILD_DSN_PASSWORD, CHILD_AWS_SECRET, CHILD_TOKEN] {
        for (what, text) in [
            ("children", children.as_str()),
            ("live processes", live.as_str()),
        ]
        .into_iter()
        .chain(outputs.iter().map(|(a, o)| (a.as_str(), o.as_str())))
        {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                leaks.push(format!("{what}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets reached child processes:\n{}",
        leaks.join("\n")
    );
    lab.teardown().unwrap();
}
