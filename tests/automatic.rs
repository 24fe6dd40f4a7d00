//! Automatic failover and the watchdog, in the daemon, against a real lab:
//! a lost primary is failed over on its own (RTO counted from detection),
//! the old primary is fenced the moment it comes back writable, and drctl
//! losing only its own path to the primary (the standby still streaming)
//! fails nothing over. On the namespaced lab, but for the test of drctl's
//! own path, which puts a link of its own in front of a loopback lab's
//! primary (`tests/lab_agents.rs` cuts that path on the namespaced lab).

use std::time::{Duration, Instant};

use drctl_lab::{LinkControl, LinkProxy};
use drctl_lab::{REGION_A, REGION_B};
use drctl_store::states::GuardDecision;
use drctl_store::Store;
use drctl_tests::*;

async fn decisions(store: &Store) -> Vec<drctl_store::DecisionRecord> {
    let mut d = store.decisions(Some("orders"), 100).await.unwrap();
    d.reverse();
    d
}

/// The lab's config with its STONITH as orders' fence hook: automatic
/// failover never goes ahead without a way to fence a lost primary.
fn stonith_config(lab: &drctl_lab::Lab) -> std::sync::Arc<drctl_config::Config> {
    let lab_dir = lab
        .config_path()
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let hook = format!(
        "fence_hook = [\"{}\", \"lab\", \"stonith\", \"{{service}}\", \"--region\", \"{{region}}\", \"--dir\", \"{lab_dir}\"]\n",
        drctl_bin().display()
    );
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let marker = "[services.failover]\ncooldown = \"10s\"\n";
    assert!(text.contains(marker));
    let path = lab.config_path().with_file_name("stonith.toml");
    std::fs::write(&path, text.replacen(marker, &format!("{marker}{hook}"), 1)).unwrap();
    std::sync::Arc::new(drctl_config::load(&path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_primary_fails_over_automatically_and_comes_back_fenced() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let config = stonith_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    let writer = Writer::start(&lab).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        decisions(&store).await.is_empty(),
        "a healthy lab decides nothing"
    );

    let lost_at = Instant::now();
    lab.kill_primary("orders").unwrap();
    let op = loop {
        let ops = store.operations(10).await.unwrap();
        if let Some(op) = ops.iter().find(|o| {
            o.kind == drctl_store::states::OperationKind::Failover
                && o.status == drctl_store::states::OpStatus::Succeeded
        }) {
            break op.clone();
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(40),
            "no automatic failover within 40 s; operations {ops:#?}; decisions {:#?}",
            decisions(&store).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let done_after = lost_at.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writer.finish().await;

    let measured: drctl_failover::Measured =
        serde_json::from_str(op.result.as_deref().unwrap()).unwrap();
    assert_eq!(measured.rto_from, "detection");
    let params: drctl_failover::OperationParams =
        serde_json::from_str(&store.operation_params(&op.id).await.unwrap().unwrap()).unwrap();
    assert_eq!(params.requested_by, "automatic");
    assert!(params.detected_at_us.is_some());
    eprintln!(
        "automatic failover: primary lost → failover done {done_after:?} (poll 200 ms); RTO from detection {} ms; client write gap {:?}; steps {:?}",
        measured.rto_ms,
        longest_gap(&acked),
        measured.steps_ms
    );
    assert!(writable(&lab, REGION_B).await);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_B)));
    let d = decisions(&store).await;
    let actions: Vec<GuardDecision> = d.iter().map(|d| d.action).collect();
    assert!(
        actions.contains(&GuardDecision::Suspect) && actions.contains(&GuardDecision::Failover),
        "{actions:?}"
    );
    let failover = d
        .iter()
        .find(|d| d.action == GuardDecision::Failover)
        .unwrap();
    assert!(
        failover.evidence.contains("disconnected"),
        "the standby's view is evidence: {}",
        failover.evidence
    );

    // The failover is the service's RTO evidence now.
    let api = daemon.api_url();
    let rto = wait_for(
        "the failover as RTO evidence",
        Duration::from_secs(10),
        || async {
            let v: serde_json::Value = reqwest::get(format!("{api}/api/v1/rpo-rto"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let rto = v["services"]
                .as_array()?
                .iter()
                .find(|s| s["service"] == "orders")?["rto"]
                .clone();
            (rto["source"] == format!("failover {}", op.id)).then_some(rto)
        },
    )
    .await;
    assert_eq!(
        rto["measured_s"].as_f64(),
        Some(measured.rto_ms as f64 / 1000.0),
        "{rto}"
    );
    assert_eq!(rto["status"], "ok", "{rto}");

    // The old primary comes back, writable (nothing could fence it while it
    // was down): the watchdog fences it at once.
    let old = lab.cluster("orders", REGION_A);
    lab.in_region(REGION_A, || old.start()).unwrap().unwrap();
    let back = Instant::now();
    wait_for(
        "the returning old primary fenced",
        Duration::from_secs(10),
        || async { (role(&lab, REGION_A).await == Some((false, true))).then_some(()) },
    )
    .await;
    eprintln!(
        "returning old primary fenced within {:?} of its start",
        back.elapsed()
    );
    let fenced = wait_for("the fence recorded", Duration::from_secs(5), || async {
        decisions(&store)
            .await
            .into_iter()
            .find(|d| d.action == GuardDecision::Fenced)
    })
    .await;
    assert_eq!(fenced.code.as_deref(), Some(REGION_A));
    // No second failover came of it.
    let failovers = store
        .operations(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == drctl_store::states::OperationKind::Failover)
        .count();
    assert_eq!(failovers, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drctl_losing_only_its_own_path_to_the_primary_fails_nothing_over() {
    let (lab, dir) = start_lab(vec![orders()]).await;
    // drctl reaches the primary through a link of its own, which the test
    // cuts; replication and clients keep theirs.
    let primary = lab.cluster("orders", REGION_A);
    let control = LinkControl::default();
    let proxy = LinkProxy::spawn(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{}", primary.port).parse().unwrap(),
        control.clone(),
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        &format!("127.0.0.1:{}/orders", primary.port),
        &format!("127.0.0.1:{}/orders", proxy.listen.port()),
    );
    let path = dir.path().join("lab").join("control-path.toml");
    std::fs::write(&path, text).unwrap();
    let config = std::sync::Arc::new(drctl_config::load(&path).unwrap());
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    control.cut();
    let hold = wait_for("the guard holding", Duration::from_secs(20), || async {
        decisions(&store)
            .await
            .into_iter()
            .find(|d| d.action == GuardDecision::Hold)
    })
    .await;
    assert_eq!(
        hold.code.as_deref(),
        Some("standby_sees_primary"),
        "{hold:?}"
    );
    // Long past min_down: still nothing failed over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        store
            .operations(10)
            .await
            .unwrap()
            .iter()
            .all(|o| o.kind != drctl_store::states::OperationKind::Failover),
        "no failover while the standby still streams from the primary"
    );
    assert!(writable(&lab, REGION_A).await);
    assert_eq!(role(&lab, REGION_B).await, Some((true, false)));

    control.restore();
    wait_for(
        "the guard seeing the primary again",
        Duration::from_secs(10),
        || async {
            decisions(&store)
                .await
                .into_iter()
                .find(|d| d.action == GuardDecision::Healthy)
        },
    )
    .await;
    daemon.stop().await;
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_cut_off_from_everyone_is_failed_over_and_never_writes_again() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    // The fence hook is the lab's STONITH of the old primary.
    let config = stonith_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    let writer = Writer::start(&lab).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Nobody hears the primary any more; no connection is reset either.
    let old = lab.cluster("orders", REGION_A);
    assert!(old.signal_all(nix::sys::signal::Signal::SIGSTOP) > 1);
    // Taken once every process of the old primary is stopped: a commit in
    // flight while the signals went out is before the cut, not after it.
    let cut_at = chrono::Utc::now();
    let op = wait_for("an automatic failover", Duration::from_secs(90), || async {
        store.operations(10).await.unwrap().into_iter().find(|o| {
            o.kind == drctl_store::states::OperationKind::Failover
                && o.status == drctl_store::states::OpStatus::Succeeded
        })
    })
    .await;
    let steps = store.journal(&op.id).await.unwrap();
    let fence = journaled_output(&store, &op.id, "fence_source").await;
    assert_eq!(fence["method"], "hook", "{fence}");
    assert_eq!(fence["reachable"], false);
    let announced = steps
        .iter()
        .find(|s| s.step == "dns_flip")
        .unwrap()
        .ended_at
        .unwrap();
    let detected = store
        .decisions(Some("orders"), 50)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.action == GuardDecision::Failover)
        .unwrap();
    eprintln!(
        "isolated primary: decided {:.1} s after the cut, announced {:.1} s after it ({})",
        (detected.decided_at - cut_at).num_milliseconds() as f64 / 1000.0,
        (announced - cut_at).num_milliseconds() as f64 / 1000.0,
        detected.reason
    );

    // The partition heals: the hook killed the old primary, so nothing of it
    // wakes up to take a write.
    assert_eq!(
        old.signal_all(nix::sys::signal::Signal::SIGCONT),
        0,
        "the old primary is dead"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = writer.finish().await;
    assert!(writable(&lab, REGION_B).await);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_B)));
    // Brought back by hand (or by its init system), it is fenced on sight and
    // holds no row committed after the cut.
    lab.in_region(REGION_A, || old.start()).unwrap().unwrap();
    wait_for(
        "the returning old primary fenced",
        Duration::from_secs(10),
        || async { (role(&lab, REGION_A).await == Some((false, true))).then_some(()) },
    )
    .await;
    // The fence ends by terminating client sessions: connect once it is
    // recorded as done, or this session may be one of them.
    wait_for("the fence recorded", Duration::from_secs(10), || async {
        decisions(&store)
            .await
            .into_iter()
            .find(|d| d.action == GuardDecision::Fenced)
    })
    .await;
    let mut c = connect(&old.dsn("orders")).await;
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shop.acked WHERE at > to_timestamp($1::float8 / 1e6)",
    )
    .bind(cut_at.timestamp_micros())
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        late, 0,
        "the old primary committed writes after it was cut off"
    );
    assert!(
        acked.len() > 20,
        "the client wrote before and after ({} rows)",
        acked.len()
    );
    daemon.stop().await;
}

