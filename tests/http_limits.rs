//! What the API does under load and abuse: a report's cost is bounded
//! (period cap, at most a few at once, old history read per minute), slow
//! clients cannot hold connections (slowloris), and HTTPS works with a
//! certificate of the operator's. The report tests drive the real router
//! in-process over a real SQLite store; the connection tests drive the
//! real daemon over real sockets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};
use drctl_api::{router, ApiState};
use drctl_daemon::Daemon;
use drctl_store::LagSample;
use drctl_tests::{in_process_state, ApiClient, Service, TestConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The test config over a store in `dir`, with `tls` lines in `[api]`.
fn config(dir: &Path, tls: &str) -> drctl_config::Config {
    let mut config = TestConfig::new()
        .store_url(&format!("sqlite://{}", dir.join("state.db").display()))
        .api("listen = \"127.0.0.1:0\"")
        .service(
            Service::hot("orders")
                .key("rpo = \"5s\"")
                .unreachable_postgres(1, 2),
        )
        .service(Service::hot("storefront"));
    if !tls.is_empty() {
        config = config.api(tls);
    }
    config.parse(dir)
}

async fn state(dir: &Path) -> ApiState {
    in_process_state(config(dir, "")).await.0
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    let reply = ApiClient::router(app.clone()).get(uri).await;
    let json = reply.json();
    (reply.status, reply.headers, json)
}

#[tokio::test]
async fn a_report_over_more_than_93_days_is_cut_to_its_last_93_days_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()).await);
    let (status, _, json) = get(&app, "/api/v1/report?from=400d").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let from: chrono::DateTime<Utc> = json["from"].as_str().unwrap().parse().unwrap();
    let to: chrono::DateTime<Utc> = json["to"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        to - from,
        TimeDelta::days(93),
        "the period served: {from} to {to}"
    );
    let note = json["note"]
        .as_str()
        .expect("a note says the period was cut");
    assert!(
        note.contains("93d") && note.contains("drctl report"),
        "{note}"
    );
    // A period within the cap is served as asked, without a note.
    let (status, _, json) = get(&app, "/api/v1/report?from=93d").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["note"], Value::Null);
}

#[tokio::test]
async fn reports_beyond_the_concurrent_limit_get_429_report_busy_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let app = router(state.clone());
    // Every slot taken, as by reports still being built.
    let held = state
        .report_slots
        .clone()
        .try_acquire_many_owned(drctl_api::report::CONCURRENT_REPORTS as u32)
        .expect("the slots are free at first");
    let (status, headers, json) = get(&app, "/api/v1/report").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    assert_eq!(json["error"]["code"], "report_busy");
    let retry_after: u64 = headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    // Other reads are not held up by reports.
    let (status, _, _) = get(&app, "/api/v1/services").await;
    assert_eq!(status, StatusCode::OK);
    drop(held);
    let (status, _, json) = get(&app, "/api/v1/report").await;
    assert_eq!(status, StatusCode::OK, "a freed slot serves again: {json}");
}

