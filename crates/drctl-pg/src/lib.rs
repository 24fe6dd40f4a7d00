//! PostgreSQL probes and administration for drctl.
//!
//! This crate owns every conversation drctl has with a monitored PostgreSQL
//! cluster: connecting with a timeout, writing and reading the heartbeat map
//! (`drctl.heartbeat`), and reading replication positions on the primary and
//! on a standby. It does not decide what the numbers mean; the monitor does.
//!
//! Positions are handled as [`Lsn`] (bytes since `0/0`), times as microseconds
//! on the *primary's* clock: drctl never compares its own clock with a
//! database's (DESIGN.md, "one clock").

mod lsn;
mod probe;

pub use lsn::Lsn;
pub use probe::{HeartbeatPoint, PgEndpoint, PgError, PrimaryPosition, StandbyPosition};
