//! The drctl HTTP API (axum).
//!
//! The configured services, measured RPO/RTO against targets, lag history,
//! backups, restore tests and operations (read, and started), the audit
//! log, `/healthz`, Prometheus `/metrics` and the dashboard page. Every
//! request passes [`auth`] (bearer tokens and roles); every mutation is
//! written to the audit log before it starts. Every error is JSON with a
//! stable `code` (see [`error`]); internal details go to the log, never to
//! the client. [`http`] is the server under it: connection limits,
//! timeouts and TLS.

pub mod alerts;
pub mod auth;
pub(crate) mod daemon;
mod dashboard;
mod docs;
pub mod error;
mod guard;
pub mod http;
pub mod leader;
mod metrics;
mod operations;
pub mod report;
mod routes;
pub mod views;

use drctl_monitor::Monitor;

pub use daemon::{Daemon, DaemonError};
pub use error::ApiError;
pub use routes::{parse_instant, router};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub monitor: Monitor,
    pub auth: std::sync::Arc<auth::Authenticator>,
    /// Alert deliveries, for `/metrics`.
    pub alerts: std::sync::Arc<alerts::AlertCounters>,
    /// This daemon's part in the leader election: followers refuse work.
    pub leadership: leader::Leadership,
    /// The last rendering of `/api/v1/rpo-rto`, and when it was made.
    rpo_rto_cache:
        std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, axum::body::Bytes)>>>,
    /// Reports being built ([`report::CONCURRENT_REPORTS`] at most): a
    /// report reads much of the store, which also carries lease renewals.
    pub report_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// The monitor's config decides the tokens; their secrets are read now.
    pub fn new(monitor: Monitor) -> Result<ApiState, auth::TokenError> {
        let auth = auth::Authenticator::from_config(&monitor.config().api)?;
        Ok(ApiState {
            monitor,
            auth: std::sync::Arc::new(auth),
            alerts: Default::default(),
            leadership: leader::Leadership::standalone(),
            rpo_rto_cache: Default::default(),
            report_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                report::CONCURRENT_REPORTS,
            )),
        })
    }

    /// The daemon's election instead of the standalone default.
    pub fn with_leadership(mut self, leadership: leader::Leadership) -> ApiState {
        self.leadership = leadership;
        self
    }
}

/// Serves the API on `listener` (over TLS when `tls` is given) with the
/// default [`http::Limits`] until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve(
        listener,
        router(state),
        tls,
        http::Limits::default(),
        shutdown,
    )
    .await
}
