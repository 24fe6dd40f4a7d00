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
use drctl_lab::{Lab, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;
use sqlx::{Connection, PgConnection};

async fn start_lab_with_agents() -> (Lab, tempfile::TempDir) {
    start_namespaced_lab(vec![orders()], true).await
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

/// Samples whether `dsn` answers as a writable primary every 100 ms until
/// told to stop, from the runtime it is spawned on (a site's, to see a
/// region cut off from everyone else).
async fn sample_writable(
    dsn: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(std::time::Instant, bool)> {
    {
        let mut samples = Vec::new();
        while !*stop.borrow() {
            let at = std::time::Instant::now();
            let writable = match tokio::time::timeout(
                Duration::from_millis(500),
                PgConnection::connect(&dsn),
            )
            .await
            {
                Ok(Ok(mut c)) => sqlx::query_as::<_, (bool, bool)>(
                    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'",
                )
                .fetch_one(&mut c)
                .await
                .is_ok_and(|r| r == (false, false)),
                _ => false,
            };
            samples.push((at, writable));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_with_agents_fail_over_only_a_lost_region_and_its_agent_rejoins_it_after_heal() {
    use drctl_lab::{Partition, Site};
    let (lab, _dir) = start_lab_with_agents().await;
    lab.workload().pause();
    let net = lab.network().expect("namespaced").clone();
    // The lab's STONITH as orders' fence hook, as `drctl lab up` sets it:
    // a region cut off from everyone has no agent that answers either.
    let lab_dir = lab.record.dir.display().to_string();
    let hook = format!(
        "fence_hook = [\"{}\", \"lab\", \"stonith\", \"{{service}}\", \"--region\", \"{{region}}\", \"--dir\", \"{lab_dir}\"]\n",
        drctl_bin().display()
    );
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let marker = "[services.failover]\ncooldown = \"10s\"\n";
    assert!(text.contains(marker), "{text}");
    let path = lab.config_path().with_file_name("stonith.toml");
    std::fs::write(&path, text.replacen(marker, &format!("{marker}{hook}"), 1)).unwrap();
    let config = std::sync::Arc::new(drctl_config::load(&path).expect("a valid config"));
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let ctl = net
        .runtime_with_workers(Site::Ctl, 2)
        .expect("a runtime in ctl");
    let daemon = ctl
        .run(start_daemon_automatic(config))
        .await
        .expect("the daemon in the control-plane site");

    // Writable primaries, sampled from inside region-a (it may be cut off
    // from everyone else) and from here.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let in_a = lab
        .site_runtime(Site::RegionA)
        .expect("region-a's runtime")
        .spawn(sample_writable(
            lab.dsn("orders", REGION_A, "orders"),
            stopped.clone(),
        ));
    let of_b = tokio::spawn(sample_writable(
        lab.dsn("orders", REGION_B, "orders"),
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Only the two regions cut off from each other: both answer drctl, so
    // no failover; the standby falls behind and exposure grows.
    lab.partition(Partition::Cut(Site::RegionA, Site::RegionB))
        .unwrap();
    let mut c = connect(&lab.dsn("orders", REGION_A, "orders")).await;
    sqlx::query("CREATE TABLE shop.during_cut (id int)")
        .execute(&mut c)
        .await
        .unwrap();
    let cut_at = chrono::Utc::now();
    let exposed = wait_for(
        "exposure growing under the cut",
        Duration::from_secs(60),
        || async {
            store
                .last_known_exposure("orders", REGION_B)
                .await
                .ok()?
                .filter(|s| s.sampled_at > cut_at && s.rpo_exposure_us.unwrap_or(0) > 3_000_000)
        },
    )
    .await;
    eprintln!(
        "exposure under the a-b cut: {:?} µs",
        exposed.rpo_exposure_us
    );
    assert!(
        store
            .operations(10)
            .await
            .unwrap()
            .iter()
            .all(|o| o.kind != drctl_store::states::OperationKind::Failover),
        "no failover while both regions answer"
    );
    lab.heal().unwrap();
    wait_for(
        "streaming again after heal",
        Duration::from_secs(60),
        || async {
            streaming_to(&lab, REGION_A)
                .await
                .iter()
                .any(|n| n == REGION_B)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // region-a cut off from everyone: its agent does not answer either, so
    // the fence hook (STONITH) fences it; failed over to region-b.
    lab.partition(Partition::Isolate(Site::RegionA)).unwrap();
    let failover = wait_for(
        "the automatic failover",
        Duration::from_secs(90),
        || async {
            store.operations(20).await.ok()?.into_iter().find(|o| {
                o.kind == drctl_store::states::OperationKind::Failover
                    && o.status == drctl_store::states::OpStatus::Succeeded
            })
        },
    )
    .await;
    let journal = store.journal(&failover.id).await.unwrap();
    let fence = journal
        .iter()
        .find(|s| s.step == "fence_source")
        .and_then(|s| s.output.clone())
        .unwrap();
    assert!(
        fence.contains("\"method\":\"hook\""),
        "fenced by the hook: {fence}"
    );
    assert!(
        fence.contains("its agent"),
        "the agent was tried first: {fence}"
    );
    let named = drctl_dns::query(
        lab.dns().addr(),
        "orders.shop.lab.",
        drctl_config::RecordType::A,
    )
    .await
    .unwrap();
    assert_eq!(named, Some(vec![net.addr(Site::RegionB).to_string()]));

    // Healed: region-a's agent answers again, and the guard rejoins the old
    // primary through it as a standby of region-b.
    lab.heal().unwrap();
    wait_for(
        "region-a rejoined by the guard",
        Duration::from_secs(120),
        || async {
            streaming_to(&lab, REGION_B)
                .await
                .iter()
                .any(|n| n == REGION_A)
                .then_some(())
        },
    )
    .await;
    let rejoin = wait_for("the rejoin decision", Duration::from_secs(10), || async {
        store
            .decisions(Some("orders"), 50)
            .await
            .ok()?
            .into_iter()
            .find(|d| d.action == drctl_store::states::GuardDecision::Rejoin)
    })
    .await;
    assert_eq!(rejoin.code.as_deref(), Some(REGION_A), "{rejoin:?}");

    let _ = stop.send(true);
    let a = in_a.await.unwrap();
    let b = of_b.await.unwrap();
    assert!(
        a.len() > 20 && b.len() > 20,
        "sampled ({} / {})",
        a.len(),
        b.len()
    );
    // Never two writable primaries: no sample of one region writable falls
    // between two writable samples of the other.
    for (t, w) in &b {
        if !w {
            continue;
        }
        let before = a.iter().rev().find(|(at, _)| at <= t).map(|x| x.1);
        let after = a.iter().find(|(at, _)| at >= t).map(|x| x.1);
        assert!(
            !(before == Some(true) && after == Some(true)),
            "region-a and region-b both writable around {t:?}"
        );
    }
    daemon.stop().await;
    drop(ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drill_across_hosts_clones_on_the_dr_regions_agent_and_reaches_the_clone_over_tls() {
    let (lab, _dir) = start_lab_with_agents().await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config.clone(), store);
    let outcome = engine
        .run(&drill_request("drill across hosts"), &|_| {})
        .await
        .expect("the drill succeeds");
    assert_eq!(outcome.status, OpStatus::Succeeded, "{outcome:?}");
    // The clone was made by region-b's agent on region-b's host, and drctl
    // (in this namespace, not region-b's) reached it over the lab's network
    // with TLS: promoted, probed, torn down.
    let clone = outcome
        .steps
        .iter()
        .find(|s| s.step == "clone_standby")
        .and_then(|s| s.output.as_deref())
        .expect("the clone step's output");
    let clone: serde_json::Value = serde_json::from_str(clone).unwrap();
    let region_b = lab.record.cluster_host(REGION_B).to_string();
    let tcp = clone["tcp"].as_str().expect("the clone's TCP address");
    assert!(
        tcp.starts_with(&format!("{region_b}:")),
        "the clone listens on region-b's host: {clone}"
    );
    for step in ["start_clone", "promote_target", "write_probe", "teardown"] {
        assert!(
            outcome
                .steps
                .iter()
                .any(|s| s.step == step && s.status == drctl_store::states::StepState::Done),
            "{step} done: {:?}",
            outcome.steps
        );
    }
    let dir = std::path::PathBuf::from(clone["dir"].as_str().unwrap());
    assert!(!dir.exists(), "the clone {} is torn down", dir.display());
    // Production was not touched: region-a still the writable primary,
    // region-b still its standby.
    assert_eq!(role_of(&lab, REGION_A).await, Some((false, false)));
    assert_eq!(role_of(&lab, REGION_B).await.map(|r| r.0), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_test_runs_on_the_dr_regions_agent_not_on_drctls_host() {
    let (lab, _dir) = start_lab_with_agents().await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let (backup, _) = drctl_backup::jobs::backup_service(&config, &store, "orders", |_| {})
        .await
        .expect("a backup of orders");
    let report = drctl_backup::jobs::verify_recorded_backup(&config, &store, &backup.id)
        .await
        .expect("verification runs");
    assert!(report.verified, "{report:?}");
    // A scratch root that does not exist on this host: only a copy made by
    // an agent (under its own root, by the last component) can pass.
    let (record, outcome) = drctl_backup::jobs::restore_test_service(
        &config,
        &store,
        "orders",
        Some(&backup.id),
        std::path::PathBuf::from("/nonexistent/drctl-scratch"),
        |_| {},
    )
    .await
    .expect("the restore test runs");
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(
        record.status,
        drctl_store::states::RestoreTestStatus::Passed,
        "{record:?}"
    );
    assert!(outcome.time_to_ready.is_some());
    // It was region-b's agent (the DR region's) that restored and served it.
    let agent_b = lab
        .record
        .agents
        .iter()
        .find(|a| a.region == REGION_B)
        .unwrap();
    let log = std::fs::read_to_string(&agent_b.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("restore_scratch") && l.contains("result=\"ok\"")),
        "region-b's agent restored the copy:\n{log}"
    );
    store.close().await;
}
