//! S3 Object Lock against moto: what drctl writes to a locked store (a
//! manifest written whole, a base backup streamed in parts, a WAL segment)
//! can be neither deleted nor replaced until its lock ends, by drctl or by
//! anyone holding drctl's credentials; drctl's own delete says until when
//! and deletes nothing, and deletes every version once the lock has ended.
//! A store configured with a lock whose bucket cannot give one is refused
//! up front.

use std::time::Duration;

use drctl_backup::archive::ArchivedFile;
use drctl_backup::wal_archive::WalArchive;
use drctl_backup::{BackupError, LockMode, ObjectLock, ObjectStore, S3Location};
use drctl_pg::wal::{Segment, SegmentSize, TimelineId};
use drctl_store::{BackupFinish, Store};
use drctl_tests::{
    drctl_bin, moto_auth, moto_credentials, moto_server, MotoServer, Service, TestConfig,
};

const BUCKET: &str = "drctl-locked";
const PREFIX: &str = "backups/";

fn locked(moto: &MotoServer, bucket: &str, retention: Duration) -> S3Location {
    S3Location {
        lock: Some(ObjectLock {
            mode: LockMode::Compliance,
            retention,
        }),
        ..moto.s3_location(bucket, PREFIX)
    }
}

/// Records a complete backup of `orders` in `store_name`, ended `at`.
async fn complete_backup(
    store: &Store,
    id: &str,
    store_name: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    store
        .backup_started(id, "orders", "eu-west", store_name, at)
        .await
        .unwrap();
    let finish = BackupFinish {
        ended_at: Some(at),
        timeline: Some(1),
        start_lsn: None,
        stop_lsn: None,
        stored_bytes: Some(1),
        uncompressed_bytes: Some(1),
        manifest: None,
    };
    store.backup_completed(id, &finish).await.unwrap();
}

/// The version ids S3 holds of `key` (raw ListObjectVersions).
async fn versions(moto: &MotoServer, key: &str) -> Vec<String> {
    let text = reqwest::Client::new()
        .get(format!(
            "{}/{BUCKET}?versions&prefix={PREFIX}{key}",
            moto.endpoint
        ))
        .header("authorization", moto_auth("s3"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.split("<VersionId>")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once("</VersionId>")
                .map(|(id, _)| id.to_string())
        })
        .collect()
}