/// No role recorded yet (the config's primary, region-a, is the guess), but
/// region-a is fenced and region-b is the only writable primary: the
/// watchdog must not fence region-b on the strength of that guess. It
/// fences others only when the primary it believes in answered writable in
/// the same round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_watchdog_never_fences_the_only_writable_primary_on_a_guess() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let mut a = connect(&lab.cluster("orders", REGION_A).dsn("orders")).await;
    sqlx::query("ALTER SYSTEM SET default_transaction_read_only = on")
        .execute(&mut a)
        .await
        .unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut a)
        .await
        .unwrap();
    drop(a);
    let mut b = connect(&lab.cluster("orders", REGION_B).dsn("orders")).await;
    sqlx::query("SELECT pg_promote(true, 60)")
        .execute(&mut b)
        .await
        .unwrap();
    drop(b);
    wait_for(
        "region-a fenced, region-b writable",
        Duration::from_secs(10),
        || async {
            (role(&lab, REGION_A).await == Some((false, true)) && writable(&lab, REGION_B).await)
                .then_some(())
        },
    )
    .await;

    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    assert!(
        store.cluster_role("orders").await.unwrap().is_none(),
        "no role recorded"
    );
    let daemon = start_daemon_automatic(config.clone()).await;
    // Many guard rounds.
    tokio::time::sleep(config.monitor.interval * 8 + Duration::from_secs(2)).await;
    daemon.stop().await;
    assert!(
        writable(&lab, REGION_B).await,
        "the only writable primary was fenced"
    );
    let fenced: Vec<_> = decisions(&store)
        .await
        .into_iter()
        .filter(|d| d.action == GuardDecision::Fenced)
        .collect();
    assert!(fenced.is_empty(), "{fenced:#?}");
}
