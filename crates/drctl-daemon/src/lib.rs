//! The drctl daemon: one process over one state store that runs the
//! monitor, competes in the leader election ([`leader`]) and, while it
//! leads, does the work that must not run twice: the automatic-failover
//! guard, watchdog and automatic rejoin ([`guard`]), the backup scheduler, webhook alerts with
//! their outbox ([`alerts`]) and resuming operations whose driver died. It
//! serves the HTTP API (`drctl-api`) beside them. `drctl serve`, `drctl lab
//! up` and the integration tests all start it through [`Daemon::start`].
//!
//! What it does not own: HTTP (routes, auth, errors: `drctl-api`), the
//! failover engine (`drctl-failover`), backups (`drctl-backup`) and the
//! report (`drctl-report`).

pub mod alerts;
mod daemon;
mod guard;
pub mod leader;
mod rejoin;

pub use daemon::{Daemon, DaemonError};
pub use drctl_api::scratch_root;
