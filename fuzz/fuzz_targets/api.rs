//! Any request to the API — method, path with query, Authorization header,
//! body — through the real router over an in-memory state store: an
//! answer, never a panic, never a 500.
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

[[regions]]
name = "eu-west"
[[regions]]
name = "us-east"

[[object_stores]]
name = "local"
kind = "local"
path = "/nonexistent/drctl-fuzz"

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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("drctl-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = CONFIG.replace("STORE", &dir.join("state.db").display().to_string());
        let router = rt.block_on(async {
            let config = drctl_config::parse("fuzz.toml", &text, std::path::Path::new("/")).unwrap();
            let store = drctl_store::Store::open(config.store.url.expose()).await.unwrap();
            let monitor = drctl_monitor::Monitor::new(Arc::new(config), store);
            drctl_api::router(drctl_api::ApiState::new(monitor).unwrap())
        });
        Harness { rt, router }
    })
}

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
/// Real paths to start from, so the fuzzer reaches the handlers.
const PATHS: [&str; 12] = [
    "/api/v1/rpo-rto",
    "/api/v1/services/orders/lag?",
    "/api/v1/backups?",
    "/api/v1/operations?",
    "/api/v1/operations/",
    "/api/v1/report?",
    "/api/v1/audit?",
    "/api/v1/services/orders/operations",
    "/api/v1/services/catalog/backups",
    "/api/v1/backups/b1/verify",
    "/api/v1/restore-tests?",
    "/",
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
    // says whether the operator's token goes along.
    let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let suffix: String = String::from_utf8_lossy(&rest[..cut])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let mut body = rest.get(cut + 1..).unwrap_or_default().to_vec();
    let Ok(uri) = format!("{base}{suffix}").parse::<axum::http::Uri>() else { return };
    // With the operator's token the fuzzer reaches the handlers behind
    // authorization; work is never started: operations are forced to dry
    // runs, and the job endpoints (no body to fuzz) go without a token.
    let mut authorized = data[2] & 1 == 1;
    if method == Method::POST && authorized {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(mut o)) if base.ends_with("/operations") => {
                o.insert("dry_run".into(), serde_json::Value::Bool(true));
                body = serde_json::to_vec(&o).unwrap();
            }
            Ok(_) if base.ends_with("/operations") => {}
            _ if base.ends_with("/operations") => {}
            _ => authorized = false,
        }
        if !base.ends_with("/operations") {
            authorized = false;
        }
    }
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if authorized {
        req = req.header("authorization", "Bearer fuzz-operator");
    }
    let Ok(req) = req.body(Body::from(body)) else { return };
    let status = h.rt.block_on(async { h.router.clone().oneshot(req).await.unwrap().status() });
    assert!(status.as_u16() != 500, "a request made the API fail");
});
