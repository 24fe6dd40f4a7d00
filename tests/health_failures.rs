//! `[services.health]` is what the guard does: it probes each cluster's
//! primary every `interval`, each probe bounded by `timeout`, and counts
//! the primary lost only after `failures` failed probes in a row. Against
//! a real lab (two PostgreSQL clusters, each with its streaming standby):
//! one service patient (`failures = 5`, as `config/shop.example.toml`'s
//! identity provider), one quick (`failures = 2`); both primaries are
//! killed, and each guard's first verdict past "suspect" comes after
//! exactly its own number of failed probes, not the old constant three.

use std::sync::Arc;
use std::time::Duration;

use drctl_config::HealthCheck;
use drctl_store::states::GuardDecision;
use drctl_store::{DecisionRecord, Store};
use drctl_tests::*;
use serde_json::Value;

/// Probes this far apart: short, so five failures take about a second.
const INTERVAL: Duration = Duration::from_millis(250);

async fn decisions(store: &Store, cluster: &str) -> Vec<DecisionRecord> {
    let mut d = store.decisions(Some(cluster), 100).await.unwrap();
    d.reverse();
    d
}

/// The failed probes a recorded verdict counted.
fn failed_probes(d: &DecisionRecord) -> u64 {
    let evidence: Value = serde_json::from_str(&d.evidence).unwrap();
    evidence["verdict"]["failed_probes"]
        .as_u64()
        .unwrap_or_else(|| panic!("a verdict with failed probes: {evidence}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guard_waits_for_the_configured_number_of_failed_probes() {
    let (lab, _dir) = start_lab(vec![orders(), inventory()]).await;
    lab.workload().pause();
    let mut config = Arc::unwrap_or_clone(lab_config(&lab));
    for service in &mut config.services {
        service.health = HealthCheck {
            interval: INTERVAL,
            timeout: Duration::from_secs(1),
            failures: if service.name == "orders" { 5 } else { 2 },
        };
        // Probes alone decide: no minimum time down on top of them.
        service.failover.min_down = Duration::ZERO;
    }
    let config = Arc::new(config);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    // Automatic failover off: the guard decides and records, and holds.
    let daemon = start_daemon_with(config).await;
    tokio::time::sleep(INTERVAL * 8).await;
    for cluster in ["orders", "inventory"] {
        assert!(
            decisions(&store, cluster).await.is_empty(),
            "a healthy {cluster} decides nothing"
        );
    }

    lab.kill_primary("orders").unwrap();
    lab.kill_primary("inventory").unwrap();
    for (cluster, failures) in [("orders", 5), ("inventory", 2)] {
        let d = wait_for(
            &format!("{cluster}: a verdict past suspect"),
            Duration::from_secs(30),
            || {
                let store = store.clone();
                async move {
                    let d = decisions(&store, cluster).await;
                    d.iter()
                        .any(|d| d.action != GuardDecision::Suspect)
                        .then_some(d)
                }
            },
        )
        .await;
        let actions: Vec<GuardDecision> = d.iter().map(|d| d.action).collect();
        assert_eq!(
            actions.first(),
            Some(&GuardDecision::Suspect),
            "{cluster}: the first failed probe makes the primary suspect: {d:#?}"
        );
        assert_eq!(failed_probes(&d[0]), 1, "{cluster}: {d:#?}");
        let lost = d
            .iter()
            .find(|d| d.action != GuardDecision::Suspect)
            .unwrap();
        assert_eq!(
            lost.action,
            GuardDecision::Hold,
            "{cluster}: automatic failover is off, so the guard holds: {d:#?}"
        );
        assert_eq!(
            failed_probes(lost),
            failures,
            "{cluster}: the primary counts as lost after exactly `failures` probes: {d:#?}"
        );
        // The probes were `interval` apart: `failures - 1` intervals from
        // the first failed probe to the verdict (less a tick's jitter).
        let spent = (lost.decided_at - d[0].decided_at).to_std().unwrap();
        assert!(
            spent + Duration::from_millis(100) >= INTERVAL * (failures as u32 - 1),
            "{cluster}: {failures} probes {INTERVAL:?} apart took only {spent:?}"
        );
    }
    daemon.stop().await;
    lab.teardown().unwrap();
}
