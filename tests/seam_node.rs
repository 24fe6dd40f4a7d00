//! The two seams against a real lab: [`Postgres`] (the datastore) reads
//! roles, positions and the heartbeat map, fences, catches up, promotes and
//! writes its probe on real servers; [`LocalNode`] (the node actions) clones,
//! starts and tears down a scratch copy, rewinds an old primary and rejoins
//! it as a standby, restores a real backup into a directory it claims, and
//! hard-fences. Every action is run twice where a rerun after a crash could
//! happen, and the second run must say what it found.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drctl_backup::{new_backup_id, run_backup, BackupRequest, Expected, Manifest, ObjectStore};
use drctl_lab::{find_pg_bin, free_port, Lab, REGION_A, REGION_B};
use drctl_node::*;
use drctl_tests::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn service(lab: &Lab) -> drctl_config::Service {
    lab_config(lab).service("orders").unwrap().clone()
}

fn dsn_of(lab: &Lab, region: &str) -> Dsn {
    Dsn::from(&service(lab).postgres[region].resolve().unwrap())
}

fn datastore(lab: &Lab, region: &str) -> Box<dyn Datastore> {
    drctl_node::connect(&service(lab), region, TIMEOUT).unwrap()
}

/// A scratch root nobody made yet (prepare_scratch_root creates it 0711,
/// so the postgres user can pass through; a test's 0700 temp dir would not do).
fn fresh_scratch_root(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    PathBuf::from(format!(
        "/tmp/drctl-seam-{tag}-{}-{nanos}",
        std::process::id()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_datastore_reads_positions_keeps_the_map_and_fences_idempotently() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    let primary = datastore(&lab, REGION_A);
    let standby = datastore(&lab, REGION_B);
    assert_eq!(primary.engine(), Engine::Postgres);

    let p = primary.probe().await.unwrap();
    let s = standby.probe().await.unwrap();
    assert!(p.writable() && !p.standby, "{p:?}");
    assert!(s.standby && !s.writable(), "{s:?}");
    assert_eq!(
        primary.dataset_id().await.unwrap(),
        standby.dataset_id().await.unwrap(),
        "a physical copy has its primary's identity"
    );

    // Positions: the standby never holds more than the primary had after it.
    let sb = standby.probe_standby_position().await.unwrap();
    let pp = primary.probe_primary_position().await.unwrap();
    assert!(sb.durable <= pp.point.position && sb.applied <= sb.durable);
    assert!(pp.streaming_standbys >= 1, "{pp:?}");
    assert_eq!(sb.receiver, Some(drctl_node::ReceiverStatus::Streaming));
    let wrong = primary.probe_standby_position().await.unwrap_err();
    assert_eq!(wrong.kind, DatastoreErrorKind::WrongRole, "{wrong}");
    // The LSN form is the engine's to show.
    let shown = Engine::Postgres.format_position(pp.point.position);
    assert!(shown.contains('/'), "{shown}");

    // The heartbeat map: written on the primary, read back on both sides
    // (the standby carries the replicated rows).
    let (point, end) = primary.write_heartbeat().await.unwrap();
    assert!(end >= point.position);
    let on_primary = primary
        .load_heartbeats(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(on_primary.contains(&point), "{on_primary:?}");
    let caught = standby
        .catch_up(CatchUpGoal::Durable(end), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(caught.reached && !caught.promoted, "{caught:?}");
    let on_standby = wait_for(
        "the heartbeat replayed",
        Duration::from_secs(30),
        || async {
            let hb = standby
                .load_heartbeats(Duration::from_secs(3600))
                .await
                .ok()?;
            hb.contains(&point).then_some(hb)
        },
    )
    .await;
    assert!(!on_standby.is_empty());
    assert_eq!(
        primary
            .prune_heartbeats(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );

    // Clone settings carry what a hot standby needs.
    let settings = standby.clone_settings().await.unwrap();
    assert!(
        settings.0.iter().any(|(n, _)| n == "max_connections"),
        "{settings:?}"
    );

    // The base backup tool runs as described and reports its positions.
    let mut tool = primary
        .base_backup_command(&find_pg_bin().unwrap())
        .unwrap();
    let out = tool
        .command
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    drop(tool.keep_alive);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let positions = primary.backup_positions(&stderr);
    assert!(
        positions.start.is_some() && positions.stop.is_some() && positions.history == Some(1),
        "{positions:?} from {stderr}"
    );

    // Soft fence: twice, the second says so; unfence gives writes back.
    let first = primary.soft_fence().await.unwrap();
    assert!(!first.already_fenced && !first.was_standby, "{first:?}");
    let again = primary.soft_fence().await.unwrap();
    assert!(again.already_fenced, "{again:?}");
    assert!(!primary.probe().await.unwrap().writable());
    assert!(standby.soft_fence().await.unwrap().was_standby);
    primary.unfence().await.unwrap();
    wait_for("the unfenced primary to take writes", TIMEOUT, || async {
        primary.probe().await.ok().filter(|s| s.writable())
    })
    .await;
    let probe = primary.write_probe("op-seam-1").await.unwrap();
    let probe2 = primary.write_probe("op-seam-1").await.unwrap();
    assert!(probe2.position >= probe.position);

    // An unreachable server is a connection failure, nothing else.
    let gone = Engine::Postgres
        .connect(
            "gone",
            &Dsn::new(format!("postgres://postgres@127.0.0.1:{}/x", free_port())),
            TIMEOUT,
        )
        .unwrap();
    assert!(gone.probe().await.unwrap_err().is_connection_failure());
    primary.close().await;
    standby.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_clone_starts_isolated_promotes_and_tears_down_and_each_step_repeats_safely() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    let node = LocalNode::new();
    let standby = datastore(&lab, REGION_B);
    let root = fresh_scratch_root("clone");
    let req = CloneRequest {
        dir: root.join("drill-seam"),
        source: dsn_of(&lab, REGION_B),
        settings: standby.clone_settings().await.unwrap(),
        roles: vec!["postgres".into()],
        tls: None,
    };
    // A rerun is a fresh clone over whatever the first left.
    let _first = node.clone_scratch(&req).await.unwrap();
    let clone = node.clone_scratch(&req).await.unwrap();
    assert!(clone.bytes > 0 && clone.data_dir.join("PG_VERSION").exists());
    let start = StartRequest {
        node: clone.node(),
        wait_ready_ms: Some(CLONE_READY.as_millis() as u64),
        recovered: None,
        unfence: false,
    };
    assert!(!node.start(&start).await.unwrap().already_running);
    assert!(node.start(&start).await.unwrap().already_running);
    let status = node.status(&clone.node()).await.unwrap();
    assert!(status.running && status.initialized, "{status:?}");
    assert_eq!(
        status.dataset_id,
        Some(standby.dataset_id().await.unwrap()),
        "the clone is a copy of the standby"
    );

    // The clone: a standby of nothing, reached over its private socket.
    let db = Engine::Postgres
        .connect(
            "drill clone",
            &clone.dsn("postgres", "orders", None).unwrap(),
            TIMEOUT,
        )
        .unwrap();
    let state = wait_for("the clone to answer", Duration::from_secs(60), || async {
        db.probe().await.ok()
    })
    .await;
    assert!(state.standby, "{state:?}");
    assert!(
        db.probe_receiver().await.unwrap().is_none(),
        "it streams from nothing"
    );
    let promoted = db.promote(Duration::from_secs(60)).await.unwrap();
    assert!(!promoted.already_primary);
    assert!(
        db.promote(Duration::from_secs(60))
            .await
            .unwrap()
            .already_primary
    );
    db.write_probe("op-drill-seam").await.unwrap();
    db.close().await;

    // Production is untouched: the standby still streams, still a standby.
    let s = standby.probe().await.unwrap();
    assert!(s.standby, "{s:?}");
    let teardown = TeardownRequest {
        dir: clone.dir.clone(),
        port: clone.port,
    };
    assert!(node.teardown_scratch(&teardown).await.unwrap().removed);
    assert!(!node.teardown_scratch(&teardown).await.unwrap().removed);
    assert!(!clone.dir.exists());
    standby.close().await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_is_rewound_and_rejoined_as_a_standby_of_the_promoted_one() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    let node = LocalNode::new();
    let (a, b) = (datastore(&lab, REGION_A), datastore(&lab, REGION_B));
    let id = a.dataset_id().await.unwrap();

    // B takes over while A keeps writing a little: the histories diverge.
    assert!(
        !b.promote(Duration::from_secs(60))
            .await
            .unwrap()
            .already_primary
    );
    assert!(
        b.promote(Duration::from_secs(60))
            .await
            .unwrap()
            .already_primary
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a.soft_fence().await.unwrap().already_fenced);
    b.prepare_as_copy_source().await.unwrap();

    let old = NodeRef::for_service(&service(&lab), REGION_A).expect("the lab names data_dir");
    assert_eq!(old.data_dir, lab.cluster("orders", REGION_A).data_dir);
    // The policy's hard fence: the local server when asked, the hook (none here).
    let fence = HardFenceRequest::for_service(&service(&lab), REGION_A, "op-seam", true);
    assert_eq!(fence.node.as_ref(), Some(&old));
    assert!(
        fence.hook.is_none() && fence.hook_timeout_ms > 0,
        "{fence:?}"
    );
    let status = node.status(&old).await.unwrap();
    assert!(status.running && status.initialized, "{status:?}");
    assert_eq!(status.dataset_id.as_deref(), Some(id.as_str()));
    assert!(node.stop(&old, StopMode::Fast).await.unwrap().was_running);
    assert!(!node.stop(&old, StopMode::Fast).await.unwrap().was_running);

    let to_b = dsn_of(&lab, REGION_B);
    let resynced = node
        .rewind_or_reclone(&ResyncRequest {
            node: old.clone(),
            source: to_b.clone(),
            clone_source: to_b.clone(),
        })
        .await
        .unwrap();
    assert_eq!(resynced.method, ResyncMethod::Rewind, "{resynced:?}");
    let primary = Engine::Postgres.standby_conninfo(&to_b, REGION_A);
    let configured = node
        .configure_standby(&StandbyRequest {
            node: old.clone(),
            primary: primary.clone(),
        })
        .await
        .unwrap();
    assert!(
        configured.fence_lifted,
        "the fence went with the old settings"
    );
    let start = StartRequest {
        node: old.clone(),
        wait_ready_ms: None,
        recovered: None,
        unfence: false,
    };
    assert!(!node.start(&start).await.unwrap().already_running);

    let goal = b.probe_primary_position().await.unwrap().point.position;
    let caught = a
        .catch_up(CatchUpGoal::StreamingApplied(goal), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(caught.reached, "{caught:?}");
    assert_eq!(caught.receiver, Some(drctl_node::ReceiverStatus::Streaming));
    let s = a.probe().await.unwrap();
    assert!(s.standby && !s.fenced, "{s:?}");
    a.close().await;

    // A resync that died part-way (its agent killed mid-rewind): the next
    // attempt stops the copy still running on the directory and copies
    // afresh rather than rewind a half-rewound directory.
    node.stop(&old, StopMode::Fast).await.unwrap();
    std::fs::write(resync_mark_path(&old.data_dir), "resync").unwrap();
    let tools = tempfile::tempdir().unwrap();
    let fake = tools.path().join("pg_rewind");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let mut leftover = std::process::Command::new(&fake)
        .arg("600")
        .arg(&old.data_dir)
        .spawn()
        .unwrap();
    let resynced = node
        .rewind_or_reclone(&ResyncRequest {
            node: old.clone(),
            source: to_b.clone(),
            clone_source: to_b.clone(),
        })
        .await
        .unwrap();
    assert_eq!(resynced.method, ResyncMethod::Clone, "{resynced:?}");
    assert!(
        resynced
            .rewind_error
            .as_deref()
            .is_some_and(|e| e.contains("did not finish")),
        "{resynced:?}"
    );
    let status = leftover.wait().unwrap();
    assert!(
        !status.success(),
        "the leftover copy was stopped: {status:?}"
    );
    // Done until the server starts: asked again (its caller died before it
    // heard), the node does not rewind a resynced directory a second time.
    let mark = std::fs::read_to_string(resync_mark_path(&old.data_dir)).unwrap();
    assert!(mark.starts_with("done "), "{mark}");
    let again = node
        .rewind_or_reclone(&ResyncRequest {
            node: old.clone(),
            source: to_b.clone(),
            clone_source: to_b.clone(),
        })
        .await
        .unwrap();
    assert_eq!(again.method, ResyncMethod::Clone, "{again:?}");
    node.configure_standby(&StandbyRequest {
        node: old.clone(),
        primary,
    })
    .await
    .unwrap();
    assert!(!node.start(&start).await.unwrap().already_running);
    assert!(!resync_mark_path(&old.data_dir).exists(), "a start ends it");
    let a = datastore(&lab, REGION_A);
    let caught = a
        .catch_up(CatchUpGoal::StreamingApplied(goal), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(caught.reached, "the fresh clone streams: {caught:?}");
    a.close().await;
    b.close().await;
}

/// The backups a restore reads: drctl-backup's own restore from a local
/// object store, verified against the manifest the backup wrote.
struct LocalBackups {
    store: ObjectStore,
    manifest: Manifest,
}

#[async_trait::async_trait]
impl BackupSource for LocalBackups {
    async fn restore_verified(
        &self,
        backup_id: &str,
        target: &Path,
    ) -> Result<Option<String>, String> {
        let expected = Expected {
            manifest: Some(self.manifest.clone()),
            key: None,
        };
        drctl_backup::restore_backup(&self.store, "orders", backup_id, target, &expected)
            .await
            .map(|m| m.stop_lsn)
            .map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_restored_only_into_a_directory_its_operation_claimed_then_started_and_fenced()
{
    let (lab, dir) = start_lab(vec![orders()]).await;
    let store = ObjectStore::local(dir.path().join("objects"))
        .await
        .unwrap();
    let backup_id = new_backup_id(chrono::Utc::now());
    let manifest = run_backup(
        &BackupRequest {
            service: "orders".into(),
            region: REGION_A.into(),
            dsn: lab.cluster("orders", REGION_A).dsn("postgres"),
            pg_bin: find_pg_bin().unwrap(),
            compression_level: 1,
            compression_threads: 1,
            store: store.clone(),
            encryption: None,
        },
        &backup_id,
        chrono::Utc::now(),
        |_| {},
    )
    .await
    .unwrap();
    let node = LocalNode::new().with_backups(Arc::new(LocalBackups {
        store,
        manifest: manifest.clone(),
    }));
    let port = free_port();
    let target = NodeRef::new(
        "orders@recovered",
        lab.cluster("orders", REGION_A)
            .data_dir
            .with_file_name("recovered-orders"),
        port,
    );
    let restore = |op: &str| RestoreRequest {
        node: target.clone(),
        backup_id: backup_id.clone(),
        operation_id: op.into(),
    };

    // Twice by the same operation: the rerun wipes its own work and redoes it.
    let first = node.restore_backup(&restore("op-recover-1")).await.unwrap();
    let again = node.restore_backup(&restore("op-recover-1")).await.unwrap();
    assert_eq!(first.stop_position, manifest.stop_lsn);
    assert_eq!(again.data_dir, target.data_dir);
    let status = node.status(&target).await.unwrap();
    assert_eq!(status.restore_claim.as_deref(), Some("op-recover-1"));
    assert!(status.initialized && !status.running, "{status:?}");
    // Another operation never wipes it.
    let refused = node
        .restore_backup(&restore("op-recover-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Refused, "{refused}");

    // Started as a recovered production server: drctl's configuration,
    // listening where its connection points; the claim is released.
    let dsn = Dsn::new(format!("postgres://postgres@127.0.0.1:{port}/orders"));
    let start = StartRequest {
        node: target.clone(),
        wait_ready_ms: Some(60_000),
        recovered: Some(RecoveredServer::from_dsn(&dsn)),
        unfence: false,
    };
    assert!(!node.start(&start).await.unwrap().already_running);
    let status = node.status(&target).await.unwrap();
    assert!(
        status.running && status.restore_claim.is_none(),
        "{status:?}"
    );
    let db = Engine::Postgres
        .connect("recovered", &dsn, TIMEOUT)
        .unwrap();
    let state = wait_for(
        "the recovered server to take writes",
        Duration::from_secs(60),
        || async { db.probe().await.ok().filter(|s| s.writable()) },
    )
    .await;
    assert!(!state.standby);
    db.write_probe("op-recover-1").await.unwrap();
    db.close().await;

    // The local hard fence stops it; a rerun finds it stopped.
    let fence = HardFenceRequest {
        service: "orders".into(),
        region: "recovered".into(),
        operation_id: "op-recover-1".into(),
        node: Some(target.clone()),
        hook: None,
        hook_timeout_ms: 10_000,
        mode: StopMode::Immediate,
    };
    let fenced = node.hard_fence(&fence).await.unwrap();
    assert_eq!(fenced.method, HardFenceMethod::Stopped);
    assert_eq!(fenced.was_running, Some(true));
    assert_eq!(
        node.hard_fence(&fence).await.unwrap().was_running,
        Some(false)
    );
    assert!(db.probe().await.unwrap_err().is_connection_failure());

    // The fence holds: the node names the operation, and a plain start (a
    // rebooted host, a stray command) is refused with nothing started.
    let status = node.status(&target).await.unwrap();
    assert_eq!(status.fenced_by.as_deref(), Some("op-recover-1"));
    let plain = StartRequest {
        node: target.clone(),
        wait_ready_ms: Some(60_000),
        recovered: None,
        unfence: false,
    };
    let refused = node.start(&plain).await.unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Refused, "{refused}");
    assert!(refused.message.contains("op-recover-1"), "{refused}");
    assert!(!node.status(&target).await.unwrap().running);
    // Only a start that lifts it (a rejoin's, a recovery's) runs it again.
    let lifted = StartRequest {
        unfence: true,
        ..plain.clone()
    };
    assert!(!node.start(&lifted).await.unwrap().already_running);
    let status = node.status(&target).await.unwrap();
    assert!(status.running && status.fenced_by.is_none(), "{status:?}");
    node.stop(&target, StopMode::Immediate).await.unwrap();

    // Without a local server, the operator's hook is the hard fence.
    let hooked = node
        .hard_fence(&HardFenceRequest {
            node: None,
            hook: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo fenced {region}".into(),
            ]),
            ..fence.clone()
        })
        .await
        .unwrap();
    assert_eq!(hooked.method, HardFenceMethod::Hook);
    assert!(hooked.hook.unwrap().output.contains("fenced recovered"));
    let _ = std::fs::remove_dir_all(&target.data_dir);

    // A restore test's scratch copy: isolated, answers only drctl, and
    // goes away with the teardown.
    let root = fresh_scratch_root("restore");
    let scratch = node
        .restore_scratch(&ScratchRestoreRequest {
            dir: root.join("rt-orders"),
            backup_id: backup_id.clone(),
            tls: None,
        })
        .await
        .unwrap();
    let start = StartRequest {
        node: scratch.node(),
        wait_ready_ms: Some(60_000),
        recovered: None,
        unfence: false,
    };
    assert!(!node.start(&start).await.unwrap().already_running);
    let db = Engine::Postgres
        .connect(
            "restore test",
            &scratch.dsn("postgres", "orders", None).unwrap(),
            TIMEOUT,
        )
        .unwrap();
    let state = wait_for(
        "the restored copy to open",
        Duration::from_secs(60),
        || async { db.probe().await.ok().filter(|s| s.writable()) },
    )
    .await;
    assert!(!state.standby);
    db.close().await;
    let conf = std::fs::read_to_string(scratch.data_dir.join("postgresql.conf")).unwrap();
    assert!(
        conf.contains("listen_addresses = ''"),
        "no TCP listener: {conf}"
    );
    let teardown = TeardownRequest {
        dir: scratch.dir.clone(),
        port: scratch.port,
    };
    assert!(node.teardown_scratch(&teardown).await.unwrap().removed);
    let _ = std::fs::remove_dir_all(&root);
}
