//! Backups against real servers: a lab PostgreSQL streamed into moto's S3
//! and into a local directory, verified, corrupted, interrupted and
//! restored into a scratch cluster that must hold the rows written before
//! the backup; off-site copies re-verified by the verify schedule's job.

use std::time::Duration;

use chrono::Utc;
use drctl_backup::jobs::{self, OffsiteCheck};
use drctl_backup::{
    new_backup_id, restore_backup, run_backup, verify_backup, BackupKey, BackupRequest, Expected,
    ObjectStore,
};
use drctl_lab::{find_pg_bin, free_port, PgCluster, REGION_A};
use drctl_tests::*;

async fn s3_store(moto: &MotoServer, bucket: &str) -> ObjectStore {
    let store = ObjectStore::s3(moto.s3_location(bucket, "backups/"))
        .await
        .expect("an S3 store");
    store.ensure_bucket().await.expect("create the bucket");
    store
}

fn request(lab: &drctl_lab::Lab, store: ObjectStore) -> BackupRequest {
    BackupRequest {
        service: "catalog".into(),
        region: REGION_A.into(),
        dsn: lab.cluster("catalog", REGION_A).dsn("postgres"),
        pg_bin: find_pg_bin().expect("PostgreSQL binaries"),
        compression_level: 3,
        compression_threads: 2,
        store,
        encryption: None,
    }
}

