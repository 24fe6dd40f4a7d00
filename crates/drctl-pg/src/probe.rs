//! Probes of one PostgreSQL endpoint: the primary's position and clock, a
//! standby's received/replayed positions, and the heartbeat map.
//!
//! Every probe reaches the network and is bounded by the endpoint's timeout.
//! One endpoint keeps at most one connection, reopened after any error, so a
//! monitor of many services holds one socket per database and a dead server
//! costs one failed probe per interval, not a pile of half-open connections.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

use crate::Lsn;

/// What went wrong talking to PostgreSQL. Messages never contain the DSN's
/// password: the endpoint is named by its redacted label.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid PostgreSQL connection string for {endpoint}: {reason}")]
    InvalidDsn { endpoint: String, reason: String },
    #[error("{endpoint}: timed out after {timeout:?} ({during})")]
    Timeout {
        endpoint: String,
        timeout: Duration,
        during: &'static str,
    },
    #[error("{endpoint}: {during}: {source}")]
    Database {
        endpoint: String,
        during: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{endpoint}: expected a {expected} but the server {found}")]
    WrongRole {
        endpoint: String,
        expected: &'static str,
        found: &'static str,
    },
}

impl PgError {
    /// No connection to the server could be made at all (refused, reset,
    /// no route, no answer to the connection attempt in time): it may be
    /// down or cut off. A server that answered and then refused or failed
    /// the work (bad password, permission denied, a statement that timed
    /// out) is not a connection failure: it is up, and may still take
    /// writes.
    pub fn is_connection_failure(&self) -> bool {
        match self {
            PgError::Timeout { during, .. } => *during == "connect",
            PgError::Database { during, source, .. } => {
                *during == "connect" && matches!(source, sqlx::Error::Io(_))
            }
            _ => false,
        }
    }
}

/// A point of the heartbeat map: at `primary_time_us` (primary's clock) the
/// primary had flushed WAL up to `lsn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeartbeatPoint {
    pub primary_time_us: i64,
    pub lsn: Lsn,
}

/// The primary's clock and flushed WAL position, read together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryPosition {
    pub point: HeartbeatPoint,
    /// Standbys currently streaming from this primary (`pg_stat_replication`;
    /// drctl's own WAL archivers, `drctl_archive_*`, are not standbys).
    pub streaming_standbys: i64,
    /// drctl's WAL archivers streaming from it, by application name, and
    /// how far each has flushed WAL to its disk (its own report:
    /// `pg_receivewal --synchronous` reports every flush at once).
    pub archivers: Vec<(String, Lsn)>,
}

/// What a standby holds, read in one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyPosition {
    /// WAL received *and flushed to disk* on the standby: the durable copy.
    /// Falls back to the replay position when no WAL receiver has run since
    /// start-up (then everything the standby has came from its own disk).
    pub durable_lsn: Lsn,
    pub replay_lsn: Lsn,
    /// `now() - pg_last_xact_replay_timestamp()` on the standby's clock: the
    /// figure most dashboards show, kept to show why it is not RPO.
    pub naive_replay_delay_us: Option<i64>,
    /// `pg_stat_wal_receiver.status`, `None` when no receiver is running.
    pub wal_receiver: Option<String>,
}

/// One PostgreSQL server drctl talks to, named by a redacted label.
pub struct PgEndpoint {
    label: String,
    options: PgConnectOptions,
    timeout: Duration,
    conn: Mutex<Option<PgConnection>>,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEndpoint")
            .field("label", &self.label)
            .finish()
    }
}

