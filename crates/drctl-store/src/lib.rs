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
mod stats;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use alert::{AlertEvent, DueDelivery};
pub use audit::{AuditBreak, AuditEntry, AuditVerification, NewAudit};
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
    pool: AnyPool,
    backend: Backend,
    /// One audit append at a time from this process (see `audit`).
    audit_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
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
            pool,
            backend,
            audit_writer: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection (waits for in-flight queries).
    pub async fn close(&self) {
        self.pool.close().await;
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