async fn max_id(dsn: &str) -> i64 {
    let mut c = connect(dsn).await;
    let (n,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM shop.price_changes")
        .fetch_one(&mut c)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// Restores a backup into a scratch cluster, starts it, and returns the
/// newest row id it holds.
async fn restore_and_count(store: &ObjectStore, backup_id: &str) -> i64 {
    restore_and_count_with(store, backup_id, None).await
}

async fn restore_and_count_with(
    store: &ObjectStore,
    backup_id: &str,
    key: Option<&BackupKey>,
) -> i64 {
    let scratch = tempfile::Builder::new()
        .prefix("drctl-test-restore-")
        .tempdir_in("/tmp")
        .unwrap();
    let pg = PgCluster::new(
        "restore-test",
        scratch.path().join("pg").join("data"),
        free_port(),
        find_pg_bin().unwrap(),
    );
    let expected = Expected {
        manifest: None,
        key: key.cloned(),
    };
    restore_backup(store, "catalog", backup_id, &pg.data_dir, &expected)
        .await
        .expect("restore");
    pg.adopt_restored().expect("adopt the restored directory");
    pg.start().expect("the restored cluster starts");
    let n = max_id(&pg.scratch_dsn("postgres", "catalog")).await;
    pg.stop("immediate").unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_s3_and_to_a_directory_verifies_and_restores_the_rows() {
    let (lab, dir) = start_lab(vec![catalog()]).await;
    let primary = lab.cluster("catalog", REGION_A).dsn("catalog");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let moto = moto_server().await;
    let stores = [
        ("s3", s3_store(&moto, "drctl-backups").await),
        (
            "local",
            ObjectStore::local(dir.path().join("objects"))
                .await
                .unwrap(),
        ),
    ];
    for (name, store) in stores {
        let before = max_id(&primary).await;
        assert!(before > 0, "the workload has written rows");
        let id = new_backup_id(Utc::now());
        let mut last = Default::default();
        let manifest = run_backup(&request(&lab, store.clone()), &id, Utc::now(), |p| last = p)
            .await
            .expect("backup");
        let after = max_id(&primary).await;
        eprintln!(
            "{name}: backup {id}: {} bytes read, {} stored; rows {before}..{after}",
            last.read_bytes, last.stored_bytes
        );
        assert!(
            manifest.stop_lsn.is_some() && manifest.start_lsn.is_some(),
            "{manifest:?}"
        );
        assert_eq!(manifest.objects.len(), 1);
        assert!(
            manifest.objects[0].uncompressed_size > manifest.objects[0].size,
            "compressed"
        );
        let listed = store.list("catalog/").await.unwrap();
        assert_eq!(listed.len(), 2, "data and manifest: {listed:?}");
        let (_, report) = verify_backup(&store, "catalog", &id, &Expected::default())
            .await
            .expect("verify");
        assert!(report.verified, "{report:?}");

        let restored = restore_and_count(&store, &id).await;
        // Every row committed before the backup started is in it; none
        // committed after it ended can be.
        assert!(restored >= before, "{name}: restored up to row {restored}, rows up to {before} were committed before the backup");
        assert!(
            restored <= after,
            "{name}: restored row {restored} was written after the backup ({after})"
        );
    }
    lab.teardown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_flipped_byte_a_truncation_a_missing_object_and_a_lying_manifest() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    let store = s3_store(&moto, "drctl-corruption").await;
    let id = new_backup_id(Utc::now());
    run_backup(&request(&lab, store.clone()), &id, Utc::now(), |_| {})
        .await
        .expect("backup");
    let data = format!("catalog/{id}/base.tar.zst");
    let manifest_key = format!("catalog/{id}/manifest.json");
    let original = store.get(&data).await.unwrap();
    let original_manifest = store.get(&manifest_key).await.unwrap();
    assert!(
        verify_backup(&store, "catalog", &id, &Expected::default())
            .await
            .unwrap()
            .1
            .verified
    );

    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    store.put(&data, flipped).await.unwrap();
    let (_, r) = verify_backup(&store, "catalog", &id, &Expected::default())
        .await
        .unwrap();
    assert!(!r.verified);
    let reason = r.reason.unwrap();
    assert!(
        reason.contains(&data) && reason.contains("sha256"),
        "{reason}"
    );

    store
        .put(&data, original[..original.len() - 100].to_vec())
        .await
        .unwrap();
    let reason = verify_backup(&store, "catalog", &id, &Expected::default())
        .await
        .unwrap()
        .1
        .reason
        .unwrap();
    assert!(
        reason.contains(&data) && reason.contains("bytes"),
        "{reason}"
    );

    store.delete(&data).await.unwrap();
    let reason = verify_backup(&store, "catalog", &id, &Expected::default())
        .await
        .unwrap()
        .1
        .reason
        .unwrap();
    assert_eq!(reason, format!("{data}: missing"));
    let target = tempfile::tempdir().unwrap();
    assert!(
        restore_backup(&store, "catalog", &id, target.path(), &Expected::default())
            .await
            .is_err(),
        "an unverified backup is never restored"
    );

    // The data is back, but the manifest claims another size.
    store.put(&data, original.clone()).await.unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&original_manifest).unwrap();
    manifest["objects"][0]["size"] = serde_json::json!(original.len() + 1);
    store
        .put(&manifest_key, serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    let reason = verify_backup(&store, "catalog", &id, &Expected::default())
        .await
        .unwrap()
        .1
        .reason
        .unwrap();
    assert!(reason.contains("the manifest says"), "{reason}");
    // And one whose stop LSN precedes its start.
    manifest["objects"][0]["size"] = serde_json::json!(original.len());
    manifest["stop_lsn"] = serde_json::json!("0/1");
    store
        .put(&manifest_key, serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    let reason = verify_backup(&store, "catalog", &id, &Expected::default())
        .await
        .unwrap()
        .1
        .reason
        .unwrap();
    assert!(reason.contains("stop LSN"), "{reason}");
    lab.teardown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backup_is_never_complete_and_its_upload_is_swept() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    let store = s3_store(&moto, "drctl-interrupted").await;
    let id = new_backup_id(Utc::now());
    let req = request(&lab, store.clone());
    // The backup task dies after its first chunk reaches the store.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let task = tokio::spawn(async move {
        run_backup(&req, &id, Utc::now(), |_| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        })
        .await
    });
    rx.await.expect("the backup started streaming");
    task.abort();
    let _ = task.await;
    let objects = store.list("catalog/").await.unwrap();
    assert!(
        objects.iter().all(|o| !o.key.ends_with("manifest.json")),
        "no manifest: {objects:?}"
    );
    assert!(objects.is_empty(), "nothing under a final key: {objects:?}");
    let swept = store.sweep_unfinished_uploads("catalog/").await.unwrap();
    assert_eq!(swept, 1, "the dead backup's multipart upload is swept");
    assert_eq!(store.sweep_unfinished_uploads("catalog/").await.unwrap(), 0);

    let id = new_backup_id(Utc::now());
    run_backup(&request(&lab, store.clone()), &id, Utc::now(), |_| {})
        .await
        .expect("the next run succeeds");
    assert!(
        verify_backup(&store, "catalog", &id, &Expected::default())
            .await
            .unwrap()
            .1
            .verified
    );
    lab.teardown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backups_are_unreadable_without_their_key() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    let store = s3_store(&moto, "drctl-encrypted").await;
    let key = BackupKey::from_hex(&"3c".repeat(32)).unwrap();
    let other = BackupKey::from_hex(&"a7".repeat(32)).unwrap();
    let primary = lab.cluster("catalog", REGION_A).dsn("catalog");
    let before = max_id(&primary).await;
    let id = new_backup_id(Utc::now());
    let mut req = request(&lab, store.clone());
    req.encryption = Some(key.clone());
    let manifest = run_backup(&req, &id, Utc::now(), |_| {})
        .await
        .expect("encrypted backup");
    assert_eq!(manifest.encryption_key_id.as_deref(), Some(key.id.as_str()));
    assert_eq!(
        manifest.encryption.as_deref(),
        Some(drctl_backup::ENCRYPTION_SCHEME)
    );
    // Verification opens every segment: it needs the key.
    let with_key = Expected {
        manifest: Some(manifest.clone()),
        key: Some(key.clone()),
    };
    let (_, report) = verify_backup(&store, "catalog", &id, &with_key)
        .await
        .unwrap();
    assert!(report.verified, "{report:?}");

    // What the store holds is neither a zstd stream nor a tar.
    let stored = store
        .get(&format!("catalog/{id}/base.tar.zst"))
        .await
        .unwrap();
    assert!(
        zstd::stream::decode_all(&stored[..]).is_err(),
        "the object decompresses without the key"
    );
    assert!(
        !stored.windows(5).any(|w| w == b"ustar"),
        "tar headers visible in the object"
    );

    let target = tempfile::tempdir().unwrap();
    let no_key = restore_backup(
        &store,
        "catalog",
        &id,
        &target.path().join("a"),
        &Expected::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        no_key.contains("is encrypted with key") && no_key.contains(&key.id),
        "{no_key}"
    );
    let wrong = restore_backup(
        &store,
        "catalog",
        &id,
        &target.path().join("b"),
        &Expected {
            manifest: None,
            key: Some(other.clone()),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        wrong.contains("not with the key given") && wrong.contains(&other.id),
        "{wrong}"
    );

    let restored = restore_and_count_with(&store, &id, Some(&key)).await;
    assert!(
        restored >= before,
        "the right key restores the rows: {restored} < {before}"
    );
    lab.teardown().unwrap();
}

/// The lab's config with moto's `dr-bucket` beside the lab's directory
/// store: backups written to `original`, copied to `offsite`, keeping only
/// the newest one, recorded in a state store of their own.
fn offsite_config(
    lab: &drctl_lab::Lab,
    moto: &MotoServer,
    original: &str,
    offsite: &str,
) -> std::sync::Arc<drctl_config::Config> {
    let lab_text = std::fs::read_to_string(lab.config_path()).unwrap();
    let state = format!("state-{original}.db");
    let mut text = lab_text
        .replace(
            "[services.backup]\nstore = \"lab-objects\"\n",
            &format!("[services.backup]\nstore = \"{original}\"\noffsite_store = \"{offsite}\"\nkeep_last = 1\n"),
        )
        .replace("sqlite://drctl-state.db", &format!("sqlite://{state}"));
    assert!(
        text.contains("offsite_store") && text.contains(&state),
        "the lab's config changed shape:\n{lab_text}"
    );
    text.push_str(&format!(
        "\n[[object_stores]]\nname = \"dr-bucket\"\nkind = \"s3\"\nbucket = \"drctl-offsite\"\nprefix = \"backups/\"\n\
         endpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\n",
        moto.endpoint
    ));
    let path = lab.record.dir.join(format!("offsite-{original}.toml"));
    std::fs::write(&path, text).unwrap();
    std::sync::Arc::new(drctl_config::load(&path).unwrap_or_else(|e| panic!("{e}")))
}

/// `GET /api/v1/backups?service=catalog` through the API's router.
async fn api_backups(
    config: &std::sync::Arc<drctl_config::Config>,
    store: &drctl_store::Store,
) -> serde_json::Value {
    ApiClient::router(router_over(config.clone(), store.clone()))
        .get_ok("/api/v1/backups?service=catalog")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_schedule_rereads_offsite_copies_and_records_a_corrupt_one_failed() {
    // The config's S3 store signs with moto's keys, passed in.
    jobs::with_s3_credentials(moto_credentials(), verify_schedule_rereads_offsite_copies()).await
}

async fn verify_schedule_rereads_offsite_copies() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    // The bucket.
    s3_store(&moto, "drctl-offsite").await;
    // Both ways round: copy in S3 (a byte flipped through the S3 API), and
    // copy in the directory (the file truncated on disk).
    for (original, offsite) in [("lab-objects", "dr-bucket"), ("dr-bucket", "lab-objects")] {
        let config = offsite_config(&lab, &moto, original, offsite);
        let store = drctl_store::Store::open(config.store.url.expose())
            .await
            .unwrap();
        let (backup, _) = jobs::backup_service(&config, &store, "catalog", |_| {})
            .await
            .expect("backup");
        assert_eq!(
            backup.offsite_status,
            Some(drctl_store::states::OffsiteStatus::Verified)
        );
        let data = format!("catalog/{}/base.tar.zst", backup.id);

        // The first scheduled run gives the new backup its proof, both copies.
        let runs = jobs::scheduled_verification(&config, &store, "catalog")
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].passed(), "{}", runs[0].summary());

        let copy = jobs::open_object_store(&config, offsite).await.unwrap();
        match &config.object_store(offsite).unwrap().kind {
            drctl_config::ObjectStoreKind::Local { path } => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path.join(&data))
                    .unwrap();
                let len = file.metadata().unwrap().len();
                file.set_len(len - 100).unwrap();
            }
            drctl_config::ObjectStoreKind::S3 { .. } => {
                let mut bytes = copy.get(&data).await.unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                copy.put(&data, bytes).await.unwrap();
            }
        }

        // The next run re-reads the backup (the one checked longest ago).
        let runs = jobs::scheduled_verification(&config, &store, "catalog")
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert!(!run.passed(), "{}", run.summary());
        assert!(run.original.verified, "{}", run.summary());
        let Some(OffsiteCheck::Checked {
            store: name,
            report,
        }) = &run.offsite
        else {
            panic!("the copy was not checked: {}", run.summary());
        };
        assert_eq!(name, offsite);
        let reason = report.reason.clone().unwrap_or_default();
        assert!(!report.verified && reason.contains(&data), "{reason}");

        let record = store.backup(&backup.id).await.unwrap().unwrap();
        assert_eq!(
            record.verification,
            Some(drctl_store::states::VerificationStatus::Verified)
        );
        assert_eq!(
            record.offsite_status,
            Some(drctl_store::states::OffsiteStatus::Failed)
        );
        assert_eq!(record.offsite_error.as_deref(), Some(reason.as_str()));
        // The original still proves the backup: the cold tier counts it.
        let counted = store.newest_verified_backup("catalog").await.unwrap();
        assert_eq!(counted.map(|b| b.id), Some(backup.id.clone()));
        let listed = api_backups(&config, &store).await;
        let listed = &listed["backups"][0];
        assert_eq!(listed["id"], backup.id.as_str());
        assert_eq!(listed["verification"], "verified");
        assert_eq!(listed["offsite_status"], "failed", "{listed}");
        assert_eq!(listed["offsite_error"], reason.as_str());

        // Then the original goes too: a failed copy is all that is left,
        // and it is no proof.
        jobs::open_object_store(&config, original)
            .await
            .unwrap()
            .delete(&data)
            .await
            .unwrap();
        let runs = jobs::scheduled_verification(&config, &store, "catalog")
            .await
            .unwrap();
        assert!(!runs[0].original.verified, "{}", runs[0].summary());
        let record = store.backup(&backup.id).await.unwrap().unwrap();
        assert_eq!(
            record.verification,
            Some(drctl_store::states::VerificationStatus::Failed)
        );
        assert_eq!(
            record.offsite_status,
            Some(drctl_store::states::OffsiteStatus::Failed)
        );
        assert_eq!(store.newest_verified_backup("catalog").await.unwrap(), None);

        // Retention (keep_last = 1) removes the rotten backup from both
        // stores: an off-site copy has no retention of its own.
        let (next, _) = jobs::backup_service(&config, &store, "catalog", |_| {})
            .await
            .expect("the next backup");
        let plan = jobs::apply_retention(&config, &store, "catalog", false)
            .await
            .unwrap();
        assert_eq!(plan.delete, vec![backup.id.clone()]);
        for name in [original, offsite] {
            let objects = jobs::open_object_store(&config, name).await.unwrap();
            let left: Vec<String> = objects
                .list("catalog/")
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .collect();
            assert!(
                !left.iter().any(|k| k.contains(&backup.id)),
                "{name} still holds the deleted backup: {left:?}"
            );
            assert!(
                left.contains(&format!("catalog/{}/manifest.json", next.id)),
                "{name} lost the kept backup: {left:?}"
            );
        }
        store.close().await;
    }
    lab.teardown().unwrap();
}

