//! Backups and restore tests as recorded evidence.
//!
//! A backup is recorded `running` before its first byte goes to the object
//! store and finished after, so a crash leaves a `running` row the next run
//! can see (and mark failed), never a backup that looks complete.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::states::{BackupStatus, OffsiteStatus, RestoreTestStatus, VerificationStatus};
use crate::{query_error, Result, Store};

/// A backup as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BackupRecord {
    pub id: String,
    pub service: String,
    pub region: String,
    /// The object store's name in the config.
    pub store: String,
    pub status: BackupStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub timeline: Option<i64>,
    pub start_lsn: Option<String>,
    pub stop_lsn: Option<String>,
    pub stored_bytes: Option<i64>,
    pub uncompressed_bytes: Option<i64>,
    /// The manifest as written to the object store (JSON).
    pub manifest: Option<String>,
    pub error: Option<String>,
    /// `None` until verified.
    pub verification: Option<VerificationStatus>,
    pub verified_at: Option<DateTime<Utc>>,
    pub verification_error: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The second store the backup is copied to, if any.
    pub offsite_store: Option<String>,
    pub offsite_status: Option<OffsiteStatus>,
    pub offsite_error: Option<String>,
    pub offsite_at: Option<DateTime<Utc>>,
}

/// What a finished backup adds to its record.
#[derive(Clone, Debug, Default)]
pub struct BackupFinish {
    pub ended_at: Option<DateTime<Utc>>,
    pub timeline: Option<i64>,
    pub start_lsn: Option<String>,
    pub stop_lsn: Option<String>,
    pub stored_bytes: Option<i64>,
    pub uncompressed_bytes: Option<i64>,
    pub manifest: Option<String>,
}

/// A restore test as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RestoreTestRecord {
    pub id: String,
    pub service: String,
    pub backup_id: String,
    pub status: RestoreTestStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// From the start of the restore until PostgreSQL answered: RTO evidence.
    pub time_to_ready_us: Option<i64>,
    /// Validation query results (JSON).
    pub results: Option<String>,
    pub error: Option<String>,
}

const BACKUP_COLUMNS: &str = "id, service, region, store, status, started_at_us, ended_at_us, timeline, \
    start_lsn, stop_lsn, stored_bytes, uncompressed_bytes, manifest, error, verification, verified_at_us, \
    verification_error, deleted_at_us, offsite_store, offsite_status, offsite_error, offsite_at_us";

fn backup_from_row(r: &AnyRow) -> std::result::Result<BackupRecord, sqlx::Error> {
    Ok(BackupRecord {
        id: r.try_get(0)?,
        service: r.try_get(1)?,
        region: r.try_get(2)?,
        store: r.try_get(3)?,
        status: r.try_get(4)?,
        started_at: from_us(r.try_get(5)?),
        ended_at: r.try_get::<Option<i64>, _>(6)?.map(from_us),
        timeline: r.try_get(7)?,
        start_lsn: r.try_get(8)?,
        stop_lsn: r.try_get(9)?,
        stored_bytes: r.try_get(10)?,
        uncompressed_bytes: r.try_get(11)?,
        manifest: r.try_get(12)?,
        error: r.try_get(13)?,
        verification: r.try_get(14)?,
        verified_at: r.try_get::<Option<i64>, _>(15)?.map(from_us),
        verification_error: r.try_get(16)?,
        deleted_at: r.try_get::<Option<i64>, _>(17)?.map(from_us),
        offsite_store: r.try_get(18)?,
        offsite_status: r.try_get(19)?,
        offsite_error: r.try_get(20)?,
        offsite_at: r.try_get::<Option<i64>, _>(21)?.map(from_us),
    })
}

const RESTORE_COLUMNS: &str =
    "id, service, backup_id, status, started_at_us, ended_at_us, time_to_ready_us, results, error";

fn restore_from_row(r: &AnyRow) -> std::result::Result<RestoreTestRecord, sqlx::Error> {
    Ok(RestoreTestRecord {
        id: r.try_get(0)?,
        service: r.try_get(1)?,
        backup_id: r.try_get(2)?,
        status: r.try_get(3)?,
        started_at: from_us(r.try_get(4)?),
        ended_at: r.try_get::<Option<i64>, _>(5)?.map(from_us),
        time_to_ready_us: r.try_get(6)?,
        results: r.try_get(7)?,
        error: r.try_get(8)?,
    })
}

