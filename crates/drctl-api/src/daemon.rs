//! The daemon: the monitor, the backup scheduler, the guard (automatic
//! failover and the watchdog) and the API over one state store, started and
//! stopped together. `drctl serve`, `drctl lab up` and the integration tests
//! all run this same code.

use std::net::SocketAddr;
use std::sync::Arc;

use drctl_config::Config;
use drctl_monitor::Monitor;
use drctl_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ApiState;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] drctl_store::StoreError),
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    #[error(transparent)]
    Webhook(#[from] crate::alerts::WebhookError),
    #[error("cannot listen on {addr}: {source} (is another drctl running? change [api] listen)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running daemon; [`Daemon::stop`] shuts it down cleanly.
pub struct Daemon {
    pub monitor: Monitor,
    /// Where the API listens (the configured address, with the real port).
    pub api_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    monitor_task: JoinHandle<()>,
    scheduler_task: JoinHandle<()>,
    guard_task: JoinHandle<()>,
    alerts_task: JoinHandle<()>,
    api_task: JoinHandle<std::io::Result<()>>,
}

/// Where restore tests and drills put their scratch clusters.
pub fn scratch_root() -> std::path::PathBuf {
    drctl_pg::os::scratch_root()
}

impl Daemon {
    /// Opens the store (applying migrations), starts sampling and serves the API.
    pub async fn start(config: Arc<Config>) -> Result<Daemon, DaemonError> {
        // Tokens first: a missing secret stops the start before anything runs.
        crate::auth::Authenticator::from_config(&config.api)?;
        crate::alerts::check_webhooks(&config)?;
        let store = Store::open(config.store.url.expose()).await?;
        let addr = config.api.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let api_addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let monitor = Monitor::new(config.clone(), store.clone());
        let api_state = ApiState::new(monitor.clone())?;
        note_configuration(&config, &store, &monitor).await?;
        let (shutdown, rx) = watch::channel(false);
        let monitor_task = tokio::spawn(monitor.clone().run(rx.clone()));
        tokio::spawn(resume_abandoned_operations(
            drctl_failover::Engine::new(config.clone(), store.clone()),
            store.clone(),
            config.failover.lease,
        ));
        let alerts_task = tokio::spawn(crate::alerts::run(
            config.clone(),
            monitor.clone(),
            api_state.alerts.clone(),
            rx.clone(),
        ));
        let guard_task = tokio::spawn(crate::guard::run(
            config.clone(),
            store.clone(),
            rx.clone(),
        ));
        let scheduler_task = tokio::spawn(drctl_backup::scheduler::run_scheduler(
            config,
            store,
            scratch_root(),
            rx.clone(),
        ));
        let mut api_rx = rx;
        let api_task = tokio::spawn(crate::serve(
            listener,
            api_state,
            async move {
                let _ = api_rx.wait_for(|s| *s).await;
            },
        ));
        tracing::info!(%api_addr, services = monitor.config().services.len(), "drctl daemon started");
        Ok(Daemon {
            monitor,
            api_addr,
            shutdown,
            monitor_task,
            scheduler_task,
            guard_task,
            alerts_task,
            api_task,
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Stops sampling (flushing the last samples to the store) and the API.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.monitor_task.await;
        let _ = self.scheduler_task.await;
        let _ = self.guard_task.await;
        let _ = self.alerts_task.await;
        let _ = self.api_task.await;
        self.monitor.store().close().await;
        tracing::info!("drctl daemon stopped");
    }
}

/// Compares each service's configuration with what the store last saw: a
/// change is audited and makes the service's evidence "unverified" until
/// its next drill or restore test. The start itself is audited too.
async fn note_configuration(
    config: &Config,
    store: &Store,
    monitor: &Monitor,
) -> Result<(), DaemonError> {
    use sha2::{Digest, Sha256};
    let now = chrono::Utc::now();
    let host = crate::auth::host_name();
    let daemon = |action: &str, target: Option<String>, detail| drctl_store::NewAudit {
        actor: "daemon".into(),
        role: None,
        source: host.clone(),
        action: action.into(),
        target,
        detail,
    };
    let mut changed = Vec::new();
    for service in &config.services {
        // The serialized form redacts secrets: a rotated password is not a
        // change of the service, a new host or target is.
        let text = serde_json::to_string(service).unwrap_or_default();
        let fingerprint = format!("{:x}", Sha256::digest(text.as_bytes()));
        let (changed_at, just_now) = store
            .note_service_config(&service.name, &fingerprint, now)
            .await?;
        monitor.note_config_changed(&service.name, changed_at);
        if just_now {
            changed.push(service.name.clone());
            let detail = serde_json::json!({ "fingerprint": fingerprint });
            store
                .append_audit(&daemon("service_config_changed", Some(service.name.clone()), detail))
                .await?;
        }
    }
    let detail = serde_json::json!({
        "config": config.source.display().to_string(),
        "services": config.services.len(),
        "changed_services": changed,
        "version": env!("CARGO_PKG_VERSION"),
    });
    store.append_audit(&daemon("daemon_started", None, detail)).await?;
    Ok(())
}

/// Resumes the failovers and switchovers whose driver died (`running` in the
/// store with nobody renewing the lease): the daemon is one of the "any
/// drctl process" that can take them over. A `stopped` operation waits for
/// a person (its step failed for a reason someone has to fix).
async fn resume_abandoned_operations(
    engine: drctl_failover::Engine,
    store: Store,
    lease: std::time::Duration,
) {
    let ops = match store.unfinished_operations().await {
        Ok(ops) => ops,
        Err(e) => {
            tracing::error!(error = %e, "cannot read unfinished operations");
            return;
        }
    };
    for op in ops.into_iter().filter(|o| o.status == "running") {
        tracing::warn!(id = %op.id, kind = %op.kind, service = ?op.service, "resuming an operation whose driver stopped");
        // Twice the lease: a live driver renews it, a dead one's expires.
        match engine.resume(&op.id, lease * 2, &|_| {}).await {
            Ok(outcome) => {
                tracing::info!(id = %outcome.id, status = ?outcome.status, "resumed operation finished")
            }
            Err(e) => {
                tracing::error!(id = %op.id, error = %e, "resuming the operation did not complete it")
            }
        }
    }
}
