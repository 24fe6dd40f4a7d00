//! The drctl state store: the single source of truth for what drctl has
//! measured and done.
//!
//! SQLite (a file) is the embedded default; PostgreSQL is selected by a
//! `postgres://` URL for teams that run several drctl instances. Both go
//! through sqlx's `Any` driver with one set of portable SQL, so the same test
//! suite proves both. Migrations in the workspace's `migrations/` are
//! embedded and applied on open.
//!
//! This crate stores and retrieves; it does not decide statuses or compute
//! exposure (the monitor does) and it never talks to monitored databases.
//! It does own the vocabulary of states: every status drctl stores or
//! serves is an enum in [`states`], spelled there once for the database,
//! the API's JSON and the logs.

/// Stores each given state enum as its text spelling through sqlx's `Any`
/// driver (the derive of `sqlx::Type` covers only the concrete drivers):
/// encoded from `IntoStaticStr`, decoded with `FromStr`, and a spelling
/// the enum does not know is a decode error naming the type.
macro_rules! stored_as_text {
    ($($state:ty),+ $(,)?) => {$(
        impl sqlx::Type<sqlx::Any> for $state {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <str as sqlx::Type<sqlx::Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $state {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                let text: &'static str = self.into();
                <&str as sqlx::Encode<'q, sqlx::Any>>::encode(text, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $state {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                text.parse().map_err(|_| {
                    format!("{text:?} is not a stored {}", stringify!($state)).into()
                })
            }
        }
    )+};
}
pub(crate) use stored_as_text;

mod alert;
mod audit;
mod decision;
mod evidence;
mod journal;
mod lag;
mod lease;
mod member;
mod operation;
mod schedule;
pub mod states;
mod stats;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use alert::{AlertEvent, DueDelivery};
pub use audit::{chain_hash, AuditBreak, AuditEntry, AuditVerification, NewAudit};
pub use decision::DecisionRecord;
pub use evidence::{BackupFinish, BackupRecord, RestoreTestRecord};
pub use journal::{ClusterRole, StepRecord};
pub use lag::{DownsampleReport, LagRollup, LagSample};
pub use lease::{Lease, LeaseSighting, LeaseWatch};
pub use member::DaemonRecord;
pub use operation::OperationRecord;
pub use schedule::ScheduleRun;
pub use stats::ExposureStats;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Errors of the state store. Callers show `Display` to operators; the
/// source carries driver detail for the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store URL must start with sqlite:// or postgres:// (got scheme {scheme:?})")]
    UnsupportedUrl { scheme: String },
    #[error("cannot open the state store: {0}")]
    Open(#[source] sqlx::Error),
    #[error("cannot apply state store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A fenced write found the lease held by someone else: the caller lost
    /// it and must stop writing.
    #[error("lease {name} is no longer held with token {token}: another driver took over")]
    LeaseLost { name: String, token: i64 },
    #[error("state store query failed ({during}): {source}")]
    Query {
        during: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database holds the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle to the state store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: BoundedPool,
    backend: Backend,
    /// One audit append at a time from this process (see `audit`).
    audit_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The audit chain's HMAC key, kept outside the store (see `audit`).
    audit_key: Option<audit::AuditKey>,
}

impl Store {
    /// Opens (creating a SQLite file if missing) and migrates the store.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (backend, url) = match scheme.as_str() {
            "sqlite" => (Backend::Sqlite, sqlite_url_creating(url)),
            "postgres" | "postgresql" => (Backend::Postgres, url.to_string()),
            _ => return Err(StoreError::UnsupportedUrl { scheme }),
        };
        let url = match backend {
            Backend::Postgres => postgres_url_bounded(&url),
            Backend::Sqlite => url,
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Open)?;
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer at a time; a few connections serve the
            // readers (API) beside the monitor's batched writes.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the API read while the monitor writes;
                        // busy_timeout queues writers instead of failing them.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool: BoundedPool {
                pool,
                limit: STATEMENT_LIMIT,
            },
            backend,
            audit_writer: Default::default(),
            audit_key: None,
        })
    }

    /// Chains new audit rows with HMAC-SHA256 under `key` (from `[audit]`),
    /// and verifies them with it; `None` keeps plain SHA-256.
    pub fn with_audit_key(mut self, key: Option<&[u8]>) -> Store {
        self.audit_key = key.map(audit::AuditKey::new);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &BoundedPool {
        &self.pool
    }

    /// Closes every connection (waits for in-flight queries).
    pub async fn close(&self) {
        // sqlx's close waits for every checked-out connection to come back;
        // one cut off by a partition may never do so, and shutting down must
        // not hang on it. Connections not closed by then are dropped with
        // the pool.
        if tokio::time::timeout(CLOSE_LIMIT, self.pool.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the state store's connections did not close within {CLOSE_LIMIT:?}; dropping them"
            );
        }
    }
}

/// How long closing the store waits for its connections to close.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// How long a statement may take, client side, before the store gives up
/// on it and drops its connection. A store behind a partition (packets
/// lost, no reset) otherwise holds every query, and the pool's
/// connections, until TCP gives up after about fifteen minutes: sqlx has
/// no TCP keepalive or user-timeout setting to shorten that.
const STATEMENT_LIMIT: Duration = Duration::from_secs(30);

/// Server-side bounds set on every PostgreSQL connection, a little inside
/// [`STATEMENT_LIMIT`] so that on a working network the server cancels a
/// slow statement (and the connection stays usable) before the client
/// drops it; and a transaction left idle by a client that vanished does
/// not hold its locks (a lease row, the audit table) for long.
const PG_SESSION_OPTIONS: &str =
    "-c statement_timeout=25s -c lock_timeout=20s -c idle_in_transaction_session_timeout=60s";

