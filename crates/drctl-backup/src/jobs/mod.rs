//! Backup jobs as drctl runs them for a configured service: resolve the
//! service's backup policy and object store, record the job in the state
//! store before and after, run it. The CLI and (later) the scheduler and the
//! API call these same functions.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use drctl_config::{Config, ObjectStoreKind, Service};
use drctl_store::states::{BackupStatus, OffsiteStatus, VerificationStatus};
use drctl_store::{BackupFinish, BackupRecord, RestoreTestRecord, Store};
use serde::Serialize;

use crate::{
    new_backup_id, run_backup, run_restore_test, verify_backup, BackupProgress, BackupRequest,
    Expected, Manifest, ObjectStore, RestorePhase, RestoreTestOutcome, RestoreTestRequest,
    S3Location, VerifyReport,
};

mod restore;
mod verify;

pub use restore::*;
pub use verify::*;

/// Why a job could not run or did not succeed. Messages name the service,
/// store or backup, never a DSN.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no service named {0:?} in the config")]
    UnknownService(String),
    #[error("service {0:?} has no backup policy; add [services.backup] with a store")]
    NoBackupPolicy(String),
    #[error("no backup {0:?} in the state store")]
    UnknownBackup(String),
    #[error("service {0:?} has no verified backup yet; run `drctl backup run {0}` and `drctl backup verify --latest {0}`")]
    NoVerifiedBackup(String),
    #[error("backup {backup}: no readable copy: {reason}")]
    NoReadableCopy { backup: String, reason: String },
    #[error("another backup of {service} is running (lease held by {holder}); wait for it, or let its lease expire if that process died")]
    Busy { service: String, holder: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Backup(#[from] crate::BackupError),
    #[error(transparent)]
    Store(#[from] drctl_store::StoreError),
    #[error(transparent)]
    Cluster(#[from] drctl_pg::ClusterError),
}

tokio::task_local! {
    /// The keys S3 stores opened from the config sign with, within
    /// [`with_s3_credentials`].
    static S3_CREDENTIALS: crate::AwsCredentials;
}

/// Runs `job` with every S3 store it opens from the config
/// ([`open_object_store`]) signing with `credentials` instead of the
/// standard AWS chain (the config holds no keys, by design). For callers
/// that must not change the process environment to pass keys: tests, which
/// run in parallel threads of one process. The keys are scoped to `job`'s
/// own task: a task it spawns does not see them, and falls back on the
/// chain.
pub async fn with_s3_credentials<F: std::future::Future>(
    credentials: crate::AwsCredentials,
    job: F,
) -> F::Output {
    S3_CREDENTIALS.scope(credentials, job).await
}

/// Opens a configured object store by name. S3 credentials come from the
/// standard AWS chain (or [`with_s3_credentials`]). A store configured with
/// `object_lock` is checked to have it (one request).
pub async fn open_object_store(config: &Config, name: &str) -> Result<ObjectStore, JobError> {
    let cfg = config
        .object_store(name)
        .ok_or_else(|| JobError::Config(format!("no object store named {name:?}")))?;
    let objects = match &cfg.kind {
        ObjectStoreKind::Local { path } => ObjectStore::local(path.clone()).await?,
        ObjectStoreKind::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            timeout,
            lock,
        } => {
            ObjectStore::s3(S3Location {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                path_style: *path_style,
                attempt_timeout: *timeout,
                credentials: S3_CREDENTIALS.try_with(Clone::clone).ok(),
                lock: lock.map(|l| crate::ObjectLock {
                    mode: match l.mode {
                        drctl_config::ObjectLockMode::Governance => crate::LockMode::Governance,
                        drctl_config::ObjectLockMode::Compliance => crate::LockMode::Compliance,
                    },
                    retention: l.retention,
                }),
            })
            .await?
        }
    };
    // A store configured with a lock its bucket cannot give would fail
    // every write; say why before any.
    objects.check_lock().await?;
    Ok(objects)
}

/// The service's backup encryption key, when its policy names one.
pub fn backup_key(svc: &Service) -> Result<Option<crate::BackupKey>, JobError> {
    let Some(source) = svc.backup.as_ref().and_then(|p| p.encryption_key.as_ref()) else {
        return Ok(None);
    };
    let material = source
        .resolve()
        .map_err(|e| JobError::Config(e.to_string()))?;
    Ok(Some(crate::BackupKey::from_hex(material.expose())?))
}

fn service<'c>(config: &'c Config, name: &str) -> Result<&'c Service, JobError> {
    config
        .service(name)
        .ok_or_else(|| JobError::UnknownService(name.to_string()))
}