/// History older than an hour is read per minute (rollups, or raw samples
/// folded by the store) instead of sample by sample, and a breach in it is
/// still found, to the minute.
#[tokio::test]
async fn a_report_reads_history_older_than_an_hour_per_minute_and_still_finds_its_breaches() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let store = state.monitor.store().clone();
    let now = Utc::now();
    let to = now - TimeDelta::seconds(now.timestamp() % 60);
    // Three hours of a sample a second; 2 h 10 min before `to`, 5 minutes
    // of exposure at 60 s against a 5 s target.
    let breach_start = to - TimeDelta::minutes(130);
    let breach_end = breach_start + TimeDelta::minutes(5);
    let mut samples = Vec::new();
    for s in 0..3 * 3600 {
        let at = to - TimeDelta::seconds(3 * 3600 - s);
        let exposure = if at >= breach_start && at < breach_end {
            60_000_000
        } else {
            100_000
        };
        samples.push(LagSample::bare("orders", "us-east", at, Some(exposure)));
    }
    store.insert_lag_samples(&samples).await.unwrap();
    let app = router(state);
    let from = (to - TimeDelta::hours(3)).to_rfc3339();
    let uri = format!(
        "/api/v1/report?from={}&to={}",
        enc(&from),
        enc(&to.to_rfc3339())
    );
    let (status, _, json) = get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let orders = &json["services"][0];
    assert_eq!(orders["service"], "orders");
    let raw_from = (to - TimeDelta::hours(1))
        .format("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    let basis = orders["rpo"]["basis"].as_str().unwrap();
    assert!(
        basis.contains(&format!("per-minute worst before {raw_from}")),
        "raw samples are read for the newest hour only: {basis}"
    );
    let breaches = orders["breaches"].as_array().unwrap();
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    let start: chrono::DateTime<Utc> = breaches[0]["start"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<Utc> = breaches[0]["end"].as_str().unwrap().parse().unwrap();
    // Per-minute figures: the breach is found within a minute of its edges
    // (its start is pulled back by the exposure itself, as with samples).
    assert!(
        (start - breach_start).num_seconds().abs() <= 120,
        "start {start}, truth {breach_start}"
    );
    assert!(
        (end - breach_end).num_seconds().abs() <= 120,
        "end {end}, truth {breach_end}"
    );
    assert_eq!(orders["rpo"]["worst_exposure_s"], 60.0);
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn start_daemon(dir: &Path, tls: &str) -> Daemon {
    Daemon::start(Arc::new(config(dir, tls)))
        .await
        .expect("the daemon starts")
}

/// Opens a connection that sends a request's headers a byte at a time,
/// forever; resolves when the server ends it (closes, resets or answers).
async fn slowloris(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: drctl\r\nX-Slow: ")
        .await
        .is_err()
    {
        return true;
    }
    let mut buf = [0u8; 256];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stream.read(&mut buf) => return true,
            _ = tick.tick() => {
                if stream.write_all(b"a").await.is_err() {
                    return true;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_and_the_api_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path(), "").await;
    let addr = daemon.api_addr;
    let attackers: Vec<_> = (0..200).map(|_| tokio::spawn(slowloris(addr))).collect();
    // While they trickle, a normal request is served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/api/v1/services", daemon.api_url()))
        .send()
        .await
        .expect("the API answers during the attack");
    assert_eq!(response.status(), 200);
    // And the server ends every slow connection itself (the header-read
    // timeout is 10 s; generous room here).
    let ended = tokio::time::timeout(Duration::from_secs(90), async {
        let mut ended = 0;
        for a in attackers {
            ended += usize::from(a.await.unwrap());
        }
        ended
    })
    .await
    .expect("the server still holds connections that never finished their headers");
    assert_eq!(ended, 200);
    let response = client
        .get(format!("{}/healthz", daemon.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    daemon.stop().await;
}

/// A self-signed certificate for 127.0.0.1 by the openssl CLI.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // A server certificate, not a CA one (rustls refuses a CA as a server's).
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI is needed for the TLS test (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test]
async fn the_api_serves_https_with_the_configured_certificate_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let tls = format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let daemon = start_daemon(dir.path(), &tls).await;
    let url = daemon.api_url();
    assert!(url.starts_with("https://"), "{url}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .get(format!("{url}/api/v1/services"))
        .send()
        .await
        .expect("the API answers over TLS");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["services"][0]["name"], "orders");
    // Plain HTTP to the same port gets no API answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(format!("http://{}/healthz", daemon.api_addr))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP was answered: {:?}",
        plain.map(|r| r.status())
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_tls_key_that_is_not_a_key_stops_the_start_naming_the_file_not_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path());
    let bad = dir.path().join("not-a.key");
    std::fs::write(&bad, "hunter2-not-a-pem-key\n").unwrap();
    let tls = format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        cert.display().to_string(),
        bad.display().to_string()
    );
    let error = match Daemon::start(Arc::new(config(dir.path(), &tls))).await {
        Ok(_) => panic!("the daemon started with a key file holding no key"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("not-a.key") && error.contains("tls_key"),
        "{error}"
    );
    assert!(
        !error.contains("hunter2"),
        "the key file's content was shown: {error}"
    );
}
