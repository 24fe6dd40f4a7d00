//! The drctl HTTP API (axum), and nothing but HTTP.
//!
//! The configured services, measured RPO/RTO against targets, lag history,
//! backups, restore tests and operations (read, and started), the audit
//! log, the compliance report (built by `drctl-report`), `/healthz`,
//! Prometheus `/metrics` and the dashboard page. Every request passes
//! [`auth`] (bearer tokens and roles); every mutation is written to the
//! audit log before it starts. Every error is JSON with a stable `code`
//! (see [`error`]); internal details go to the log, never to the client.
//! [`http`] is the server under it: connection limits, timeouts and TLS.
//!
//! What this crate does not own: the daemon that runs the monitor, the
//! leader election, the guard, alerts and schedules (`drctl-daemon`, which
//! serves this API), and the report's computation (`drctl-report`). The
//! daemon hands the API what it shows: [`leadership::Leadership`] (read
//! only here) and the [`AlertCounters`] for `/metrics`.

pub mod auth;
mod dashboard;
mod docs;
pub mod error;
pub mod http;
pub mod leadership;
mod metrics;
mod operations;
mod params;
mod records;
pub mod report;
mod routes;
pub mod views;

use std::sync::Arc;

use drctl_config::Config;
use drctl_monitor::Monitor;
use drctl_store::Store;

pub use drctl_report::parse_instant;
pub use error::ApiError;
pub use metrics::AlertCounters;
pub use routes::router;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The configuration the daemon runs with.
    pub config: Arc<Config>,
    /// The state store: records, evidence, operations, audit.
    pub store: Store,
    /// The live view (samples, statuses): what is true now.
    pub monitor: Monitor,
    pub auth: Arc<auth::Authenticator>,
    /// Alert deliveries, for `/metrics` (counted by the daemon's alerts).
    pub alerts: Arc<AlertCounters>,
    /// This daemon's part in the leader election: followers refuse work.
    pub leadership: leadership::Leadership,
    /// The last rendering of `/api/v1/rpo-rto`, and when it was made.
    rpo_rto_cache: Arc<std::sync::Mutex<Option<(std::time::Instant, axum::body::Bytes)>>>,
    /// Reports being built ([`report::CONCURRENT_REPORTS`] at most): a
    /// report reads much of the store, which also carries lease renewals.
    pub report_slots: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// The monitor's config and store; the tokens' secrets are read now.
    pub fn new(monitor: Monitor) -> Result<ApiState, auth::TokenError> {
        let config = monitor.config_arc();
        let auth = auth::Authenticator::from_config(&config.api)?;
        Ok(ApiState {
            store: monitor.store().clone(),
            config,
            monitor,
            auth: Arc::new(auth),
            alerts: Default::default(),
            leadership: leadership::Leadership::standalone(),
            rpo_rto_cache: Default::default(),
            report_slots: Arc::new(tokio::sync::Semaphore::new(report::CONCURRENT_REPORTS)),
        })
    }

    /// The daemon's election instead of the standalone default.
    pub fn with_leadership(mut self, leadership: leadership::Leadership) -> ApiState {
        self.leadership = leadership;
        self
    }

    /// The daemon's alert counters instead of fresh ones.
    pub fn with_alert_counters(mut self, alerts: Arc<AlertCounters>) -> ApiState {
        self.alerts = alerts;
        self
    }
}

/// Where restore tests and drills put their scratch clusters: `[scratch]
/// root`, else drctl-pg's default (checked before use either way).
pub fn scratch_root(config: &Config) -> std::path::PathBuf {
    config
        .scratch
        .root
        .clone()
        .unwrap_or_else(drctl_pg::os::scratch_root)
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
