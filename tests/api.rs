//! Router-level tests of the API: every endpoint, its JSON errors and their
//! stable codes, driven in-process (no sampling; the store is a real SQLite).

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use drctl_tests::{in_process_router, ApiClient, Service, TestConfig, TokenSecret};
use serde_json::Value;
use tower::ServiceExt;

/// The operator token of the test config, from a token file.
const OPERATOR: &str = "api-test-operator-token";

/// Two replicated services (DSN passwords planted), a cold one whose DSN
/// comes from an unset variable, and a stateless one.
fn config() -> TestConfig {
    TestConfig::new()
        .api("anonymous = \"viewer\"")
        .token("ops", "operator", TokenSecret::File("tokens/operator"))
        .service(
            Service::hot("orders")
                .postgres(
                    "eu-west",
                    r#"dsn = "postgres://app:hunter2-secret@127.0.0.1:1/orders""#,
                )
                .postgres(
                    "us-east",
                    r#"dsn = "postgres://app:hunter2-secret@127.0.0.1:2/orders""#,
                ),
        )
        .service(Service::cold("catalog").postgres("eu-west", r#"dsn_env = "CATALOG_DSN""#))
        .service(Service::hot("storefront"))
}

async fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    std::fs::write(dir.path().join("tokens/operator"), OPERATOR).unwrap();
    let (router, _store) = in_process_router(config().parse(dir.path())).await;
    (router, dir)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let reply = ApiClient::router(app.clone()).get(uri).await;
    (reply.status, reply.body)
}

async fn get_json(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let reply = ApiClient::router(app.clone()).get(uri).await;
    (reply.status, reply.json())
}

#[tokio::test]
async fn services_lists_the_config_without_secrets() {
    let (app, _dir) = app().await;
    let (status, body) = get(&app, "/api/v1/services").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("hunter2"), "a DSN password leaked: {body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["services"][0]["name"], "orders");
    assert_eq!(json["services"][0]["tier"], "hot");
    assert_eq!(json["services"][1]["name"], "catalog");
}

#[tokio::test]
async fn rpo_rto_reports_targets_and_why_figures_are_missing() {
    let (app, _dir) = app().await;
    let (status, json) = get_json(&app, "/api/v1/rpo-rto").await;
    assert_eq!(status, StatusCode::OK);
    let orders = &json["services"][0];
    assert_eq!(orders["rpo"]["target_s"], 5.0);
    assert_eq!(orders["rto"]["target_s"], 60.0);
    assert_eq!(orders["status"], "unknown");
    assert_eq!(orders["rpo"]["exposure_s"], Value::Null);
    assert_eq!(orders["error"], "not sampled yet");
    let catalog = &json["services"][1];
    assert_eq!(catalog["rpo"]["target_s"], 86400.0);
    assert!(
        catalog["error"].as_str().unwrap().contains("cold tier"),
        "{catalog}"
    );
    let storefront = &json["services"][2];
    assert_eq!(
        storefront["status"], "ok",
        "a stateless service has nothing to lose: {storefront}"
    );
    assert_eq!(storefront["rpo"]["exposure_s"], 0.0);
    assert!(storefront["note"]
        .as_str()
        .unwrap()
        .contains("no datastore"));
}

#[tokio::test]
async fn lag_history_of_an_unknown_service_is_404_with_a_suggestion() {
    let (app, _dir) = app().await;
    let (status, json) = get_json(&app, "/api/v1/services/ordrs/lag").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["code"], "service_not_found");
    assert_eq!(
        json["error"]["message"],
        r#"no service named "ordrs" (did you mean "orders"?)"#
    );
}

#[tokio::test]
async fn lag_history_rejects_bad_parameters_with_stable_codes() {
    let (app, _dir) = app().await;
    for uri in [
        "/api/v1/services/orders/lag?since=yesterday",
        "/api/v1/services/orders/lag?until=soon",
        "/api/v1/services/orders/lag?limit=0",
        "/api/v1/services/orders/lag?limit=many",
        "/api/v1/services/orders/lag?limit=100001",
    ] {
        let (status, json) = get_json(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(json["error"]["code"], "invalid_parameter", "{uri}");
    }
}

#[tokio::test]
async fn lag_history_accepts_durations_and_timestamps() {
    let (app, _dir) = app().await;
    for uri in [
        "/api/v1/services/orders/lag",
        "/api/v1/services/orders/lag?since=15m&limit=10",
        "/api/v1/services/orders/lag?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00%2B02:00",
    ] {
        let (status, json) = get_json(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        assert_eq!(json["service"], "orders");
        assert_eq!(json["samples"], Value::Array(vec![]));
    }
}

#[tokio::test]
async fn unknown_paths_are_json_404s() {
    let (app, _dir) = app().await;
    let (status, json) = get_json(&app, "/api/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["code"], "not_found");
}

#[tokio::test]
async fn healthz_and_metrics() {
    let (app, _dir) = app().await;
    let (status, json) = get_json(&app, "/healthz").await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(r#"drctl_rpo_target_seconds{service="orders",tier="hot"} 5.0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"drctl_service_status{service="orders",tier="hot",status="unknown"} 1"#),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    assert!(!text.contains("hunter2"));
}

#[test]
fn shipped_lab_config_is_what_lab_up_writes() {
    let preview = drctl_lab::LabRecord::standard_preview("/tmp/drctl-lab".into());
    let generated = drctl_lab::lab_config_toml(&preview);
    if std::env::var_os("DRCTL_BLESS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lab.toml"),
            &generated,
        )
        .unwrap();
    }
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lab.toml"))
            .expect("config/lab.toml");
    assert_eq!(
        shipped, generated,
        "config/lab.toml drifted from what `drctl lab up` writes; regenerate it"
    );
    drctl_config::parse("config/lab.toml", &shipped, Path::new("/tmp"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn starting_a_backup_of_a_service_without_a_policy_is_a_409() {
    let (app, _dir) = app().await;
    let response = app
        .clone()
        .oneshot(
            Request::post("/api/v1/services/orders/backups")
                .header("authorization", format!("Bearer {OPERATOR}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"]["code"], "no_backup_policy");
}
