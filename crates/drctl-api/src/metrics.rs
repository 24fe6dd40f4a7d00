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

pub(crate) fn render(monitor: &Monitor) -> String {
    let mut registry = Registry::with_prefix("drctl");
    let exposure = FloatGauges::default();
    let target = FloatGauges::default();
    let status = Family::<Labels, Gauge>::default();
    let byte_lag = FloatGauges::default();
    let replay_lag = FloatGauges::default();
    for v in monitor.views() {
        let svc = vec![
            ("service".to_string(), v.service.clone()),
            ("tier".to_string(), v.tier.to_string()),
        ];
        target.get_or_create(&svc).set(v.rpo_target.as_secs_f64());
        if let Some(us) = v.rpo_exposure_us {
            exposure.get_or_create(&svc).set(us as f64 / 1e6);
        }
        for s in [Status::Ok, Status::AtRisk, Status::Breach, Status::Unknown] {
            let mut l = svc.clone();
            l.push(("status".into(), s.as_str().into()));
            status.get_or_create(&l).set((v.status == s) as i64);
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
