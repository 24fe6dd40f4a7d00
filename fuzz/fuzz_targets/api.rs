//! Any request to the API — method, path with query, Authorization header
//! (none, an operator's or an admin's token, or malformed bytes), body —
//! through the real router over a state store holding history (lag
//! samples and rollups, operations, backups, a restore test): an answer,
//! never a panic, never a 500. Admin routes (the audit log) and job routes
//! (backups, verifications, restore tests) are reached with a token, on
//! targets where they refuse to start work, so the fuzzer never runs any.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const CONFIG: &str = r#"
[store]
url = "sqlite://STORE"

[api]
anonymous = "viewer"

[[api.tokens]]
name = "ops"
role = "operator"
secret_env = "DRCTL_FUZZ_TOKEN"

[[api.tokens]]
name = "root"
role = "admin"
secret_env = "DRCTL_FUZZ_ADMIN_TOKEN"

[[regions]]
name = "eu-west"
[[regions]]
name = "us-east"

[[object_stores]]
name = "local"
kind = "local"
path = "BACKUPS"

[[services]]
name = "orders"
tier = "hot"
regions = ["eu-west", "us-east"]
primary = "eu-west"
[services.postgres.eu-west]
dsn = "postgres://app@127.0.0.1:9/orders?connect_timeout=1"
[services.postgres.us-east]
dsn = "postgres://app@127.0.0.1:9/orders?connect_timeout=1"

[[services]]
name = "catalog"
tier = "cold"
regions = ["eu-west", "us-east"]
primary = "eu-west"
[services.postgres.eu-west]
dsn = "postgres://app@127.0.0.1:9/catalog?connect_timeout=1"
[services.backup]
store = "local"
"#;

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        std::env::set_var("DRCTL_FUZZ_TOKEN", "fuzz-operator");
        std::env::set_var("DRCTL_FUZZ_ADMIN_TOKEN", "fuzz-admin");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("drctl-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = CONFIG
            .replace("STORE", &dir.join("state.db").display().to_string())
            .replace("BACKUPS", &dir.join("backups").display().to_string());
        let router = rt.block_on(async {
            let config =
                drctl_config::parse("fuzz.toml", &text, std::path::Path::new("/")).unwrap();
            let store = drctl_store::Store::open(config.store.url.expose())
                .await
                .unwrap();
            populate(&store).await;
            let monitor = drctl_monitor::Monitor::new(Arc::new(config), store);
            drctl_api::router(drctl_api::ApiState::new(monitor).unwrap())
        });
        Harness { rt, router }
    })
}