/// A raw request on one version of `key`, as anyone holding the bucket's
/// credentials could send it (moto does not check signatures, so these
/// stand for drctl's own).
async fn on_version(
    moto: &MotoServer,
    method: reqwest::Method,
    key: &str,
    version: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            method,
            format!(
                "{}/{BUCKET}/{PREFIX}{key}?versionId={version}",
                moto.endpoint
            ),
        )
        .header("authorization", moto_auth("s3"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_backup_and_wal_segment_outlive_drctls_own_credentials() {
    let moto = moto_server().await;
    let retention = Duration::from_secs(6);
    let store = ObjectStore::s3(locked(&moto, BUCKET, retention))
        .await
        .unwrap()
        .with_initial_part_size(5 * 1024 * 1024);
    store.ensure_bucket().await.unwrap();
    store
        .check_lock()
        .await
        .expect("the bucket was created with Object Lock");
    let written_at = chrono::Utc::now();

    let manifest = "orders/20261207T140000Z-abcdef/manifest.json";
    store.put(manifest, b"the manifest".to_vec()).await.unwrap();
    let base = "orders/20261207T140000Z-abcdef/base.tar.zst";
    let mut upload = store.begin_upload(base).await.unwrap();
    upload.write(&vec![7u8; 6 * 1024 * 1024]).await.unwrap();
    upload.write(&vec![8u8; 1024 * 1024]).await.unwrap();
    upload.finish().await.unwrap();
    let archive = WalArchive {
        store: store.clone(),
        service: "orders".into(),
        size: SegmentSize::DEFAULT,
        key: None,
        level: 1,
    };
    let segment = ArchivedFile::Segment(Segment {
        number: 3,
        timeline: TimelineId(1),
    });
    let wal = archive
        .put(segment, vec![5u8; 64 * 1024])
        .await
        .unwrap()
        .key;
    // A partial copy of the segment being written is superseded within
    // seconds: never locked, so it can go once it is.
    let partial = ArchivedFile::Partial {
        segment: Segment {
            number: 4,
            timeline: TimelineId(1),
        },
        len: 0x4000,
    };
    let partial = archive.put(partial, vec![6u8; 0x4000]).await.unwrap().key;
    assert_eq!(store.lock_of(&partial).await.unwrap(), None);
    store
        .delete(&partial)
        .await
        .expect("an unlocked partial copy deletes");
    assert_eq!(versions(&moto, &partial).await, Vec::<String>::new());

    for key in [manifest, base, wal.as_str()] {
        let lock = store
            .lock_of(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} has no lock"));
        assert_eq!(lock.mode, LockMode::Compliance, "{key}");
        assert!(
            lock.until >= written_at + chrono::Duration::seconds(5),
            "{key}: {lock:?}"
        );
        let original = store.get(key).await.unwrap();

        // drctl's own delete: refused, saying until when; nothing deleted.
        match store.delete(key).await {
            Err(e @ BackupError::Locked { until: Some(_), .. }) => {
                assert!(
                    e.to_string().contains("is locked (S3 Object Lock) until"),
                    "{e}"
                )
            }
            other => panic!("{key}: deleting a locked object: {other:?}"),
        }
        let ids = versions(&moto, key).await;
        assert_eq!(ids.len(), 1, "{key}: {ids:?}");

        // The same credentials behind drctl's back: deleting the version
        // is refused by the store itself.
        let refused = on_version(&moto, reqwest::Method::DELETE, key, &ids[0]).await;
        assert_eq!(
            refused.status().as_u16(),
            403,
            "{key}: {}",
            refused.text().await.unwrap()
        );

        // Writing over it adds a version; the locked one stays, intact.
        store.put(key, b"ransom note".to_vec()).await.unwrap();
        let kept = on_version(&moto, reqwest::Method::GET, key, &ids[0]).await;
        assert!(kept.status().is_success(), "{key}");
        assert_eq!(kept.bytes().await.unwrap().to_vec(), original, "{key}");
        assert_eq!(versions(&moto, key).await.len(), 2, "{key}");
    }

    // Once the locks end, drctl's delete removes every version.
    let until = chrono::Utc::now() + chrono::Duration::seconds(10);
    for key in [manifest, base, wal.as_str()] {
        loop {
            match store.delete(key).await {
                Ok(()) => break,
                Err(BackupError::Locked { .. }) if chrono::Utc::now() < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(e) => panic!("{key}: deleting after the lock ended: {e}"),
            }
        }
        assert_eq!(versions(&moto, key).await, Vec::<String>::new(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_the_bucket_cannot_give_is_refused_up_front() {
    let moto = moto_server().await;
    // A bucket created without Object Lock.
    let plain = ObjectStore::s3(moto.s3_location("drctl-plain", PREFIX))
        .await
        .unwrap();
    plain.ensure_bucket().await.unwrap();
    assert_eq!(plain.lock(), None);
    plain
        .check_lock()
        .await
        .expect("no lock asked for, none needed");
    let store = ObjectStore::s3(locked(&moto, "drctl-plain", Duration::from_secs(60)))
        .await
        .unwrap();
    let err = store.check_lock().await.unwrap_err().to_string();
    assert!(
        err.contains("does not have S3 Object Lock enabled") && err.contains("drctl-plain"),
        "{err}"
    );
    // A directory never locks.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ObjectStore::local(dir.path()).await.unwrap().lock(), None);
}

/// `drctl backup list` shows each backup's lock as its store reports it,
/// and says plainly that a directory is not immutable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_list_shows_each_backups_lock() {
    let moto = moto_server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new()
        .store_url(&format!("sqlite://{}/state.db", dir.path().display()))
        .local_object_store("local-backups", "objects")
        .raw(&format!(
            "[[object_stores]]\nname = \"locked\"\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
             endpoint = \"{}\"\npath_style = true\nobject_lock = \"compliance\"\nlock_retention = \"1h\"\n",
            moto.endpoint
        ))
        .write(dir.path());
    let config = drctl_config::load(&cfg).expect("the test config is valid");
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let objects = ObjectStore::s3(locked(&moto, BUCKET, Duration::from_secs(3600)))
        .await
        .unwrap();
    objects.ensure_bucket().await.unwrap();
    let now = chrono::Utc::now();
    for (id, store_name) in [
        ("20261207T140000Z-aaaaaa", "locked"),
        ("20261207T130000Z-bbbbbb", "local-backups"),
    ] {
        complete_backup(&store, id, store_name, now).await;
    }
    objects
        .put(
            "orders/20261207T140000Z-aaaaaa/manifest.json",
            b"{}".to_vec(),
        )
        .await
        .unwrap();

    let list = |json: bool| {
        let mut c = std::process::Command::new(drctl_bin());
        c.args(["backup", "list", "--config"]).arg(&cfg);
        if json {
            c.args(["-o", "json"]);
        }
        let out = c
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = list(false);
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{table}"))
            .to_string()
    };
    assert!(table.lines().next().unwrap().contains("LOCK"), "{table}");
    assert!(
        row("20261207T140000Z-aaaaaa").contains("compliance until"),
        "{table}"
    );
    assert!(
        row("20261207T130000Z-bbbbbb").contains("none (directory)"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&list(true)).unwrap();
    let lock_of = |id: &str| {
        json["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap()["lock"]
            .clone()
    };
    let locked = lock_of("20261207T140000Z-aaaaaa");
    assert_eq!(locked["immutable"], true, "{locked}");
    assert_eq!(locked["mode"], "compliance", "{locked}");
    assert_eq!(lock_of("20261207T130000Z-bbbbbb")["immutable"], false);
}

/// Retention never tries to delete a locked backup: it reports it as
/// waiting, keeps it listed, and deletes every version of its objects on the
/// first pass after the lock has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_the_lock_then_deletes_every_version() {
    let moto = moto_server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new()
        .store_url(&format!("sqlite://{}/state.db", dir.path().display()))
        .raw(&format!(
            "[[object_stores]]\nname = \"locked\"\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
             endpoint = \"{}\"\npath_style = true\nobject_lock = \"governance\"\nlock_retention = \"10s\"\n",
            moto.endpoint
        ))
        .service(
            Service::cold("orders")
                .unreachable_postgres(9, 9)
                .table("[services.backup]\nstore = \"locked\"\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"),
        )
        .write(dir.path());
    let config = drctl_config::load(&cfg).expect("the test config is valid");
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let objects = ObjectStore::s3(locked(&moto, BUCKET, Duration::from_secs(10)))
        .await
        .unwrap();
    objects.ensure_bucket().await.unwrap();
    // Two complete backups: keep_last = 1 (and no daily, weekly or monthly
    // rule, which would keep the older one when it ended on another day)
    // wants the older one gone.
    let (old, new) = ("20261207T130000Z-aaaaaa", "20261207T140000Z-bbbbbb");
    for (i, id) in [old, new].into_iter().enumerate() {
        let at = chrono::Utc::now() - chrono::Duration::hours(2 - i as i64);
        complete_backup(&store, id, "locked", at).await;
        for object in ["base.tar.zst", "manifest.json"] {
            objects
                .put(&format!("orders/{id}/{object}"), b"x".to_vec())
                .await
                .unwrap();
        }
    }
    let retention = || {
        drctl_backup::jobs::with_s3_credentials(
            moto_credentials(),
            drctl_backup::jobs::apply_retention(&config, &store, "orders", false),
        )
    };
    let plan = retention().await.expect("retention runs");
    assert!(plan.delete.is_empty(), "{plan:?}");
    let until = plan
        .waiting
        .get(old)
        .copied()
        .flatten()
        .expect("the old backup waits, with its lock's end");
    assert!(until > chrono::Utc::now(), "{plan:?}");
    let listed = store.backups(Some("orders"), 10).await.unwrap();
    assert!(
        listed.iter().all(|b| b.deleted_at.is_none()),
        "a waiting backup stays listed"
    );
    assert_eq!(
        versions(&moto, &format!("orders/{old}/manifest.json"))
            .await
            .len(),
        1
    );

    // Once the lock has ended: deleted, every version of every object.
    tokio::time::sleep(
        (until - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1),
    )
    .await;
    let plan = retention().await.expect("retention runs");
    assert_eq!(plan.delete, vec![old.to_string()], "{plan:?}");
    assert!(plan.waiting.is_empty(), "{plan:?}");
    for object in ["base.tar.zst", "manifest.json"] {
        assert_eq!(
            versions(&moto, &format!("orders/{old}/{object}")).await,
            Vec::<String>::new()
        );
        assert_eq!(
            versions(&moto, &format!("orders/{new}/{object}"))
                .await
                .len(),
            1
        );
    }
}
