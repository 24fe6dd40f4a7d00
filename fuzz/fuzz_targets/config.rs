//! Any text as a drctl config file: parsed and validated, every error
//! rendered (file:line:column, hint) — never a panic. A config that passes
//! is then run through the daemon's planning code that consumes its
//! durations and counts (the automatic-failover detector and its brakes,
//! the breach clock, evidence compliance, the leader's tick and the
//! compliance report over a store holding samples, rollups, backups and a
//! drill): whatever validation accepts must not panic the daemon later
//! (`cooldown = "300000y"` once did, exactly when a failover was needed).
#![no_main]

use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta, Utc};
use drctl_failover::auto::{Brakes, Detector, DetectorSettings, Observation, ReceiverView};
use libfuzzer_sys::fuzz_target;

/// One state store for the whole run, with history for the services the
/// seeds name, so the report's arithmetic meets real rows.
struct Harness {
    rt: tokio::runtime::Runtime,
    store: drctl_store::Store,
    now: DateTime<Utc>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("drctl-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("state.db").display());
        let now = Utc::now();
        let store = rt.block_on(async {
            let store = drctl_store::Store::open(&url).await.unwrap();
            let mut batch = Vec::new();
            for service in ["orders", "payments", "inventory", "catalog"] {
                // Two days of a sample every ten minutes: the older day is
                // folded into rollups below, the newer stays raw.
                for i in 0..2 * 144 {
                    let at = now - TimeDelta::minutes(10 * i);
                    let exposure = (i % 7) * 1_000_000;
                    batch.push(drctl_store::LagSample::bare(
                        service,
                        "us-east",
                        at,
                        Some(exposure),
                    ));
                }
            }
            store.insert_lag_samples(&batch).await.unwrap();
            store
                .downsample_lag(now - TimeDelta::days(1), now - TimeDelta::days(30))
                .await
                .unwrap();
            store
        });
        Harness { rt, store, now }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match drctl_config::parse("fuzz.toml", text, std::path::Path::new("/nonexistent")) {
        Ok(config) => {
            // What the CLI and the API print of a valid config.
            let _ = serde_json::to_string(&config.services);
            let _ = format!("{config:?}");
            plan(&config);
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});

/// The daemon's computations over the config's durations, at the extremes
/// of what the store or the clock can hand them.
fn plan(config: &drctl_config::Config) {
    let h = harness();
    let now = h.now;
    let _ = drctl_daemon::leader::tick(config.failover.lease);
    let long_ago = DateTime::<Utc>::MIN_UTC;
    for svc in &config.services {
        // The guard: failures, min_down, cooldown and the global window and
        // limit decide over a run of failed probes, one health interval apart.
        let settings = DetectorSettings {
            failures: svc.health.failures,
            min_down: svc.failover.min_down,
            cooldown: svc.failover.cooldown,
            limit: config.failover.automatic_limit,
            window: config.failover.automatic_window,
        };
        for last_automatic in [None, Some(now), Some(long_ago)] {
            let brakes = Brakes {
                enabled: svc.failover.automatic,
                last_automatic,
                automatic_in_window: 0,
                operation_in_progress: false,
            };
            let mut detector = Detector::default();
            let step = TimeDelta::from_std(config.monitor.interval).unwrap_or(TimeDelta::MAX);
            let mut at = now;
            for _ in 0..5 {
                let o = Observation {
                    at,
                    primary_error: Some("refused".into()),
                    receiver: ReceiverView::Disconnected { status: None },
                    lease: None,
                };
                let _ = detector.observe(&settings, &o, &brakes);
                at = at.checked_add_signed(step).unwrap_or(at);
            }
        }
        // The monitor: the breach clock's grace and evidence compliance.
        let mut clock = drctl_monitor::BreachClock::default();
        for at in [long_ago, now] {
            let _ = clock.judge(
                Some(svc.targets.rpo.saturating_mul(2)),
                svc.targets.rpo,
                config.monitor.breach_grace,
                at,
            );
        }
        let mut view = drctl_monitor::ServiceView::empty(
            &svc.name,
            svc.tier,
            svc.targets.rpo,
            svc.targets.rto,
        );
        for at in [now, long_ago, DateTime::<Utc>::MAX_UTC] {
            view.proof = Some(drctl_monitor::compliance::Proof {
                kind: "drill".into(),
                id: "d1".into(),
                at,
            });
            let _ = drctl_monitor::compliance::assess(&view, svc.targets.evidence_every, now);
        }
    }
    // The compliance report over the default period and the longest one the
    // API serves, on the store's history.
    for days in [30, 93] {
        let from = now - TimeDelta::days(days);
        let report =
            h.rt.block_on(drctl_report::build(config, &h.store, from, now))
                .expect("the report reads the store");
        let _ = drctl_report::to_markdown(&report);
        let _ = drctl_report::to_csv(&report);
    }
}