/// The variable the restore test below plants in the environment of the
/// process that runs it, as drctl's secrets are in drctl's.
const PLANTED_VAR: &str = "DRCTL_TEST_PLANTED_SECRET";
const PLANTED: &str = "planted-restore-test-environment-4e1d";

/// What someone who can write to the bucket could plant in a backup:
/// `ALTER SYSTEM` on the source writes postgresql.auto.conf, which the
/// backup copies like any other file. A restore test must start the copy
/// with drctl's configuration only (no archive command, not production's
/// port), reachable only by drctl over a private socket, and with none of
/// drctl's environment (where AWS keys and DSN passwords live).
///
/// The environment part needs a secret in the environment of the process
/// running the restore test. Tests run in parallel threads of one process,
/// so this one does not change its own: it runs itself again, alone, as a
/// child with [`PLANTED_VAR`] set, and the child does the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_test_never_starts_postgres_with_the_backups_configuration_or_drctls_environment()
{
    const NAME: &str =
        "a_restore_test_never_starts_postgres_with_the_backups_configuration_or_drctls_environment";
    if std::env::var(PLANTED_VAR).as_deref() == Ok(PLANTED) {
        return restore_test_isolation().await;
    }
    let out = tokio::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([NAME, "--exact", "--nocapture", "--test-threads", "1"])
        .env(PLANTED_VAR, PLANTED)
        .output()
        .await
        .expect("running this test again as a child");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the child run failed:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child ran exactly this test:\n{stdout}{stderr}"
    );
}

