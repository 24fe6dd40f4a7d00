//! Failover, switchover and automatic rejoin through real node agents (one
//! `drctl agent serve` per region, mutual TLS) against a real namespaced lab
//! (each region its own network namespace, its agent beside its server,
//! drctl reaching both only over the lab's network): the hard
//! fence stops the old primary and marks it so that no client and no plain
//! start brings it back writable; the old primary becomes a standby of the
//! new one with no manual step; a source whose server and agent are both
//! gone is a named blocker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_failover::{Engine, OpStatus, OperationKind, OperationSaga, Request};
use drctl_lab::{Lab, PgCluster, REGION_A, REGION_B};
use drctl_node::{NodeErrorKind, NodeRef, StartRequest};
use drctl_store::states::GuardDecision;
use drctl_store::Store;
use drctl_tests::lab_agents::LabAgents;
use drctl_tests::*;
use sqlx::{Connection, PgConnection};

fn request(kind: OperationKind, to: &str) -> Request {
    Request {
        kind,
        service: "orders".into(),
        to: Some(to.into()),
        accept_data_loss: false,
        accept_unfenced: false,
        requested_by: "test".into(),
        reason: None,
        detected_at: None,
    }
}

/// The journaled output of `step` of an outcome, as JSON.
fn step_output(outcome: &drctl_failover::Outcome, step: &str) -> serde_json::Value {
    let record = outcome
        .steps
        .iter()
        .find(|s| s.step == step)
        .unwrap_or_else(|| panic!("no step {step}"));
    serde_json::from_str(record.output.as_deref().expect("an output")).unwrap()
}

/// A client connected straight to region-a's server (not through DNS) that
/// keeps asking for read-write transactions, undoing the soft fence in its
/// own session, and records each commit the server acknowledged.
/// A commit the server acknowledged: its id and when.
type Acked = Vec<(i64, DateTime<Utc>)>;

