//! PostgreSQL probes and administration for drctl.
//!
//! This crate owns every conversation drctl has with a PostgreSQL cluster,
//! and the clusters drctl runs itself ([`PgCluster`]: the lab's, and the
//! scratch clusters of restore tests). Probes: connecting with a timeout, writing and reading the heartbeat map
//! (`drctl.heartbeat`), and reading replication positions on the primary and
//! on a standby. It does not decide what the numbers mean; the monitor does.
//!
//! Positions are handled as [`Lsn`] (bytes since `0/0`), times as microseconds
//! on the *primary's* clock: drctl never compares its own clock with a
//! database's (DESIGN.md, "one clock").

mod admin;
pub mod cluster;
pub mod conn;
mod lsn;
pub mod os;
mod probe;
pub mod wal;

pub use admin::{FenceReport, NodeState, PromoteReport, STANDBY_PARITY_SETTINGS};
pub use cluster::{
    find_pg_bin, find_pg_client_bin, write_recovery_settings, PgCluster, RecoveryStop, Role,
    ScratchTls,
};
pub use conn::{dsn_login, ChildConnection, DsnLogin};
pub use lsn::Lsn;
pub use probe::{HeartbeatPoint, PgEndpoint, PgError, PrimaryPosition, StandbyPosition};

/// Errors of running PostgreSQL clusters ([`PgCluster`]). Each says what
/// failed and, where a person can fix it, how.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("PostgreSQL server binaries not found ({0}); install them with `apt-get install postgresql` or set PG_BIN to the directory holding initdb and pg_ctl")]
    PgBinMissing(String),
    #[error("PostgreSQL client programs not found ({0}); install them with `apt-get install postgresql-client` or set PG_BIN to the directory holding pg_basebackup")]
    PgClientMissing(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type ClusterResult<T> = std::result::Result<T, ClusterError>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}
