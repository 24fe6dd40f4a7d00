//! RPO exposure does not depend on drctl's clock agreeing with the
//! primary's (DESIGN.md: one clock, the primary's). The lab's primary is
//! restarted under libfaketime with its clock 5 s ahead, then 5 s behind,
//! the clock of this machine (and of drctl); during a link cut, the
//! reported exposure is compared with ground truth (the age of the oldest
//! row the standby lacks) — the same error as with the clocks agreeing,
//! within 0.2 s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_lab::REGION_A;
use drctl_tests::*;
use serde_json::Value;

/// Debian's libfaketime (package `faketime`; tests/run.sh installs it).
fn libfaketime() -> String {
    let path = std::env::var("LIBFAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into());
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} is missing: the clock-skew test runs the primary under libfaketime; install it with \
         `apt-get install faketime` (bash tests/run.sh does) or set LIBFAKETIME"
    );
    path
}

async fn orders(api: &str) -> Value {
    ApiClient::http(api).service_figures("orders").await
}

fn time_us(v: &Value) -> i64 {
    DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
        .timestamp_micros()
}

async fn wait_caught_up(api: &str) {
    wait_for("orders caught up", Duration::from_secs(60), || async {
        let s = orders(api).await;
        s["rpo"]["exposure_s"]
            .as_f64()
            .is_some_and(|e| e < 1.0)
            .then_some(())
    })
    .await;
}

/// During a 4 s link cut: reported exposure minus ground truth (median of
/// three readings, each moved to the moment of the ground-truth reading).
async fn exposure_error(lab: &drctl_lab::Lab, api: &str) -> f64 {
    wait_caught_up(api).await;
    lab.link().cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut errors = Vec::new();
    for _ in 0..3 {
        let reported = orders(api).await;
        let exposure = reported["rpo"]["exposure_s"]
            .as_f64()
            .expect("an exposure while cut");
        let sample_time = time_us(&reported["primary_time"]);
        let (truth_time, truth_us) = ground_truth_exposure(lab, "orders", "shop.orders").await;
        // Both times are the primary's clock: the skew cancels here too.
        let at_truth_time = exposure + (truth_time - sample_time) as f64 / 1e6;
        let truth = truth_us as f64 / 1e6;
        assert!(
            truth >= 3.5,
            "the cut lost no data? ground truth {truth:.3}s"
        );
        eprintln!("reported {at_truth_time:.3}s, ground truth {truth:.3}s");
        errors.push(at_truth_time - truth);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    lab.link().restore();
    wait_caught_up(api).await;
    errors.sort_by(f64::total_cmp);
    errors[1]
}

/// How far the primary's clock is ahead of this machine's, in seconds.
async fn primary_offset(lab: &drctl_lab::Lab) -> f64 {
    let mut conn = connect(&lab.cluster("orders", REGION_A).dsn("orders")).await;
    let (primary_us,): (i64,) =
        sqlx::query_as("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    (primary_us - Utc::now().timestamp_micros()) as f64 / 1e6
}

/// Restarts the primary with its clock `offset` seconds off (0: real).
fn restart_primary(lab: &drctl_lab::Lab, offset: i64, lib: &str) {
    let primary = lab.cluster("orders", REGION_A);
    primary.stop("fast").unwrap();
    if offset == 0 {
        primary.start().unwrap();
        return;
    }
    let faketime = format!("{offset:+}");
    primary
        .start_with_env(&[
            ("LD_PRELOAD", lib),
            ("FAKETIME", faketime.as_str()),
            // Timeouts and sleeps keep real time; only the wall clock moves.
            ("DONT_FAKE_MONOTONIC", "1"),
        ])
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposure_is_the_same_with_the_primary_clock_five_seconds_off() {
    let lib = libfaketime();
    let (lab, _dir) = start_lab(vec![drctl_tests::orders()]).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();

    // Each measurement after the same restart, so only the clock differs.
    let mut baseline = None;
    for offset in [0i64, 5, -5] {
        restart_primary(&lab, offset, &lib);
        let measured = primary_offset(&lab).await;
        assert!(
            (measured - offset as f64).abs() < 1.0,
            "libfaketime did not move the primary's clock by {offset}s (measured {measured:+.3}s)"
        );
        // Heartbeats written across the jump are history once exposure is
        // back to zero and a few more are written.
        wait_caught_up(&api).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let skewed = exposure_error(&lab, &api).await;
        eprintln!("primary clock {offset:+}s: error {skewed:+.3}s");
        let Some(baseline) = baseline else {
            baseline = Some(skewed);
            continue;
        };
        assert!(
            (skewed - baseline).abs() < 0.2,
            "a {offset:+}s clock offset moved the reported exposure by {:.3}s",
            skewed - baseline
        );
    }
    restart_primary(&lab, 0, &lib);
    daemon.stop().await;
    lab.teardown().unwrap();
}
