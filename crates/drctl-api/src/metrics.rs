//! Prometheus exposition of the monitor's live view, built per scrape (the
//! view is the source of truth; a registry kept alongside could drift).

use std::sync::atomic::{AtomicU64, Ordering};

use drctl_monitor::{Monitor, Status};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

pub(crate) fn render(
    config: &drctl_config::Config,
    monitor: &Monitor,
    alerts: &AlertCounters,
    leadership: &crate::leadership::Leadership,
) -> String {
    let mut registry = Registry::with_prefix("drctl");
    let now = chrono::Utc::now();
    let p99 = FloatGauges::default();
    let rto_target = FloatGauges::default();
    let rto_measured = FloatGauges::default();
    let evidence_age = FloatGauges::default();
    let evidence_every = FloatGauges::default();
    let compliance = Family::<Labels, Gauge>::default();
    let verified_age = FloatGauges::default();
    let exposure = FloatGauges::default();
    let target = FloatGauges::default();
    let status = Family::<Labels, Gauge>::default();
    let byte_lag = FloatGauges::default();
    let replay_lag = FloatGauges::default();
    let archive_lag = FloatGauges::default();
    let receive_lag = FloatGauges::default();
    let receiver_up = Family::<Labels, Gauge>::default();
    for v in monitor.views() {
        let svc = vec![
            ("service".to_string(), v.service.clone()),
            ("tier".to_string(), v.tier.to_string()),
        ];
        target.get_or_create(&svc).set(v.rpo_target.as_secs_f64());
        let every = config
            .service(&v.service)
            .map(|s| s.targets.evidence_every)
            .unwrap_or_else(|| config.tiers.get(v.tier).evidence_every);
        let judged = drctl_monitor::compliance::assess(&v, every, now);
        if let Some(s) = judged.rpo.p99_s {
            p99.get_or_create(&svc).set(s);
        }
        rto_target
            .get_or_create(&svc)
            .set(v.rto_target.as_secs_f64());
        if let Some(s) = judged.rto.measured_s {
            rto_measured.get_or_create(&svc).set(s);
        }
        if let Some(s) = judged.evidence.age_s {
            evidence_age.get_or_create(&svc).set(s);
        }
        evidence_every.get_or_create(&svc).set(every.as_secs_f64());
        for s in drctl_monitor::compliance::STATUSES {
            let mut l = svc.clone();
            l.push(("status".into(), s.to_string()));
            compliance
                .get_or_create(&l)
                .set((judged.status == *s) as i64);
        }
        if let Some(end) = v
            .backup_evidence
            .as_ref()
            .and_then(|e| e.newest_verified_backup.as_ref())
            .and_then(|b| b.ended_at)
        {
            verified_age
                .get_or_create(&svc)
                .set((now - end).num_milliseconds() as f64 / 1e3);
        }
        if let Some(us) = v.rpo_exposure_us {
            exposure.get_or_create(&svc).set(us as f64 / 1e6);
        }
        for &s in <Status as strum::VariantArray>::VARIANTS {
            let mut l = svc.clone();
            l.push(("status".into(), s.to_string()));
            status.get_or_create(&l).set((v.status == s) as i64);
        }
        if let Some(w) = &v.wal_archive {
            if let Some(us) = w.archive_lag_us {
                archive_lag.get_or_create(&svc).set(us as f64 / 1e6);
            }
            if let Some(us) = w.receive_lag_us {
                receive_lag.get_or_create(&svc).set(us as f64 / 1e6);
            }
            receiver_up
                .get_or_create(&svc)
                .set((w.receiver == drctl_monitor::ArchiveReceiver::Running) as i64);
        }
        for sb in &v.standbys {
            let l = vec![
                ("service".to_string(), v.service.clone()),
                ("standby_region".to_string(), sb.standby_region.clone()),
            ];
            if let Some(b) = sb.byte_lag {
                byte_lag.get_or_create(&l).set(b as f64);
            }
            if let Some(us) = sb.replay_lag_us {
                replay_lag.get_or_create(&l).set(us as f64 / 1e6);
            }
        }
    }
    registry.register(
        "rpo_exposure_seconds",
        "RPO exposure now: age of the oldest commit not durable on the best standby",
        exposure,
    );
    registry.register("rpo_target_seconds", "RPO target of the service", target);
    registry.register(
        "service_status",
        "1 for the service's current status, 0 for the others",
        status,
    );
    registry.register(
        "replication_byte_lag_bytes",
        "WAL bytes flushed on the primary and not yet durable on the standby",
        byte_lag,
    );
    registry.register(
        "replication_replay_lag_seconds",
        "Age of the oldest commit not yet replayed on the standby",
        replay_lag,
    );
    registry.register(
        "wal_archive_lag_seconds",
        "Age of the oldest commit not yet in the WAL archive's object store (leader only)",
        archive_lag,
    );
    registry.register(
        "wal_receive_lag_seconds",
        "Age of the oldest commit not yet on the WAL receiver's disk (leader only)",
        receive_lag,
    );
    registry.register(
        "wal_receiver_running",
        "1 while the service's WAL receiver runs, 0 while it waits to start again (leader only)",
        receiver_up,
    );
    registry.register(
        "rpo_exposure_p99_seconds",
        "p99 of RPO exposure over the last hour",
        p99,
    );
    registry.register(
        "rto_target_seconds",
        "RTO target of the service",
        rto_target,
    );
    registry.register(
        "rto_measured_seconds",
        "The newest measured RTO (failover, switchover, drill or restore test)",
        rto_measured,
    );
    registry.register(
        "evidence_age_seconds",
        "Age of the newest proof of the tier's kind (drill for hot and warm, restore test for cold)",
        evidence_age,
    );
    registry.register(
        "evidence_required_every_seconds",
        "How often the tier's proof is required (evidence_every)",
        evidence_every,
    );
    registry.register(
        "compliance_status",
        "1 for the service's current compliance status, 0 for the others",
        compliance,
    );
    registry.register(
        "backup_newest_verified_age_seconds",
        "Age of the end of the newest verified backup",
        verified_age,
    );
    let operations = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, status, n) in monitor.operation_counts() {
        operations
            .get_or_create(&vec![("kind".into(), kind), ("status".into(), status)])
            .inc_by(n.max(0) as u64);
    }
    registry.register(
        "operations",
        "Operations that ended, by kind and status",
        operations,
    );
    let deliveries = Family::<Vec<(String, String)>, Counter>::default();
    for ((webhook, outcome), n) in alerts.snapshot() {
        deliveries
            .get_or_create(&vec![
                ("webhook".into(), webhook),
                ("outcome".into(), outcome),
            ])
            .inc_by(n);
    }
    registry.register(
        "alert_deliveries",
        "Alert posts to webhooks since the daemon started, by outcome (delivered, retried, failed, deferred)",
        deliveries,
    );
    let up = Gauge::<i64>::default();
    up.set(1);
    registry.register("up", "1 while the daemon answers", up);
    let standing = leadership.standing();
    let leader = Gauge::<i64>::default();
    leader.set(standing.leading as i64);
    registry.register(
        "leader",
        "1 while this daemon leads (runs the guard, the scheduler, alerts and resumes), 0 while it follows",
        leader,
    );
    let term = Gauge::<i64>::default();
    term.set(standing.leader.as_ref().map_or(0, |l| l.token));
    registry.register(
        "leader_term",
        "The leader lease's token as this daemon last read it: a change is a new leader",
        term,
    );
    let c = monitor.counters();
    for (name, help, value) in [
        ("monitor_samples", "Lag samples taken", &c.samples),
        (
            "monitor_probe_errors",
            "Service samples that failed",
            &c.probe_errors,
        ),
        (
            "monitor_heartbeats",
            "Heartbeat rows written on primaries",
            &c.heartbeats,
        ),
        (
            "monitor_store_errors",
            "Batches of samples the store refused",
            &c.store_errors,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(value.load(Ordering::Relaxed));
        registry.register(name, help, counter);
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// Deliveries per webhook and outcome since the daemon started.
#[derive(Default, Debug)]
pub struct AlertCounters {
    inner: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
}

impl AlertCounters {
    /// One more delivery to `webhook` ended with `outcome`.
    pub fn bump(&self, webhook: &str, outcome: &str) {
        *self
            .inner
            .lock()
            .expect("alert counters lock")
            .entry((webhook.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> std::collections::BTreeMap<(String, String), u64> {
        self.inner.lock().expect("alert counters lock").clone()
    }
}
