//! The replication-lag monitor.
//!
//! For every cluster of replicated (hot or warm) services it samples, at
//! each interval: each standby's durable and replayed positions, then the
//! primary's clock and flushed position, writing a heartbeat row when the
//! primary has written anything since the last one. From the heartbeat map it
//! derives the RPO exposure of each standby (see [`exposure`]), keeps a live
//! view per service for the API, and hands every sample to the state store.
//!
//! It reads every server through the datastore seam ([`drctl_node::Datastore`],
//! opened by [`drctl_node::connect`]) and keeps engine-neutral positions, so
//! a second engine plugs in below without a change here.
//!
//! One task per cluster: a database that hangs or refuses costs its own
//! services a timeout and an `unknown` status, never the others' samples.
//! Cold services and services without a datastore are listed with the reason
//! they have no lag figure; their evidence comes from backups.

pub mod compliance;
pub mod exposure;
mod sampler;
pub mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_config::{Config, Tier};
use drctl_node::Position;
use drctl_store::states::RestoreTestStatus;
use drctl_store::{ExposureStats, LagSample, Store};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use exposure::{Exposure, HeartbeatMap};

pub use status::{BreachClock, Status};

/// What the monitor knows of one service right now.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceView {
    pub service: String,
    pub tier: Tier,
    #[serde(serialize_with = "ser_secs")]
    pub rpo_target: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub rto_target: Duration,
    pub status: Status,
    /// RPO exposure of the best standby, in microseconds.
    pub rpo_exposure_us: Option<i64>,
    pub exposure_lower_bound: bool,
    /// The standby region with the least exposure (where a failover would go).
    pub best_standby: Option<String>,
    pub sampled_at: Option<DateTime<Utc>>,
    pub primary_time: Option<DateTime<Utc>>,
    /// Why the figure is missing or unknown.
    pub error: Option<String>,
    /// How to read the figure when it is not a lag measurement (e.g. a
    /// service without a datastore has nothing to lose).
    pub note: Option<String>,
    /// Since when exposure has been above target (breach after the grace).
    pub above_target_since: Option<DateTime<Utc>>,
    /// The newest sample of each standby region.
    pub standbys: Vec<LagSample>,
    pub stats_1h: ExposureStats,
    pub stats_24h: ExposureStats,
    pub stats_at: Option<DateTime<Utc>>,
    /// Backups and restore tests behind the figures (all tiers with a
    /// backup policy; the cold tier's RPO and RTO come from them).
    pub backup_evidence: Option<BackupEvidence>,
    /// Measured RTO: the newest evidence of how long recovery takes.
    pub rto_measured_us: Option<i64>,
    /// Where the measured RTO comes from (`restore_test …`).
    pub rto_source: Option<String>,
    pub rto_measured_at: Option<DateTime<Utc>>,
    /// Measured RTO against target: `ok`, `breach` (too slow, the latest
    /// restore test failed, or the evidence is older than allowed), or
    /// `unknown` (no evidence yet).
    pub rto_status: Status,
    pub rto_reason: Option<String>,
    /// The newest proof of the tier's kind (drill, failover or switchover
    /// for replicated tiers; passed restore test for cold): what evidence
    /// freshness is judged on ([`compliance`]).
    pub proof: Option<compliance::Proof>,
    /// When the service's configuration last changed, as the daemon found
    /// at start (`None`: never, since drctl first saw it).
    pub config_changed_at: Option<DateTime<Utc>>,
    /// The continuous WAL archive: its receiver and how far behind the
    /// primary it is (on the leading daemon, which runs the archivers).
    pub wal_archive: Option<WalArchiveView>,
}

/// The WAL archive's receiver, as its archiver last said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ArchiveReceiver {
    /// Not started yet.
    #[default]
    Starting,
    Running,
    /// Exited; started again after a pause.
    Waiting,
    Stopped,
}

