//! What the failover engine does to a PostgreSQL server: read its role,
//! fence it, promote it, prove it takes writes, wait for it to replay.
//!
//! Every action is idempotent and reports what it found, so a step re-run
//! after a crash does nothing twice and its journal output says so
//! ("already read-only", "already promoted").

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Lsn, PgEndpoint, PgError};

/// A server's role and positions, read in one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub in_recovery: bool,
    /// `default_transaction_read_only` is on: drctl's fence (or an operator's).
    pub read_only: bool,
    pub timeline: i64,
    /// Primary: the insert position (everything written, flushed or not).
    /// Standby: the durable position (received and flushed, or replayed).
    pub lsn: Lsn,
    /// Standby: replayed position; primary: same as `lsn`.
    pub replay_lsn: Lsn,
    /// The server's clock, microseconds since the epoch.
    pub now_us: i64,
}

impl NodeState {
    /// A primary that takes writes: the one state two servers of a cluster
    /// must never be in at once.
    pub fn writable(&self) -> bool {
        !self.in_recovery && !self.read_only
    }
}

/// What fencing a reachable server did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceReport {
    /// It was read-only already (a re-run, or fenced by hand).
    pub already_read_only: bool,
    /// It is a standby: there is nothing to fence.
    pub was_standby: bool,
    /// Client sessions terminated (they could still write in an open
    /// read-write transaction).
    pub sessions_terminated: i64,
}

/// What promoting did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteReport {
    pub already_primary: bool,
    pub timeline: i64,
    pub took_ms: u64,
}

const NODE_STATE: &str = "SELECT pg_is_in_recovery(), \
     current_setting('default_transaction_read_only') = 'on', \
     (SELECT timeline_id FROM pg_control_checkpoint())::bigint, \
     CASE WHEN pg_is_in_recovery() \
          THEN pg_wal_lsn_diff(GREATEST(COALESCE(pg_last_wal_receive_lsn(), '0/0'), \
                                         COALESCE(pg_last_wal_replay_lsn(), '0/0')), '0/0')::bigint \
          ELSE pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint END, \
     CASE WHEN pg_is_in_recovery() \
          THEN pg_wal_lsn_diff(COALESCE(pg_last_wal_replay_lsn(), '0/0'), '0/0')::bigint \
          ELSE pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint END, \
     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// Client sessions other than ours: what fencing ends. Replication
/// connections (walsenders) stay, so a standby still receives the last WAL.
const TERMINATE_CLIENTS: &str = "SELECT count(pg_terminate_backend(pid))::bigint \
     FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// Settings a hot standby must have at least as high as its primary's, or