/// History for the handlers to read: three hours of lag samples (the older
/// two folded into rollups), finished and failed operations, backups that
/// cannot be verified (running, failed) and a restore test.
async fn populate(store: &drctl_store::Store) {
    use chrono::{TimeDelta, Utc};
    let now = Utc::now();
    let samples: Vec<_> = (0..3 * 360)
        .map(|i| {
            let at = now - TimeDelta::seconds(10 * i);
            let exposure = if i % 50 < 5 { 30_000_000 } else { 200_000 };
            drctl_store::LagSample::bare("orders", "us-east", at, Some(exposure))
        })
        .collect();
    store.insert_lag_samples(&samples).await.unwrap();
    store
        .downsample_lag(now - TimeDelta::hours(1), now - TimeDelta::days(30))
        .await
        .unwrap();
    let ago = |m: i64| now - TimeDelta::minutes(m);
    store
        .operation_started(
            "op-1",
            drctl_store::states::OperationKind::Drill,
            Some("orders"),
            Some("us-east"),
            ago(90),
        )
        .await
        .unwrap();
    store
        .operation_finished("op-1", ago(88), Ok(r#"{"rpo_s":0.5,"rto_s":12.0}"#))
        .await
        .unwrap();
    store
        .operation_started(
            "op-2",
            drctl_store::states::OperationKind::Failover,
            Some("orders"),
            Some("us-east"),
            ago(60),
        )
        .await
        .unwrap();
    store
        .operation_finished("op-2", ago(59), Err("refused"))
        .await
        .unwrap();
    store
        .backup_started("b-running", "catalog", "eu-west", "local", ago(30))
        .await
        .unwrap();
    store
        .backup_started("b-failed", "catalog", "eu-west", "local", ago(120))
        .await
        .unwrap();
    store
        .backup_failed("b-failed", ago(119), "connection refused")
        .await
        .unwrap();
    store
        .restore_test_started("rt-1", "catalog", "b-failed", ago(100))
        .await
        .unwrap();
    store
        .restore_test_finished("rt-1", ago(99), false, None, None, Some("no such backup"))
        .await
        .unwrap();
}

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
/// Real paths to start from, so the fuzzer reaches the handlers.
const PATHS: [&str; 21] = [
    "/api/v1/rpo-rto",
    "/api/v1/services/orders/lag?",
    "/api/v1/backups?",
    "/api/v1/operations?",
    "/api/v1/operations/",
    "/api/v1/operations/op-1",
    "/api/v1/report?",
    "/api/v1/audit?",
    "/api/v1/audit/verify",
    "/api/v1/services/orders/operations",
    "/api/v1/services/catalog/backups",
    "/api/v1/backups/b1/verify",
    "/api/v1/restore-tests?",
    "/api/v1/schedule-runs?",
    "/api/v1/cluster",
    "/",
    // Job routes on targets that refuse to start work: no backup policy,
    // a backup still running, a failed one.
    "/api/v1/services/orders/backups",
    "/api/v1/services/orders/restore-tests",
    "/api/v1/backups/b-running/verify",
    "/api/v1/backups/b-failed/verify",
    "/metrics",
];
/// Where a token may go along with a POST: the handler refuses to start
/// any work there (operations are also forced to dry runs).
const SAFE_POSTS: [&str; 5] = [
    "/api/v1/services/orders/operations",
    "/api/v1/services/orders/backups",
    "/api/v1/services/orders/restore-tests",
    "/api/v1/backups/b-running/verify",
    "/api/v1/backups/b-failed/verify",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let h = harness();
    let method = METHODS[data[0] as usize % METHODS.len()].clone();
    let base = PATHS[data[1] as usize % PATHS.len()];
    let rest = &data[3..];
    // Split the rest: a suffix of the path (query), then the body; byte 2
    // says which Authorization goes along: none, the operator's token, the
    // admin's, or the body's first line as raw header bytes.
    let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let suffix: String = String::from_utf8_lossy(&rest[..cut])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let mut body = rest.get(cut + 1..).unwrap_or_default().to_vec();
    let raw_authorization = {
        let end = body.iter().position(|b| *b == b'\n').unwrap_or(body.len());
        body[..end].to_vec()
    };
    let Ok(uri) = format!("{base}{suffix}").parse::<axum::http::Uri>() else {
        return;
    };
    // With a token the fuzzer reaches the handlers behind authorization;
    // work is never started: operations are forced to dry runs, and other
    // POSTs carry a token only where the handler refuses to start work.
    let mut token = match data[2] % 4 {
        1 => Some(b"Bearer fuzz-operator".to_vec()),
        2 => Some(b"Bearer fuzz-admin".to_vec()),
        3 => Some(raw_authorization),
        _ => None,
    };
    let is_token = |t: &Option<Vec<u8>>| {
        matches!(
            t.as_deref(),
            Some(b"Bearer fuzz-operator" | b"Bearer fuzz-admin")
        )
    };
    if method == Method::POST && (is_token(&token) || data[2] % 4 == 3) {
        if base.ends_with("/operations") {
            if let Ok(serde_json::Value::Object(mut o)) =
                serde_json::from_slice::<serde_json::Value>(&body)
            {
                o.insert("dry_run".into(), serde_json::Value::Bool(true));
                body = serde_json::to_vec(&o).unwrap();
            }
        }
        // A suffix could turn a safe path into another; only the bare
        // safe paths (with a query at most) keep their token.
        let path_only = format!("{base}{suffix}");
        let path_only = path_only.split('?').next().unwrap_or_default();
        if !SAFE_POSTS.contains(&path_only) {
            token = None;
        }
        // A dry run is forced only on JSON objects; anything else at an
        // operations endpoint is refused before any work.
    }
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(value) = token.and_then(|t| axum::http::HeaderValue::from_bytes(&t).ok()) {
        req = req.header("authorization", value);
    }
    let Ok(req) = req.body(Body::from(body)) else {
        return;
    };
    let status =
        h.rt.block_on(async { h.router.clone().oneshot(req).await.unwrap().status() });
    assert!(status.as_u16() != 500, "a request made the API fail");
});
