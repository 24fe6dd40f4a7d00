//! The dashboard in a real headless browser (Debian's Chromium) and the
//! compliance report, on the real lab, against ground truth:
//!
//! - the page renders the lab's service with its status and a lag chart,
//!   and refreshes itself; a screenshot is saved;
//! - a link cut beyond the RPO target shows as a breach on the page (red,
//!   the word "breach") once the API reports it; a second screenshot;
//! - the report over the period names exactly one breach, starting when
//!   exposure really passed the target (cut + target) and ending after the
//!   link came back, and says the same in Markdown, HTML and CSV;
//! - a webhook receiver on loopback gets exactly one "breach started" and
//!   one "breach ended" for that breach, in drctl's JSON and in Slack's
//!   form; a webhook that is down gets retries, not a flood.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use drctl_tests::*;
use serde_json::Value;

/// Debian's Chromium (tests/run.sh installs it; `CHROMIUM` overrides).
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} is missing: the dashboard test needs a headless browser; install it with \
         `apt-get install chromium` (bash tests/run.sh does) or set CHROMIUM",
        path.display()
    );
    path
}

/// Where the screenshots go: `target/screenshots/`.
fn screenshot_dir() -> PathBuf {
    let dir = drctl_bin()
        .parent()
        .and_then(|p| p.parent())
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads the page in headless Chromium, lets it run `budget_ms` of virtual
/// time (its 5 s refreshes included), and returns the DOM it ended with;
/// with `screenshot`, also saves a picture of it.
fn render(url: &str, budget_ms: u32, screenshot: Option<&str>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    // Flags for this machine: as root it needs --no-sandbox; the closed
    // network refuses Chromium's background connections.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1400,1600",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={budget_ms}"));
    let out = match screenshot {
        Some(name) => {
            let path = screenshot_dir().join(name);
            let out = cmd
                .arg(format!("--screenshot={}", path.display()))
                .arg(url)
                .output()
                .expect("chromium runs");
            assert!(
                path.is_file(),
                "no screenshot at {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            // The DOM is read in a second run (one run does one or the other).
            return render(url, budget_ms, None);
        }
        None => cmd
            .arg("--dump-dom")
            .arg(url)
            .output()
            .expect("chromium runs"),
    };
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The attributes of the page's element for `service` (its opening tag).
fn service_tag(dom: &str, service: &str) -> String {
    let needle = format!("data-service=\"{service}\"");
    let at = dom
        .match_indices(&needle)
        .map(|(i, _)| i)
        .find(|i| {
            dom[..*i]
                .rfind('<')
                .is_some_and(|open| dom[open..*i].contains("class=\"service"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no .service element for {service} in the page:\n{}",
                &dom[..dom.len().min(4000)]
            )
        });
    let open = dom[..at].rfind('<').unwrap();
    let close = at + dom[at..].find('>').unwrap();
    dom[open..=close].to_string()
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(tag[start..start + tag[start..].find('"')?].to_string())
}

async fn get(api: &str, path: &str) -> Value {
    ApiClient::http(api).get(path).await.json()
}

async fn orders_compliance(api: &str) -> Value {
    ApiClient::http(api).service_figures("orders").await["compliance"].clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time, not {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// A webhook receiver on loopback: every POST body, with the path it came to.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/{hook}",
        axum::routing::post(
            move |axum::extract::Path(hook): axum::extract::Path<String>,
                  axum::Json(v): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((hook, v));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn webhook(
    name: &str,
    url: String,
    format: drctl_config::WebhookFormat,
) -> drctl_config::WebhookConfig {
    drctl_config::WebhookConfig {
        name: name.into(),
        url: drctl_config::WebhookUrl::Inline(drctl_config::Secret::opaque(url)),
        format,
        events: vec![drctl_config::AlertKind::Breach],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_breach_and_the_report_times_it_against_ground_truth() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    let (hooks, received) = receiver().await;
    let mut config = Arc::unwrap_or_clone(lab_config(&lab));
    config.webhooks = vec![
        webhook(
            "generic",
            format!("{hooks}/generic"),
            drctl_config::WebhookFormat::Json,
        ),
        webhook(
            "chat",
            format!("{hooks}/chat"),
            drctl_config::WebhookFormat::Slack,
        ),
        // Nothing listens there: retried with backoff, never flooding.
        webhook(
            "down",
            format!("http://127.0.0.1:{}/x", drctl_lab::free_port()),
            drctl_config::WebhookFormat::Json,
        ),
    ];
    let daemon = start_daemon_with(Arc::new(config)).await;
    let api = daemon.api_url();
    let started = Utc::now();
    wait_for(
        "orders measured inside its target",
        Duration::from_secs(30),
        || async {
            let c = orders_compliance(&api).await;
            (c["rpo"]["status"] == "met").then_some(())
        },
    )
    .await;
    // A few seconds of history for the chart.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The page: the service, its status from the API, a chart; it refreshes.
    let page = format!("{api}/");
    let dom = render(&page, 12_000, Some("dashboard-ok.png"));
    let tag = service_tag(&dom, "orders");
    assert_eq!(
        attr(&tag, "data-rpo-status").as_deref(),
        Some("met"),
        "{tag}"
    );
    let api_status = orders_compliance(&api).await["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        attr(&tag, "data-status"),
        Some(api_status),
        "the page shows the API's verdict: {tag}"
    );
    assert_ne!(attr(&tag, "data-status").as_deref(), Some("breach"));
    let refreshes: u32 = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("body[data-refreshes]");
    assert!(
        refreshes >= 2,
        "the page refreshed itself ({refreshes} refreshes in 12 s)"
    );
    // The one daemon leads, and the header says so.
    let standing = dom
        .split("id=\"daemon\"")
        .nth(1)
        .and_then(|rest| rest.split("</span>").next())
        .expect("the header's daemon row");
    assert!(
        standing.contains("data-leading=\"true\"") && standing.ends_with(">the leader"),
        "the header names the answering daemon's standing: {standing}"
    );
    let chart = dom
        .split("<svg")
        .find(|s| s.contains("lag-chart") && s.contains("data-service=\"orders\""))
        .expect("a lag chart for orders");
    let points: u32 = attr(&format!(" {chart}"), "data-points")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(
        points > 0,
        "the chart has the lab's samples: {}",
        &chart[..chart.len().min(300)]
    );

    // A partition longer than the 5 s target (plus the 10 s breach grace).
    let cut = Utc::now();
    lab.link().cut();
    let reported = wait_for(
        "the API to report the breach",
        Duration::from_secs(40),
        || async {
            let c = orders_compliance(&api).await;
            (c["status"] == "breach").then_some(Utc::now())
        },
    )
    .await;
    assert!(
        reported - cut >= TimeDelta::seconds(5),
        "a breach before the target passed"
    );
    // The page shows it at its next load and refresh.
    let dom = render(&page, 6_000, Some("dashboard-breach.png"));
    let tag = service_tag(&dom, "orders");
    assert_eq!(
        attr(&tag, "data-status").as_deref(),
        Some("breach"),
        "{tag}"
    );
    assert_eq!(
        attr(&tag, "data-rpo-status").as_deref(),
        Some("breach"),
        "{tag}"
    );
    assert!(dom.contains("badge status-breach"), "a red breach badge");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healed = Utc::now();
    lab.link().restore();
    // Back inside (the hour's p99 keeps it `at_risk` for a while: the
    // breach is in the window).
    wait_for(
        "orders back inside its target",
        Duration::from_secs(30),
        || async {
            let c = orders_compliance(&api).await;
            (c["rpo"]["exposure_s"].as_f64().is_some_and(|e| e < 1.0)).then_some(c)
        },
    )
    .await;
    assert_eq!(
        orders_compliance(&api).await["rpo"]["status"],
        "at_risk",
        "the hour's p99 remembers the breach"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The report over the whole run: one breach, where ground truth puts it.
    let from = (started - TimeDelta::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let report = get(&api, &format!("/api/v1/report?from={from}")).await;
    let orders = report["services"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["service"] == "orders"))
        .expect("orders in the report");
    let breaches = orders["breaches"].as_array().unwrap();
    assert_eq!(breaches.len(), 1, "one cut, one breach: {breaches:#?}");
    let (start, end) = (time(&breaches[0]["start"]), time(&breaches[0]["end"]));
    // Truth: the oldest commit lost to the cut was written just before it
    // (the workload commits every 50 ms), so exposure passed 5 s at
    // cut + 5 s, give or take the heartbeat map's resolution.
    let truth_start = cut + TimeDelta::seconds(5);
    assert!(
        (start - truth_start).num_milliseconds().abs() <= 1_200,
        "breach start {start} vs truth {truth_start}"
    );
    // It ends once the standby caught up after the heal: the report errs
    // long by at most a sample interval and the catch-up.
    assert!(
        end >= healed,
        "breach end {end} before the heal at {healed}"
    );
    assert!(
        end - healed <= TimeDelta::seconds(3),
        "breach end {end} long after the heal at {healed}"
    );
    let worst = breaches[0]["worst_exposure_s"].as_f64().unwrap();
    let cut_len = (healed - cut).num_milliseconds() as f64 / 1000.0;
    assert!(
        worst >= cut_len - 1.5 && worst <= cut_len + 2.0,
        "worst exposure {worst} s for a {cut_len} s cut"
    );
    let pct = orders["rpo"]["compliance_pct"].as_f64().unwrap();
    assert!(pct < 100.0 && pct > 0.0, "{pct}");
    assert!(report["summary"]["breaches"].as_u64() >= Some(1));

    // The same report in the other formats.
    for (format, content_type, needle) in [
        ("md", "text/markdown", "| breach start |"),
        ("html", "text/html", "<table>"),
        ("csv", "text/csv", "orders,hot,breach"),
    ] {
        let r = reqwest::get(format!("{api}/api/v1/report?from={from}&format={format}"))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with(content_type), "{format}: {ct}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{format}: {body}");
    }
    // The webhooks: one start and one end, each once per receiver.
    let events = wait_for(
        "breach_ended at the receiver",
        Duration::from_secs(15),
        || {
            let received = received.clone();
            async move {
                let got = received.lock().unwrap().clone();
                got.iter()
                    .any(|(hook, v)| hook == "generic" && v["event"] == "breach_ended")
                    .then_some(got)
            }
        },
    )
    .await;
    let generic: Vec<&Value> = events
        .iter()
        .filter(|(h, _)| h == "generic")
        .map(|(_, v)| v)
        .collect();
    let names: Vec<&str> = generic
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["breach_started", "breach_ended"], "{generic:#?}");
    assert!(generic
        .iter()
        .all(|v| v["service"] == "orders" && v["source"] == "drctl"));
    assert_eq!(generic[0]["severity"], "critical");
    assert!(
        generic[0]["detail"]["exposure_s"].as_f64().unwrap() > 5.0,
        "{}",
        generic[0]
    );
    let lasted = generic[1]["detail"]["lasted_s"].as_f64().unwrap();
    assert!(
        lasted > 1.0,
        "the end says how long it lasted: {}",
        generic[1]
    );
    let chat: Vec<&Value> = events
        .iter()
        .filter(|(h, _)| h == "chat")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(chat.len(), 2, "{chat:#?}");
    assert!(
        chat[0]["text"].as_str().unwrap().contains("breach started"),
        "{}",
        chat[0]
    );
    // The dead webhook: retried with backoff (1 s, 2 s, 4 s …): a handful
    // of attempts in this run, counted in the metrics.
    let metrics = ApiClient::http(&api).metrics().await;
    let retried: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("drctl_alert_deliveries_total{")
                && l.contains("webhook=\"down\"")
                && l.contains("outcome=\"retried\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        (1.0..=16.0).contains(&retried),
        "retries of the dead webhook: {retried}\n{metrics}"
    );
    assert!(
        metrics
            .contains("drctl_alert_deliveries_total{webhook=\"generic\",outcome=\"delivered\"} 2"),
        "{metrics}"
    );

    // And from the CLI, reading the store directly.
    let config = lab.config_path().to_str().unwrap().to_string();
    let (code, out, err) = drctl(&[
        "report", "--config", &config, "--from", &from, "--format", "csv",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("orders,hot,breach").count(), 1, "{out}");
    daemon.stop().await;
    lab.teardown().unwrap();
}
