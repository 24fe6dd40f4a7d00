//! Access control and the audit log, through the real router (in-process)
//! and the real `drctl` binary, over a real SQLite state store:
//!
//! - every endpoint against every role: no token → 401, a role too low →
//!   403, enough → neither; a wrong or malformed token → 401 even where
//!   anonymous reads are allowed;
//! - a mutation is audited with who, what and from where before it starts;
//! - editing one stored audit row makes `drctl audit verify` fail and name
//!   that row; deleting one names the gap; cutting rows off the end is
//!   caught against a head recorded earlier.

use std::path::Path;
use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use drctl_api::ApiState;
use drctl_monitor::Monitor;
use drctl_store::Store;
use drctl_tests::{drctl, in_process_router, ApiClient, Service, TestConfig, TokenSecret};
use serde_json::{json, Value};

const VIEWER: &str = "viewer-token-for-the-access-test";
const OPERATOR: &str = "operator-token-for-the-access-test";
const ADMIN: &str = "admin-token-for-the-access-test";

/// Three tokens, one per role, from files (a token from the environment is
/// proven by tests/secrets.rs, which gives it to a real `drctl serve`
/// through the child's environment); nothing anonymous.
fn config() -> TestConfig {
    TestConfig::new()
        .store_url("sqlite://state.db")
        .api("anonymous = \"none\"")
        .token("grafana", "viewer", TokenSecret::File("tokens/viewer"))
        .token("oncall", "operator", TokenSecret::File("tokens/operator"))
        .token("sre-lead", "admin", TokenSecret::File("tokens/admin"))
        .local_object_store("local-backups", "objects")
        .service(Service::hot("orders").unreachable_postgres(31997, 31998))
        .service(
            Service::cold("catalog")
                .postgres(
                    "eu-west",
                    r#"dsn = "postgres://app@127.0.0.1:31999/catalog?connect_timeout=1""#,
                )
                .table("[services.backup]\nstore = \"local-backups\""),
        )
}

/// The config's directory with its token files.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    std::fs::write(dir.path().join("tokens/viewer"), format!("{VIEWER}\n")).unwrap();
    std::fs::write(dir.path().join("tokens/operator"), OPERATOR).unwrap();
    std::fs::write(dir.path().join("tokens/admin"), ADMIN).unwrap();
    config().write(dir.path());
    dir
}