/// The body of the test above, in the child that holds [`PLANTED`].
async fn restore_test_isolation() {
    use std::os::unix::fs::PermissionsExt;
    let (lab, dir) = start_lab(vec![catalog()]).await;
    let primary = lab.cluster("catalog", REGION_A);
    let marker = dir.path().join("archive-command-ran");
    let mut c = connect(&primary.dsn("postgres")).await;
    for sql in [
        "ALTER SYSTEM SET archive_mode = 'on'".to_string(),
        format!(
            "ALTER SYSTEM SET archive_command = 'touch {}'",
            marker.display()
        ),
        // Production's own port: a copy started on it would collide with,
        // or stand in for, production.
        format!("ALTER SYSTEM SET port = {}", primary.port),
    ] {
        sqlx::query(&sql).execute(&mut c).await.unwrap();
    }
    let store = ObjectStore::local(dir.path().join("objects"))
        .await
        .unwrap();
    let id = new_backup_id(Utc::now());
    run_backup(&request(&lab, store.clone()), &id, Utc::now(), |_| {})
        .await
        .expect("backup");
    sqlx::query("ALTER SYSTEM RESET ALL")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);

    // The postgres user must pass through the test's directory to the root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let root = dir.path().join("scratch");
    let queries = vec![
        "SELECT current_setting('archive_mode') = 'off'".to_string(),
        "SELECT current_setting('listen_addresses') = ''".to_string(),
        "SELECT NOT EXISTS (SELECT 1 FROM pg_hba_file_rules WHERE type <> 'local' OR auth_method <> 'peer')"
            .to_string(),
        format!(
            "SELECT position(convert_to('{PLANTED}', 'UTF8') in pg_read_binary_file('/proc/self/environ')) = 0"
        ),
        "SELECT count(*) > 0 FROM shop.price_changes".to_string(),
    ];
    // While the copy runs: its directory and socket directory are private,
    // and nothing listens on its port over TCP.
    let mut seen = None;
    let outcome = drctl_backup::run_restore_test(
        &drctl_backup::RestoreTestRequest {
            service: "catalog".into(),
            backup_id: id.clone(),
            store,
            pg_bin: find_pg_bin().unwrap(),
            scratch_root: root.clone(),
            database: "catalog".into(),
            validation_queries: queries,
            key: None,
            manifest: None,
            on_agent: None,
        },
        |phase| {
            if phase != drctl_backup::RestorePhase::Validating {
                return;
            }
            let run = std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .next()
                .unwrap()
                .path();
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let port: u16 = std::fs::read_dir(run.join("sockets"))
                .unwrap()
                .flatten()
                .find_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix(".s.PGSQL.")?
                        .parse()
                        .ok()
                })
                .expect("the copy's socket");
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            seen = Some((mode(&root), mode(&run), mode(&run.join("sockets")), tcp));
        },
    )
    .await;
    assert!(outcome.passed, "{outcome:#?}");
    assert_eq!(
        seen,
        Some((0o711, 0o700, 0o700, false)),
        "(root, run dir, sockets) modes, TCP listener"
    );
    assert!(!marker.exists(), "the planted archive_command ran");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "the copy was removed"
    );
    lab.teardown().unwrap();
}