/// Where a service's WAL archiver stands, as its supervisor publishes it
/// ([`Monitor::publish_archive`]): positions, not lags (the monitor places
/// them on the primary's heartbeat map).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveProgress {
    /// The server streamed from (`service/region`).
    pub source: Option<String>,
    pub receiver: ArchiveReceiver,
    /// While the receiver waits to start again: why it exited.
    pub receiver_error: Option<String>,
    /// How far whole WAL records reach on the receiver's disk.
    pub received: Option<Position>,
    /// How far the object store holds WAL of the current timeline.
    pub archived: Option<Position>,
    /// Where the archived run that ends there begins: a base backup that
    /// starts before it cannot replay this WAL (a hole between).
    pub unbroken_from: Option<Position>,
    /// The last shipping pass's failure, cleared by a good pass.
    pub last_error: Option<String>,
}

/// The WAL archive's lags, measured like a standby's exposure: the age,
/// on the primary's clock, of the oldest commit the receiver's disk (or
/// the object store) does not hold yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalArchiveView {
    pub source: Option<String>,
    pub receiver: ArchiveReceiver,
    pub receiver_error: Option<String>,
    /// Commits not yet durable outside the primary (on the receiver's disk).
    pub receive_lag_us: Option<i64>,
    /// Commits not yet in the object store: what a restore from the
    /// archive would lose now (the cold tier's RPO exposure).
    pub archive_lag_us: Option<i64>,
    /// The map does not reach back far enough: the lags are at least this.
    pub lag_lower_bound: bool,
    pub received_lsn: Option<i64>,
    pub archived_lsn: Option<i64>,
    pub last_error: Option<String>,
    pub sampled_at: Option<DateTime<Utc>>,
    /// The restorable window: from the oldest retained backup the archive
    /// replays from (when it ended: consistent by then), to the newest
    /// commit in the object store (the primary's time of this sample less
    /// the archive lag).
    pub restorable_from: Option<DateTime<Utc>>,
    pub restorable_from_backup: Option<String>,
    pub restorable_to: Option<DateTime<Utc>>,
}

/// The lag monitor's name for the archive where it stands in for a
/// standby (a cold service's samples).
pub const ARCHIVE_STANDBY: &str = "wal-archive";

impl ServiceView {
    /// A service nothing is known about yet.
    pub fn empty(
        service: &str,
        tier: Tier,
        rpo_target: Duration,
        rto_target: Duration,
    ) -> ServiceView {
        ServiceView {
            service: service.to_string(),
            tier,
            rpo_target,
            rto_target,
            status: Status::Unknown,
            rpo_exposure_us: None,
            exposure_lower_bound: false,
            best_standby: None,
            sampled_at: None,
            primary_time: None,
            error: None,
            note: None,
            above_target_since: None,
            standbys: Vec::new(),
            stats_1h: ExposureStats::default(),
            stats_24h: ExposureStats::default(),
            stats_at: None,
            backup_evidence: None,
            rto_measured_us: None,
            rto_source: None,
            rto_measured_at: None,
            rto_status: Status::Unknown,
            rto_reason: None,
            proof: None,
            config_changed_at: None,
            wal_archive: None,
        }
    }
}

/// RTO status from restore tests: the latest must have passed, within the
/// allowed age, and been ready within the target.
fn restore_test_judgement(
    evidence: &BackupEvidence,
    target: Duration,
    max_age: Duration,
    now: DateTime<Utc>,
) -> (Status, Option<String>) {
    let Some(latest) = evidence
        .latest_restore_test
        .as_ref()
        .filter(|t| t.status != RestoreTestStatus::Running)
    else {
        return (Status::Unknown, Some("no restore test yet".into()));
    };
    if latest.status != RestoreTestStatus::Passed {
        return (
            Status::Breach,
            Some(format!(
                "the latest restore test ({}) failed: {}",
                latest.id,
                latest.error.clone().unwrap_or_default()
            )),
        );
    }
    let age = latest
        .ended_at
        .map(|t| (now - t).to_std().unwrap_or_default())
        .unwrap_or(Duration::MAX);
    if age > max_age {
        return (
            Status::Breach,
            Some(format!(
                "the latest passed restore test is {} old, older than the {} allowed: the evidence is stale",
                drctl_config::format_duration_short(age),
                drctl_config::format_duration_short(max_age)
            )),
        );
    }
    match latest
        .time_to_ready_us
        .map(|us| Duration::from_micros(us.max(0) as u64))
    {
        Some(ttr) if ttr > target => (
            Status::Breach,
            Some(format!(
                "restore took {}, over the {} target",
                drctl_config::format_duration_short(ttr),
                drctl_config::format_duration_short(target)
            )),
        ),
        Some(_) => (Status::Ok, None),
        None => (
            Status::Unknown,
            Some("the latest restore test recorded no time to ready".into()),
        ),
    }
}