struct DirectWriter {
    acked: Arc<Mutex<Acked>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DirectWriter {
    async fn start(lab: &Lab) -> DirectWriter {
        let dsn = lab.cluster("orders", REGION_A).dsn("orders");
        let mut c = connect(&dsn).await;
        sqlx::query("CREATE TABLE IF NOT EXISTS shop.direct (id bigint PRIMARY KEY)")
            .execute(&mut c)
            .await
            .unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let log = acked.clone();
        let task = tokio::spawn(async move {
            let mut next = 1i64;
            let mut conn: Option<PgConnection> = None;
            while !*stopped.borrow() {
                if conn.is_none() {
                    conn = tokio::time::timeout(
                        Duration::from_millis(300),
                        PgConnection::connect(&dsn),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok);
                }
                if let Some(c) = conn.as_mut() {
                    let id = next;
                    next += 1;
                    let committed = async {
                        sqlx::query("SET default_transaction_read_only = off")
                            .execute(&mut *c)
                            .await?;
                        let mut tx = c.begin().await?;
                        sqlx::query("SET TRANSACTION READ WRITE")
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("INSERT INTO shop.direct VALUES ($1)")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await
                    }
                    .await;
                    match committed {
                        Ok(()) => log.lock().unwrap().push((id, Utc::now())),
                        Err(_) => conn = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        DirectWriter { acked, stop, task }
    }

    async fn finish(self) -> Acked {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

async fn ids(lab: &Lab, region: &str, table: &str) -> HashSet<i64> {
    let mut c = connect(&lab.cluster("orders", region).dsn("orders")).await;
    let rows: Vec<(i64,)> = sqlx::query_as(&format!("SELECT id FROM shop.{table}"))
        .fetch_all(&mut c)
        .await
        .unwrap();
    rows.into_iter().map(|(i,)| i).collect()
}

/// `region` is a standby streaming from `primary`.
async fn streams_from(lab: &Lab, region: &str, primary: &str) {
    let primary_dsn = lab.cluster("orders", primary).dsn("orders");
    wait_for(
        &format!("{region} streaming from {primary}"),
        Duration::from_secs(60),
        || {
            let primary_dsn = primary_dsn.clone();
            async move {
                let mut p = PgConnection::connect(&primary_dsn).await.ok()?;
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
                )
                .fetch_all(&mut p)
                .await
                .ok()?;
                names.iter().any(|n| n == region).then_some(())
            }
        },
    )
    .await;
    // A standby in recovery; asked again, since one connection can fail under the
    // load of the other servers starting.
    wait_for(
        &format!("{region} in recovery"),
        Duration::from_secs(30),
        || async { role(lab, region).await.filter(|r| r.0).map(|_| ()) },
    )
    .await;
    // And replays what the primary writes now.
    let marker = chrono::Utc::now().timestamp_micros();
    let mut p = connect(&primary_dsn).await;
    sqlx::query("CREATE TABLE IF NOT EXISTS shop.markers (id bigint PRIMARY KEY)")
        .execute(&mut p)
        .await
        .unwrap();
    sqlx::query("INSERT INTO shop.markers VALUES ($1)")
        .bind(marker)
        .execute(&mut p)
        .await
        .unwrap();
    let dsn = lab.cluster("orders", region).dsn("orders");
    wait_for("the marker replayed", Duration::from_secs(30), || {
        let dsn = dsn.clone();
        async move {
            let mut c = PgConnection::connect(&dsn).await.ok()?;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.markers WHERE id = $1")
                .bind(marker)
                .fetch_one(&mut c)
                .await
                .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_through_agents_fences_hard_loses_nothing_and_the_old_primary_streams_again() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let agents = LabAgents::start(&lab, "auto");
    let config = agents.config();
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store);

    let plan = engine
        .plan(&request(OperationKind::Switchover, REGION_B))
        .await
        .unwrap();
    assert!(plan.standing(false).is_empty(), "{:?}", plan.blockers);
    assert!(
        plan.fence.contains("agent") && plan.fence.contains("no client can undo"),
        "the dry run says how the source is fenced: {}",
        plan.fence
    );

    let writer = Writer::start(&lab).await;
    let direct = DirectWriter::start(&lab).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let outcome = engine
        .run(&request(OperationKind::Switchover, REGION_B), &|_| {})
        .await
        .expect("the switchover succeeds");
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let follow = outcome
        .rejoin
        .clone()
        .expect("an automatic rejoin followed");
    assert_eq!(follow.status, Some(OpStatus::Succeeded), "{follow:?}");
    streams_from(&lab, REGION_A, REGION_B).await;
    let back_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writer.finish().await;
    let direct_acked = direct.finish().await;

    // The fence was hard, through region-a's agent, with its evidence.
    let fence = step_output(&outcome, "fence_source");
    let hard = &fence["hard"];
    assert_eq!(hard["method"], "stopped", "{fence}");
    assert_eq!(hard["was_running"], true, "{fence}");
    assert!(hard["host"].is_string(), "{fence}");
    let fence_end = outcome
        .steps
        .iter()
        .find(|s| s.step == "fence_source")
        .and_then(|s| s.ended_at)
        .unwrap();

    // Zero loss for the application's writes.
    let measured = outcome.measured.clone().unwrap();
    assert_eq!(
        (measured.rpo_bytes, measured.rpo_us),
        (0, 0),
        "{measured:?}"
    );
    let present = ids(&lab, REGION_B, "acked").await;
    let lost: Vec<i64> = acked
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !present.contains(i))
        .collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    assert!(
        acked.len() > 20,
        "the client kept writing ({})",
        acked.len()
    );

    // The client that undid the soft fence in its own session committed
    // nothing once the fence was done, and nothing it committed before
    // was lost (the source stopped cleanly: its standby had it all).
    let late: Vec<_> = direct_acked
        .iter()
        .filter(|(_, at)| *at > fence_end)
        .collect();
    assert!(
        late.is_empty(),
        "commits acknowledged by the fenced old primary: {late:?}"
    );
    let direct_present = ids(&lab, REGION_B, "direct").await;
    let direct_lost: Vec<i64> = direct_acked
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !direct_present.contains(i))
        .collect();
    assert!(
        direct_lost.is_empty(),
        "direct commits lost: {direct_lost:?}"
    );
    assert!(
        !direct_acked.is_empty(),
        "the direct client wrote before the fence"
    );

    eprintln!(
        "switchover through agents: client write gap {:?}, RTO {} ms, steps {:?}; switchover start to the old primary streaming again: {back_in:?}",
        longest_gap(&acked),
        measured.rto_ms,
        measured.steps_ms
    );
    assert!(writable(&lab, REGION_B).await);
    let front_b = lab.record.front_ip(REGION_B).to_string();
    assert_eq!(resolve(&lab).await.as_deref(), Some(front_b.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_fenced_old_primary_refuses_every_start_but_a_rejoin() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let agents = LabAgents::start(&lab, "manual");
    let config = agents.config();
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config.clone(), store);

    // A failover with a reachable source (an operator moving off a
    // degraded region): soft fence, then the agent stops it at once.
    let outcome = engine
        .run(&request(OperationKind::Failover, REGION_B), &|_| {})
        .await
        .expect("the failover succeeds");
    assert_eq!(outcome.status, OpStatus::Succeeded);
    assert!(
        outcome.rejoin.is_none(),
        "a failover is never followed at once"
    );
    let fence = step_output(&outcome, "fence_source");
    assert_eq!(fence["hard"]["method"], "stopped", "{fence}");
    assert_eq!(fence["method"], "soft_fence", "{fence}");

    // Nothing answers at region-a: no client can commit there.
    assert_eq!(role(&lab, REGION_A).await, None, "the old primary is down");
    // Its agent refuses a plain start, naming the operation that fenced it.
    let node = engine.node("orders", REGION_A);
    let server = NodeRef::for_service(config.service("orders").unwrap(), REGION_A).unwrap();
    let status = node.status(&server).await.unwrap();
    assert_eq!(status.fenced_by.as_deref(), Some(outcome.id.as_str()));
    let refused = node
        .start(&StartRequest {
            node: server.clone(),
            wait_ready_ms: Some(30_000),
            recovered: None,
            unfence: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Refused, "{refused}");
    assert!(refused.message.contains(&outcome.id), "{refused}");
    assert_eq!(role(&lab, REGION_A).await, None, "still down");

    // `rejoin = "manual"`: it waits for an operator; the rejoin goes
    // through the agent, lifts the mark, and the pair streams again.
    let rejoin = engine
        .run(&request(OperationKind::Rejoin, REGION_A), &|_| {})
        .await
        .expect("the rejoin succeeds");
    assert_eq!(rejoin.status, OpStatus::Succeeded);
    streams_from(&lab, REGION_A, REGION_B).await;
    let status = node.status(&server).await.unwrap();
    assert!(status.running && status.fenced_by.is_none(), "{status:?}");
    let plan = step_output(&rejoin, "plan");
    assert_eq!(plan["blockers"], serde_json::json!([]), "{plan}");
    drop(agents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_primary_is_fenced_by_its_agent_and_rejoined_by_the_guard() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    let agents = LabAgents::start(&lab, "auto");
    let config = agents.config();
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    // The monitor needs a sample of the primary before it is lost.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Sample "how many writable primaries" all along.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sampler = {
        let a = lab.cluster("orders", REGION_A).dsn("orders");
        let b = lab.cluster("orders", REGION_B).dsn("orders");
        tokio::spawn(async move {
            let mut worst = 0;
            let mut samples = 0;
            while !*stopped.borrow() {
                let mut n = 0;
                for dsn in [&a, &b] {
                    if let Ok(Ok(mut c)) =
                        tokio::time::timeout(Duration::from_millis(500), PgConnection::connect(dsn))
                            .await
                    {
                        let w: Option<(bool, bool)> = sqlx::query_as(
                            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'",
                        )
                        .fetch_one(&mut c)
                        .await
                        .ok();
                        if w == Some((false, false)) {
                            n += 1;
                        }
                    }
                }
                worst = worst.max(n);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (worst, samples)
        })
    };

    lab.kill_primary("orders").unwrap();
    // The guard fails over; the old primary's agent answers, so it fences
    // the (dead) server; then the guard rejoins it as a standby.
    let op = wait_for(
        "the automatic failover",
        Duration::from_secs(60),
        || async {
            store.operations(20).await.ok()?.into_iter().find(|o| {
                o.kind == drctl_store::states::OperationKind::Failover
                    && o.status == drctl_store::states::OpStatus::Succeeded
            })
        },
    )
    .await;
    let journal = store.journal(&op.id).await.unwrap();
    let entry: serde_json::Value = serde_json::from_str(
        journal
            .iter()
            .find(|s| s.step == "fence_source")
            .and_then(|s| s.output.as_deref())
            .unwrap(),
    )
    .unwrap();
    // The journal's envelope: the action's output under "done".
    let fence = &entry["done"];
    assert_eq!(fence["method"], "agent", "{fence}");
    assert_eq!(fence["hard"]["method"], "stopped", "{fence}");
    assert_eq!(fence["hard"]["was_running"], false, "{fence}");

    streams_from(&lab, REGION_A, REGION_B).await;
    let decision = wait_for("the rejoin decision", Duration::from_secs(10), || async {
        store
            .decisions(Some("orders"), 50)
            .await
            .ok()?
            .into_iter()
            .find(|d| d.action == GuardDecision::Rejoin)
    })
    .await;
    assert_eq!(decision.code.as_deref(), Some(REGION_A));
    let rejoin_id = decision.operation_id.expect("the rejoin's operation");
    let rejoin = store.operation(&rejoin_id).await.unwrap().unwrap();
    assert_eq!(rejoin.status, drctl_store::states::OpStatus::Succeeded);
    assert_eq!(rejoin.kind, drctl_store::states::OperationKind::Rejoin);

    let _ = stop.send(true);
    let (worst, samples) = sampler.await.unwrap();
    assert!(samples > 10, "{samples} samples");
    assert!(worst <= 1, "two writable primaries at once");
    assert!(writable(&lab, REGION_B).await);
    let front_b = lab.record.front_ip(REGION_B).to_string();
    assert_eq!(resolve(&lab).await.as_deref(), Some(front_b.as_str()));
    daemon.stop().await;
    drop(agents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_whose_server_and_agent_are_both_gone_is_a_named_blocker() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let mut agents = LabAgents::start(&lab, "manual");
    let config = agents.config();
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store);
    lab.kill_primary("orders").unwrap();

    // Its agent answers: the agent fences it, no blocker about fencing.
    let plan = engine
        .plan(&request(OperationKind::Failover, REGION_B))
        .await
        .unwrap();
    assert!(
        !plan.blockers.iter().any(|b| b.code == "unfenced_source"),
        "{:?}",
        plan.blockers
    );
    assert!(plan.fence.contains("its agent"), "{}", plan.fence);

    // The whole host is gone (its agent too): nothing can fence it.
    agents.agents.get_mut(REGION_A).unwrap().terminate();
    let plan = engine
        .plan(&request(OperationKind::Failover, REGION_B))
        .await
        .unwrap();
    let blocker = plan
        .blockers
        .iter()
        .find(|b| b.code == "unfenced_source")
        .unwrap_or_else(|| panic!("{:?}", plan.blockers));
    assert!(!blocker.overridable, "only --accept-unfenced passes it");
    assert!(blocker.message.contains("its agent"), "{}", blocker.message);
    let run = engine
        .run(&request(OperationKind::Failover, REGION_B), &|_| {})
        .await;
    assert!(run.is_err(), "refused: {run:?}");
    assert_eq!(
        role(&lab, REGION_B).await.map(|r| r.0),
        Some(true),
        "nothing promoted"
    );
}

/// Runs `req`, killing both agents (SIGKILL) the first time `step` starts
/// and starting them again half a second later on the same addresses; a
/// run that stopped on it is resumed once they are back.
async fn run_killing_agents(
    engine: &Engine,
    agents: &Arc<Mutex<LabAgents>>,
    req: &Request,
    step: drctl_failover::Step,
) -> drctl_failover::Outcome {
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarts: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
    let progress = {
        let (agents, fired, restarts) = (agents.clone(), fired.clone(), restarts.clone());
        move |p: drctl_failover::Progress| {
            if let drctl_failover::Progress::StepStarted {
                step: s,
                attempt: 1,
            } = p
            {
                if s == step && !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let agents = agents.clone();
                    restarts.lock().unwrap().push(std::thread::spawn(move || {
                        let mut a = agents.lock().unwrap();
                        for region in [REGION_A, REGION_B] {
                            a.kill_and_restart(region, Duration::from_millis(500));
                        }
                    }));
                }
            }
        }
    };
    let result = engine.run(req, &progress).await;
    for t in std::mem::take(&mut *restarts.lock().unwrap()) {
        t.join().unwrap();
    }
    match result {
        Ok(o) => o,
        Err(drctl_failover::FailoverError::Stopped { id, step, error }) => {
            eprintln!("{req:?} stopped at {step} ({error}): resuming");
            engine
                .resume(&id, Duration::from_secs(20), &|_| {})
                .await
                .unwrap_or_else(|e| panic!("resuming {id}: {e}"))
        }
        Err(e) => panic!("{:?} killing the agents at {step}: {e}", req.kind),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_killed_at_any_step_boundary_leave_one_writable_primary_and_the_pair_streaming() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let agents = LabAgents::start(&lab, "manual");
    let config = agents.config();
    let agents = Arc::new(Mutex::new(agents));
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store);
    let rejoin_steps = OperationKind::Rejoin.steps();
    let (mut source, mut target) = (REGION_A, REGION_B);
    for (i, step) in OperationKind::Failover.steps().iter().enumerate() {
        // Switchovers and failovers in turn, each followed by the rejoin
        // of its old primary, the agents killed at one step of each.
        let kind = if i % 2 == 0 {
            OperationKind::Switchover
        } else {
            OperationKind::Failover
        };
        let moved = run_killing_agents(&engine, &agents, &request(kind, target), *step).await;
        assert_eq!(moved.status, OpStatus::Succeeded, "{kind:?} at {step}");
        assert!(
            writable(&lab, target).await,
            "{kind:?} at {step}: {target} writable"
        );
        assert!(
            !writable(&lab, source).await,
            "{kind:?} at {step}: {source} not"
        );
        let rejoin_step = rejoin_steps[i % rejoin_steps.len()];
        let rejoined = run_killing_agents(
            &engine,
            &agents,
            &request(OperationKind::Rejoin, source),
            rejoin_step,
        )
        .await;
        assert_eq!(
            rejoined.status,
            OpStatus::Succeeded,
            "rejoin at {rejoin_step}"
        );
        streams_from(&lab, source, target).await;
        assert!(
            writable(&lab, target).await,
            "after the rejoin at {rejoin_step}"
        );
        std::mem::swap(&mut source, &mut target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_watchdog_stops_a_returning_old_primary_through_its_agent() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let agents = LabAgents::start(&lab, "manual");
    let config = agents.config();
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config.clone(), store.clone());
    let outcome = engine
        .run(&request(OperationKind::Failover, REGION_B), &|_| {})
        .await
        .expect("the failover succeeds");
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let daemon = start_daemon_with(config.clone()).await;

    // Someone brings the old primary back by hand, around its agent: the
    // mark removed, the server started with pg_ctl, its soft fence undone.
    // It answers writable.
    let old = lab.cluster("orders", REGION_A);
    std::fs::remove_file(drctl_node::fence_mark_path(&old.data_dir)).unwrap();
    lab.in_region(REGION_A, || old.start()).unwrap().unwrap();
    let mut c = connect(&old.dsn("orders")).await;
    sqlx::query("ALTER SYSTEM RESET default_transaction_read_only")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    let fenced = wait_for("the watchdog's fence", Duration::from_secs(30), || async {
        store
            .decisions(Some("orders"), 50)
            .await
            .ok()?
            .into_iter()
            .find(|d| d.action == drctl_store::states::GuardDecision::Fenced)
    })
    .await;
    assert_eq!(fenced.code.as_deref(), Some(REGION_A));
    assert!(
        fenced.reason.contains("stopped by its agent"),
        "{}",
        fenced.reason
    );
    // Down, and marked: no plain start brings it back.
    assert_eq!(role(&lab, REGION_A).await, None, "the old primary is down");
    let server = NodeRef::for_service(config.service("orders").unwrap(), REGION_A).unwrap();
    let status = engine
        .node("orders", REGION_A)
        .status(&server)
        .await
        .unwrap();
    assert!(
        status
            .fenced_by
            .as_deref()
            .is_some_and(|by| by.starts_with("watchdog-")),
        "{status:?}"
    );
    assert!(writable(&lab, REGION_B).await);
    daemon.stop().await;
}

/// Runs `args` of the drctl CLI with `DRCTL_FAULT_CRASH_AT=crash` (the
/// driver aborts there, as kill -9 would), then resumes the operation it
/// left with another drctl process; returns the resumed operation's id.
async fn crash_and_resume(store: &Store, config: &str, args: &[&str], crash: &str) -> String {
    let out = std::process::Command::new(drctl_bin())
        .args(args)
        .args(["--yes", "--config", config])
        .env("DRCTL_FAULT_CRASH_AT", crash)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.status.code().is_none(),
        "{crash}: the driver must die, got {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let op = store
        .unfinished_operation(
            "orders",
            &[
                drctl_store::states::OperationKind::Switchover,
                drctl_store::states::OperationKind::Failover,
                drctl_store::states::OperationKind::Rejoin,
            ],
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{crash}: an unfinished operation"));
    let (code, stdout, stderr) = drctl(&[
        "failover", "--resume", &op.id, "--wait", "20s", "-o", "json", "--config", config,
    ]);
    assert_eq!(code, 0, "{crash}: resume failed: {stdout}{stderr}");
    op.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_driver_killed_at_any_step_boundary_with_agents_is_resumed_to_one_writable_primary() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let agents = LabAgents::start(&lab, "manual");
    // A short lease, so a resume need not wait long for a dead driver's.
    let text = std::fs::read_to_string(&agents.config_path).unwrap();
    let short = agents.config_path.with_file_name("agents-short-lease.toml");
    std::fs::write(
        &short,
        text.replacen("\n[failover]\n", "\n[failover]\nlease = \"1s\"\n", 1),
    )
    .unwrap();
    let config = short.to_str().unwrap().to_string();
    let store = Store::open(agents.config().store.url.expose())
        .await
        .unwrap();
    let rejoin_steps = OperationKind::Rejoin.steps();
    let (mut source, mut target) = (REGION_A, REGION_B);
    for (i, step) in OperationKind::Switchover.steps().iter().enumerate() {
        // The driver dies once the step's effect is applied and before it
        // is journaled (the hardest point); then the old primary's rejoin
        // dies likewise at one of its steps.
        let crash = format!("{}:applied", step.as_str());
        // Switchovers and failovers (of a reachable source) in turn.
        let command = if i % 2 == 0 { "switchover" } else { "failover" };
        crash_and_resume(
            &store,
            &config,
            &[command, "orders", "--to", target],
            &crash,
        )
        .await;
        assert!(
            writable(&lab, target).await,
            "{crash}: {target} is writable"
        );
        assert!(!writable(&lab, source).await, "{crash}: {source} is not");
        let rejoin_crash = format!("{}:applied", rejoin_steps[i % rejoin_steps.len()].as_str());
        crash_and_resume(
            &store,
            &config,
            &["rejoin", "orders", "--region", source],
            &rejoin_crash,
        )
        .await;
        streams_from(&lab, source, target).await;
        assert!(
            writable(&lab, target).await,
            "{rejoin_crash}: {target} still writable"
        );
        std::mem::swap(&mut source, &mut target);
    }
    drop(agents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recover_restores_through_the_target_regions_agent_on_its_own_host() {
    let (lab, _dir) = start_namespaced_lab(vec![catalog()], false).await;
    lab.workload().pause();
    let primary = lab.cluster("catalog", REGION_A);
    let mut c = connect(&primary.dsn("catalog")).await;
    sqlx::query("CREATE TABLE shop.marks (id bigint PRIMARY KEY)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO shop.marks SELECT generate_series(1, 50)")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);

    // The recovery target: a server region-b does not run yet, on region-b's
    // host, served by region-b's agent (which reads the recorded backups).
    let host_b = lab.record.cluster_host(REGION_B);
    let port = drctl_pg::os::free_port();
    let target = lab.record.dir.join("catalog-region-b");
    let base = lab.config_path().with_file_name("recover-base.toml");
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    std::fs::write(
        &base,
        format!(
            "{text}[services.postgres.region-b]\n\
             dsn = \"postgres://postgres@{host_b}:{port}/catalog\"\n\
             data_dir = \"{}\"\n",
            target.display()
        ),
    )
    .unwrap();
    let agents = LabAgents::start_with(&lab, "manual", &base, &[(REGION_B, target.clone())]);
    let cfg = agents.config_path.to_str().unwrap().to_string();

    let (code, out, err) = drctl(&["backup", "run", "catalog", "--config", &cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = drctl(&["backup", "verify", "--latest", "catalog", "--config", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    primary.crash().unwrap();

    let (code, out, err) = drctl(&[
        "recover", "catalog", "--to", REGION_B, "--yes", "-o", "json", "--config", &cfg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["operation"]["status"], "succeeded", "{v}");

    // Region-b's agent restored it into its own directory and started it
    // on region-b's host: reached there, writable, with the backed-up rows.
    let recovered = PgCluster::new(
        "catalog-region-b",
        target.clone(),
        port,
        drctl_pg::find_pg_bin().unwrap(),
    )
    .on_host(host_b);
    let stop = StopOnDrop(recovered.clone());
    let mut b = connect(&recovered.dsn("catalog")).await;
    let (writable,): (bool,) = sqlx::query_as("SELECT NOT pg_is_in_recovery()")
        .fetch_one(&mut b)
        .await
        .unwrap();
    assert!(writable);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.marks")
        .fetch_one(&mut b)
        .await
        .unwrap();
    assert_eq!(n, 50);
    drop(b);
    let log = agents.agent_log(REGION_B);
    assert!(
        log.iter()
            .any(|l| l.contains("restore_backup") && l.contains("result=\"ok\"")),
        "region-b's agent restored it: {log:?}"
    );
    drop(stop);
}

/// Stops a server the test started however the test ends.
struct StopOnDrop(PgCluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop("immediate");
    }
}
