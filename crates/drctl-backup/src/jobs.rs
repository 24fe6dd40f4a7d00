//! Backup jobs as drctl runs them for a configured service: resolve the
//! service's backup policy and object store, record the job in the state
//! store before and after, run it. The CLI and (later) the scheduler and the
//! API call these same functions.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use drctl_config::{Config, ObjectStoreKind, Service};
use drctl_store::{BackupFinish, BackupRecord, RestoreTestRecord, Store};

use crate::{
    new_backup_id, run_backup, run_restore_test, verify_backup, BackupProgress, BackupRequest,
    Manifest, ObjectStore, RestorePhase, RestoreTestOutcome, RestoreTestRequest, S3Location,
    VerifyReport,
};

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

/// Opens a configured object store by name.
pub async fn open_object_store(config: &Config, name: &str) -> Result<ObjectStore, JobError> {
    let cfg = config
        .object_store(name)
        .ok_or_else(|| JobError::Config(format!("no object store named {name:?}")))?;
    Ok(match &cfg.kind {
        ObjectStoreKind::Local { path } => ObjectStore::local(path.clone()).await?,
        ObjectStoreKind::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
        } => {
            ObjectStore::s3(S3Location {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                path_style: *path_style,
            })
            .await?
        }
    })
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
        pg_bin: drctl_pg::find_pg_bin()?,
        compression_level: policy.compression_level,
        store: objects,
        encryption: backup_key(svc)?,
    };
    let offsite = match &policy.offsite_store {
        Some(name) => Some((name.clone(), open_object_store(config, name).await?)),
        None => None,
    };
    let lease_name = format!("backup:{}", svc.name);
    let holder = holder_id();
    let Some(lease) = store
        .acquire_lease(&lease_name, &holder, BACKUP_LEASE_TTL, Utc::now())
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
                if !store
                    .renew_lease(&mut lease, BACKUP_LEASE_TTL, Utc::now())
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
) -> Result<(), JobError> {
    store
        .backup_offsite(id, to_name, "copying", None, Utc::now())
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
        Err(e) => ("failed", Some(format!("copy failed: {e}"))),
        Ok(()) => match verify_backup(to, service, id).await {
            Ok((_, r)) if r.verified => ("verified", None),
            Ok((_, r)) => ("failed", r.reason),
            Err(e) => ("failed", Some(e.to_string())),
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
    let swept = req
        .store
        .sweep_unfinished_uploads(&format!("{}/", svc.name))
        .await?;
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
                copy_offsite(store, &req.store, to, name, &svc.name, &id).await?;
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

/// Verifies a recorded backup and records the outcome.
pub async fn verify_recorded_backup(
    config: &Config,
    store: &Store,
    backup_id: &str,
) -> Result<VerifyReport, JobError> {
    let record = store
        .backup(backup_id)
        .await?
        .ok_or_else(|| JobError::UnknownBackup(backup_id.to_string()))?;
    let objects = open_object_store(config, &record.store).await?;
    let report = match verify_backup(&objects, &record.service, &record.id).await {
        Ok((_, report)) => report,
        Err(crate::BackupError::MissingObject(key)) => VerifyReport {
            backup_id: record.id.clone(),
            verified: false,
            reason: Some(format!("{key}: missing")),
            bytes_read: 0,
        },
        Err(e) => return Err(e.into()),
    };
    store
        .backup_verification(
            &record.id,
            Utc::now(),
            report.verified,
            report.reason.as_deref(),
        )
        .await?;
    Ok(report)
}

/// The newest recorded backup of a service that completed (to verify).
pub async fn latest_complete_backup(
    store: &Store,
    service: &str,
) -> Result<BackupRecord, JobError> {
    store
        .backups(Some(service), 1000)
        .await?
        .into_iter()
        .find(|b| b.status == "complete" && b.deleted_at.is_none())
        .ok_or_else(|| JobError::NoVerifiedBackup(service.to_string()))
}

/// Restores a recorded backup into `target` (a new directory) and leaves it
/// there: the recovery path when every replica carries the damage. The
/// backup is verified first; an unverifiable one is refused.
pub async fn restore_recorded_backup(
    config: &Config,
    store: &Store,
    backup_id: &str,
    target: &std::path::Path,
) -> Result<Manifest, JobError> {
    let record = store
        .backup(backup_id)
        .await?
        .ok_or_else(|| JobError::UnknownBackup(backup_id.to_string()))?;
    if record.deleted_at.is_some() {
        return Err(JobError::Config(format!(
            "backup {backup_id} was deleted by retention"
        )));
    }
    let objects = open_object_store(config, &record.store).await?;
    let key = config
        .service(&record.service)
        .map(backup_key)
        .transpose()?
        .flatten();
    Ok(crate::restore_backup(&objects, &record.service, &record.id, target, key.as_ref()).await?)
}

/// Restore-tests a backup of a service (the newest verified one unless
/// `backup_id` names another) and records it.
pub async fn restore_test_service(
    config: &Config,
    store: &Store,
    service_name: &str,
    backup_id: Option<&str>,
    scratch_root: PathBuf,
    phase: impl FnMut(RestorePhase),
) -> Result<(RestoreTestRecord, RestoreTestOutcome), JobError> {
    let svc = service(config, service_name)?;
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(svc.name.clone()))?;
    let backup = match backup_id {
        Some(id) => store
            .backup(id)
            .await?
            .filter(|b| b.service == svc.name)
            .ok_or_else(|| JobError::UnknownBackup(id.to_string()))?,
        None => store
            .newest_verified_backup(&svc.name)
            .await?
            .ok_or_else(|| JobError::NoVerifiedBackup(svc.name.clone()))?,
    };
    let objects = open_object_store(config, &backup.store).await?;
    let database = svc
        .postgres
        .get(&policy.from_region)
        .and_then(|d| d.resolve().ok())
        .and_then(|dsn| {
            dsn.expose()
                .parse::<sqlx::postgres::PgConnectOptions>()
                .ok()
        })
        .and_then(|o| o.get_database().map(str::to_string))
        .unwrap_or_else(|| "postgres".to_string());
    let req = RestoreTestRequest {
        service: svc.name.clone(),
        backup_id: backup.id.clone(),
        store: objects,
        pg_bin: drctl_pg::find_pg_bin()?,
        scratch_root,
        database,
        validation_queries: policy.validation_queries.clone(),
        key: backup_key(svc)?,
    };
    let id = format!("rt-{}", new_backup_id(Utc::now()));
    store
        .restore_test_started(&id, &svc.name, &backup.id, Utc::now())
        .await?;
    let outcome = run_restore_test(&req, phase).await;
    let results = serde_json::to_string(&outcome.queries).expect("results serialize");
    store
        .restore_test_finished(
            &id,
            Utc::now(),
            outcome.passed,
            outcome
                .time_to_ready
                .map(|d: Duration| d.as_micros() as i64),
            Some(&results),
            outcome.error.as_deref(),
        )
        .await?;
    let record = store
        .restore_tests(Some(&svc.name), 1)
        .await?
        .into_iter()
        .next()
        .expect("just recorded");
    Ok((record, outcome))
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
        .filter(|b| b.status == "complete" && b.deleted_at.is_none())
        .filter_map(|b| {
            Some(crate::Candidate {
                id: b.id.clone(),
                ended_at: b.ended_at?,
                verified: b.verification.as_deref() == Some("verified"),
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
    let plan = crate::plan_retention(&candidates, rule, &in_use);
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
        let objects = open_object_store(config, &b.store).await?;
        let prefix = crate::backup_prefix(&b.service, &b.id);
        objects.delete(&format!("{prefix}manifest.json")).await?;
        for o in objects.list(&prefix).await? {
            objects.delete(&o.key).await?;
        }
    }
    Ok(plan)
}
