//! The daemon process: the monitor, the backup scheduler, the guard (automatic
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

use drctl_api::ApiState;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] drctl_store::StoreError),
    #[error(transparent)]
    Token(#[from] drctl_api::auth::TokenError),
    #[error(transparent)]
    Webhook(#[from] crate::alerts::WebhookError),
    #[error(transparent)]
    Tls(#[from] drctl_api::http::TlsError),
    #[error("the audit key ([audit]): {0}")]
    AuditKey(#[source] drctl_config::DsnError),
    #[error("[coordination]: {0}")]
    Coordination(String),
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
    /// This daemon's part in the leader election.
    pub leadership: crate::leader::Leadership,
    shutdown: watch::Sender<bool>,
    end_election: watch::Sender<bool>,
    monitor_task: JoinHandle<()>,
    election_task: JoinHandle<()>,
    duties_task: JoinHandle<()>,
    api_task: JoinHandle<std::io::Result<()>>,
}

impl Daemon {
    /// Opens the store (applying migrations), starts sampling and serves the API.
    pub async fn start(config: Arc<Config>) -> Result<Daemon, DaemonError> {
        // Tokens first: a missing secret stops the start before anything runs.
        drctl_api::auth::Authenticator::from_config(&config.api)?;
        crate::alerts::check_webhooks(&config)?;
        let tls = config
            .api
            .tls
            .as_ref()
            .map(drctl_api::http::tls_acceptor)
            .transpose()?;
        let audit_key = config.audit.resolve_key().map_err(DaemonError::AuditKey)?;
        let store = Store::open(config.store.url.expose())
            .await?
            .with_audit_key(audit_key.as_ref().map(|k| k.expose().as_bytes()));
        let addr = config.api.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let api_addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let monitor = Monitor::new(config.clone(), store.clone());
        // Followers record nothing until they lead.
        monitor.set_recording(false);
        let leadership = crate::leader::Leadership::new(
            daemon_id(),
            advertised_url(&config, api_addr),
            config.failover.lease,
        );
        let api_state = ApiState::new(monitor.clone())?.with_leadership(leadership.clone());
        note_configuration(&config, &store, &monitor).await?;
        let (shutdown, rx) = watch::channel(false);
        // The election stops last, once the duties have: the lease is given
        // back only when nothing of this leader's is still running.
        let (end_election, election_rx) = watch::channel(false);
        // With [coordination], daemons in several sites elect through the
        // etcd quorum, so any one site can be lost; else through the store.
        let election_task = match &config.coordination {
            Some(coord) => {
                let etcd = drctl_coord::Etcd::shared(&coord.etcd, coord.request_timeout)
                    .map_err(|e| DaemonError::Coordination(e.to_string()))?;
                tokio::spawn(crate::leader::run_etcd(
                    leadership.clone(),
                    store.clone(),
                    etcd,
                    election_rx,
                ))
            }
            None => tokio::spawn(crate::leader::run(
                leadership.clone(),
                store.clone(),
                election_rx,
            )),
        };
        // The first attempt decides before the API answers: a lone daemon
        // leads from its first request on.
        leadership.decided().await;
        let monitor_task = tokio::spawn(monitor.clone().run(rx.clone()));
        let duties_task = tokio::spawn(lead_while_elected(
            leadership.clone(),
            config.clone(),
            monitor.clone(),
            api_state.alerts.clone(),
            rx.clone(),
        ));
        let mut api_rx = rx;
        let api_task = tokio::spawn(drctl_api::serve(listener, api_state, tls, async move {
            let _ = api_rx.wait_for(|s| *s).await;
        }));
        tracing::info!(
            %api_addr,
            daemon = %leadership.id(),
            leading = leadership.is_leader(),
            services = monitor.config().services.len(),
            "drctl daemon started"
        );
        Ok(Daemon {
            monitor,
            api_addr,
            leadership,
            shutdown,
            end_election,
            monitor_task,
            election_task,
            duties_task,
            api_task,
        })
    }

    /// Whether this daemon leads now.
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    pub fn api_url(&self) -> String {
        format!("{}://{}", scheme(&self.monitor.config().api), self.api_addr)
    }

    /// Stops sampling (flushing the last samples to the store) and the API.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        // Duties first (the leader's backups and operations end, or stop
        // resumably), then the lease is given back for a follower to take.
        let _ = self.duties_task.await;
        let _ = self.end_election.send(true);
        let _ = self.election_task.await;
        let _ = self.monitor_task.await;
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
    let host = drctl_api::auth::host_name();
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
                .append_audit(&daemon(
                    "service_config_changed",
                    Some(service.name.clone()),
                    detail,
                ))
                .await?;
        }
    }
    let detail = serde_json::json!({
        "config": config.source.display().to_string(),
        "services": config.services.len(),
        "changed_services": changed,
        "version": env!("CARGO_PKG_VERSION"),
    });
    store
        .append_audit(&daemon("daemon_started", None, detail))
        .await?;
    Ok(())
}

/// This daemon's name in the store: host, pid and a random part (a pid is
/// reused; the random part is not).
fn daemon_id() -> String {
    format!(
        "{}/{}/{}",
        drctl_api::auth::host_name(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `[api] advertise`, else `http://` (`https://` with TLS) and the listen
/// address (with the host name for a wildcard address, which no client can dial).
fn advertised_url(config: &Config, api_addr: SocketAddr) -> String {
    if let Some(url) = &config.api.advertise {
        return url.clone();
    }
    let scheme = scheme(&config.api);
    if api_addr.ip().is_unspecified() {
        format!(
            "{scheme}://{}:{}",
            drctl_api::auth::host_name(),
            api_addr.port()
        )
    } else {
        format!("{scheme}://{api_addr}")
    }
}

fn scheme(api: &drctl_config::ApiConfig) -> &'static str {
    if api.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The leader's duties, run while this daemon leads and stopped when it
/// stops leading: the guard (automatic failover), the backup scheduler, the
/// WAL archivers, the alerts, recording samples, and resuming operations
/// whose driver died.
async fn lead_while_elected(
    leadership: crate::leader::Leadership,
    config: Arc<Config>,
    monitor: Monitor,
    alerts: Arc<drctl_api::AlertCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut standing = leadership.subscribe();
    let store = monitor.store().clone();
    loop {
        tokio::select! {
            _ = standing.wait_for(|s| s.leading) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let term = standing.borrow().term;
        tracing::info!(?term, "taking up the leader's duties");
        let (term_end, term_rx) = watch::channel(false);
        monitor.set_recording(true);
        let mut duties = tokio::task::JoinSet::new();
        duties.spawn(crate::guard::run(
            config.clone(),
            store.clone(),
            term_rx.clone(),
        ));
        duties.spawn(drctl_backup::scheduler::run_scheduler(
            config.clone(),
            store.clone(),
            drctl_api::scratch_root(&config),
            term_rx.clone(),
        ));
        duties.spawn(drctl_backup::archiver::run_archivers(
            config.clone(),
            store.clone(),
            archive_publisher(&monitor),
            term_rx.clone(),
        ));
        duties.spawn(crate::alerts::run(
            config.clone(),
            monitor.clone(),
            alerts.clone(),
            term_rx.clone(),
        ));
        duties.spawn(resume_abandoned_operations(
            drctl_failover::Engine::new(config.clone(), store.clone()),
            store.clone(),
            crate::leader::tick(config.failover.lease),
            term_rx,
        ));
        tokio::select! {
            _ = standing.wait_for(|s| !s.leading) => {
                tracing::warn!(?term, "no longer the leader: stopping the leader's duties");
            }
            _ = shutdown.wait_for(|s| *s) => {}
        }
        monitor.set_recording(false);
        let _ = term_end.send(true);
        while duties.join_next().await.is_some() {}
        monitor.clear_archives();
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Hands each WAL archiver's status to the monitor, which measures the
/// archive's lags on the primary's heartbeat map.
fn archive_publisher(monitor: &Monitor) -> drctl_backup::archiver::Publish {
    use drctl_backup::archiver::ReceiverState;
    use drctl_monitor::ArchiveReceiver;
    let monitor = monitor.clone();
    Arc::new(move |service, status| {
        let (receiver, receiver_error) = match &status.receiver {
            ReceiverState::Starting => (ArchiveReceiver::Starting, None),
            ReceiverState::Running { .. } => (ArchiveReceiver::Running, None),
            ReceiverState::Waiting { last_exit, .. } => {
                (ArchiveReceiver::Waiting, Some(last_exit.clone()))
            }
            ReceiverState::Stopped => (ArchiveReceiver::Stopped, None),
        };
        monitor.publish_archive(
            service,
            drctl_monitor::ArchiveProgress {
                source: status.source.clone(),
                receiver,
                receiver_error,
                received: status.receiving.as_ref().map(|(_, lsn)| (*lsn).into()),
                archived: status.archived.map(Into::into),
                unbroken_from: status.unbroken_from.map(Into::into),
                last_error: status.last_error.clone(),
            },
        );
    })
}

/// Whether this daemon may take over `op`: any failover or switchover, but
/// a host-local kind (rejoin, recover, drill: they act on files of the host
/// that started them) only on that host. Elsewhere it would act on another
/// server's data directory at the same path; it waits for a person there.
async fn resumable_here(store: &Store, op: &drctl_store::OperationRecord) -> bool {
    let kind = op.kind;
    let true = kind.is_journaled() else {
        return false;
    };
    if !drctl_failover::OperationSaga::is_host_local(kind) {
        return true;
    }
    let host = store
        .operation_params(&op.id)
        .await
        .ok()
        .flatten()
        .and_then(|p| serde_json::from_str::<drctl_failover::OperationParams>(&p).ok())
        .and_then(|p| p.host);
    let here = drctl_failover::this_host();
    if host.as_deref() == Some(here.as_str()) {
        return true;
    }
    tracing::debug!(
        id = %op.id, kind = %op.kind, host = host.as_deref().unwrap_or("unknown"), %here,
        "not resuming a host-local operation of another host"
    );
    false
}

/// Resumes the failovers and switchovers whose driver died (`running` in
/// the store with nobody renewing the operation's lease), looking every
/// `every` while this daemon leads. A live driver (this daemon's own API
/// requests, a `drctl failover` in a terminal) holds its lease, so trying
/// costs one refused lease. A `stopped` operation waits for a person (its
/// step failed for a reason someone has to fix).
async fn resume_abandoned_operations(
    engine: drctl_failover::Engine,
    store: Store,
    every: std::time::Duration,
    mut term_end: watch::Receiver<bool>,
) {
    let mut driving = tokio::task::JoinSet::new();
    let in_hand: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
    loop {
        match store.unfinished_operations().await {
            Ok(ops) => {
                for op in ops
                    .into_iter()
                    .filter(|o| o.status == drctl_store::states::OpStatus::Running)
                {
                    if !resumable_here(&store, &op).await {
                        continue;
                    }
                    if !in_hand.lock().expect("resume set").insert(op.id.clone()) {
                        continue;
                    }
                    let (engine, in_hand) = (engine.clone(), in_hand.clone());
                    driving.spawn(async move {
                        match engine
                            .resume(&op.id, std::time::Duration::ZERO, &|_| {})
                            .await
                        {
                            Ok(outcome) => tracing::info!(
                                id = %outcome.id, kind = %op.kind, status = ?outcome.status,
                                "resumed an operation whose driver stopped"
                            ),
                            Err(drctl_failover::FailoverError::LeaseBusy { holder, .. }) => {
                                tracing::debug!(id = %op.id, %holder, "operation has a live driver")
                            }
                            Err(e) => tracing::error!(
                                id = %op.id, error = %e,
                                "resuming the operation did not complete it"
                            ),
                        }
                        in_hand.lock().expect("resume set").remove(&op.id);
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read unfinished operations"),
        }
        while driving.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            // Dropping `driving` stops a resumed operation where it is, as a
            // crash would: the next leader resumes it from the journal.
            _ = term_end.wait_for(|s| *s) => return,
        }
    }
}