/// it refuses to start: a clone copies them from the server it clones.
pub const STANDBY_PARITY_SETTINGS: &[&str] = &[
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

impl PgEndpoint {
    /// The current values of the named settings (`SHOW`, as text).
    pub async fn settings(&self, names: &[&str]) -> Result<Vec<(String, String)>, PgError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.with_conn("reading settings", move |c| {
            Box::pin(
                sqlx::query_as(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY($1) ORDER BY name",
                )
                .bind(names.clone())
                .fetch_all(c),
            )
        })
        .await
    }

    /// The WAL receiver as this standby sees it: its status and how long
    /// ago (by this server's clock) it last heard from the primary; `None`
    /// when no receiver runs (not connected, or not a standby).
    pub async fn wal_receiver(&self) -> Result<Option<(String, Option<i64>)>, PgError> {
        self.with_conn("reading the WAL receiver", |c| {
            Box::pin(
                sqlx::query_as(
                    "SELECT status, (EXTRACT(EPOCH FROM (clock_timestamp() - last_msg_receipt_time)) * 1000)::bigint \
                     FROM pg_stat_wal_receiver WHERE pid IS NOT NULL",
                )
                .fetch_optional(c),
            )
        })
        .await
    }

    /// `CHECKPOINT`: after a promotion, pg_rewind reads the new timeline
    /// from the control file, which only a checkpoint updates.
    pub async fn checkpoint(&self) -> Result<(), PgError> {
        self.with_conn("running a checkpoint", |c| {
            Box::pin(async move { sqlx::query("CHECKPOINT").execute(c).await.map(|_| ()) })
        })
        .await
    }

    /// Creates the physical replication slot `name`, reserving WAL from
    /// now, unless it exists; returns whether it was created. The WAL
    /// archive's receiver streams through it, so the server keeps every
    /// segment until the receiver has it.
    pub async fn ensure_physical_slot(&self, name: &str) -> Result<bool, PgError> {
        let name = name.to_string();
        let (created,): (bool,) = self
            .with_conn("creating the archive's replication slot", |c| {
                Box::pin(
                    sqlx::query_as(
                        "SELECT count(*) > 0 FROM (SELECT pg_create_physical_replication_slot($1, true) \
                         WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)) AS made",
                    )
                    .bind(name)
                    .fetch_one(c),
                )
            })
            .await?;
        Ok(created)
    }

    /// The database system identifier (`pg_control_system()`): the same on
    /// a primary and every physical copy of it, different for any other
    /// cluster.
    pub async fn system_identifier(&self) -> Result<u64, PgError> {
        let (id,): (i64,) = self
            .with_conn("reading the system identifier", |c| {
                Box::pin(
                    sqlx::query_as("SELECT system_identifier FROM pg_control_system()")
                        .fetch_one(c),
                )
            })
            .await?;
        // A bigint on the wire, an unsigned 64-bit number in pg_control.
        Ok(id as u64)
    }

    /// Reads role, fence and positions.
    pub async fn node_state(&self) -> Result<NodeState, PgError> {
        let (in_recovery, read_only, timeline, lsn, replay, now_us): (
            bool,
            bool,
            i64,
            i64,
            i64,
            i64,
        ) = self
            .with_conn("reading the server's role", |c| {
                Box::pin(sqlx::query_as(NODE_STATE).fetch_one(c))
            })
            .await?;
        Ok(NodeState {
            in_recovery,
            read_only,
            timeline,
            lsn: Lsn::from_db(lsn),
            replay_lsn: Lsn::from_db(replay),
            now_us,
        })
    }

    /// Fences a primary: `default_transaction_read_only = on` through
    /// `ALTER SYSTEM` (so it survives a restart of the old primary), reloads,
    /// waits until new sessions see it, then terminates every client
    /// session — twice, to catch one that connected while the reload
    /// travelled. A client that explicitly asks for a read-write transaction
    /// could still write; the fence hook (stop, revoke network) closes that.
    pub async fn fence_read_only(&self) -> Result<FenceReport, PgError> {
        let state = self.node_state().await?;
        if state.in_recovery {
            return Ok(FenceReport {
                already_read_only: state.read_only,
                was_standby: true,
                sessions_terminated: 0,
            });
        }
        if !state.read_only {
            self.with_conn("fencing (read-only)", |c| {
                Box::pin(async move {
                    sqlx::query("ALTER SYSTEM SET default_transaction_read_only = on")
                        .execute(&mut *c)
                        .await?;
                    sqlx::query("SELECT pg_reload_conf()")
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            })
            .await?;
            // The reload is a signal; our own session applies it between
            // statements, as every other backend does.
            let deadline = Instant::now() + self.timeout();
            while !self.node_state().await?.read_only {
                if Instant::now() > deadline {
                    return Err(PgError::Timeout {
                        endpoint: self.label().to_string(),
                        timeout: self.timeout(),
                        during: "waiting for the read-only setting to apply",
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut terminated = 0;
        for _ in 0..2 {
            let (n,): (i64,) = self
                .with_conn("terminating client sessions", |c| {
                    Box::pin(sqlx::query_as(TERMINATE_CLIENTS).fetch_one(c))
                })
                .await?;
            terminated += n;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(FenceReport {
            already_read_only: state.read_only,
            was_standby: false,
            sessions_terminated: terminated,
        })
    }

    /// Lifts drctl's fence (a switchover that could not complete gives the
    /// source back; a rejoined standby must not carry the setting when it is
    /// promoted one day).
    pub async fn unfence(&self) -> Result<(), PgError> {
        self.with_conn("lifting the read-only fence", |c| {
            Box::pin(async move {
                sqlx::query("ALTER SYSTEM RESET default_transaction_read_only")
                    .execute(&mut *c)
                    .await?;
                sqlx::query("SELECT pg_reload_conf()")
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Promotes a standby and waits until it accepts writes
    /// (`pg_promote(wait => true)`); a no-op on a primary.
    pub async fn promote(&self, wait: Duration) -> Result<PromoteReport, PgError> {
        let started = Instant::now();
        let state = self.node_state().await?;
        if !state.in_recovery {
            return Ok(PromoteReport {
                already_primary: true,
                timeline: state.timeline,
                took_ms: 0,
            });
        }
        let secs = wait.as_secs().clamp(1, i32::MAX as u64) as i32;
        let (promoted,): (bool,) = self
            .with_conn("promoting", move |c| {
                Box::pin(
                    sqlx::query_as("SELECT pg_promote(true, $1)")
                        .bind(secs)
                        .fetch_one(c),
                )
            })
            .await?;
        if !promoted {
            return Err(PgError::WrongRole {
                endpoint: self.label().to_string(),
                expected: "promoted primary",
                found: "did not finish promotion in time (pg_promote returned false)",
            });
        }
        // pg_control's timeline is updated by the end-of-recovery checkpoint,
        // which may lag the promotion itself; report what is known now.
        let after = self.node_state().await?;
        Ok(PromoteReport {
            already_primary: false,
            timeline: after.timeline,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Commits the operation's row in `drctl.write_probe` (synchronous
    /// commit, local):
    /// the proof that the server takes writes. Returns the server's commit
    /// time (µs) and the row's LSN.
    pub async fn write_probe(&self, operation_id: &str) -> Result<(i64, Lsn), PgError> {
        let id = operation_id.to_string();
        self.with_conn("writing the probe row", move |c| {
            Box::pin(async move {
                sqlx::query("CREATE SCHEMA IF NOT EXISTS drctl")
                    .execute(&mut *c)
                    .await?;
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS drctl.write_probe ( \
                        operation_id text PRIMARY KEY, \
                        written_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
                        writes integer NOT NULL DEFAULT 1)",
                )
                .execute(&mut *c)
                .await?;
                let mut tx = sqlx::Connection::begin(&mut *c).await?;
                sqlx::query("SET LOCAL synchronous_commit = local")
                    .execute(&mut *tx)
                    .await?;
                // One row per operation: a re-run after a crash rewrites it
                // (still a write, so still a proof) instead of adding one.
                let (at, lsn): (i64, i64) = sqlx::query_as(
                    "INSERT INTO drctl.write_probe (operation_id) VALUES ($1) \
                     ON CONFLICT (operation_id) DO UPDATE \
                         SET written_at = clock_timestamp(), writes = drctl.write_probe.writes + 1 \
                     RETURNING (extract(epoch FROM written_at) * 1000000)::bigint, \
                               pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((at, Lsn::from_db(lsn)))
            })
        })
        .await
    }
}