/// The scratch root was a fixed name in /tmp: whoever made it first owned
/// the directory the restored copy (and its socket) went into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_root_someone_else_made_first_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-squat-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let store = ObjectStore::local(dir.path().join("objects"))
        .await
        .unwrap();
    let squatted = dir.path().join("scratch");
    std::fs::create_dir(&squatted).unwrap();
    std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("the nobody user");
    std::os::unix::fs::chown(&squatted, Some(nobody.uid.as_raw()), None).unwrap();
    let outcome = drctl_backup::run_restore_test(
        &drctl_backup::RestoreTestRequest {
            service: "catalog".into(),
            backup_id: "bk-none".into(),
            store,
            pg_bin: find_pg_bin().unwrap(),
            scratch_root: squatted.clone(),
            database: "catalog".into(),
            validation_queries: Vec::new(),
            key: None,
            manifest: None,
            on_agent: None,
        },
        |_| {},
    )
    .await;
    let error = outcome.error.unwrap_or_default();
    assert!(
        error.contains("scratch root") && error.contains("owned by uid"),
        "refused for its owner: {error}"
    );
    assert_eq!(
        std::fs::read_dir(&squatted).unwrap().count(),
        0,
        "nothing went into it"
    );
}

/// The lab's config with the catalog's backups encrypted under the key in
/// `key_file` (or, with `None`, with no key configured at all), recorded in
/// the state store `state-{name}.db`.
fn keyed_config(
    lab: &drctl_lab::Lab,
    name: &str,
    key_file: Option<&std::path::Path>,
) -> std::sync::Arc<drctl_config::Config> {
    let lab_text = std::fs::read_to_string(lab.config_path()).unwrap();
    let state = format!("state-{name}.db");
    let key = key_file
        .map(|k| format!("encryption_key_file = \"{}\"\n", k.display()))
        .unwrap_or_default();
    let text = lab_text
        .replace(
            "[services.backup]\nstore = \"lab-objects\"\n",
            &format!("[services.backup]\nstore = \"lab-objects\"\n{key}"),
        )
        .replace("sqlite://drctl-state.db", &format!("sqlite://{state}"));
    assert!(
        text.contains(&key) && text.contains(&state),
        "the lab's config changed shape:\n{lab_text}"
    );
    let path = lab
        .record
        .dir
        .join(format!("keyed-{name}-{}.toml", key_file.is_some()));
    std::fs::write(&path, text).unwrap();
    std::sync::Arc::new(drctl_config::load(&path).unwrap_or_else(|e| panic!("{e}")))
}

