//! The failover engine's journal: operations that change which region is
//! primary (failover, switchover, drill), their steps, and the current
//! primary region of each cluster.
//!
//! Every write here is *fenced*: it happens only if the writer still holds
//! the named lease with the token it was given (one statement, so there is
//! no gap between the check and the write). A driver that lost its lease —
//! paused by SIGSTOP, cut off from the store, or simply slow — gets
//! [`StoreError::LeaseLost`] and must stop; the driver that took over owns
//! the journal from then on.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::operation::OperationRecord;
use crate::states::{OpStatus, OperationKind, StepState};
use crate::{query_error, Backend, Lease, Result, Store, StoreError};

/// One step of an operation as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    pub operation_id: String,
    pub step: String,
    /// Position of the step in the operation's plan.
    pub seq: i64,
    /// `started`, `done` or `failed`.
    pub status: StepState,
    /// How many times the step was started (more than 1 after a resume or
    /// a retry).
    pub attempts: i64,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// What the step produced (JSON), the only input later steps get.
    pub output: Option<String>,
    pub error: Option<String>,
    /// Which drctl process ran it last.
    pub driver: String,
    pub lease_token: i64,
}

/// The region holding a cluster's writable primary, as last promoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterRole {
    pub cluster: String,
    pub primary_region: String,
    pub since: DateTime<Utc>,
    pub operation_id: Option<String>,
}

const STEP_COLUMNS: &str = "operation_id, step, seq, status, attempts, started_at_us, \
     ended_at_us, output, error, driver, lease_token";

fn step_from_row(r: &AnyRow) -> std::result::Result<StepRecord, sqlx::Error> {
    Ok(StepRecord {
        operation_id: r.try_get(0)?,
        step: r.try_get(1)?,
        seq: r.try_get(2)?,
        status: crate::operation::parse_column(r, 3, "status")?,
        attempts: r.try_get(4)?,
        started_at: from_us(r.try_get(5)?),
        ended_at: r.try_get::<Option<i64>, _>(6)?.map(from_us),
        output: r.try_get(7)?,
        error: r.try_get(8)?,
        driver: r.try_get(9)?,
        lease_token: r.try_get(10)?,
    })
}

fn role_from_row(r: &AnyRow) -> std::result::Result<ClusterRole, sqlx::Error> {
    Ok(ClusterRole {
        cluster: r.try_get(0)?,
        primary_region: r.try_get(1)?,
        since: from_us(r.try_get(2)?),
        operation_id: r.try_get(3)?,
    })
}

/// The condition every fenced write carries: `$L1` lease name, `$L2`
/// holder, `$L3` token, numbered by the caller.
///
/// On PostgreSQL the lease row is locked (`FOR SHARE`) by the check: under
/// READ COMMITTED a plain `EXISTS` reads the statement's snapshot, so a
/// takeover committed while the write waited (on a row lock, say) would not
/// stop it, and the old holder's write would land after the new holder
/// took over. Locked, a takeover waits for the write to commit, or the
/// write re-reads the taken lease and does nothing. SQLite runs one writer
/// at a time, so its check and write cannot interleave with a takeover.
fn held(backend: Backend, name: usize, holder: usize, token: usize) -> String {
    let lock = match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    };
    format!(
        "EXISTS (SELECT 1 FROM leases WHERE name = ${name} AND holder = ${holder} AND token = ${token}{lock})"
    )
}

