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
use drctl_tests::{moto_auth, moto_server, MotoServer};

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