/// The scenario of issue 15: someone who can write to the bucket swaps an
/// encrypted backup for a plaintext one of their own, with a manifest that
/// matches it. Restoring it would start PostgreSQL on their files (their
/// `postgresql.auto.conf`, their `archive_command`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_backup_swapped_into_the_bucket_is_refused_when_the_service_has_a_key() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let key_hex = "5e".repeat(32);
    let key = BackupKey::from_hex(&key_hex).unwrap();
    let key_file = lab.record.dir.join("catalog-swap.key");
    std::fs::write(&key_file, &key_hex).unwrap();
    let config = keyed_config(&lab, "swap", Some(&key_file));
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .unwrap();
    let (backup, manifest) = jobs::backup_service(&config, &store, "catalog", |_| {})
        .await
        .expect("backup");
    assert_eq!(manifest.encryption_key_id.as_deref(), Some(key.id.as_str()));
    let report = jobs::verify_recorded_backup(&config, &store, &backup.id)
        .await
        .unwrap();
    assert!(report.verified, "{report:?}");

    // The forgery: a plaintext backup under the same id, manifest and all.
    let objects = jobs::open_object_store(&config, "lab-objects")
        .await
        .unwrap();
    let forged = run_backup(
        &request(&lab, objects.clone()),
        &backup.id,
        Utc::now(),
        |_| {},
    )
    .await
    .expect("the forged backup");
    assert_eq!(forged.encryption_key_id, None);

    // The manifest recorded when the backup was taken gives it away…
    let report = jobs::verify_recorded_backup(&config, &store, &backup.id)
        .await
        .unwrap();
    let reason = report.reason.clone().unwrap_or_default();
    assert!(!report.verified, "the forgery verified");
    assert!(
        reason.contains("differs from the manifest recorded"),
        "{reason}"
    );
    let record = store.backup(&backup.id).await.unwrap().unwrap();
    assert_eq!(
        record.verification,
        Some(drctl_store::states::VerificationStatus::Failed)
    );
    // …and so does the configured key alone, without a record.
    let key_only = Expected {
        manifest: None,
        key: Some(key.clone()),
    };
    let (_, report) = verify_backup(&objects, "catalog", &backup.id, &key_only)
        .await
        .unwrap();
    let reason = report.reason.unwrap_or_default();
    assert!(
        !report.verified && reason.contains("plaintext backup is refused"),
        "{reason}"
    );

    // Nothing restores it: not a restore, not a restore test.
    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("data");
    let err = jobs::restore_recorded_backup(&config, &store, &backup.id, &data)
        .await
        .unwrap_err()
        .to_string();
    // (Refused at the listing already: the forged object's size is not the
    // recorded one.)
    assert!(
        err.contains("refusing to restore") || err.contains("no readable copy"),
        "{err}"
    );
    assert!(!data.exists(), "files of the forged backup were unpacked");
    let (_, outcome) = jobs::restore_test_service(
        &config,
        &store,
        "catalog",
        Some(&backup.id),
        drctl_pg::os::scratch_root(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(!outcome.passed, "{outcome:?}");
    store.close().await;
    lab.teardown().unwrap();
}

/// A backup whose key is gone cannot be restored, so it is no longer
/// verified: verification opens every segment, and says which key it
/// needs and where to configure it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_key_is_gone_fails_verification_naming_the_key() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let key_hex = "6f".repeat(32);
    let key = BackupKey::from_hex(&key_hex).unwrap();
    let key_file = lab.record.dir.join("catalog-lost.key");
    std::fs::write(&key_file, &key_hex).unwrap();
    let config = keyed_config(&lab, "lost", Some(&key_file));
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .unwrap();
    let (backup, _) = jobs::backup_service(&config, &store, "catalog", |_| {})
        .await
        .expect("backup");
    let report = jobs::verify_recorded_backup(&config, &store, &backup.id)
        .await
        .unwrap();
    assert!(report.verified, "{report:?}");

    // The key file is lost.
    std::fs::remove_file(&key_file).unwrap();
    let report = jobs::verify_recorded_backup(&config, &store, &backup.id)
        .await
        .unwrap();
    let reason = report.reason.clone().unwrap_or_default();
    assert!(!report.verified, "verified without its key");
    assert!(
        reason.contains(&key.id) && reason.contains(&key_file.display().to_string()),
        "{reason}"
    );
    let record = store.backup(&backup.id).await.unwrap().unwrap();
    assert_eq!(
        record.verification,
        Some(drctl_store::states::VerificationStatus::Failed)
    );
    assert_eq!(store.newest_verified_backup("catalog").await.unwrap(), None);

    // The key is dropped from the config.
    let without_key = keyed_config(&lab, "lost", None);
    let report = jobs::verify_recorded_backup(&without_key, &store, &backup.id)
        .await
        .unwrap();
    let reason = report.reason.unwrap_or_default();
    assert!(!report.verified);
    assert!(
        reason.contains(&key.id) && reason.contains("encryption_key_env or encryption_key_file"),
        "{reason}"
    );
    assert!(!reason.contains(&key_hex), "the key leaked: {reason}");
    store.close().await;
    lab.teardown().unwrap();
}

