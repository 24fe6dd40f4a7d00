//! Verification of recorded backups: the original in its own store, the
//! off-site copy, and which backups a scheduled run checks.

use super::*;

/// Verifies a recorded backup (its original, in the backup's own store) and
/// records the outcome. The off-site copy is left alone: see
/// [`verify_backup_and_offsite_copy`].
pub async fn verify_recorded_backup(
    config: &Config,
    store: &Store,
    backup_id: &str,
) -> Result<VerifyReport, JobError> {
    let record = recorded_backup(store, backup_id, "verify").await?;
    verify_original(config, store, &record).await
}

/// A recorded backup that has objects to verify or restore (`purpose`, for
/// the error): complete and not deleted. Verifying anything else would only
/// overwrite its record with a failure (a deleted backup's last
/// verification is history worth keeping); restoring it cannot work.
pub(crate) async fn recorded_backup(
    store: &Store,
    backup_id: &str,
    purpose: &str,
) -> Result<BackupRecord, JobError> {
    let record = store
        .backup(backup_id)
        .await?
        .ok_or_else(|| JobError::UnknownBackup(backup_id.to_string()))?;
    if record.deleted_at.is_some() {
        return Err(JobError::Config(format!(
            "backup {backup_id} was deleted by retention; nothing to {purpose}"
        )));
    }
    if record.status != BackupStatus::Complete {
        return Err(JobError::Config(format!(
            "backup {backup_id} is {}, not complete; nothing to {purpose}",
            record.status
        )));
    }
    Ok(record)
}

pub(crate) async fn verify_original(
    config: &Config,
    store: &Store,
    record: &BackupRecord,
) -> Result<VerifyReport, JobError> {
    let objects = open_object_store(config, &record.store).await?;
    let report = verify_stored_copy(config, &objects, record).await?;
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

/// Verifies one stored copy of a recorded backup. A fault in what is
/// stored — a missing object, a manifest that does not parse or does not
/// match the recorded one — is a failed report, and so is a key that is not
/// available; a store that cannot be read is an error (the copy may be fine).
pub(crate) async fn verify_stored_copy(
    config: &Config,
    objects: &ObjectStore,
    record: &BackupRecord,
) -> Result<VerifyReport, crate::BackupError> {
    let failed = |reason: String| VerifyReport {
        backup_id: record.id.clone(),
        verified: false,
        reason: Some(reason),
        bytes_read: 0,
    };
    let expected = match expected_for(config, record) {
        Ok(expected) => expected,
        Err(reason) => return Ok(failed(reason)),
    };
    match verify_backup(objects, &record.service, &record.id, &expected).await {
        Ok((_, report)) => Ok(report),
        Err(crate::BackupError::MissingObject(key)) => Ok(failed(format!("{key}: missing"))),
        Err(e @ crate::BackupError::Manifest { .. }) => Ok(failed(e.to_string())),
        Err(e) => Err(e),
    }
}

/// What became of a backup's off-site copy in a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OffsiteCheck {
    /// Re-read in `store`; the outcome is recorded on the backup.
    Checked { store: String, report: VerifyReport },
    /// The backup job is still writing the copy: checked on a later run.
    Copying { store: String },
    /// The copy could not be read (store unreachable or no longer
    /// configured); nothing recorded, since the copy itself may be fine.
    Unreadable { store: String, error: String },
}

/// A verification of a recorded backup: its original, then its off-site copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupVerification {
    pub backup_id: String,
    pub original: VerifyReport,
    /// `None`: the backup has no off-site copy.
    pub offsite: Option<OffsiteCheck>,
}

impl BackupVerification {
    /// The original verified, and the off-site copy too unless it is still
    /// being written.
    pub fn passed(&self) -> bool {
        self.original.verified
            && match &self.offsite {
                None | Some(OffsiteCheck::Copying { .. }) => true,
                Some(OffsiteCheck::Checked { report, .. }) => report.verified,
                Some(OffsiteCheck::Unreadable { .. }) => false,
            }
    }

    /// One line for logs and schedule runs.
    pub fn summary(&self) -> String {
        let outcome = |r: &VerifyReport| match &r.reason {
            None if r.verified => format!("verified ({} bytes re-read)", r.bytes_read),
            reason => format!("failed: {}", reason.as_deref().unwrap_or("unknown reason")),
        };
        let mut line = format!("backup {} {}", self.backup_id, outcome(&self.original));
        match &self.offsite {
            None => {}
            Some(OffsiteCheck::Checked { store, report }) => {
                line += &format!("; off-site copy in {store} {}", outcome(report))
            }
            Some(OffsiteCheck::Copying { store }) => {
                line += &format!("; off-site copy in {store} not checked: still being copied")
            }
            Some(OffsiteCheck::Unreadable { store, error }) => {
                line += &format!("; off-site copy in {store} not checked: {error}")
            }
        }
        line
    }
}

