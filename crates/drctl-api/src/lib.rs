//! The drctl HTTP API (axum).
//!
//! Read-only for now: the configured services, measured RPO/RTO against
//! targets, lag history, `/healthz` and Prometheus `/metrics`. Every error is
//! JSON with a stable `code` (see [`error`]); internal details go to the log,
//! never to the client. The API reads the monitor's live view and the state
//! store; it never talks to monitored databases itself.


pub(crate) mod daemon;
pub mod error;
mod guard;
mod metrics;
mod operations;
mod routes;

use drctl_monitor::Monitor;

pub use daemon::{Daemon, DaemonError};
pub use error::ApiError;
pub use routes::router;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub monitor: Monitor,
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
