//! Operations: work started on request (through the API), with its state
//! and progress, so any client can follow it by id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::states::{OpStatus, OperationKind};
use crate::{query_error, Result, Store};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OperationRecord {
    pub id: String,
    /// A job (`backup`, `verify`, `restore_test`) or a journaled operation
    /// (see [`crate::StepRecord`]).
    pub kind: OperationKind,
    pub service: Option<String>,
    /// What it acts on besides the service (e.g. a backup id).
    pub target: Option<String>,
    /// `running`, `succeeded` or `failed`; journaled operations can also be
    /// `stopped` (a step failed; resumable).
    pub status: OpStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The latest progress report (JSON).
    pub progress: Option<String>,
    /// What it produced (JSON).
    pub result: Option<String>,
    pub error: Option<String>,
}

pub(crate) const COLUMNS: &str =
    "id, kind, service, target, status, started_at_us, ended_at_us, progress, result, error";

pub(crate) fn from_row(r: &AnyRow) -> std::result::Result<OperationRecord, sqlx::Error> {
    Ok(OperationRecord {
        id: r.try_get(0)?,
        kind: parse_column(r, 1, "kind")?,
        service: r.try_get(2)?,
        target: r.try_get(3)?,
        status: parse_column(r, 4, "status")?,
        started_at: from_us(r.try_get(5)?),
        ended_at: r.try_get::<Option<i64>, _>(6)?.map(from_us),
        progress: r.try_get(7)?,
        result: r.try_get(8)?,
        error: r.try_get(9)?,
    })
}

/// A state column, parsed into its enum: a name no drctl wrote is a decode
/// error naming the column, not a silent default.
pub(crate) fn parse_column<T: std::str::FromStr>(
    r: &AnyRow,
    index: usize,
    column: &str,
) -> std::result::Result<T, sqlx::Error> {
    let text: String = r.try_get(index)?;
    text.parse().map_err(|_| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!("{text:?} is not a known {column}").into(),
    })
}

impl Store {
    pub async fn operation_started(
        &self,
        id: &str,
        kind: OperationKind,
        service: Option<&str>,
        target: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO operations (id, kind, service, target, status, started_at_us) VALUES ($1, $2, $3, $4, 'running', $5)")
            .bind(id)
            .bind(kind)
            .bind(service)
            .bind(target)
            .bind(to_us(at))
            .execute(self.pool())
            .await
            .map_err(query_error("recording an operation start"))?;
        Ok(())
    }

    pub async fn operation_progress(&self, id: &str, progress: &str) -> Result<()> {
        sqlx::query("UPDATE operations SET progress = $2 WHERE id = $1 AND status = 'running'")
            .bind(id)
            .bind(progress)
            .execute(self.pool())
            .await
            .map_err(query_error("recording operation progress"))?;
        Ok(())
    }

    pub async fn operation_finished(
        &self,
        id: &str,
        at: DateTime<Utc>,
        result: std::result::Result<&str, &str>,
    ) -> Result<()> {
        let (status, result, error) = match result {
            Ok(r) => (OpStatus::Succeeded, Some(r), None),
            Err(e) => (OpStatus::Failed, None, Some(e)),
        };
        sqlx::query("UPDATE operations SET status = $2, ended_at_us = $3, result = $4, error = $5 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(to_us(at))
            .bind(result)
            .bind(error)
            .execute(self.pool())
            .await
            .map_err(query_error("recording an operation outcome"))?;
        Ok(())
    }

    pub async fn operation(&self, id: &str) -> Result<Option<OperationRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM operations WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("reading an operation"))?;
        crate::decode_row(row, from_row, "decoding an operation")
    }

    pub async fn operations(&self, limit: u32) -> Result<Vec<OperationRecord>> {
        self.operations_in(None, None, None, None, limit).await
    }

    /// Operations started in `[since, until)`, newest first; `kind` and
    /// `service` narrow them.
    pub async fn operations_in(
        &self,
        kind: Option<OperationKind>,
        service: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<OperationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations WHERE ($2 = '' OR kind = $2) \
             AND ($3 = '' OR service = $3) AND started_at_us >= $4 AND started_at_us < $5 \
             ORDER BY started_at_us DESC LIMIT $1"
        ))
        .bind(limit as i64)
        .bind(kind.map_or("", OperationKind::as_str))
        .bind(service.unwrap_or(""))
        .bind(since.map(to_us).unwrap_or(i64::MIN))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("listing operations"))?;
        crate::decode_rows(&rows, from_row, "decoding operations")
    }

    /// How many operations ended, per kind and status (a counter: operations
    /// are never deleted). Running ones are not counted.
    pub async fn operation_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT kind, status, count(*) FROM operations WHERE status <> 'running' \
             GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("counting operations"))?;
        crate::decode_rows(
            &rows,
            |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            "decoding operation counts",
        )
    }
}