/// Verifies a recorded backup where it was written and, when it has one,
/// its off-site copy, recording each outcome on the backup: `verification`
/// for the original, `offsite_status`/`offsite_error` for the copy. Either
/// verified copy counts as proof for the cold tier's figures, restore
/// tests and `recover` (they read the off-site copy when the original's
/// store cannot give them the backup, see [`readable_copy`]); a failed copy
/// is recorded and visible, never proof.
///
/// The copy is checked even when the original's store cannot be read — that
/// is when it matters — and the original's error is returned after.
pub async fn verify_backup_and_offsite_copy(
    config: &Config,
    store: &Store,
    backup_id: &str,
) -> Result<BackupVerification, JobError> {
    let record = recorded_backup(store, backup_id, "verify").await?;
    let original = verify_original(config, store, &record).await;
    let offsite = match &record.offsite_store {
        Some(name) => Some(verify_offsite_copy(config, store, &record, name).await?),
        None => None,
    };
    if let Some(OffsiteCheck::Unreadable { store, error }) = &offsite {
        tracing::warn!(backup = %record.id, %store, %error, "could not re-read the off-site copy");
    }
    Ok(BackupVerification {
        backup_id: record.id,
        original: original?,
        offsite,
    })
}

pub(crate) async fn verify_offsite_copy(
    config: &Config,
    store: &Store,
    record: &BackupRecord,
    name: &str,
) -> Result<OffsiteCheck, JobError> {
    let unreadable = |error: String| OffsiteCheck::Unreadable {
        store: name.to_string(),
        error,
    };
    // `copying` is either a copy in progress (its backup job holds the
    // service's backup lease) or one whose process died: only the latter
    // is checked, and found as incomplete as it is.
    if record.offsite_status == Some(OffsiteStatus::Copying)
        && backup_job_running(store, &record.service).await?
    {
        return Ok(OffsiteCheck::Copying {
            store: name.to_string(),
        });
    }
    let objects = match open_object_store(config, name).await {
        Ok(objects) => objects,
        Err(e) => return Ok(unreadable(e.to_string())),
    };
    let report = match verify_stored_copy(config, &objects, record).await {
        Ok(report) => report,
        Err(e) => return Ok(unreadable(e.to_string())),
    };
    let status = if report.verified {
        OffsiteStatus::Verified
    } else {
        OffsiteStatus::Failed
    };
    if !report.verified {
        tracing::warn!(backup = %record.id, store = %name, reason = ?report.reason, "off-site copy failed verification");
    }
    store
        .backup_offsite(
            &record.id,
            name,
            status,
            report.reason.as_deref(),
            Utc::now(),
        )
        .await?;
    Ok(OffsiteCheck::Checked {
        store: name.to_string(),
        report,
    })
}

/// Whether a backup job of `service` is alive: it holds the service's
/// backup lease for as long as it runs, off-site copy included. Probing
/// takes the lease when it is free and gives it back at once.
pub(crate) async fn backup_job_running(store: &Store, service: &str) -> Result<bool, JobError> {
    let probe = Duration::from_secs(10);
    match store
        .acquire_lease(
            &backup_lease_name(service),
            &holder_id(),
            probe,
            store.clock().await?,
        )
        .await?
    {
        Some(lease) => {
            store.release_lease(&lease).await?;
            Ok(false)
        }
        None => Ok(true),
    }
}

/// The backups a scheduled verification checks, in order: the newest one
/// never verified (new backups get their proof first), then the one whose
/// original or off-site copy was checked longest ago (so every kept backup,
/// and its copy, is re-read in turn — stored bytes rot where nobody reads
/// them). At most two, never the same twice; none deleted or incomplete.
pub fn backups_to_verify(backups: &[BackupRecord]) -> Vec<&BackupRecord> {
    let live = || {
        backups
            .iter()
            .filter(|b| b.status == BackupStatus::Complete && b.deleted_at.is_none())
    };
    // Newest first; in `min_by_key`, never checked (`None`) sorts first
    // and ties go to the newer backup.
    let mut newest = live().collect::<Vec<_>>();
    newest.sort_by_key(|b| std::cmp::Reverse(b.started_at));
    let last_checked = |b: &BackupRecord| match &b.offsite_store {
        Some(_) => b.verified_at.min(b.offsite_at),
        None => b.verified_at,
    };
    let mut out = Vec::new();
    if let Some(fresh) = newest.iter().find(|b| b.verification.is_none()) {
        out.push(*fresh);
    }
    if let Some(stalest) = newest
        .iter()
        .filter(|b| !out.iter().any(|o| o.id == b.id))
        .min_by_key(|b| last_checked(b))
    {
        out.push(*stalest);
    }
    out
}

/// The verify schedule's job for one service: verifies the backups
/// [`backups_to_verify`] picks, each with its off-site copy.
pub async fn scheduled_verification(
    config: &Config,
    store: &Store,
    service_name: &str,
) -> Result<Vec<BackupVerification>, JobError> {
    let svc = service(config, service_name)?;
    let backups = store.backups(Some(&svc.name), 100_000).await?;
    let mut out = Vec::new();
    for backup in backups_to_verify(&backups) {
        out.push(verify_backup_and_offsite_copy(config, store, &backup.id).await?);
    }
    Ok(out)
}
