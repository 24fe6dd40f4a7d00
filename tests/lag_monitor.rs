//! The replication-lag monitor against the real lab: reported RPO exposure
//! compared with ground truth read from the workload's own rows, on the
//! namespaced lab: the sampler reaches each region over the lab's network,
//! and the link cut stops replication between two hosts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_tests::*;
use serde_json::Value;

async fn rpo_rto(api: &str) -> Value {
    ApiClient::http(api).get_ok("/api/v1/rpo-rto").await
}

async fn service(api: &str, name: &str) -> Value {
    ApiClient::http(api).service_figures(name).await
}

/// Waits until the service reports an exposure under `limit` seconds.
async fn wait_exposure_below(api: &str, name: &str, limit: f64, timeout: Duration) -> Value {
    wait_for(&format!("{name} exposure < {limit}s"), timeout, || async {
        let s = service(api, name).await;
        (s["rpo"]["exposure_s"].as_f64().is_some_and(|e| e < limit)).then_some(s)
    })
    .await
}

fn time_us(v: &Value) -> i64 {
    DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
        .timestamp_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_exposure_matches_the_oldest_missing_order() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    wait_exposure_below(&api, "orders", 1.0, Duration::from_secs(30)).await;

    lab.link().cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..3 {
        let reported = service(&api, "orders").await;
        let exposure = reported["rpo"]["exposure_s"]
            .as_f64()
            .expect("an exposure while cut");
        let sample_time = time_us(&reported["primary_time"]);
        let (truth_time, truth_us) = ground_truth_exposure(&lab, "orders", "shop.orders").await;
        // The link is cut: exposure grows one-for-one with the primary's clock
        // between the monitor's sample and the ground-truth reading.
        let reported_at_truth_time = exposure + (truth_time - sample_time) as f64 / 1e6;
        let truth = truth_us as f64 / 1e6;
        eprintln!("reported {exposure:.3}s at sample, {reported_at_truth_time:.3}s at truth time; ground truth {truth:.3}s");
        assert!(
            truth >= 4.0,
            "the cut lost no data? ground truth {truth:.3}s"
        );
        assert!(
            (reported_at_truth_time - truth).abs() <= 0.5,
            "reported exposure {reported_at_truth_time:.3}s vs ground truth {truth:.3}s"
        );
        assert_eq!(reported["rpo"]["exposure_is_lower_bound"], false);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    lab.link().restore();
    let after = wait_exposure_below(&api, "orders", 1.0, Duration::from_secs(30)).await;
    eprintln!("after restore: {}", after["rpo"]["exposure_s"]);
    let (_, truth_us) = ground_truth_exposure(&lab, "orders", "shop.orders").await;
    assert!(
        truth_us < 1_000_000,
        "standby still missing rows {truth_us}us old after restore"
    );
    daemon.stop().await;
    lab.teardown().expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_primary_exposure_stays_low_while_naive_replay_delay_grows() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    wait_exposure_below(&api, "orders", 1.0, Duration::from_secs(30)).await;

    lab.workload().pause();
    let mut max_exposure: f64 = 0.0;
    let mut naive = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = service(&api, "orders").await;
        let exposure = s["rpo"]["exposure_s"]
            .as_f64()
            .expect("exposure on an idle primary");
        let delay = s["standbys"][0]["naive_replay_delay_s"]
            .as_f64()
            .unwrap_or(0.0);
        eprintln!("t={:>4.1}s exposure {exposure:.3}s, now() - pg_last_xact_replay_timestamp() {delay:.1}s", start.elapsed().as_secs_f64());
        max_exposure = max_exposure.max(exposure);
        naive.push(delay);
        assert_eq!(s["status"], "ok", "an idle, caught-up service is ok: {s}");
    }
    assert!(
        max_exposure < 2.0,
        "exposure reached {max_exposure:.3}s on an idle primary"
    );
    let last = *naive.last().unwrap();
    assert!(last > 25.0, "the naive replay delay should have grown to ~30s on an idle primary, was {last:.1}s ({naive:?})");
    let (_, truth_us) = ground_truth_exposure(&lab, "orders", "shop.orders").await;
    assert_eq!(
        truth_us, 0,
        "nothing is missing on the standby of an idle primary"
    );
    daemon.stop().await;
    lab.teardown().expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_latency_200ms_shows_as_stable_lag_within_a_5s_target() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    wait_exposure_below(&api, "orders", 1.0, Duration::from_secs(30)).await;

    lab.link().set_latency(Duration::from_millis(200));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut readings = Vec::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = service(&api, "orders").await;
        assert_eq!(s["rpo"]["target_s"], 5.0);
        assert_eq!(
            s["status"], "ok",
            "200 ms of lag is ok for a 5 s target: {s}"
        );
        readings.push(s["rpo"]["exposure_s"].as_f64().expect("exposure"));
    }
    readings.sort_by(f64::total_cmp);
    let median = readings[readings.len() / 2];
    eprintln!("exposure with 200 ms link latency: {readings:?}");
    assert!(
        median >= 0.15,
        "200 ms of latency is not visible: median {median:.3}s"
    );
    assert!(
        *readings.last().unwrap() < 1.5,
        "lag not stable: {readings:?}"
    );
    daemon.stop().await;
    lab.teardown().expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_makes_its_service_unknown_and_spares_the_others() {
    let (lab, _dir) = start_namespaced_lab(vec![orders(), inventory()], false).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    wait_exposure_below(&api, "orders", 1.0, Duration::from_secs(30)).await;
    wait_exposure_below(&api, "inventory", 1.0, Duration::from_secs(30)).await;

    lab.kill_primary("orders")
        .expect("crash the orders primary");
    let orders = wait_for(
        "orders to turn unknown",
        Duration::from_secs(20),
        || async {
            let s = service(&api, "orders").await;
            (s["status"] == "unknown").then_some(s)
        },
    )
    .await;
    let error = orders["error"]
        .as_str()
        .expect("an error for an unknown service");
    assert!(
        error.contains("orders@region-a"),
        "the error names the endpoint: {error}"
    );

    let before = time_us(&service(&api, "inventory").await["sampled_at"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let inventory = service(&api, "inventory").await;
    assert!(
        time_us(&inventory["sampled_at"]) > before + 1_000_000,
        "inventory is still sampled"
    );
    assert_eq!(inventory["status"], "ok", "{inventory}");

    let health = reqwest::get(format!("{api}/healthz"))
        .await
        .expect("the daemon still serves");
    assert!(health.status().is_success());
    let metrics = ApiClient::http(&api).metrics().await;
    assert!(
        metrics.contains(r#"drctl_service_status{service="orders",tier="hot",status="unknown"} 1"#),
        "{metrics}"
    );
    daemon.stop().await;
    lab.teardown().expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_sharing_a_cluster_are_sampled_together() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    // A second service in the same PostgreSQL cluster (the unit of failover).
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap();
    let primary = lab.cluster("orders", drctl_lab::REGION_A).dsn("orders");
    let standby = lab.cluster("orders", drctl_lab::REGION_B).dsn("orders");
    text = text.replace(
        "name = \"orders\"\ntier = \"hot\"\n",
        "name = \"orders\"\ntier = \"hot\"\ncluster = \"shop-main\"\n",
    );
    text.push_str(&format!(
        "\n[[services]]\nname = \"order-audit\"\ntier = \"warm\"\ncluster = \"shop-main\"\n\
         regions = [\"region-a\", \"region-b\"]\nprimary = \"region-a\"\n\
         [services.postgres.region-a]\ndsn = \"{primary}\"\n[services.postgres.region-b]\ndsn = \"{standby}\"\n"
    ));
    // Beside the lab's config: its relative paths (tokens, DNS key) hold.
    let path = lab.config_path().with_file_name("shared.toml");
    std::fs::write(&path, text).unwrap();
    let config = std::sync::Arc::new(drctl_config::load(&path).unwrap_or_else(|e| panic!("{e}")));
    let daemon = start_daemon_with(config).await;
    let api = daemon.api_url();
    wait_exposure_below(&api, "orders", 1.0, Duration::from_secs(30)).await;
    let audit = wait_exposure_below(&api, "order-audit", 1.0, Duration::from_secs(30)).await;
    assert_eq!(
        audit["rpo"]["target_s"], 300.0,
        "each member keeps its own target"
    );

    lab.link().cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = rpo_rto(&api).await;
    let figures: Vec<(f64, String)> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["rpo"]["exposure_s"].as_f64().unwrap(),
                s["sampled_at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        figures[0], figures[1],
        "one measurement of the cluster serves both services"
    );
    assert!(figures[0].0 > 2.0, "{figures:?}");

    // One sampler: one monitoring connection to the primary, not one per service.
    let mut conn = connect(&primary).await;
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drctl'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(n, 1, "monitor connections to the shared primary");
    lab.link().restore();
    daemon.stop().await;
    lab.teardown().expect("teardown");
}