/// The newest backup evidence of a service.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackupEvidence {
    pub newest_backup: Option<drctl_store::BackupRecord>,
    pub newest_verified_backup: Option<drctl_store::BackupRecord>,
    /// Newest backup whose restore test passed.
    pub newest_restore_tested_backup: Option<drctl_store::BackupRecord>,
    pub latest_restore_test: Option<drctl_store::RestoreTestRecord>,
    /// The oldest retained backups, oldest first: where the restorable
    /// window can begin (the oldest the WAL archive replays from).
    #[serde(skip)]
    pub oldest_backups: Vec<drctl_store::BackupRecord>,
}

/// How many of the oldest backups the monitor reads: the window begins at
/// the oldest of them the archive replays from.
const OLDEST_BACKUPS: i64 = 20;

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl ServiceView {
    pub fn exposure(&self) -> Option<Duration> {
        self.rpo_exposure_us
            .map(|us| Duration::from_micros(us.max(0) as u64))
    }
}

/// Counters for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct MonitorCounters {
    pub samples: AtomicU64,
    pub probe_errors: AtomicU64,
    pub heartbeats: AtomicU64,
    pub store_errors: AtomicU64,
}

struct Inner {
    config: Arc<Config>,
    store: Store,
    views: RwLock<BTreeMap<String, ServiceView>>,
    counters: MonitorCounters,
    /// Clusters whose primary moved (failover, switchover): cluster →
    /// region, from the store's `cluster_roles`; others are where the
    /// config says.
    moved_primaries: RwLock<BTreeMap<String, String>>,
    /// Ended operations per (kind, status), from the store.
    operation_counts: RwLock<Vec<(String, String, i64)>>,
    /// Whether samples go to the store and old ones are folded: only the
    /// leader's, when several daemons share a store (followers sample for
    /// their own live view and would otherwise write every sample twice).
    recording: std::sync::atomic::AtomicBool,
    /// The WAL archivers' progress per service (published on the leader).
    archives: RwLock<BTreeMap<String, ArchiveProgress>>,
}