async fn app(dir: &Path) -> (axum::Router, Store) {
    let config = drctl_config::load(&dir.join("drctl.toml")).expect("valid test config");
    in_process_router(config).await
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    authorization: Option<String>,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let reply = ApiClient::router(app.clone())
        .with_authorization(authorization)
        .request(method, uri, body)
        .await;
    let challenge = reply.header(header::WWW_AUTHENTICATE);
    (reply.status, reply.json_or_null(), challenge)
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

/// Every endpoint, with the least role it needs (`None`: open).
fn endpoints() -> Vec<(Method, &'static str, Option<&'static str>, Option<Value>)> {
    let get = |p, r| (Method::GET, p, r, None);
    vec![
        get("/healthz", None),
        get("/", None),
        get("/assets/dashboard.js", None),
        get("/assets/dashboard.css", None),
        get("/metrics", Some("viewer")),
        get("/api/v1/cluster", Some("viewer")),
        get("/api/v1/services", Some("viewer")),
        get("/api/v1/rpo-rto", Some("viewer")),
        get("/api/v1/services/orders/lag", Some("viewer")),
        get("/api/v1/backups", Some("viewer")),
        get("/api/v1/restore-tests", Some("viewer")),
        get("/api/v1/schedule-runs", Some("viewer")),
        get("/api/v1/operations", Some("viewer")),
        get("/api/v1/operations/op-none", Some("viewer")),
        get("/api/v1/openapi.json", None),
        get("/api/v1/report", Some("viewer")),
        get("/api/v1/audit", Some("admin")),
        get("/api/v1/audit/verify", Some("admin")),
        (
            Method::POST,
            "/api/v1/services/orders/operations",
            Some("operator"),
            Some(json!({ "kind": "failover", "dry_run": true })),
        ),
        (
            Method::POST,
            "/api/v1/services/catalog/backups",
            Some("operator"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/services/catalog/restore-tests",
            Some("operator"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/backups/b-none/verify",
            Some("operator"),
            None,
        ),
    ]
}

#[tokio::test]
async fn every_endpoint_answers_each_role_as_its_rule_says() {
    let dir = setup();
    let (app, _store) = app(dir.path()).await;
    let rank = |r: &str| {
        ["viewer", "operator", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, path, needed, body) in endpoints() {
        // No token.
        let (status, v, challenge) = call(&app, method.clone(), path, None, body.clone()).await;
        match needed {
            None => assert!(status.is_success(), "{method} {path} is open: {status}"),
            Some(_) => {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} without a token: {v}"
                );
                assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}: {v}");
                assert_eq!(challenge.as_deref(), Some("Bearer realm=\"drctl\""));
            }
        }
        for (role, token) in [("viewer", VIEWER), ("operator", OPERATOR), ("admin", ADMIN)] {
            let (status, v, _) =
                call(&app, method.clone(), path, bearer(token), body.clone()).await;
            let allowed = needed.is_none_or(|n| rank(role) >= rank(n));
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {status} {v}"
                );
                assert!(
                    !status.is_server_error(),
                    "{method} {path} as {role}: {status} {v}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {v}"
                );
                assert_eq!(v["error"]["code"], "forbidden");
                let message = v["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(role) && message.contains(needed.unwrap()),
                    "{message}"
                );
            }
        }
        // A wrong token and a malformed header are refused even on reads.
        if needed.is_some() {
            for auth in [
                bearer("not-a-token"),
                Some(format!("Basic {VIEWER}")),
                Some(VIEWER.into()),
            ] {
                let (status, v, _) =
                    call(&app, method.clone(), path, auth.clone(), body.clone()).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {auth:?}: {v}"
                );
            }
        }
    }
}