/// Each sealed object is bound to its backup id and object key: one
/// backup's object moved under another's id, with a manifest rewritten to
/// match, does not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_object_moved_from_another_backup_does_not_verify() {
    let (lab, dir) = start_lab(vec![catalog()]).await;
    let store = ObjectStore::local(dir.path().join("moved")).await.unwrap();
    let key = BackupKey::from_hex(&"71".repeat(32)).unwrap();
    let mut req = request(&lab, store.clone());
    req.encryption = Some(key.clone());
    let a = new_backup_id(Utc::now());
    run_backup(&req, &a, Utc::now(), |_| {})
        .await
        .expect("backup a");
    let b = new_backup_id(Utc::now());
    let manifest_b = run_backup(&req, &b, Utc::now(), |_| {})
        .await
        .expect("backup b");

    let sealed_b = store
        .get(&format!("catalog/{b}/base.tar.zst"))
        .await
        .unwrap();
    store
        .put(&format!("catalog/{a}/base.tar.zst"), sealed_b)
        .await
        .unwrap();
    let mut as_a = manifest_b.clone();
    as_a.backup_id = a.clone();
    store
        .put(
            &format!("catalog/{a}/manifest.json"),
            serde_json::to_vec(&as_a).unwrap(),
        )
        .await
        .unwrap();
    let expected = Expected {
        manifest: None,
        key: Some(key.clone()),
    };
    let (_, report) = verify_backup(&store, "catalog", &a, &expected)
        .await
        .unwrap();
    let reason = report.reason.unwrap_or_default();
    assert!(!report.verified, "another backup's object verified");
    assert!(reason.contains("decryption failed"), "{reason}");
    // In its own place it still opens.
    let (_, report) = verify_backup(&store, "catalog", &b, &expected)
        .await
        .unwrap();
    assert!(report.verified, "{report:?}");
    lab.teardown().unwrap();
}