impl Store {
    /// Records a backup about to start.
    pub async fn backup_started(
        &self,
        id: &str,
        service: &str,
        region: &str,
        store: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO backups (id, service, region, store, status, started_at_us) VALUES ($1, $2, $3, $4, 'running', $5)",
        )
        .bind(id)
        .bind(service)
        .bind(region)
        .bind(store)
        .bind(to_us(at))
        .execute(self.pool())
        .await
        .map_err(query_error("recording a backup start"))?;
        Ok(())
    }

    /// Records a backup complete, with what its manifest says.
    pub async fn backup_completed(&self, id: &str, f: &BackupFinish) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET status = 'complete', ended_at_us = $2, timeline = $3, start_lsn = $4, stop_lsn = $5, \
             stored_bytes = $6, uncompressed_bytes = $7, manifest = $8 WHERE id = $1",
        )
        .bind(id)
        .bind(f.ended_at.map(to_us))
        .bind(f.timeline)
        .bind(&f.start_lsn)
        .bind(&f.stop_lsn)
        .bind(f.stored_bytes)
        .bind(f.uncompressed_bytes)
        .bind(&f.manifest)
        .execute(self.pool())
        .await
        .map_err(query_error("recording a backup completion"))?;
        Ok(())
    }

    /// Records a backup failed, with the reason.
    pub async fn backup_failed(&self, id: &str, at: DateTime<Utc>, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET status = 'failed', ended_at_us = $2, error = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(to_us(at))
        .bind(error)
        .execute(self.pool())
        .await
        .map_err(query_error("recording a backup failure"))?;
        Ok(())
    }

    /// Records the outcome of a verification.
    pub async fn backup_verification(
        &self,
        id: &str,
        at: DateTime<Utc>,
        verified: bool,
        reason: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE backups SET verification = $2, verified_at_us = $3, verification_error = $4 WHERE id = $1")
            .bind(id)
            .bind(if verified {
                VerificationStatus::Verified
            } else {
                VerificationStatus::Failed
            })
            .bind(to_us(at))
            .bind(reason)
            .execute(self.pool())
            .await
            .map_err(query_error("recording a verification"))?;
        Ok(())
    }

    pub async fn backup(&self, id: &str) -> Result<Option<BackupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("reading a backup"))?;
        crate::decode_row(row, backup_from_row, "decoding a backup")
    }

    /// Backups, newest first, of one service or all.
    pub async fn backups(&self, service: Option<&str>, limit: u32) -> Result<Vec<BackupRecord>> {
        self.backups_in(service, None, None, limit).await
    }

    /// Backups started in `[since, until)`, newest first.
    pub async fn backups_in(
        &self,
        service: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<BackupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE ($1 = '' OR service = $1) \
             AND started_at_us >= $3 AND started_at_us < $4 \
             ORDER BY started_at_us DESC, id DESC LIMIT $2"
        ))
        .bind(service.unwrap_or(""))
        .bind(limit as i64)
        .bind(since.map(to_us).unwrap_or(i64::MIN))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("listing backups"))?;
        crate::decode_rows(&rows, backup_from_row, "decoding backups")
    }

    /// The newest complete, not deleted backup of a service with a verified
    /// copy: the original or the off-site one (restores read the off-site
    /// copy when the original's store cannot give them the backup).
    pub async fn newest_verified_backup(&self, service: &str) -> Result<Option<BackupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE service = $1 AND status = 'complete' \
             AND (verification = 'verified' OR offsite_status = 'verified') AND deleted_at_us IS NULL \
             ORDER BY ended_at_us DESC LIMIT 1"
        ))
        .bind(service)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("reading the newest verified backup"))?;
        crate::decode_row(row, backup_from_row, "decoding a backup")
    }

    /// The oldest `limit` complete, retained backups of a service that did
    /// not fail verification, oldest first: where a restore to a point can
    /// start (the restorable window's beginning).
    pub async fn oldest_complete_backups(
        &self,
        service: &str,
        limit: i64,
    ) -> Result<Vec<BackupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE service = $1 AND status = 'complete' \
             AND (verification IS NULL OR verification <> 'failed') AND deleted_at_us IS NULL \
             ORDER BY ended_at_us ASC LIMIT $2"
        ))
        .bind(service)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading the oldest backups"))?;
        crate::decode_rows(&rows, backup_from_row, "decoding a backup")
    }

    /// The newest backup of a service whose restore test passed (strict mode).
    pub async fn newest_restore_tested_backup(
        &self,
        service: &str,
    ) -> Result<Option<BackupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups b WHERE service = $1 AND status = 'complete' \
             AND (verification = 'verified' OR offsite_status = 'verified') AND deleted_at_us IS NULL \
             AND EXISTS (SELECT 1 FROM restore_tests t WHERE t.backup_id = b.id AND t.status = 'passed') \
             ORDER BY ended_at_us DESC LIMIT 1"
        ))
        .bind(service)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("reading the newest restore-tested backup"))?;
        crate::decode_row(row, backup_from_row, "decoding a backup")
    }

    /// Records the state of a backup's off-site copy.
    pub async fn backup_offsite(
        &self,
        id: &str,
        store: &str,
        status: OffsiteStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET offsite_store = $2, offsite_status = $3, offsite_error = $4, offsite_at_us = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(store)
        .bind(status)
        .bind(error)
        .bind(to_us(at))
        .execute(self.pool())
        .await
        .map_err(query_error("recording an off-site copy"))?;
        Ok(())
    }

    /// Records a backup deleted by retention, before its objects go: a crash
    /// between the two leaves a record that says deleted and objects a later
    /// pass removes, never a listed backup without its objects.
    pub async fn mark_backup_deleted(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET deleted_at_us = $2 WHERE id = $1 AND deleted_at_us IS NULL",
        )
        .bind(id)
        .bind(to_us(at))
        .execute(self.pool())
        .await
        .map_err(query_error("recording a backup deletion"))?;
        Ok(())
    }

    /// Backups restore tests are reading right now.
    pub async fn backups_in_use(&self, service: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT backup_id FROM restore_tests WHERE service = $1 AND status = 'running'",
        )
        .bind(service)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading running restore tests"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn restore_test_started(
        &self,
        id: &str,
        service: &str,
        backup_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO restore_tests (id, service, backup_id, status, started_at_us) VALUES ($1, $2, $3, 'running', $4)",
        )
        .bind(id)
        .bind(service)
        .bind(backup_id)
        .bind(to_us(at))
        .execute(self.pool())
        .await
        .map_err(query_error("recording a restore test start"))?;
        Ok(())
    }

    /// Records a restore test's outcome.
    pub async fn restore_test_finished(
        &self,
        id: &str,
        at: DateTime<Utc>,
        passed: bool,
        time_to_ready_us: Option<i64>,
        results: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE restore_tests SET status = $2, ended_at_us = $3, time_to_ready_us = $4, results = $5, error = $6 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(if passed {
            RestoreTestStatus::Passed
        } else {
            RestoreTestStatus::Failed
        })
        .bind(to_us(at))
        .bind(time_to_ready_us)
        .bind(results)
        .bind(error)
        .execute(self.pool())
        .await
        .map_err(query_error("recording a restore test outcome"))?;
        Ok(())
    }

    /// Restore tests, newest first, of one service or all.
    pub async fn restore_tests(
        &self,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RestoreTestRecord>> {
        self.restore_tests_in(service, None, None, limit).await
    }

    /// Restore tests started in `[since, until)`, newest first.
    pub async fn restore_tests_in(
        &self,
        service: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<RestoreTestRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RESTORE_COLUMNS} FROM restore_tests WHERE ($1 = '' OR service = $1) \
             AND started_at_us >= $3 AND started_at_us < $4 \
             ORDER BY started_at_us DESC, id DESC LIMIT $2"
        ))
        .bind(service.unwrap_or(""))
        .bind(limit as i64)
        .bind(since.map(to_us).unwrap_or(i64::MIN))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("listing restore tests"))?;
        crate::decode_rows(&rows, restore_from_row, "decoding restore tests")
    }
}
