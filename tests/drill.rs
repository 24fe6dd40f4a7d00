//! Drills against a real lab: a scratch clone of the standby is promoted,
//! written to and announced under the drill record while production keeps
//! its writes, its streaming standby and its DNS record; afterwards the
//! clone and the drill record are gone, also when a step fails and when the
//! driver dies half-way. On the namespaced lab, with the clone made on
//! drctl's host from the standby across the lab's network
//! (`tests/lab_agents.rs` has the drill through the DR region's agent).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drctl_failover::{Engine, OpStatus};
use drctl_lab::{Lab, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;

const DRILL_RECORD: &str = "orders-drill.shop.lab.";

async fn drill_record(lab: &Lab) -> Option<String> {
    drctl_dns::query(lab.dns().addr(), DRILL_RECORD, drctl_config::RecordType::A)
        .await
        .expect("the lab's DNS answers")
        .and_then(|v| v.into_iter().next())
}

/// The standby's WAL receiver status (`streaming` while it replicates).
async fn receiver_status(lab: &Lab) -> Option<String> {
    let mut c = connect(&lab.cluster("orders", REGION_B).dsn("orders")).await;
    sqlx::query_scalar("SELECT status FROM pg_stat_wal_receiver")
        .fetch_optional(&mut c)
        .await
        .ok()
        .flatten()
}

/// Where the journal says the clone was.
async fn clone_dir(store: &Store, op: &str) -> Option<PathBuf> {
    let steps = store.journal(op).await.unwrap();
    let out = steps
        .iter()
        .find(|s| s.step == "clone_standby")?
        .output
        .clone()?;
    let v = drctl_failover::view_output(&out);
    v.get("dir").and_then(|d| d.as_str()).map(PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drill_promotes_a_clone_and_leaves_production_alone() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let daemon = start_daemon(&lab).await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store.clone());
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_A)));
    assert_eq!(drill_record(&lab).await, None);

    // Watch production while the drill runs: the standby streams, the
    // production record does not move, the drill record appears once.
    let writer = Writer::start(&lab).await;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, lab_dns) = (done.clone(), lab.dns().addr());
        let dsn = lab.cluster("orders", REGION_B).dsn("orders");
        tokio::spawn(async move {
            let (mut statuses, mut records, mut drill_seen) = (Vec::new(), Vec::new(), false);
            while !done.load(Ordering::SeqCst) {
                let mut c = connect(&dsn).await;
                let s: Option<String> =
                    sqlx::query_scalar("SELECT status FROM pg_stat_wal_receiver")
                        .fetch_optional(&mut c)
                        .await
                        .ok()
                        .flatten();
                statuses.push(s);
                let prod =
                    drctl_dns::query(lab_dns, "orders.shop.lab.", drctl_config::RecordType::A)
                        .await
                        .ok()
                        .flatten();
                records.push(prod);
                drill_seen |= drctl_dns::query(lab_dns, DRILL_RECORD, drctl_config::RecordType::A)
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (statuses, records, drill_seen)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = engine
        .run(&drill_request("quarterly drill"), &|_| {})
        .await
        .expect("the drill succeeds");
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::SeqCst);
    let (statuses, records, drill_seen) = watcher.await.unwrap();
    let acked = writer.finish().await;

    assert_eq!(outcome.status, OpStatus::Succeeded);
    let m = outcome.measured.expect("measured");
    eprintln!("drill: RTO {} ms, steps {:?}", m.rto_ms, m.steps_ms);
    assert!(m.rpo_basis.starts_with("drill:"), "{m:?}");
    for step in [
        "clone_standby",
        "start_clone",
        "promote_target",
        "write_probe",
        "dns_flip",
        "dns_confirm",
    ] {
        assert!(m.steps_ms.contains_key(step), "{step} timed: {m:?}");
    }

    // Production: writes went on, the standby streamed, DNS never moved.
    let gap = longest_gap(&acked);
    assert!(
        acked.len() > 20,
        "the client kept writing ({} rows)",
        acked.len()
    );
    assert!(
        gap < Duration::from_secs(1),
        "the primary stalled {gap:?} during the drill"
    );
    assert!(
        statuses.iter().all(|s| s.as_deref() == Some("streaming")),
        "the standby stopped streaming during the drill: {statuses:?}"
    );
    let production = [front(&lab, REGION_A)];
    assert!(
        records
            .iter()
            .all(|r| r.as_deref() == Some(&production[..])),
        "the production record moved: {records:?}"
    );
    assert!(
        drill_seen,
        "the drill record was announced during the drill"
    );
    assert!(
        writable(&lab, REGION_A).await,
        "region-a is still the primary"
    );
    assert_eq!(
        role(&lab, REGION_B).await,
        Some((true, false)),
        "region-b is still a standby"
    );
    assert_eq!(receiver_status(&lab).await.as_deref(), Some("streaming"));
    // The probe wrote to the clone, not to production.
    let mut c = connect(&lab.cluster("orders", REGION_A).dsn("orders")).await;
    let (probes,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM drctl.write_probe WHERE operation_id = $1")
            .bind(&outcome.id)
            .fetch_one(&mut c)
            .await
            .unwrap_or((0,));
    assert_eq!(probes, 0, "the drill wrote to production");
    assert_eq!(
        store
            .cluster_role("orders")
            .await
            .unwrap()
            .map(|r| r.primary_region),
        None
    );

    // Afterwards: no clone, no drill record.
    assert_eq!(drill_record(&lab).await, None);
    let dir = clone_dir(&store, &outcome.id)
        .await
        .expect("the journal names the clone");
    assert!(!dir.exists(), "the clone {} is gone", dir.display());

    // The same through the API: a dry run answers the plan, a drill starts
    // and is read back from the operations endpoint, a bad kind is a 400.
    let api = daemon.api_url();
    let http = reqwest::Client::new();
    let operator = lab_token(&lab, "operator");
    let post = |body: serde_json::Value| {
        let (http, url) = (
            http.clone(),
            format!("{api}/api/v1/services/orders/operations"),
        );
        let token = operator.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (code, v) = post(serde_json::json!({ "kind": "switchover", "dry_run": true })).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["blocked"], false, "{v}");
    assert_eq!(v["plan"]["target"], REGION_B);
    let (code, v) = post(serde_json::json!({ "kind": "promote-everything" })).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{v}"
    );
    let (code, v) = post(serde_json::json!({ "kind": "drill", "reason": "api drill" })).await;
    assert_eq!(code, 202, "{v}");
    let id = v["operation"]["id"].as_str().unwrap().to_string();
    let done = wait_for(
        "the API drill to finish",
        Duration::from_secs(60),
        || async {
            let v: serde_json::Value = reqwest::get(format!("{api}/api/v1/operations/{id}"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["operation"]["status"] != "running").then_some(v)
        },
    )
    .await;
    assert_eq!(done["operation"]["status"], "succeeded", "{done}");
    assert_eq!(drill_record(&lab).await, None);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_or_dying_drill_still_tears_everything_down() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    // A short lease, so the resume need not wait long for the dead driver's.
    let config_path = short_lease_config(&lab);
    let config = config_path.to_str().unwrap();
    let store = Store::open(lab_config(&lab).store.url.expose())
        .await
        .unwrap();

    // 1. The drill record is up and the clone promoted when DNS confirmation
    //    fails: the teardown still runs, and the drill ends failed.
    let out = std::process::Command::new(drctl_bin())
        .args(["drill", "orders", "-o", "json", "--config", config])
        .env("DRCTL_FAULT_FAIL_AT", "dns_confirm")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(v["error"]["code"], "operation_failed", "{v}");
    let ops = store.operations(10).await.unwrap();
    let failed = ops
        .iter()
        .find(|o| o.kind == drctl_store::states::OperationKind::Drill)
        .expect("the drill is recorded");
    assert_eq!(failed.status, drctl_store::states::OpStatus::Failed);
    let steps = store.journal(&failed.id).await.unwrap();
    let status = |name: &str| steps.iter().find(|s| s.step == name).map(|s| s.status);
    assert_eq!(
        status("dns_flip"),
        Some(drctl_store::states::StepState::Done)
    );
    assert_eq!(
        status("dns_confirm"),
        Some(drctl_store::states::StepState::Failed)
    );
    assert_eq!(status("record"), None, "skipped");
    assert_eq!(
        status("teardown"),
        Some(drctl_store::states::StepState::Done)
    );
    assert_eq!(drill_record(&lab).await, None, "the drill record is gone");
    let clone = clone_dir(&store, &failed.id).await.unwrap();
    assert!(!clone.exists(), "the clone {} is gone", clone.display());

    // 2. The driver dies with the clone running and the record up; a
    //    resume finishes the drill and tears down.
    let out = std::process::Command::new(drctl_bin())
        .args(["failover", "orders", "--rehearse", "--config", config])
        .env("DRCTL_FAULT_CRASH_AT", "dns_flip:done")
        .output()
        .unwrap();
    assert!(out.status.code().is_none(), "the driver must die: {out:?}");
    let op = store
        .unfinished_operation("orders", &[drctl_store::states::OperationKind::Drill])
        .await
        .unwrap()
        .expect("an unfinished drill");
    assert!(
        drill_record(&lab).await.is_some(),
        "the record is up while the drill is unfinished"
    );
    let clone = clone_dir(&store, &op.id).await.unwrap();
    assert!(clone.exists());
    let (code, stdout, stderr) = drctl(&[
        "failover", "--resume", &op.id, "--wait", "20s", "-o", "json", "--config", config,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(drill_record(&lab).await, None);
    assert!(!clone.exists(), "the clone {} is gone", clone.display());
    // Production never moved.
    assert!(writable(&lab, REGION_A).await);
    assert_eq!(role(&lab, REGION_B).await, Some((true, false)));
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_A)));
}