/// The original's store is lost with its region: the off-site copy, once
/// verified, is proof of the backup, and what restores and restore tests
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_and_restore_tests_read_the_offsite_copy_when_the_original_store_is_gone() {
    // The config's S3 store signs with moto's keys, passed in.
    jobs::with_s3_credentials(
        moto_credentials(),
        offsite_copy_stands_in_for_the_lost_original(),
    )
    .await
}

async fn offsite_copy_stands_in_for_the_lost_original() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    s3_store(&moto, "drctl-offsite").await;
    let config = offsite_config(&lab, &moto, "lab-objects", "dr-bucket");
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .unwrap();
    let (backup, _) = jobs::backup_service(&config, &store, "catalog", |_| {})
        .await
        .expect("backup");
    assert_eq!(
        backup.offsite_status,
        Some(drctl_store::states::OffsiteStatus::Verified)
    );

    let drctl_config::ObjectStoreKind::Local { path } =
        &config.object_store("lab-objects").unwrap().kind
    else {
        panic!("lab-objects is not a directory store");
    };
    std::fs::remove_dir_all(path.join("catalog")).unwrap();
    let runs = jobs::scheduled_verification(&config, &store, "catalog")
        .await
        .unwrap();
    assert!(!runs[0].original.verified, "{}", runs[0].summary());
    assert!(
        matches!(&runs[0].offsite, Some(OffsiteCheck::Checked { report, .. }) if report.verified),
        "{}",
        runs[0].summary()
    );
    let counted = store.newest_verified_backup("catalog").await.unwrap();
    assert_eq!(counted.map(|b| b.id), Some(backup.id.clone()));

    let record = store.backup(&backup.id).await.unwrap().unwrap();
    let (name, _) = jobs::readable_copy(&config, &record).await.unwrap();
    assert_eq!(name, "dr-bucket");
    let (test, outcome) = jobs::restore_test_service(
        &config,
        &store,
        "catalog",
        None,
        drctl_pg::os::scratch_root(),
        |_| {},
    )
    .await
    .expect("a restore test");
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(test.backup_id, backup.id);
    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("data");
    jobs::restore_recorded_backup(&config, &store, &backup.id, &data)
        .await
        .expect("a restore from the off-site copy");
    assert!(data.join("PG_VERSION").is_file());
    store.close().await;
    lab.teardown().unwrap();
}