/// Names this process in leases: host, pid and a random part.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{}",
        host.trim(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

const BACKUP_LEASE_TTL: Duration = Duration::from_secs(120);

/// The lease a service's backup job holds while it runs.
fn backup_lease_name(service: &str) -> String {
    format!("backup:{service}")
}

/// Takes a backup of `service_name` per its policy; records it `running`
/// first, then `complete` or `failed`.
///
/// At most one backup of a service runs at a time, across processes: the
/// job holds the lease `backup:SERVICE` in the state store, renewed while it
/// runs. Holding it, the job knows no other backup of the service is alive,
/// so it marks earlier `running` records failed (their process died) and
/// aborts the multipart uploads they left behind.
pub async fn backup_service(
    config: &Config,
    store: &Store,
    service_name: &str,
    progress: impl FnMut(BackupProgress),
) -> Result<(BackupRecord, Manifest), JobError> {
    let svc = service(config, service_name)?;
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(svc.name.clone()))?;
    let objects = open_object_store(config, &policy.store).await?;
    let dsn = svc
        .postgres
        .get(&policy.from_region)
        .ok_or_else(|| {
            JobError::Config(format!(
                "service {:?} has no connection in {}",
                svc.name, policy.from_region
            ))
        })?
        .resolve()
        .map_err(|e| JobError::Config(e.to_string()))?;
    let req = BackupRequest {
        service: svc.name.clone(),
        region: policy.from_region.clone(),
        dsn: dsn.expose().to_string(),
        pg_bin: drctl_pg::find_pg_client_bin()?,
        compression_level: policy.compression_level,
        compression_threads: policy.compression_threads,
        store: objects,
        encryption: backup_key(svc)?,
    };
    let offsite = match &policy.offsite_store {
        Some(name) => Some((name.clone(), open_object_store(config, name).await?)),
        None => None,
    };
    let holder = holder_id();
    let Some(lease) = store
        .acquire_lease(
            &backup_lease_name(&svc.name),
            &holder,
            BACKUP_LEASE_TTL,
            store.clock().await?,
        )
        .await?
    else {
        let current = store.backups(Some(&svc.name), 1).await?.into_iter().next();
        return Err(JobError::Busy {
            service: svc.name.clone(),
            holder: current
                .map(|b| format!("backup {}", b.id))
                .unwrap_or_else(|| "another drctl".into()),
        });
    };
    let renewer = {
        let store = store.clone();
        let mut lease = lease.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BACKUP_LEASE_TTL / 4).await;
                let now = store.clock().await.unwrap_or_else(|_| Utc::now());
                if !store
                    .renew_lease(&mut lease, BACKUP_LEASE_TTL, now)
                    .await
                    .unwrap_or(false)
                {
                    tracing::warn!(lease = %lease.name, "lost the backup lease");
                    return;
                }
            }
        })
    };
    let result = backup_holding_lease(store, svc, policy, &req, offsite.as_ref(), progress).await;
    renewer.abort();
    let _ = store.release_lease(&lease).await;
    result
}