/// The monitor: cheap to clone, shared with the API.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl Monitor {
    pub fn new(config: Arc<Config>, store: Store) -> Monitor {
        let views = config
            .services
            .iter()
            .map(|s| {
                let stateless = !s.has_datastore();
                let error = if stateless {
                    None
                } else if !s.tier.is_replicated() {
                    Some("cold tier: RPO exposure comes from the newest verified backup; no backup evidence yet".to_string())
                } else {
                    Some("not sampled yet".to_string())
                };
                let mut view = ServiceView::empty(&s.name, s.tier, s.targets.rpo, s.targets.rto);
                view.status = if stateless { Status::Ok } else { Status::Unknown };
                view.rpo_exposure_us = stateless.then_some(0);
                view.error = error;
                view.note = stateless.then(|| {
                    "no datastore: nothing to lose; fails over by health check and DNS".to_string()
                });
                (s.name.clone(), view)
            })
            .collect();
        Monitor {
            inner: Arc::new(Inner {
                config,
                store,
                views: RwLock::new(views),
                counters: MonitorCounters::default(),
                moved_primaries: RwLock::new(BTreeMap::new()),
                operation_counts: RwLock::new(Vec::new()),
                recording: std::sync::atomic::AtomicBool::new(true),
                archives: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Turns writing samples to the store (and folding old ones) on or off;
    /// on by default. The daemon's leader election turns it off on
    /// followers; the live view is the same either way.
    pub fn set_recording(&self, on: bool) {
        self.inner.recording.store(on, Ordering::SeqCst);
    }

    pub fn recording(&self) -> bool {
        self.inner.recording.load(Ordering::SeqCst)
    }

    /// Takes a WAL archiver's progress; the sampler turns it into lags at
    /// its next tick.
    pub fn publish_archive(&self, service: &str, progress: ArchiveProgress) {
        self.inner
            .archives
            .write()
            .expect("archives lock")
            .insert(service.to_string(), progress);
    }

    /// Forgets every archiver's progress (the leader's duties ended: the
    /// archivers stopped, and another daemon runs them now).
    pub fn clear_archives(&self) {
        self.inner.archives.write().expect("archives lock").clear();
        for svc in &self.inner.config.services {
            self.update_view(&svc.name, |v| v.wal_archive = None);
        }
    }

    /// Whether a cold service's RPO exposure is its WAL archive's lag: an
    /// archiver reports, and the backup its exposure stands on (the newest
    /// verified one; restore-tested when `strict`) starts inside the
    /// archive's unbroken run, so restoring it replays the archive to its
    /// end. Otherwise nothing past that backup is restorable, and its age
    /// is the exposure.
    pub(crate) fn archive_serves(
        &self,
        svc: &drctl_config::Service,
        evidence: Option<&BackupEvidence>,
    ) -> bool {
        let Some(progress) = self.archive_progress(&svc.name) else {
            return false;
        };
        let strict = svc.backup.as_ref().is_some_and(|b| b.strict);
        let basis = evidence.and_then(|e| match strict {
            true => e.newest_restore_tested_backup.as_ref(),
            false => e.newest_verified_backup.as_ref(),
        });
        let engine = drctl_node::Engine::of(svc);
        let start = basis
            .and_then(|b| b.start_lsn.as_deref())
            .and_then(|t| engine.parse_position(t));
        match (start, progress.unbroken_from, progress.archived) {
            (Some(start), Some(from), Some(to)) => from <= start && start <= to,
            _ => false,
        }
    }

    pub(crate) fn archive_progress(&self, service: &str) -> Option<ArchiveProgress> {
        self.inner
            .archives
            .read()
            .expect("archives lock")
            .get(service)
            .cloned()
    }

    /// The region holding `service`'s primary now: where the last failover
    /// or switchover put it, else the config's `primary`.
    pub fn primary_region(&self, service: &drctl_config::Service) -> String {
        self.inner
            .moved_primaries
            .read()
            .expect("roles lock")
            .get(&service.cluster)
            .cloned()
            .unwrap_or_else(|| service.primary.clone())
    }

    /// Reads the store's cluster roles (once an interval): samplers pick up
    /// a new primary at their next tick.
    async fn refresh_roles(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.inner.config.monitor.interval);
        loop {
            match self.inner.store.cluster_roles().await {
                Ok(roles) => {
                    *self.inner.moved_primaries.write().expect("roles lock") = roles
                        .into_iter()
                        .map(|r| (r.cluster, r.primary_region))
                        .collect();
                }
                Err(e) => tracing::warn!(error = %e, "cannot read cluster roles"),
            }
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// The config, shared (for work that outlives a request).
    pub fn config_arc(&self) -> Arc<Config> {
        self.inner.config.clone()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Ended operations per (kind, status), as of the last refresh.
    pub fn operation_counts(&self) -> Vec<(String, String, i64)> {
        self.inner
            .operation_counts
            .read()
            .expect("counts lock")
            .clone()
    }

    pub fn counters(&self) -> &MonitorCounters {
        &self.inner.counters
    }

    /// Every service's view, in config order.
    pub fn views(&self) -> Vec<ServiceView> {
        let views = self.inner.views.read().expect("views lock");
        self.inner
            .config
            .services
            .iter()
            .filter_map(|s| views.get(&s.name).cloned())
            .collect()
    }

    pub fn view(&self, service: &str) -> Option<ServiceView> {
        self.inner
            .views
            .read()
            .expect("views lock")
            .get(service)
            .cloned()
    }

    /// Records when `service`'s configuration last changed (the daemon
    /// compares fingerprints in the store at start).
    pub fn note_config_changed(&self, service: &str, at: Option<DateTime<Utc>>) {
        self.update_view(service, |v| v.config_changed_at = at);
    }

    pub(crate) fn update_view(&self, service: &str, f: impl FnOnce(&mut ServiceView)) {
        if let Some(v) = self
            .inner
            .views
            .write()
            .expect("views lock")
            .get_mut(service)
        {
            f(v);
        }
    }

    /// The replicated services with a datastore, and the cold ones that
    /// archive WAL (their exposure is the archive's), grouped by cluster:
    /// WAL positions belong to a cluster, so one sampler measures every
    /// service that shares it (one connection per region, not one per
    /// service).
    fn sampled_clusters(&self) -> Vec<Vec<drctl_config::Service>> {
        let mut clusters: BTreeMap<&str, Vec<drctl_config::Service>> = BTreeMap::new();
        for s in &self.inner.config.services {
            let archived = s.backup.as_ref().is_some_and(|b| b.wal_archive.is_some());
            if (s.tier.is_replicated() || archived) && s.has_datastore() {
                clusters
                    .entry(s.cluster.as_str())
                    .or_default()
                    .push(s.clone());
            }
        }
        clusters.into_values().collect()
    }

    /// Runs the monitor until `shutdown` turns true: one sampler per
    /// replicated cluster, the store writer, the statistics refresher and
    /// the downsampler.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel::<LagSample>(16_384);
        let mut tasks = JoinSet::new();
        for members in self.sampled_clusters() {
            tasks.spawn(sampler::sample_cluster(
                self.clone(),
                members,
                tx.clone(),
                shutdown.clone(),
            ));
        }
        drop(tx);
        tasks.spawn(self.clone().write_samples(rx));
        tasks.spawn(self.clone().refresh_roles(shutdown.clone()));
        tasks.spawn(self.clone().refresh_stats(shutdown.clone()));
        tasks.spawn(self.clone().refresh_backup_evidence(shutdown.clone()));
        tasks.spawn(self.clone().refresh_operation_evidence(shutdown.clone()));
        tasks.spawn(self.clone().downsample(shutdown.clone()));
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Samplers and periodic tasks stop at the signal; the writer stops
        // when the samplers have dropped their senders, after a last flush.
        while tasks.join_next().await.is_some() {}
    }

    /// Batches samples into one store transaction per interval.
    async fn write_samples(self, mut rx: mpsc::Receiver<LagSample>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            // Gather what the other samplers send in the same tick.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while let Ok(Some(s)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                batch.push(s);
                if batch.len() >= 5_000 {
                    break;
                }
            }
            if !self.recording() {
                batch.clear();
                continue;
            }
            if let Err(e) = self.inner.store.insert_lag_samples(&batch).await {
                self.inner
                    .counters
                    .store_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, samples = batch.len(), "could not store lag samples; the live view is unaffected");
            }
            batch.clear();
        }
    }

    /// Recomputes the 1 h and 24 h exposure percentiles from the store.
    async fn refresh_stats(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(15));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            for view in self.views() {
                let Some(region) = view.best_standby.clone() else {
                    continue;
                };
                let now = Utc::now();
                let store = &self.inner.store;
                let h1 = store
                    .exposure_stats(
                        &view.service,
                        Some(&region),
                        now - chrono::TimeDelta::hours(1),
                    )
                    .await;
                let h24 = store
                    .exposure_stats(
                        &view.service,
                        Some(&region),
                        now - chrono::TimeDelta::hours(24),
                    )
                    .await;
                match (h1, h24) {
                    (Ok(h1), Ok(h24)) => self.update_view(&view.service, |v| {
                        v.stats_1h = h1;
                        v.stats_24h = h24;
                        v.stats_at = Some(now);
                    }),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(service = %view.service, error = %e, "could not compute exposure statistics")
                    }
                }
            }
        }
    }

    /// Reads the measured RTO of the newest succeeded failover, switchover or
    /// drill of each replicated service's cluster every few seconds: the
    /// replicated tiers' RTO evidence (a drill's includes its clone, so it
    /// errs long).
    async fn refresh_operation_evidence(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Ok(counts) = self.inner.store.operation_counts().await {
                *self.inner.operation_counts.write().expect("counts lock") = counts;
            }
            let Ok(ops) = self.inner.store.operations(500).await else {
                continue;
            };
            for svc in self
                .inner
                .config
                .services
                .iter()
                .filter(|s| s.tier.is_replicated())
            {
                let proof = ops
                    .iter()
                    .filter(|o| {
                        o.status == drctl_store::states::OpStatus::Succeeded
                            && o.target.as_deref() == Some(svc.cluster.as_str())
                            && o.kind.moves_a_service()
                    })
                    .filter_map(|o| Some((o, o.ended_at?)))
                    .max_by_key(|(_, at)| *at)
                    .map(|(o, at)| compliance::Proof {
                        kind: o.kind.to_string(),
                        id: o.id.clone(),
                        at,
                    });
                if proof.is_some() {
                    self.update_view(&svc.name, |v| v.proof = proof);
                }
                let newest = ops
                    .iter()
                    .filter(|o| {
                        o.status == drctl_store::states::OpStatus::Succeeded
                            && o.target.as_deref() == Some(svc.cluster.as_str())
                            && o.kind.moves_a_service()
                    })
                    .filter_map(|o| {
                        let rto_ms =
                            serde_json::from_str::<serde_json::Value>(o.result.as_deref()?)
                                .ok()?
                                .get("rto_ms")?
                                .as_u64()?;
                        Some((o, rto_ms))
                    })
                    .max_by_key(|(o, _)| o.ended_at);
                let Some((op, rto_ms)) = newest else { continue };
                let target = svc.targets.rto;
                self.update_view(&svc.name, |v| {
                    if op.ended_at < v.rto_measured_at {
                        return;
                    }
                    v.rto_measured_us = Some(rto_ms as i64 * 1000);
                    v.rto_source = Some(format!("{} {}", op.kind, op.id));
                    v.rto_measured_at = op.ended_at;
                    let met = Duration::from_millis(rto_ms) <= target;
                    v.rto_status = if met { Status::Ok } else { Status::Breach };
                    v.rto_reason = Some(format!(
                        "{} measured {} against the target {}",
                        op.kind,
                        drctl_config::format_duration_short(Duration::from_millis(rto_ms)),
                        drctl_config::format_duration_short(target)
                    ));
                });
            }
        }
    }

    /// Reads backup and restore-test evidence from the store every few
    /// seconds. For cold services it is the RPO and RTO: exposure = now −
    /// end of the newest verified backup (strict: newest restore-tested
    /// one), RTO = time to ready of the latest passed restore test.
    async fn refresh_backup_evidence(self, mut shutdown: watch::Receiver<bool>) {
        let mut clocks: BTreeMap<String, BreachClock> = BTreeMap::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            for svc in self.inner.config.services.iter() {
                let Some(policy) = &svc.backup else { continue };
                match self.backup_evidence(&svc.name).await {
                    Ok(evidence) => {
                        let now = Utc::now();
                        let grace = self.inner.config.monitor.breach_grace;
                        let clock = clocks.entry(svc.name.clone()).or_default();
                        let passed_test = evidence
                            .latest_restore_test
                            .as_ref()
                            .filter(|t| t.status == RestoreTestStatus::Passed)
                            .cloned();
                        let (rto_status, rto_reason) = restore_test_judgement(
                            &evidence,
                            svc.targets.rto,
                            policy.restore_test_max_age,
                            now,
                        );
                        let archive_measured = self.archive_serves(svc, Some(&evidence));
                        self.update_view(&svc.name, |v| {
                            // The newest evidence wins: a failover, drill or
                            // switchover newer than the restore test stays.
                            if let Some(t) = passed_test
                                .as_ref()
                                .filter(|t| t.ended_at >= v.rto_measured_at || v.rto_source.as_deref().is_some_and(|s| s.starts_with("restore_test")))
                            {
                                v.rto_measured_us = t.time_to_ready_us;
                                v.rto_source = Some(format!("restore_test {}", t.id));
                                v.rto_measured_at = t.ended_at;
                            }
                            // Until failovers and drills measure it, the cold
                            // tier's RTO stands on its restore tests.
                            if !svc.tier.is_replicated() {
                                if let Some(t) = &passed_test {
                                    v.proof = t.ended_at.map(|at| compliance::Proof {
                                        kind: "restore_test".into(),
                                        id: t.id.clone(),
                                        at,
                                    });
                                }
                                v.rto_status = rto_status;
                                v.rto_reason = rto_reason.clone();
                            }
                            // A cold service whose archive is measured
                            // stands on the archive (the sampler's).
                            if !svc.tier.is_replicated() && !archive_measured {
                                let basis = if policy.strict {
                                    evidence.newest_restore_tested_backup.as_ref()
                                } else {
                                    evidence.newest_verified_backup.as_ref()
                                };
                                match basis.and_then(|b| b.ended_at) {
                                    Some(end) => {
                                        let us = (now - end).num_microseconds().unwrap_or(i64::MAX).max(0);
                                        v.rpo_exposure_us = Some(us);
                                        v.status = clock.judge(Some(Duration::from_micros(us as u64)), svc.targets.rpo, grace, now);
                                        v.above_target_since = clock.above_since();
                                        v.error = None;
                                    }
                                    None => {
                                        v.rpo_exposure_us = None;
                                        v.status = Status::Unknown;
                                        v.error = Some(if policy.strict {
                                            "cold tier (strict): no restore-tested backup yet; run `drctl restore-test`".into()
                                        } else {
                                            "cold tier: no verified backup yet; run `drctl backup run` and `drctl backup verify`".into()
                                        });
                                    }
                                }
                                v.sampled_at = Some(now);
                            }
                            v.backup_evidence = Some(evidence.clone());
                        });
                    }
                    Err(e) => {
                        tracing::warn!(service = %svc.name, error = %e, "could not read backup evidence")
                    }
                }
            }
        }
    }

    async fn backup_evidence(
        &self,
        service: &str,
    ) -> Result<BackupEvidence, drctl_store::StoreError> {
        let store = &self.inner.store;
        Ok(BackupEvidence {
            newest_backup: store.backups(Some(service), 1).await?.into_iter().next(),
            newest_verified_backup: store.newest_verified_backup(service).await?,
            newest_restore_tested_backup: store.newest_restore_tested_backup(service).await?,
            latest_restore_test: store
                .restore_tests(Some(service), 1)
                .await?
                .into_iter()
                .next(),
            oldest_backups: store
                .oldest_complete_backups(service, OLDEST_BACKUPS)
                .await?,
        })
    }

    /// Folds old samples into rollups every ten minutes.
    async fn downsample(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if !self.recording() {
                continue;
            }
            let m = &self.inner.config.monitor;
            let now = Utc::now();
            // Checked: a retention longer than history keeps everything
            // rather than panicking the monitor.
            let before = |d: Duration| {
                chrono::TimeDelta::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_sub_signed(d))
                    .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
            };
            let (raw, rollups) = (before(m.raw_retention), before(m.rollup_retention));
            match self.inner.store.downsample_lag(raw, rollups).await {
                Ok(r) => tracing::debug!(?r, "downsampled lag history"),
                Err(e) => tracing::warn!(error = %e, "could not downsample lag history"),
            }
        }
    }
}