const PRIMARY_POSITION: &str = "SELECT pg_is_in_recovery(), \
     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
     CASE WHEN pg_is_in_recovery() THEN 0 \
          ELSE pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint END, \
     (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' \
          AND application_name NOT LIKE 'drctl\\_archive\\_%'), \
     (SELECT string_agg(application_name || '=' || \
                        pg_wal_lsn_diff(flush_lsn, '0/0')::bigint, ',') \
        FROM pg_stat_replication WHERE application_name LIKE 'drctl\\_archive\\_%' \
         AND flush_lsn IS NOT NULL)";

const STANDBY_POSITION: &str = "SELECT pg_is_in_recovery(), \
     pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint, \
     pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, \
     (extract(epoch FROM (now() - pg_last_xact_replay_timestamp())) * 1000000)::bigint, \
     (SELECT status FROM pg_stat_wal_receiver LIMIT 1), \
     current_setting('default_transaction_read_only') = 'on'";

const HEARTBEAT_SCHEMA: [&str; 2] = [
    "CREATE SCHEMA IF NOT EXISTS drctl",
    "CREATE TABLE IF NOT EXISTS drctl.heartbeat ( \
        id bigserial PRIMARY KEY, \
        primary_time timestamptz NOT NULL, \
        flush_lsn pg_lsn NOT NULL)",
];

const HEARTBEAT_INSERT: &str = "INSERT INTO drctl.heartbeat (primary_time, flush_lsn) \
     VALUES (clock_timestamp(), pg_current_wal_flush_lsn()) \
     RETURNING (extract(epoch FROM primary_time) * 1000000)::bigint, \
               pg_wal_lsn_diff(flush_lsn, '0/0')::bigint";

impl PgEndpoint {
    /// The same endpoint under another `application_name`, so each of
    /// drctl's roles (monitor, guard) shows apart in `pg_stat_activity`.
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.options = self.options.application_name(name);
        self
    }

    /// Parses `dsn` without connecting. `label` names the endpoint in errors
    /// and logs (pass a redacted form: it is shown to people).
    pub fn new(label: impl Into<String>, dsn: &str, timeout: Duration) -> Result<Self, PgError> {
        let label = label.into();
        let options = PgConnectOptions::from_str(dsn)
            .map_err(|e| PgError::InvalidDsn {
                endpoint: label.clone(),
                // sqlx's parse errors can echo the input; say only what kind.
                reason: match e {
                    sqlx::Error::Configuration(_) => {
                        "not a valid postgres:// URL or key=value string".into()
                    }
                    _ => "unparseable".into(),
                },
            })?
            .application_name("drctl")
            // The heartbeat is the only write drctl makes. It must never wait
            // for a synchronous standby (when that standby is the one lost, a
            // waiting heartbeat would hang the probe of a healthy primary) nor
            // for its own fsync: the map point is read before the insert, and
            // the WAL writer flushes the row within wal_writer_delay.
            .options([("synchronous_commit", "off")])
            .disable_statement_logging()
            .statement_cache_capacity(16);
        Ok(Self {
            label,
            options,
            timeout,
            conn: Mutex::new(None),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `work` on this endpoint's connection (opening it if needed) under
    /// the timeout; drops the connection after any failure so the next call
    /// starts clean.
    pub(crate) async fn with_conn<T, F>(&self, during: &'static str, work: F) -> Result<T, PgError>
    where
        F: for<'c> FnOnce(
            &'c mut PgConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'c>,
        >,
    {
        let mut guard = self.conn.lock().await;
        let attempt = async {
            if guard.is_none() {
                let conn = self.options.connect().await.map_err(|e| (e, "connect"))?;
                *guard = Some(conn);
            }
            let conn = guard.as_mut().expect("connection opened above");
            work(conn).await.map_err(|e| (e, during))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err((source, during))) => {
                *guard = None;
                Err(PgError::Database {
                    endpoint: self.label.clone(),
                    during,
                    source,
                })
            }
            Err(_) => {
                // No connection yet: the server never answered the
                // connection attempt (down, or cut off), which callers must
                // tell from a server that answered and then stalled.
                let during = if guard.is_none() { "connect" } else { during };
                *guard = None;
                Err(PgError::Timeout {
                    endpoint: self.label.clone(),
                    timeout: self.timeout,
                    during,
                })
            }
        }
    }

    /// Reads the primary's clock and flushed WAL position in one statement.
    pub async fn probe_primary_position(&self) -> Result<PrimaryPosition, PgError> {
        let (in_recovery, now_us, lsn, streaming, archivers): (
            bool,
            i64,
            i64,
            i64,
            Option<String>,
        ) = self
            .with_conn("reading the primary's position", |c| {
                Box::pin(sqlx::query_as(PRIMARY_POSITION).fetch_one(c))
            })
            .await?;
        if in_recovery {
            return Err(PgError::WrongRole {
                endpoint: self.label.clone(),
                expected: "primary",
                found: "is in recovery (a standby)",
            });
        }
        Ok(PrimaryPosition {
            point: HeartbeatPoint {
                primary_time_us: now_us,
                lsn: Lsn::from_db(lsn),
            },
            streaming_standbys: streaming,
            archivers: archivers
                .unwrap_or_default()
                .split(',')
                .filter_map(|pair| {
                    let (name, lsn) = pair.rsplit_once('=')?;
                    Some((name.to_string(), Lsn::from_db(lsn.parse().ok()?)))
                })
                .collect(),
        })
    }

    /// Reads only the primary's clock and flushed position: a map point,
    /// as cheap as a query gets. Errors are the caller's to ignore (the
    /// next full sample reports them).
    pub async fn probe_primary_point(&self) -> Result<HeartbeatPoint, PgError> {
        let (now_us, lsn): (i64, i64) = self
            .with_conn("reading the primary's position", |c| {
                Box::pin(
                    sqlx::query_as(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
                         pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint",
                    )
                    .fetch_one(c),
                )
            })
            .await?;
        Ok(HeartbeatPoint {
            primary_time_us: now_us,
            lsn: Lsn::from_db(lsn),
        })
    }

    /// Reads what a standby has received, flushed and replayed.
    pub async fn probe_standby_position(&self) -> Result<StandbyPosition, PgError> {
        type Row = (
            bool,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            bool,
        );
        let (in_recovery, receive, replay, naive, receiver, read_only): Row = self
            .with_conn("reading the standby's position", |c| {
                Box::pin(sqlx::query_as(STANDBY_POSITION).fetch_one(c))
            })
            .await?;
        if !in_recovery {
            return Err(PgError::WrongRole {
                endpoint: self.label.clone(),
                expected: "standby",
                // A failed-over old primary stays fenced read-only until it
                // is rejoined as a standby: say so rather than "writable".
                found: if read_only {
                    "is a primary fenced read-only (rejoin it as a standby of the new primary)"
                } else {
                    "is not in recovery (a writable primary)"
                },
            });
        }
        let replay_lsn = Lsn::from_db(replay.unwrap_or(0));
        let durable_lsn = Lsn::from_db(receive.unwrap_or(0)).max(replay_lsn);
        Ok(StandbyPosition {
            durable_lsn,
            replay_lsn,
            naive_replay_delay_us: naive,
            wal_receiver: receiver,
        })
    }

    /// Writes one heartbeat row on the primary and returns its map point and
    /// the flushed position right after its commit (so the caller can tell
    /// later whether anything but its own heartbeat was written since).
    /// Creates the `drctl` schema on first use.
    pub async fn write_heartbeat(&self) -> Result<(HeartbeatPoint, Lsn), PgError> {
        let result = self
            .with_conn("writing a heartbeat", |c| Box::pin(insert_heartbeat(c)))
            .await;
        let (point, end) = match result {
            Err(PgError::Database { source, .. }) if is_missing_relation(&source) => {
                self.with_conn("creating the drctl.heartbeat table", |c| {
                    Box::pin(create_heartbeat_schema(c))
                })
                .await?;
                self.with_conn("writing a heartbeat", |c| Box::pin(insert_heartbeat(c)))
                    .await?
            }
            other => other?,
        };
        Ok((point, end))
    }

    /// Heartbeats written within `window` (oldest first): the persisted part
    /// of the map, read back after drctl restarts. Empty when none exist yet.
    pub async fn load_heartbeats(&self, window: Duration) -> Result<Vec<HeartbeatPoint>, PgError> {
        let secs = window.as_secs_f64();
        let rows: Result<Vec<(i64, i64)>, PgError> = self
            .with_conn("reading heartbeats", move |c| {
                Box::pin(
                    sqlx::query_as(
                        "SELECT (extract(epoch FROM primary_time) * 1000000)::bigint, \
                                pg_wal_lsn_diff(flush_lsn, '0/0')::bigint \
                         FROM drctl.heartbeat \
                         WHERE primary_time > clock_timestamp() - make_interval(secs => $1) \
                         ORDER BY id",
                    )
                    .bind(secs)
                    .fetch_all(c),
                )
            })
            .await;
        match rows {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(|(t, l)| HeartbeatPoint {
                    primary_time_us: t,
                    lsn: Lsn::from_db(l),
                })
                .collect()),
            Err(PgError::Database { source, .. }) if is_missing_relation(&source) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Deletes heartbeats older than `keep`; returns how many went.
    pub async fn prune_heartbeats(&self, keep: Duration) -> Result<u64, PgError> {
        let secs = keep.as_secs_f64();
        self.with_conn("pruning heartbeats", move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM drctl.heartbeat \
                     WHERE primary_time < clock_timestamp() - make_interval(secs => $1)",
                )
                .bind(secs)
                .execute(c)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    /// Closes the connection, if any.
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

async fn create_heartbeat_schema(c: &mut PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    // Several samplers may create it at once (services sharing a database,
    // several daemons on one primary): `IF NOT EXISTS` alone races in the
    // catalog ("relation already exists"), so creators take turns.
    let mut tx = c.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('drctl.heartbeat'))")
        .execute(&mut *tx)
        .await?;
    for statement in HEARTBEAT_SCHEMA {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

async fn insert_heartbeat(c: &mut PgConnection) -> Result<(HeartbeatPoint, Lsn), sqlx::Error> {
    let (t, l): (i64, i64) = sqlx::query_as(HEARTBEAT_INSERT).fetch_one(&mut *c).await?;
    let (end,): (i64,) =
        sqlx::query_as("SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint")
            .fetch_one(&mut *c)
            .await?;
    Ok((
        HeartbeatPoint {
            primary_time_us: t,
            lsn: Lsn::from_db(l),
        },
        Lsn::from_db(end),
    ))
}

/// `undefined_table` or `invalid_schema_name`: the heartbeat table is not there yet.
fn is_missing_relation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")))
}