/// Copies a complete backup to the off-site store (objects first, manifest
/// last, as the original), verifies the copy there, and records the result.
/// A failed copy does not undo the backup: it is recorded and visible.
async fn copy_offsite(
    store: &Store,
    from: &ObjectStore,
    to: &ObjectStore,
    to_name: &str,
    service: &str,
    id: &str,
    expected: &Expected,
) -> Result<(), JobError> {
    store
        .backup_offsite(id, to_name, OffsiteStatus::Copying, None, Utc::now())
        .await?;
    let prefix = crate::backup_prefix(service, id);
    let copied: Result<(), crate::BackupError> =
        async {
            to.ensure_bucket().await?;
            let manifest_key = format!("{prefix}manifest.json");
            let manifest: Manifest = serde_json::from_slice(&from.get(&manifest_key).await?)
                .map_err(|e| crate::BackupError::Manifest {
                    key: manifest_key.clone(),
                    reason: e.to_string(),
                })?;
            for o in &manifest.objects {
                from.copy_to(&format!("{prefix}{}", o.key), to).await?;
            }
            from.copy_to(&manifest_key, to).await?;
            Ok(())
        }
        .await;
    let (status, error) = match copied {
        Err(e) => (OffsiteStatus::Failed, Some(format!("copy failed: {e}"))),
        Ok(()) => match verify_backup(to, service, id, expected).await {
            Ok((_, r)) if r.verified => (OffsiteStatus::Verified, None),
            Ok((_, r)) => (OffsiteStatus::Failed, r.reason),
            Err(e) => (OffsiteStatus::Failed, Some(e.to_string())),
        },
    };
    if let Some(e) = &error {
        tracing::warn!(%service, backup = %id, store = %to_name, error = %e, "off-site copy failed");
    }
    store
        .backup_offsite(id, to_name, status, error.as_deref(), Utc::now())
        .await?;
    Ok(())
}

async fn backup_holding_lease(
    store: &Store,
    svc: &Service,
    policy: &drctl_config::BackupPolicy,
    req: &BackupRequest,
    offsite: Option<&(String, ObjectStore)>,
    progress: impl FnMut(BackupProgress),
) -> Result<(BackupRecord, Manifest), JobError> {
    let interrupted = store
        .fail_interrupted_backups(&svc.name, Utc::now())
        .await?;
    // Sweeping is housekeeping: a store that cannot list uploads now fails
    // the backup below, where the failure is recorded against a backup id.
    let swept = match req
        .store
        .sweep_unfinished_uploads(&format!("{}/", svc.name))
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(service = %svc.name, error = %e, "could not sweep unfinished uploads; the next backup tries again");
            0
        }
    };
    if interrupted + swept as u64 > 0 {
        tracing::info!(service = %svc.name, interrupted, swept, "cleaned up after an interrupted backup");
    }
    let started = Utc::now();
    let id = new_backup_id(started);
    store
        .backup_started(&id, &svc.name, &policy.from_region, &policy.store, started)
        .await?;
    match run_backup(req, &id, started, progress).await {
        Ok(manifest) => {
            let object = &manifest.objects[0];
            let finish = BackupFinish {
                ended_at: Some(manifest.ended_at),
                timeline: manifest.timeline.map(i64::from),
                start_lsn: manifest.start_lsn.clone(),
                stop_lsn: manifest.stop_lsn.clone(),
                stored_bytes: Some(manifest.objects.iter().map(|o| o.size as i64).sum()),
                uncompressed_bytes: Some(object.uncompressed_size as i64),
                manifest: Some(serde_json::to_string(&manifest).expect("a manifest serializes")),
            };
            store.backup_completed(&id, &finish).await?;
            if let Some((name, to)) = offsite {
                let expected = Expected {
                    manifest: Some(manifest.clone()),
                    key: req.encryption.clone(),
                };
                copy_offsite(store, &req.store, to, name, &svc.name, &id, &expected).await?;
            }
            let record = store
                .backup(&id)
                .await?
                .ok_or_else(|| JobError::UnknownBackup(id.clone()))?;
            Ok((record, manifest))
        }
        Err(e) => {
            store.backup_failed(&id, Utc::now(), &e.to_string()).await?;
            Err(e.into())
        }
    }
}
/// What a recorded backup must be: the manifest recorded when it
/// completed, and its service's key as configured now (a backup whose key
/// is gone fails verification: it could not be restored). `Err`: why it
/// cannot be checked at all.
pub(crate) fn expected_for(config: &Config, record: &BackupRecord) -> Result<Expected, String> {
    let manifest = record.manifest.as_deref().ok_or_else(|| {
        format!(
            "backup {} has no manifest recorded in the state store to check the bucket's against",
            record.id
        )
    })?;
    let manifest: Manifest = serde_json::from_str(manifest).map_err(|e| {
        format!(
            "the manifest recorded for backup {} is unreadable: {e}",
            record.id
        )
    })?;
    let key = match config.service(&record.service) {
        Some(svc) => backup_key(svc).map_err(|e| {
            let encrypted = manifest
                .encryption_key_id
                .as_ref()
                .map(|id| format!("backup {} is encrypted with key {id}, and ", record.id))
                .unwrap_or_default();
            format!(
                "{encrypted}the backup key of service {} cannot be read: {e}",
                svc.name
            )
        })?,
        None => None,
    };
    Ok(Expected {
        manifest: Some(manifest),
        key,
    })
}