/// Kinds of operation the journal drives, as an SQL list of their stored
/// names (from the one list of kinds, [`OperationKind`]).
fn journaled_kinds() -> String {
    use strum::VariantArray;
    let names: Vec<String> = OperationKind::VARIANTS
        .iter()
        .filter(|k| k.is_journaled())
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

impl Store {
    fn lease_lost(lease: &Lease) -> StoreError {
        StoreError::LeaseLost {
            name: lease.name.clone(),
            token: lease.token,
        }
    }

    /// Binds the lease (name, holder, token: the last three parameters of
    /// every fenced statement) and runs it; no row written means the lease
    /// is held by someone else now.
    async fn fenced<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        lease: &'q Lease,
        during: &'static str,
    ) -> Result<()> {
        let done = query
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(self.pool())
            .await
            .map_err(query_error(during))?;
        if done.rows_affected() == 0 {
            Err(Self::lease_lost(lease))
        } else {
            Ok(())
        }
    }

    /// Records a new journaled operation (`running`), under `lease`.
    #[allow(clippy::too_many_arguments)]
    pub async fn journal_operation_created(
        &self,
        lease: &Lease,
        id: &str,
        kind: OperationKind,
        service: &str,
        cluster: &str,
        params: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO operations (id, kind, service, target, status, started_at_us, params) \
             SELECT $1, $2, $3, $4, 'running', $5, $6 WHERE {}",
            held(self.backend(), 7, 8, 9)
        );
        let query = sqlx::query(&sql)
            .bind(id)
            .bind(kind)
            .bind(service)
            .bind(cluster)
            .bind(to_us(at))
            .bind(params);
        self.fenced(query, lease, "recording an operation").await
    }

    /// The operation on `cluster` of one of `kinds` that is not finished
    /// (`running` or `stopped`), if any: the one a new request must not race.
    pub async fn unfinished_operation(
        &self,
        cluster: &str,
        kinds: &[OperationKind],
    ) -> Result<Option<OperationRecord>> {
        let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT {} FROM operations WHERE target = $1 AND kind IN ({}) \
             AND status IN ('running', 'stopped') ORDER BY started_at_us DESC LIMIT 1",
            crate::operation::COLUMNS,
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(cluster);
        for kind in kinds {
            query = query.bind(*kind);
        }
        let row = query
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("reading unfinished operations"))?;
        crate::decode_row(row, crate::operation::from_row, "decoding an operation")
    }

    /// Every unfinished journaled operation (for a daemon that resumes the
    /// abandoned ones on start).
    pub async fn unfinished_operations(&self) -> Result<Vec<OperationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM operations WHERE kind IN {} \
             AND status IN ('running', 'stopped') ORDER BY started_at_us",
            crate::operation::COLUMNS,
            journaled_kinds()
        ))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading unfinished operations"))?;
        crate::decode_rows(&rows, crate::operation::from_row, "decoding operations")
    }

    /// The stored parameters of an operation (JSON).
    pub async fn operation_params(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT params FROM operations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("reading operation parameters"))?;
        match row {
            None => Ok(None),
            Some(r) => r
                .try_get(0)
                .map_err(query_error("decoding operation parameters")),
        }
    }

    /// Sets an operation's status (`running`, `stopped`, `failed`,
    /// `succeeded`) with its result or error, under `lease`. `ended` is set
    /// for the final statuses.
    pub async fn journal_operation_status(
        &self,
        lease: &Lease,
        id: &str,
        status: OpStatus,
        at: DateTime<Utc>,
        result: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        let ended = status.is_final().then(|| to_us(at));
        let sql = format!(
            "UPDATE operations SET status = $2, ended_at_us = $3, result = $4, error = $5 \
             WHERE id = $1 AND {}",
            held(self.backend(), 6, 7, 8)
        );
        let query = sqlx::query(&sql)
            .bind(id)
            .bind(status)
            .bind(ended)
            .bind(result)
            .bind(error);
        self.fenced(query, lease, "recording an operation status")
            .await
    }

    /// Records that a step starts (again, after a resume: attempts grow).
    pub async fn journal_step_started(
        &self,
        lease: &Lease,
        operation_id: &str,
        step: &str,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO operation_steps (operation_id, step, seq, status, attempts, \
                 started_at_us, driver, lease_token) \
             SELECT $1, $2, $3, 'started', 1, $4, $5, $6 WHERE {} \
             ON CONFLICT (operation_id, step) DO UPDATE SET status = 'started', \
                 attempts = operation_steps.attempts + 1, started_at_us = excluded.started_at_us, \
                 ended_at_us = NULL, output = NULL, error = NULL, driver = excluded.driver, \
                 lease_token = excluded.lease_token",
            held(self.backend(), 7, 8, 9)
        );
        let query = sqlx::query(&sql)
            .bind(operation_id)
            .bind(step)
            .bind(seq)
            .bind(to_us(at))
            .bind(&lease.holder)
            .bind(lease.token);
        self.fenced(query, lease, "journaling a step start").await
    }

    /// Records a step's end: its output (`Ok`) or its error (`Err`).
    pub async fn journal_step_ended(
        &self,
        lease: &Lease,
        operation_id: &str,
        step: &str,
        at: DateTime<Utc>,
        outcome: std::result::Result<&str, &str>,
    ) -> Result<()> {
        let (status, output, error) = match outcome {
            Ok(o) => ("done", Some(o), None),
            Err(e) => ("failed", None, Some(e)),
        };
        let sql = format!(
            "UPDATE operation_steps SET status = $3, ended_at_us = $4, output = $5, error = $6 \
             WHERE operation_id = $1 AND step = $2 AND status = 'started' AND {}",
            held(self.backend(), 7, 8, 9)
        );
        let query = sqlx::query(&sql)
            .bind(operation_id)
            .bind(step)
            .bind(status)
            .bind(to_us(at))
            .bind(output)
            .bind(error);
        self.fenced(query, lease, "journaling a step end").await
    }

    /// An operation's steps in plan order.
    pub async fn journal(&self, operation_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_COLUMNS} FROM operation_steps WHERE operation_id = $1 ORDER BY seq"
        ))
        .bind(operation_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading a journal"))?;
        crate::decode_rows(&rows, step_from_row, "decoding a journal")
    }

    /// Records that `region` now holds the cluster's writable primary.
    pub async fn set_cluster_primary(
        &self,
        lease: &Lease,
        cluster: &str,
        region: &str,
        operation_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO cluster_roles (cluster, primary_region, since_us, operation_id) \
             SELECT $1, $2, $3, $4 WHERE {} \
             ON CONFLICT (cluster) DO UPDATE SET primary_region = excluded.primary_region, \
                 since_us = excluded.since_us, operation_id = excluded.operation_id",
            held(self.backend(), 5, 6, 7)
        );
        let query = sqlx::query(&sql)
            .bind(cluster)
            .bind(region)
            .bind(to_us(at))
            .bind(operation_id);
        self.fenced(query, lease, "recording a cluster's primary")
            .await
    }

    /// Every cluster whose primary moved since the config was written.
    pub async fn cluster_roles(&self) -> Result<Vec<ClusterRole>> {
        let rows = sqlx::query(
            "SELECT cluster, primary_region, since_us, operation_id FROM cluster_roles ORDER BY cluster",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading cluster roles"))?;
        crate::decode_rows(&rows, role_from_row, "decoding cluster roles")
    }

    /// The cluster's recorded primary region, if an operation moved it.
    pub async fn cluster_role(&self, cluster: &str) -> Result<Option<ClusterRole>> {
        let row = sqlx::query(
            "SELECT cluster, primary_region, since_us, operation_id FROM cluster_roles WHERE cluster = $1",
        )
        .bind(cluster)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("reading a cluster role"))?;
        crate::decode_row(row, role_from_row, "decoding a cluster role")
    }

    /// The lease row as stored (who holds it until when), for error
    /// messages that name the holder.
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let row =
            sqlx::query("SELECT name, holder, token, expires_at_us FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(query_error("reading a lease"))?;
        crate::decode_row(
            row,
            |r| {
                Ok(Lease {
                    name: r.try_get(0)?,
                    holder: r.try_get(1)?,
                    token: r.try_get(2)?,
                    expires_at: from_us(r.try_get(3)?),
                })
            },
            "decoding a lease",
        )
    }
}
