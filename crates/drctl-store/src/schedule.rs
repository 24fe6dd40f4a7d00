//! Scheduled runs: what was due, what ran, what was missed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::states::{ScheduleRunStatus, ScheduledJob};
use crate::{query_error, Result, Store};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScheduleRun {
    pub service: String,
    pub job: ScheduledJob,
    pub due_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: ScheduleRunStatus,
    pub detail: Option<String>,
}

impl Store {
    /// Records a scheduled run; a run already recorded for the same due
    /// time is updated (so recording is idempotent).
    pub async fn record_schedule_run(&self, r: &ScheduleRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedule_runs (service, job, due_at_us, started_at_us, ended_at_us, status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (service, job, due_at_us) DO UPDATE SET started_at_us = excluded.started_at_us, \
                 ended_at_us = excluded.ended_at_us, status = excluded.status, detail = excluded.detail",
        )
        .bind(&r.service)
        .bind(r.job)
        .bind(to_us(r.due_at))
        .bind(r.started_at.map(to_us))
        .bind(r.ended_at.map(to_us))
        .bind(r.status)
        .bind(&r.detail)
        .execute(self.pool())
        .await
        .map_err(query_error("recording a scheduled run"))?;
        Ok(())
    }

    /// The latest due time handled for a service's job.
    pub async fn last_schedule_due(
        &self,
        service: &str,
        job: ScheduledJob,
    ) -> Result<Option<DateTime<Utc>>> {
        let row =
            sqlx::query("SELECT max(due_at_us) FROM schedule_runs WHERE service = $1 AND job = $2")
                .bind(service)
                .bind(job)
                .fetch_one(self.pool())
                .await
                .map_err(query_error("reading scheduled runs"))?;
        let v: Option<i64> = row
            .try_get(0)
            .map_err(query_error("decoding scheduled runs"))?;
        Ok(v.map(from_us))
    }

    /// Scheduled runs, newest first.
    pub async fn schedule_runs(
        &self,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>> {
        self.schedule_runs_in(service, None, None, limit).await
    }

    /// Runs due in `[since, until)`, newest first.
    pub async fn schedule_runs_in(
        &self,
        service: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>> {
        let rows = sqlx::query(
            "SELECT service, job, due_at_us, started_at_us, ended_at_us, status, detail FROM schedule_runs \
             WHERE ($1 = '' OR service = $1) AND due_at_us >= $3 AND due_at_us < $4 \
             ORDER BY due_at_us DESC LIMIT $2",
        )
        .bind(service.unwrap_or(""))
        .bind(limit as i64)
        .bind(since.map(to_us).unwrap_or(i64::MIN))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("listing scheduled runs"))?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRun {
                    service: r.try_get(0)?,
                    job: r.try_get(1)?,
                    due_at: from_us(r.try_get(2)?),
                    started_at: r.try_get::<Option<i64>, _>(3)?.map(from_us),
                    ended_at: r.try_get::<Option<i64>, _>(4)?.map(from_us),
                    status: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(query_error("decoding scheduled runs"))
    }
}