/// Applies the service's retention: decides with [`crate::plan_retention`],
/// records each deletion in the store, then deletes the objects (manifest
/// first, so a half-deleted backup is never listed as complete). Deletions
/// recorded earlier whose objects remain (a crash in between) are finished
/// too. With `dry_run`, only decides.
pub async fn apply_retention(
    config: &Config,
    store: &Store,
    service_name: &str,
    dry_run: bool,
) -> Result<crate::RetentionPlan, JobError> {
    let svc = service(config, service_name)?;
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(svc.name.clone()))?;
    let all = store.backups(Some(&svc.name), 100_000).await?;
    let candidates: Vec<crate::Candidate> = all
        .iter()
        .filter(|b| b.status == BackupStatus::Complete && b.deleted_at.is_none())
        .filter_map(|b| {
            Some(crate::Candidate {
                id: b.id.clone(),
                ended_at: b.ended_at?,
                verified: b.verification == Some(VerificationStatus::Verified),
                offsite_verified: b.offsite_status == Some(OffsiteStatus::Verified),
            })
        })
        .collect();
    let in_use: std::collections::HashSet<String> =
        store.backups_in_use(&svc.name).await?.into_iter().collect();
    let r = &policy.retention;
    let rule = crate::RetentionRule {
        keep_last: r.keep_last,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
    };
    let mut plan = crate::plan_retention(&candidates, rule, &in_use);
    // A backup whose objects are still locked is not deleted, nor even
    // marked: it stays listed (and restorable) until its lock ends.
    let stores: std::collections::HashMap<&str, &BackupRecord> =
        all.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut unlocked = Vec::new();
    for id in std::mem::take(&mut plan.delete) {
        match stores.get(id.as_str()) {
            Some(b) => match locked_until(config, b).await? {
                Some(until) => {
                    plan.waiting.insert(id, until);
                }
                None => unlocked.push(id),
            },
            None => unlocked.push(id),
        }
    }
    plan.delete = unlocked;
    if dry_run {
        return Ok(plan);
    }
    for id in &plan.delete {
        store.mark_backup_deleted(id, Utc::now()).await?;
    }
    // Every backup recorded deleted (now or by an earlier, interrupted pass).
    let deleted: Vec<BackupRecord> = store
        .backups(Some(&svc.name), 100_000)
        .await?
        .into_iter()
        .filter(|b| b.deleted_at.is_some())
        .collect();
    for b in deleted {
        let prefix = crate::backup_prefix(&b.service, &b.id);
        // The off-site copy has no retention of its own: it goes with the
        // original, or it would pile up for ever.
        for name in std::iter::once(&b.store).chain(b.offsite_store.as_ref()) {
            let objects = open_object_store(config, name).await?;
            // An object written after the manifest's lock was read (an
            // off-site copy's) may still be locked: the rest of this
            // backup waits for the next pass.
            let deleted = async {
                objects.delete(&format!("{prefix}manifest.json")).await?;
                for o in objects.list(&prefix).await? {
                    objects.delete(&o.key).await?;
                }
                Ok::<(), crate::BackupError>(())
            };
            match deleted.await {
                Ok(()) => {}
                Err(crate::BackupError::Locked { until, .. }) => {
                    plan.waiting.insert(b.id.clone(), until);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    if policy.wal_archive.is_some() {
        prune_wal(config, store, svc, &mut plan).await?;
    }
    Ok(plan)
}

/// A service's WAL archive, in its backup store, packed as its policy
/// says.
pub async fn wal_archive_of(
    config: &Config,
    svc: &Service,
) -> Result<crate::wal_archive::WalArchive, JobError> {
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(svc.name.clone()))?;
    Ok(crate::wal_archive::WalArchive {
        store: open_object_store(config, &policy.store).await?,
        service: svc.name.clone(),
        // PostgreSQL's default; a cluster initialised with another size
        // fails the record reader's check, naming the sizes.
        size: drctl_pg::wal::SegmentSize::DEFAULT,
        key: backup_key(svc)?,
        level: policy.compression_level,
    })
}

/// Deletes the archived WAL no retained backup needs: every segment wholly
/// before the oldest retained backup's start, so the restorable window
/// runs from that backup to now. Locked objects wait for a later pass.
/// Nothing is pruned while no backup is retained (the archive is then the
/// only copy of anything).
async fn prune_wal(
    config: &Config,
    store: &Store,
    svc: &Service,
    plan: &mut crate::RetentionPlan,
) -> Result<(), JobError> {
    let keep_from = store
        .backups(Some(&svc.name), 100_000)
        .await?
        .into_iter()
        .filter(|b| b.status == BackupStatus::Complete && b.deleted_at.is_none())
        .filter_map(|b| b.start_lsn.as_deref()?.parse::<drctl_pg::Lsn>().ok())
        .min();
    let Some(keep_from) = keep_from else {
        return Ok(());
    };
    let archive = wal_archive_of(config, svc).await?;
    let listing = archive.listing().await?;
    for object in crate::archive::prunable(&listing, keep_from, archive.size) {
        match archive.store.delete(&object.key).await {
            Ok(()) => plan.wal_deleted += 1,
            Err(crate::BackupError::Locked { .. }) => plan.wal_waiting += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// When the last lock on a backup's manifest ends, in its store and its
/// off-site copy; `None` when neither holds one now. The manifest is
/// written last, so its lock ends last.
async fn locked_until(
    config: &Config,
    b: &BackupRecord,
) -> Result<Option<Option<chrono::DateTime<Utc>>>, JobError> {
    let now = Utc::now();
    let mut until: Option<Option<chrono::DateTime<Utc>>> = None;
    for name in std::iter::once(&b.store).chain(b.offsite_store.as_ref()) {
        let objects = open_object_store(config, name).await?;
        if objects.lock().is_none() {
            continue;
        }
        let key = format!("{}manifest.json", crate::backup_prefix(&b.service, &b.id));
        match objects.lock_of(&key).await {
            Ok(Some(lock)) if lock.holds_at(now) => {
                until = Some(until.flatten().max(Some(lock.until)));
            }
            Ok(_) | Err(crate::BackupError::MissingObject(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0).unwrap()
    }

    /// A complete backup started at `hour`, verified at `verified` (if
    /// ever), with an off-site copy last checked at `offsite` (if any).
    fn backup(hour: u32, verified: Option<u32>, offsite: Option<u32>) -> BackupRecord {
        BackupRecord {
            id: format!("b{hour:02}"),
            service: "catalog".into(),
            region: "region-a".into(),
            store: "dr-bucket".into(),
            status: BackupStatus::Complete,
            started_at: at(hour),
            ended_at: Some(at(hour)),
            timeline: Some(1),
            start_lsn: None,
            stop_lsn: None,
            stored_bytes: None,
            uncompressed_bytes: None,
            manifest: None,
            error: None,
            verification: verified.map(|_| VerificationStatus::Verified),
            verified_at: verified.map(at),
            verification_error: None,
            deleted_at: None,
            offsite_store: offsite.map(|_| "dr-bucket-eu".into()),
            offsite_status: offsite.map(|_| OffsiteStatus::Verified),
            offsite_error: None,
            offsite_at: offsite.map(at),
        }
    }

    fn ids(list: Vec<&BackupRecord>) -> Vec<&str> {
        list.into_iter().map(|b| b.id.as_str()).collect()
    }

    #[test]
    fn the_newest_unverified_backup_comes_first_then_the_stalest_check() {
        let backups = [
            backup(12, None, Some(12)),
            backup(11, None, Some(11)),
            backup(10, Some(13), Some(10)),
            backup(9, Some(14), Some(14)),
        ];
        // b11 was never verified either, but b12 is newer; b11 is then the
        // stalest (never checked) of the rest.
        assert_eq!(ids(backups_to_verify(&backups)), ["b12", "b11"]);
    }

    #[test]
    fn an_offsite_copy_checked_long_ago_brings_its_backup_back_for_reverification() {
        // Hourly backups, each verified when it came: without re-verification
        // the copies of older backups would never be read again.
        let backups = [
            backup(12, Some(12), Some(12)),
            backup(11, Some(11), Some(11)),
            backup(10, Some(15), Some(10)),
        ];
        assert_eq!(ids(backups_to_verify(&backups)), ["b10"]);
        let without_copies = [backup(12, Some(12), None), backup(10, Some(15), None)];
        assert_eq!(ids(backups_to_verify(&without_copies)), ["b12"]);
    }

    #[test]
    fn a_lone_unverified_backup_is_verified_once_and_deleted_or_failed_ones_never() {
        let mut deleted = backup(9, Some(9), Some(9));
        deleted.deleted_at = Some(at(10));
        let mut failed = backup(8, None, None);
        failed.status = BackupStatus::Failed;
        let backups = [backup(12, None, Some(12)), deleted, failed];
        assert_eq!(ids(backups_to_verify(&backups)), ["b12"]);
        assert!(backups_to_verify(&[]).is_empty());
    }

    #[test]
    fn a_failed_offsite_copy_fails_the_verification_but_one_being_copied_does_not() {
        let ok = |verified| VerifyReport {
            backup_id: "b12".into(),
            verified,
            reason: (!verified).then(|| "catalog/b12/base.tar.zst: missing".into()),
            bytes_read: 42,
        };
        let v = |offsite| BackupVerification {
            backup_id: "b12".into(),
            original: ok(true),
            offsite,
        };
        let store = || "dr-bucket-eu".to_string();
        assert!(v(None).passed());
        assert!(v(Some(OffsiteCheck::Copying { store: store() })).passed());
        let failed = v(Some(OffsiteCheck::Checked {
            store: store(),
            report: ok(false),
        }));
        assert!(!failed.passed());
        assert_eq!(
            failed.summary(),
            "backup b12 verified (42 bytes re-read); off-site copy in dr-bucket-eu failed: catalog/b12/base.tar.zst: missing"
        );
        assert!(!v(Some(OffsiteCheck::Unreadable {
            store: store(),
            error: "connection refused".into()
        }))
        .passed());
    }
}
