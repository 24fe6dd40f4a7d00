//! Rejoin against a real lab: after a switchover the old primary becomes a
//! standby of the new one and the pair switches back with zero loss; after
//! a failover that lost data, pg_rewind brings the diverged old primary onto
//! the new timeline (its lost rows gone, the new primary's present).

use std::time::Duration;

use drctl_failover::{Engine, OpStatus, OperationKind, Request};
use drctl_lab::{Lab, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;

fn request(kind: OperationKind, to: &str) -> Request {
    Request {
        kind,
        service: "orders".into(),
        to: Some(to.into()),
        accept_data_loss: true,
        accept_unfenced: false,
        requested_by: "test".into(),
        reason: None,
        detected_at: None,
    }
}

/// `drctl rejoin` through the CLI; the rewind step's method.
fn rejoin(lab: &Lab, region: &str) -> String {
    let config = lab.config_path().to_str().unwrap().to_string();
    let (code, stdout, stderr) = drctl(&[
        "rejoin", "orders", "--region", region, "--yes", "-o", "json", "--config", &config,
    ]);
    if code != 0 {
        if let Some(id) = stdout.split_whitespace().find(|w| w.starts_with("op-")) {
            let (_, show, _) =
                drctl(&["operations", "show", id, "-o", "json", "--config", &config]);
            eprintln!("--- journal: {show}");
        }
        for r in [REGION_A, REGION_B] {
            let log =
                std::fs::read_to_string(lab.cluster("orders", r).log_file()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!(
                "--- {r} log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    assert_eq!(code, 0, "rejoin of {region}: {stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let steps = v["operation"]["steps"].as_array().unwrap();
    let rewind = steps.iter().find(|s| s["step"] == "rewind").unwrap();
    let out: serde_json::Value = serde_json::from_str(rewind["output"].as_str().unwrap()).unwrap();
    eprintln!("rewind step of {region}: {out}");
    out["method"].as_str().unwrap_or("skipped").to_string()
}

async fn count(lab: &Lab, region: &str, sql: &str) -> i64 {
    let mut c = connect(&lab.cluster("orders", region).dsn("orders")).await;
    sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
}

/// `region` streams from `primary`: named in its `pg_stat_replication`, and a
/// row written there shows up.
async fn streams_from(lab: &Lab, region: &str, primary: &str, marker: i64) {
    assert_eq!(
        role(lab, region).await,
        Some((true, false)),
        "{region} is a standby"
    );
    let mut p = connect(&lab.cluster("orders", primary).dsn("orders")).await;
    let names: Vec<String> = sqlx::query_scalar("SELECT application_name FROM pg_stat_replication")
        .fetch_all(&mut p)
        .await
        .unwrap();
    assert!(
        names.iter().any(|n| n == region),
        "{primary} streams to {region}: {names:?}"
    );
    sqlx::query("CREATE TABLE IF NOT EXISTS shop.markers (id bigint PRIMARY KEY)")
        .execute(&mut p)
        .await
        .unwrap();
    sqlx::query("INSERT INTO shop.markers VALUES ($1)")
        .bind(marker)
        .execute(&mut p)
        .await
        .unwrap();
    let sql = format!("SELECT count(*) FROM shop.markers WHERE id = {marker}");
    wait_for(
        "the marker to replicate",
        Duration::from_secs(20),
        || async {
            let mut c = connect(&lab.cluster("orders", region).dsn("orders")).await;
            let n: Option<i64> = sqlx::query_scalar(&sql).fetch_one(&mut c).await.ok();
            (n == Some(1)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_switchover_the_old_primary_rejoins_and_the_pair_switches_back() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store);

    let started = std::time::Instant::now();
    let there = engine
        .run(&request(OperationKind::Switchover, REGION_B), &|_| {})
        .await
        .unwrap();
    assert_eq!(there.status, OpStatus::Succeeded);
    // `rejoin = "auto"` (the default): the old primary was rewound as a
    // standby of the new one by the switchover's own follow-up, journaled
    // as an operation of its own; no manual step.
    let follow = there.rejoin.as_ref().expect("an automatic rejoin followed");
    assert_eq!(follow.status, Some(OpStatus::Succeeded), "{follow:?}");
    streams_from(&lab, REGION_A, REGION_B, 1).await;
    eprintln!(
        "switchover start to the old primary streaming again: {:?}",
        started.elapsed()
    );
    // A manual rejoin now finds nothing to do.
    assert_eq!(rejoin(&lab, REGION_A), "skipped");

    // Protected again: back to region-a with zero loss.
    let back = engine
        .run(&request(OperationKind::Switchover, REGION_A), &|_| {})
        .await
        .unwrap();
    let m = back.measured.unwrap();
    assert_eq!((m.rpo_bytes, m.rpo_us), (0, 0), "{m:?}");
    assert!(writable(&lab, REGION_A).await);
    assert_eq!(resolve(&lab).await.as_deref(), Some("127.0.1.1"));
    assert_eq!(
        back.rejoin.as_ref().and_then(|r| r.status),
        Some(OpStatus::Succeeded)
    );
    streams_from(&lab, REGION_B, REGION_A, 2).await;
    // The rejoined standby was not left fenced: promoting it works.
    let third = engine
        .run(&request(OperationKind::Switchover, REGION_B), &|_| {})
        .await
        .unwrap();
    assert_eq!(third.status, OpStatus::Succeeded);
    assert!(writable(&lab, REGION_B).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_diverged_old_primary_is_rewound_onto_the_new_timeline() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store);

    // Rows only region-a gets: the link is cut while they are written.
    let mut a = connect(&lab.cluster("orders", REGION_A).dsn("orders")).await;
    sqlx::query("CREATE TABLE shop.lost (id bigint PRIMARY KEY)")
        .execute(&mut a)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.link().cut();
    sqlx::query("INSERT INTO shop.lost SELECT generate_series(1, 100)")
        .execute(&mut a)
        .await
        .unwrap();
    drop(a);
    lab.kill_primary("orders").unwrap();
    lab.link().restore();
    // The killed primary cannot be fenced (no fence hook): accepted.
    let req = Request {
        accept_unfenced: true,
        ..request(OperationKind::Failover, REGION_B)
    };
    let out = engine.run(&req, &|_| {}).await.unwrap();
    assert_eq!(out.status, OpStatus::Succeeded);
    assert_eq!(
        count(&lab, REGION_B, "SELECT count(*) FROM shop.lost").await,
        0,
        "the rows were lost"
    );

    let method = rejoin(&lab, REGION_A);
    assert_eq!(method, "rewind", "a diverged old primary is rewound");
    streams_from(&lab, REGION_A, REGION_B, 3).await;
    assert_eq!(
        count(&lab, REGION_A, "SELECT count(*) FROM shop.lost").await,
        0,
        "region-a follows the new timeline: its lost rows are gone"
    );
}

/// Another server's data at the rejoining region's `data_dir` path (as on
/// a host where the same path holds another database): the rejoin refuses
/// in its plan and leaves every file of it in place; before, pg_rewind
/// failed ("different systems") and the fallback clone deleted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejoin_refuses_a_data_directory_holding_another_database_and_leaves_it_untouched() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store);
    let out = engine
        .run(&request(OperationKind::Switchover, REGION_B), &|_| {})
        .await
        .unwrap();
    assert_eq!(out.status, OpStatus::Succeeded);

    // region-a's path now holds a database of its own.
    let old = lab.cluster("orders", REGION_A);
    old.stop("fast").unwrap();
    let mut moved = old.data_dir.clone().into_os_string();
    moved.push(".orig");
    std::fs::rename(&old.data_dir, &moved).unwrap();
    let other = drctl_pg::PgCluster::new("other", old.data_dir.clone(), old.port, old.bin.clone());
    other.init_primary(20).unwrap();
    let marker = old.data_dir.join("other-database-marker");
    std::fs::write(&marker, "not orders").unwrap();

    let config = lab.config_path().to_str().unwrap().to_string();
    let (code, stdout, stderr) = drctl(&[
        "rejoin", "orders", "--region", REGION_A, "--yes", "--config", &config,
    ]);
    assert_ne!(code, 0, "the rejoin must refuse: {stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("another server's data"),
        "{stdout}{stderr}"
    );
    assert!(
        marker.exists(),
        "the other database's files were deleted: {stdout}{stderr}"
    );
    assert!(old.data_dir.join("PG_VERSION").exists());
    assert!(writable(&lab, REGION_B).await, "the primary is untouched");
}

/// A rejoin started on another host acts on that host's data directory:
/// the daemon here never takes it over (its driver "died", its lease
/// expired), or it would stop and rewind whatever server this host has at
/// the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daemon_never_resumes_a_rejoin_started_on_another_host() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let config_path = short_lease_config(&lab);
    let config = std::sync::Arc::new(drctl_config::load(&config_path).unwrap());
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let params = drctl_failover::OperationParams {
        kind: OperationKind::Rejoin,
        service: "orders".into(),
        cluster: "orders".into(),
        members: vec!["orders".into()],
        source: REGION_B.into(),
        target: REGION_A.into(),
        accept_data_loss: false,
        accept_unfenced: false,
        requested_by: "cli".into(),
        reason: None,
        detected_at_us: None,
        host: Some("another-host".into()),
        confirmed_plan: None,
    };
    // Its driver took the lease for 1 s and died.
    let lease = store
        .acquire_lease(
            &drctl_failover::lease_name("orders"),
            "another-host/4242/dead",
            Duration::from_secs(1),
            store.clock().await.unwrap(),
        )
        .await
        .unwrap()
        .expect("the lease is free");
    let id = "op-rejoin-of-another-host";
    store
        .journal_operation_created(
            &lease,
            id,
            drctl_store::states::OperationKind::Rejoin,
            "orders",
            "orders",
            &serde_json::to_string(&params).unwrap(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    let daemon = start_daemon_with(config.clone()).await;
    // Many resume rounds (one per lease tick) past the lease's expiry.
    tokio::time::sleep(Duration::from_secs(6)).await;
    daemon.stop().await;
    let op = store.operation(id).await.unwrap().unwrap();
    assert_eq!(op.status, drctl_store::states::OpStatus::Running, "{op:?}");
    assert!(
        store.journal(id).await.unwrap().is_empty(),
        "no step of it ran here"
    );
    assert!(writable(&lab, REGION_A).await);
}