#[tokio::test]
async fn anonymous_viewer_reads_but_a_wrong_token_is_still_refused() {
    let dir = setup();
    let text = config()
        .toml()
        .replace("anonymous = \"none\"", "anonymous = \"viewer\"");
    std::fs::write(dir.path().join("drctl.toml"), text).unwrap();
    let (app, _store) = app(dir.path()).await;
    let (status, _, _) = call(&app, Method::GET, "/api/v1/rpo-rto", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&app, Method::GET, "/api/v1/rpo-rto", bearer("wrong"), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a wrong token is not read as anonymous"
    );
    // Without a token, a mutation asks for one (401), it is not "forbidden".
    let (status, v, _) = call(
        &app,
        Method::POST,
        "/api/v1/services/catalog/backups",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("operator"),
        "{v}"
    );
    let (status, _, _) = call(&app, Method::GET, "/api/v1/audit", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_daemon_with_a_missing_token_secret_names_it_and_does_not_start() {
    let dir = setup();
    std::fs::remove_file(dir.path().join("tokens/operator")).unwrap();
    let config = drctl_config::load(&dir.path().join("drctl.toml")).unwrap();
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let err = ApiState::new(Monitor::new(Arc::new(config), store))
        .err()
        .expect("a missing token file is an error");
    let message = err.to_string();
    assert!(
        message.contains("oncall") && message.contains("tokens/operator"),
        "{message}"
    );
}

#[tokio::test]
async fn mutations_are_audited_and_an_edited_row_is_named_by_verify() {
    let dir = setup();
    let (app, store) = app(dir.path()).await;
    let (status, v, _) = call(
        &app,
        Method::POST,
        "/api/v1/services/catalog/backups",
        bearer(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let op = v["operation"]["id"].as_str().unwrap().to_string();
    // A refused attempt is audited too (once a minute per client).
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/v1/services/catalog/backups",
        bearer(VIEWER),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let entries =
        drctl_tests::wait_for("the audit rows", std::time::Duration::from_secs(10), || {
            let app = app.clone();
            async move {
                let (_, v, _) = call(&app, Method::GET, "/api/v1/audit", bearer(ADMIN), None).await;
                let entries = v["entries"].as_array()?.clone();
                let actions: Vec<&str> = entries
                    .iter()
                    .filter_map(|e| e["action"].as_str())
                    .collect();
                (actions.contains(&"backup_started") && actions.contains(&"request_refused"))
                    .then_some(entries)
            }
        })
        .await;
    let started = entries
        .iter()
        .find(|e| e["action"] == "backup_started")
        .unwrap();
    assert_eq!(started["actor"], "oncall");
    assert_eq!(started["role"], "operator");
    assert_eq!(started["target"], "catalog");
    assert_eq!(started["detail"]["operation_id"], op.as_str());
    assert!(started["source"].is_string());
    let refused = entries
        .iter()
        .find(|e| e["action"] == "request_refused")
        .unwrap();
    assert_eq!(refused["detail"]["reason"], "forbidden");
    // Token secrets never reach the log.
    let all = serde_json::to_string(&entries).unwrap();
    for secret in [VIEWER, OPERATOR, ADMIN] {
        assert!(
            !all.contains(secret),
            "a token's secret is in the audit log"
        );
    }

    // The CLI audits too, and verifies the chain.
    let config = dir.path().join("drctl.toml");
    let config = config.to_str().unwrap();
    let (code, out, err) = drctl(&["audit", "verify", "--config", config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    let (_, json_out, _) = drctl(&["audit", "verify", "--config", config, "--output", "json"]);
    let report: Value = serde_json::from_str(&json_out).unwrap();
    let head = format!(
        "{}:{}",
        report["verification"]["head_seq"],
        report["verification"]["head_hash"].as_str().unwrap()
    );
    let rows = report["verification"]["rows"].as_i64().unwrap();
    assert!(rows >= 3, "{report}");

    // Someone edits who started the backup.
    let seq = started["seq"].as_i64().unwrap();
    drop(store);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'intern' WHERE seq = $1")
        .bind(seq)
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, _, err) = drctl(&["audit", "verify", "--config", config]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("row {seq}")) && err.contains("edited"),
        "{err}"
    );
    sqlx::query("UPDATE audit_log SET actor = 'oncall' WHERE seq = $1")
        .bind(seq)
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, _, err) = drctl(&["audit", "verify", "--config", config]);
    assert_eq!(code, 0, "restored row verifies again: {err}");

    // Someone deletes the row instead.
    let saved: Vec<AuditRowWithHash> =
        sqlx::query_as("SELECT seq, at_us, actor, role, source, action, target, detail, prev_hash, hash FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(seq)
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, _, err) = drctl(&["audit", "verify", "--config", config]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("row {seq}")) && err.contains("missing"),
        "{err}"
    );
    let r = &saved[0];
    sqlx::query("INSERT INTO audit_log (seq, at_us, actor, role, source, action, target, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(r.0).bind(r.1).bind(&r.2).bind(&r.3).bind(&r.4).bind(&r.5).bind(&r.6).bind(&r.7).bind(&r.8).bind(&r.9)
        .execute(&mut conn)
        .await
        .unwrap();

    // Someone cuts the newest rows off: only a recorded head tells.
    sqlx::query("DELETE FROM audit_log WHERE seq > $1")
        .bind(rows - 1)
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, _, _) = drctl(&["audit", "verify", "--config", config]);
    assert_eq!(code, 0, "a shorter chain is still a valid chain");
    let (code, _, err) = drctl(&[
        "audit",
        "verify",
        "--config",
        config,
        "--expect-head",
        &head,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("head_mismatch"), "{err}");
}

/// The route template an endpoint of the table is served under.
fn template(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let prev = if i > 0 { parts[i - 1] } else { "" };
        out.push(match prev {
            "services" if i == 4 => "{name}",
            "operations" | "backups" if i == 4 => "{id}",
            _ => p,
        });
    }
    out.join("/")
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_endpoints_served() {
    let dir = setup();
    let (app, _store) = app(dir.path()).await;
    let (status, doc, _) = call(&app, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut served: Vec<String> = endpoints()
        .into_iter()
        .map(|(m, p, _, _)| (m, p))
        .filter(|(_, p)| *p != "/" && !p.starts_with("/assets/") && *p != "/api/v1/openapi.json")
        .map(|(m, p)| format!("{m} {}", template(p)))
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "every served endpoint is documented and tested for access"
    );
    // Each operation says which token it needs, and every error is JSON.
    let ops = doc["paths"]["/api/v1/services/{name}/operations"]["post"].clone();
    assert!(
        ops["responses"]["403"]["content"]["application/json"].is_object(),
        "{ops}"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The document knows this config's services.
    let name =
        &doc["paths"]["/api/v1/services/{name}/lag"]["get"]["parameters"][0]["schema"]["enum"];
    assert_eq!(name, &json!(["orders", "catalog"]));
}

/// A fence hook's argv (here a cloud token) and what it printed were in
/// `/api/v1/services` and in the fence step's output for every viewer;
/// operators and admins still see them.
#[tokio::test]
async fn a_fence_hooks_argv_and_output_are_hidden_from_viewers() {
    const IN_ARGV: &str = "planted-hook-argv-token-13f0";
    const IN_OUTPUT: &str = "planted-hook-output-5aa2";
    let dir = setup();
    let config = config().toml().replace(
        "[services.postgres.us-east]\ndsn = \"postgres://app@127.0.0.1:31998/orders?connect_timeout=1\"\n",
        &format!(
            "[services.postgres.us-east]\ndsn = \"postgres://app@127.0.0.1:31998/orders?connect_timeout=1\"\n\
             [services.failover]\nfence_hook = [\"/usr/local/bin/fence\", \"--token\", \"{IN_ARGV}\", \"{{region}}\"]\n"
        ),
    );
    assert!(config.contains(IN_ARGV));
    std::fs::write(dir.path().join("drctl.toml"), config).unwrap();
    let (app, store) = app(dir.path()).await;
    // A failover whose fence step ran the hook, journaled as the engine does.
    let now = chrono::Utc::now();
    let lease = drctl_tests::engine::journaled_failover(
        &store,
        ("cluster:orders", "test", std::time::Duration::from_secs(60)),
        "op-hooked",
        "orders",
        "{}",
        now,
    )
    .await;
    store
        .journal_step_started(&lease, "op-hooked", "fence_source", 1, now)
        .await
        .unwrap();
    let output = json!({
        "method": "hook",
        "hook": {
            "argv": ["/usr/local/bin/fence", "--token", IN_ARGV, "eu-west"],
            "exit_code": 0,
            "output": format!("fenced eu-west ({IN_OUTPUT})"),
            "took_ms": 12,
        },
    });
    store
        .journal_step_ended(
            &lease,
            "op-hooked",
            "fence_source",
            now,
            Ok(&output.to_string()),
        )
        .await
        .unwrap();

    for (role, token, sees) in [
        ("viewer", VIEWER, false),
        ("operator", OPERATOR, true),
        ("admin", ADMIN, true),
    ] {
        for path in [
            "/api/v1/services",
            "/api/v1/operations/op-hooked",
            "/api/v1/operations",
        ] {
            let (status, body, _) = call(&app, Method::GET, path, bearer(token), None).await;
            assert_eq!(status, StatusCode::OK, "{role} {path}: {body}");
            let text = body.to_string();
            let shown = text.contains(IN_ARGV) || text.contains(IN_OUTPUT);
            if path != "/api/v1/operations" {
                assert_eq!(shown, sees, "{role} {path} shows the hook: {shown}\n{text}");
            } else {
                assert!(!shown || sees, "{role} {path}: {text}");
            }
        }
    }
}

/// One request with a wrong token from `source` (a loopback address of
/// its own); the status line's code.
async fn refused_from(source: std::net::Ipv4Addr, api: std::net::SocketAddr) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((source, 0).into())
        .unwrap_or_else(|e| panic!("binding {source}: {e}"));
    let mut stream = socket.connect(api).await.expect("connecting to the API");
    stream
        .write_all(
            b"GET /api/v1/services HTTP/1.1\r\nHost: drctl\r\nAuthorization: Bearer wrong-token\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Issue 15 item 17: a flood of wrong tokens from thousands of rotating
/// addresses (127.1.x.y) used to grow the throttle map without bound and
/// spawn an audit append per address, racing an operator's own audit row
/// until it gave up after 20 collisions: the operator's backup (or
/// failover) answered 503. The operator's writes must go through, and the
/// flood must leave a bounded number of audit rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_token_flood_from_rotating_addresses_does_not_refuse_an_operator_write() {
    let dir = setup();
    let config = drctl_config::load(&dir.path().join("drctl.toml")).expect("valid test config");
    let store = Store::open(config.store.url.expose()).await.expect("store");
    let state = drctl_tests::api::state_over(Arc::new(config), store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(drctl_api::serve(listener, state, None, async {
        let _ = stopped.await;
    }));

    const ADDRESSES: u32 = 3000;
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let next = next.clone();
        flood.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ADDRESSES {
                    return;
                }
                let source = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
                assert_eq!(
                    refused_from(source, api).await,
                    401,
                    "a wrong token from {source}"
                );
            }
        });
    }
    drctl_tests::wait_for(
        "the flood to be under way",
        std::time::Duration::from_secs(60),
        || {
            let next = next.clone();
            async move { (next.load(std::sync::atomic::Ordering::Relaxed) > 300).then_some(()) }
        },
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .post(format!("http://{api}/api/v1/services/catalog/backups"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("the API answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "the operator's backup during the flood: {body}"
        );
    }
    while let Some(done) = flood.join_next().await {
        done.expect("a flood client");
    }

    // Every refusal that was due is written; the flood's share is bounded.
    let rows = drctl_tests::wait_for(
        "the audit rows to settle",
        std::time::Duration::from_secs(60),
        || {
            let store = store.clone();
            async move {
                let a = store.audit_entries(None, None, None, 100_000).await.ok()?;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let b = store.audit_entries(None, None, None, 100_000).await.ok()?;
                (a.len() == b.len()).then_some(b)
            }
        },
    )
    .await;
    let refused: Vec<_> = rows
        .iter()
        .filter(|e| e.action == "request_refused")
        .collect();
    assert!(
        refused.len() <= 1024 + 1,
        "{} refusal rows for {ADDRESSES} addresses: the throttle is not bounded",
        refused.len()
    );
    assert!(
        refused.iter().any(|e| e.source == "other addresses"),
        "the addresses beyond the bound are audited as one client"
    );
    assert_eq!(
        rows.iter().filter(|e| e.action == "backup_started").count(),
        3
    );
    let verification = store.verify_audit(None).await.unwrap();
    assert!(verification.broken.is_none(), "{verification:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Issue 15 item 18: the chain was plain SHA-256, so whoever could write to
/// the store could edit a row and recompute the chain after it, and
/// `drctl audit verify` called the log intact. With `[audit] key_file` the
/// rows are HMAC-chained under a key the store does not hold: a chain
/// recomputed without it is caught. Rows written before the key was
/// configured still verify, reported as legacy.
#[tokio::test]
async fn a_chain_recomputed_without_the_audit_key_is_caught_by_verify() {
    let dir = setup();
    std::fs::write(
        dir.path().join("audit.key"),
        "audit-key-for-the-access-test\n",
    )
    .unwrap();
    let config_path = dir.path().join("drctl.toml");
    std::fs::write(
        &config_path,
        config().raw("[audit]\nkey_file = \"audit.key\"").toml(),
    )
    .unwrap();
    let config = drctl_config::load(&config_path).expect("valid test config");
    let url = config.store.url.expose().to_string();
    let key = config
        .audit
        .resolve_key()
        .unwrap()
        .expect("the key is configured");
    let row = |action: &str| drctl_store::NewAudit {
        actor: "oncall".into(),
        role: Some("operator".into()),
        source: "127.0.0.1".into(),
        action: action.into(),
        target: Some("orders".into()),
        detail: json!({ "n": 1 }),
    };
    // Two rows from before the key was configured.
    let plain = Store::open(&url).await.unwrap();
    for action in ["backup_started", "backup_started"] {
        plain.append_audit(&row(action)).await.unwrap();
    }
    let keyed = Store::open(&url)
        .await
        .unwrap()
        .with_audit_key(Some(key.expose().as_bytes()));
    for action in ["failover_started", "backup_started", "backup_started"] {
        keyed.append_audit(&row(action)).await.unwrap();
    }
    let config_arg = config_path.to_str().unwrap();
    let (code, out, err) = drctl(&["audit", "verify", "--config", config_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact") && out.contains("legacy"), "{out}");
    let report = keyed.verify_audit(None).await.unwrap();
    assert_eq!((report.rows, report.legacy_rows), (5, 2), "{report:?}");
    let unkeyed = plain.verify_audit(None).await.unwrap();
    assert_eq!(
        unkeyed.broken.map(|b| (b.seq, b.kind)),
        Some((3, drctl_store::states::AuditBreakKind::KeyMissing)),
        "HMAC rows cannot be vouched for without the key"
    );

    // Someone with write access to the store edits row 4 and recomputes
    // the chain from there on, as drctl does without a key.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    forge_from(&mut conn, 4).await;
    let (code, _, err) = drctl(&["audit", "verify", "--config", config_arg]);
    assert_eq!(
        code, 1,
        "a chain recomputed without the key verified: {err}"
    );
    assert!(err.contains("row 4") && err.contains("downgraded"), "{err}");
    // Or from the first HMAC row on, so that every row looks legacy.
    forge_from(&mut conn, 3).await;
    let (code, _, err) = drctl(&["audit", "verify", "--config", config_arg]);
    assert_eq!(
        code, 1,
        "a chain recomputed without the key verified: {err}"
    );
    assert!(err.contains("unkeyed"), "{err}");
    // What the key is for: a plain chain cannot tell the forgery.
    assert!(plain.verify_audit(None).await.unwrap().broken.is_none());
}

/// Rewrites row `from` (its actor) and re-chains every row from it on
/// with plain SHA-256: what a forger without the audit key can do.
async fn forge_from(conn: &mut sqlx::SqliteConnection, from: i64) {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, at_us, actor, role, source, action, target, detail, prev_hash \
             FROM audit_log WHERE seq >= $1 ORDER BY seq",
    )
    .bind(from)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut prev: Option<String> = None;
    for (seq, at_us, actor, role, source, action, target, detail, prev_hash) in rows {
        let prev_hash = prev.clone().unwrap_or(prev_hash);
        let actor = if seq == from {
            "intern".to_string()
        } else {
            actor
        };
        let entry = drctl_store::NewAudit {
            actor: actor.clone(),
            role,
            source,
            action,
            target,
            detail: Value::Null,
        };
        let hash = drctl_store::chain_hash(seq, at_us, &entry, &detail, &prev_hash);
        sqlx::query("UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&actor)
            .bind(&prev_hash)
            .bind(&hash)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        prev = Some(hash);
    }
}

/// An `audit_log` row as read back raw: seq, at_us, actor, role, source,
/// action, target, detail, prev_hash.
type AuditRow = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    String,
);
/// [`AuditRow`] and its hash.
type AuditRowWithHash = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
);