/// Adds [`PG_SESSION_OPTIONS`] to a PostgreSQL URL that sets no `options`
/// of its own (an operator's own choice is left alone).
fn postgres_url_bounded(url: &str) -> String {
    if url.contains("options=") {
        return url.to_string();
    }
    let options: String = PG_SESSION_OPTIONS
        .bytes()
        .map(|b| match b {
            b' ' => "%20".to_string(),
            b'=' => "%3D".to_string(),
            b => (b as char).to_string(),
        })
        .collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options={options}")
}

/// The store's pool, as an executor whose every statement is bounded by
/// `limit`: a statement that does not finish in time fails with a timeout,
/// and its connection is thrown away rather than returned to the pool
/// (where the release ping would hang on it). Acquiring a connection is
/// bounded by the pool's acquire timeout. Statements inside a transaction
/// (`begin`) run on the transaction's connection and are bounded server
/// side only.
#[derive(Clone, Debug)]
pub(crate) struct BoundedPool {
    pool: AnyPool,
    limit: Duration,
}

impl BoundedPool {
    pub(crate) async fn acquire(
        &self,
    ) -> std::result::Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// Runs `work` — a whole transaction, begin to commit, on a connection
    /// from [`acquire`](Self::acquire) — within the statement limit; `None`
    /// when it ran out of time. A transaction's statements go to its own
    /// connection, not through this pool's bounded executor, so without this
    /// a partition that loses a reply mid-transaction would hold it (and its
    /// connection) for as long as TCP waits. Hand the outcome and the
    /// connection to [`settle`](Self::settle).
    pub(crate) async fn within_limit<R>(
        &self,
        work: impl std::future::Future<Output = R>,
    ) -> Option<R> {
        tokio::time::timeout(self.limit, work).await.ok()
    }

    /// The end of [`within_limit`](Self::within_limit): a connection whose
    /// work ran out of time is closed, not returned to the pool (the server
    /// rolls its transaction back when it sees it go, or after
    /// `idle_in_transaction_session_timeout`), and the error says so.
    pub(crate) fn settle<T, E>(
        &self,
        conn: sqlx::pool::PoolConnection<sqlx::Any>,
        outcome: Option<std::result::Result<T, E>>,
        timed_out: impl FnOnce(sqlx::Error) -> E,
    ) -> std::result::Result<T, E> {
        match outcome {
            Some(done) => done,
            None => {
                drop(conn.detach());
                Err(timed_out(statement_timed_out(self.limit)))
            }
        }
    }
}

fn statement_timed_out(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the state store did not answer within {}s (a partition or an overloaded store?)",
            limit.as_secs()
        ),
    ))
}

impl<'p> sqlx::Executor<'p> for &'p BoundedPool {
    type Database = sqlx::Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<
        'e,
        std::result::Result<
            sqlx::Either<sqlx::any::AnyQueryResult, sqlx::any::AnyRow>,
            sqlx::Error,
        >,
    >
    where
        'p: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        use futures_util::StreamExt;
        let (pool, limit) = (self.pool.clone(), self.limit);
        // Collected whole: the store's reads are bounded pages, and a
        // stream handed out half-read could not be timed as one statement.
        let items = async move {
            let mut conn = pool.acquire().await?;
            let read =
                tokio::time::timeout(limit, (&mut *conn).fetch_many(query).collect::<Vec<_>>())
                    .await;
            match read {
                Ok(items) => Ok(items),
                Err(_) => {
                    // Closed here, not pinged on its way back to the pool.
                    drop(conn.detach());
                    Err(statement_timed_out(limit))
                }
            }
        };
        futures_util::stream::once(items)
            .flat_map(|read| match read {
                Ok(items) => futures_util::stream::iter(items).boxed(),
                Err(e) => futures_util::stream::iter(vec![Err(e)]).boxed(),
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<
        'e,
        std::result::Result<Option<sqlx::any::AnyRow>, sqlx::Error>,
    >
    where
        'p: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        let (pool, limit) = (self.pool.clone(), self.limit);
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let read = tokio::time::timeout(limit, (&mut *conn).fetch_optional(query)).await;
            match read {
                Ok(row) => row,
                Err(_) => {
                    drop(conn.detach());
                    Err(statement_timed_out(limit))
                }
            }
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [sqlx::any::AnyTypeInfo],
    ) -> futures_util::future::BoxFuture<
        'e,
        std::result::Result<sqlx::any::AnyStatement<'q>, sqlx::Error>,
    >
    where
        'p: 'e,
    {
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<
        'e,
        std::result::Result<sqlx::Describe<sqlx::Any>, sqlx::Error>,
    >
    where
        'p: 'e,
    {
        (&self.pool).describe(sql)
    }
}

/// sqlx opens SQLite files read-write but does not create them unless asked.
fn sqlite_url_creating(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Decodes every row with `decode`, naming what was being read on failure.
pub(crate) fn decode_rows<T>(
    rows: &[sqlx::any::AnyRow],
    decode: fn(&sqlx::any::AnyRow) -> std::result::Result<T, sqlx::Error>,
    during: &'static str,
) -> Result<Vec<T>> {
    rows.iter()
        .map(decode)
        .collect::<std::result::Result<_, _>>()
        .map_err(query_error(during))
}

/// Decodes an optional row with `decode`.
pub(crate) fn decode_row<T>(
    row: Option<sqlx::any::AnyRow>,
    decode: fn(&sqlx::any::AnyRow) -> std::result::Result<T, sqlx::Error>,
    during: &'static str,
) -> Result<Option<T>> {
    row.as_ref()
        .map(decode)
        .transpose()
        .map_err(query_error(during))
}

pub(crate) fn query_error(during: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { during, source }
}
