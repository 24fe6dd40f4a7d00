//! The lab of separate hosts with its node agents (what `drctl lab up` runs
//! as root): each region its own network namespace, one `drctl agent serve`
//! beside each region's servers inside it, drctl (this test) in another
//! namespace reaching them only across the lab's router with mutual TLS. A
//! switchover under a writer loses no acknowledged row, its fence is hard,
//! and the old primary streams from the new one with no manual step:
//! rewound by its own region's agent, across the region link. These tests
//! need root; without it they fail, saying so.

use std::collections::HashSet;
use std::time::Duration;

use drctl_failover::{Engine, OpStatus, OperationKind, Request};
use drctl_lab::netns::available;
use drctl_lab::{Lab, LabNetwork, LabSpec, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;
use sqlx::{Connection, PgConnection};

async fn start_lab_with_agents() -> (Lab, tempfile::TempDir) {
    if let Err(why) = available() {
        panic!("tests/lab_agents.rs needs root and iproute2: {why}");
    }
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-agentlab-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    let mut spec = LabSpec::for_tests(dir.path().join("lab"), vec![orders()]);
    spec.network = LabNetwork::Namespaces;
    spec.agents = Some(drctl_bin());
    let lab = Lab::up(spec, |m| eprintln!("lab: {m}"))
        .await
        .unwrap_or_else(|e| panic!("the lab with agents did not start: {e}\n(the tests need PostgreSQL server binaries: `apt-get install postgresql`, or set PG_BIN)"));
    (lab, dir)
}

/// Streaming standbys of `primary`, by name.
async fn streaming_to(lab: &Lab, primary: &str) -> Vec<String> {
    let Ok(mut c) = PgConnection::connect(&lab.dsn("orders", primary, "postgres")).await else {
        return Vec::new();
    };
    sqlx::query_scalar("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
        .fetch_all(&mut c)
        .await
        .unwrap_or_default()
}

/// `(in recovery, read-only)`, `None` when it does not answer.
async fn role_of(lab: &Lab, region: &str) -> Option<(bool, bool)> {
    let mut c = PgConnection::connect(&lab.dsn("orders", region, "orders"))
        .await
        .ok()?;
    sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'",
    )
    .fetch_one(&mut c)
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_across_hosts_loses_nothing_and_the_old_primary_streams_again_by_itself() {
    let (lab, _dir) = start_lab_with_agents().await;
    lab.workload().pause();
    assert_eq!(lab.record.agents.len(), 2, "an agent per region");
    let config = lab_config(&lab);
    let service = config.service("orders").unwrap();
    for region in [REGION_A, REGION_B] {
        let agent = service.nodes[region].agent.as_deref().unwrap();
        assert!(
            agent.starts_with("https://10."),
            "{region}'s agent is reached across the lab's network: {agent}"
        );
    }
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config.clone(), store);

    // A writer straight to region-a's server, recording acknowledged rows.
    let dsn = lab.dsn("orders", REGION_A, "orders");
    let mut c = connect(&dsn).await;
    sqlx::query("CREATE TABLE shop.acked_direct (id bigint PRIMARY KEY)")
        .execute(&mut c)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut next = 1i64;
        while !*stopped.borrow() {
            let ok = sqlx::query("INSERT INTO shop.acked_direct VALUES ($1)")
                .bind(next)
                .execute(&mut c)
                .await
                .is_ok();
            if ok {
                acked.push(next);
            } else if let Ok(Ok(fresh)) =
                tokio::time::timeout(Duration::from_millis(300), PgConnection::connect(&dsn)).await
            {
                c = fresh;
            }
            next += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = std::time::Instant::now();
    let outcome = engine
        .run(
            &Request {
                kind: OperationKind::Switchover,
                service: "orders".into(),
                to: Some(REGION_B.into()),
                accept_data_loss: false,
                accept_unfenced: false,
                requested_by: "test".into(),
                reason: None,
                detected_at: None,
            },
            &|_| {},
        )
        .await
        .expect("the switchover succeeds");
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let follow = outcome
        .rejoin
        .clone()
        .expect("an automatic rejoin followed");
    assert_eq!(follow.status, Some(OpStatus::Succeeded), "{follow:?}");
    wait_for(
        "region-a streaming from region-b",
        Duration::from_secs(60),
        || async {
            streaming_to(&lab, REGION_B)
                .await
                .iter()
                .any(|n| n == REGION_A)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "switchover start to the old primary streaming again, across hosts: {:?}",
        started.elapsed()
    );
    let _ = stop.send(true);
    let acked = writer.await.unwrap();

    // The fence: region-a's own agent stopped it (the evidence names its host).
    let fence = outcome
        .steps
        .iter()
        .find(|s| s.step == "fence_source")
        .and_then(|s| s.output.as_deref())
        .unwrap();
    let fence: serde_json::Value = serde_json::from_str(fence).unwrap();
    assert_eq!(fence["hard"]["method"], "stopped", "{fence}");
    // Nothing the old primary acknowledged is missing on the new one.
    let mut b = connect(&lab.dsn("orders", REGION_B, "orders")).await;
    let present: Vec<(i64,)> = sqlx::query_as("SELECT id FROM shop.acked_direct")
        .fetch_all(&mut b)
        .await
        .unwrap();
    let present: HashSet<i64> = present.into_iter().map(|(i,)| i).collect();
    let lost: Vec<&i64> = acked.iter().filter(|i| !present.contains(i)).collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    assert!(acked.len() > 10, "the writer wrote ({})", acked.len());
    let measured = outcome.measured.unwrap();
    assert_eq!(
        (measured.rpo_bytes, measured.rpo_us),
        (0, 0),
        "{measured:?}"
    );
    assert_eq!(
        role_of(&lab, REGION_B).await,
        Some((false, false)),
        "region-b writable"
    );
    assert_eq!(
        role_of(&lab, REGION_A).await.map(|r| r.0),
        Some(true),
        "region-a a standby"
    );

    // Nothing of the lab is left behind by its teardown.
    let agents: Vec<u32> = lab.record.agents.iter().map(|a| a.pid).collect();
    lab.teardown().unwrap();
    for pid in agents {
        assert!(
            !drctl_lab::process_alive(pid, "drctl"),
            "the agent {pid} was stopped"
        );
    }
}
