//! Automatic failover's decision, as a pure state machine over what the
//! daemon observes each probe interval.
//!
//! A primary is declared lost only when drctl's own probes have failed
//! `failures` times in a row (`[services.health]`, default [`MIN_PROBES`])
//! spanning at least `min_down`, **and** the
//! standby reports its WAL receiver disconnected from the primary (a second
//! vantage point: trouble on drctl's own network path must not fail a shop
//! over). Then a cooldown per cluster and a
//! limit per window across all services stop a flapping network from
//! ping-ponging regions. Every verdict carries its evidence, and the daemon
//! records each change of verdict.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_store::states::GuardDecision;
use serde::{Deserialize, Serialize};

/// Consecutive failed probes needed by default (`[services.health]
/// failures`), whatever `min_down` says: one lost packet is not a lost region.
pub const MIN_PROBES: u32 = 3;
const TICK_JITTER: Duration = Duration::from_millis(50);

/// What the daemon saw in one probe round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub at: DateTime<Utc>,
    /// drctl's probe of the primary: `None` answered writable, else why not.
    pub primary_error: Option<String>,
    /// The standby's WAL receiver, by the standby's own clock.
    pub receiver: ReceiverView,
    /// The primary's lease in etcd (`[coordination]`): the second vantage
    /// point that tells a primary only drctl lost from one that is down.
    /// `None`: no coordination for this cluster.
    #[serde(default)]
    pub lease: Option<LeaseView>,
}

/// What etcd says of the primary's lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseView {
    /// The primary's region holds it, this long left: it renews it through
    /// the quorum, so it is alive.
    Held { ttl_left_ms: u64 },
    /// Nobody holds it for the primary's region (expired, released, or
    /// another holder).
    Released { holder: Option<String> },
    /// drctl cannot reach the etcd quorum: this side of a partition is
    /// the minority, and nothing may be promoted from it.
    Unknown { error: String },
}

/// What the standby says about its link to the primary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReceiverView {
    /// Streaming, last message from the primary this long ago.
    Streaming { silent_ms: u64 },
    /// No WAL receiver, or not streaming.
    Disconnected { status: Option<String> },
    /// The standby itself did not answer: no second opinion.
    Unknown { error: String },
}

impl ReceiverView {
    /// The standby lost its connection to the primary. Silence on a
    /// streaming connection is no proof: an idle primary sends nothing
    /// (keepalives only every `wal_sender_timeout`/2 without replies), so a
    /// primary cut off without a reset is confirmed when the standby's
    /// `wal_receiver_timeout` ends the connection — that setting bounds how
    /// fast a silent partition is acted on.
    fn confirms_loss(&self) -> bool {
        matches!(self, ReceiverView::Disconnected { .. })
    }
}

/// The brakes, read from the store each round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Brakes {
    /// Automatic failover is on for this service.
    pub enabled: bool,
    /// The last automatic failover of this cluster.
    pub last_automatic: Option<DateTime<Utc>>,
    /// Automatic failovers of any service within the window.
    pub automatic_in_window: u32,
    /// An operation on the cluster is unfinished (a person or another
    /// driver is on it).
    pub operation_in_progress: bool,
}

/// The verdict of one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    /// Probes fail, not long enough yet.
    Suspect {
        since: DateTime<Utc>,
        failed_probes: u32,
    },
    /// Lost by drctl's probes, but no failover: `reason` says why.
    Hold {
        since: DateTime<Utc>,
        failed_probes: u32,
        code: String,
        reason: String,
    },
    /// Fail over now; RTO counts from `detected_at` (the first failed probe).
    FailOver {
        detected_at: DateTime<Utc>,
        failed_probes: u32,
        evidence: String,
    },
}

impl Verdict {
    /// The decision it is, as the decision log stores it.
    pub fn decision(&self) -> GuardDecision {
        match self {
            Verdict::Healthy => GuardDecision::Healthy,
            Verdict::Suspect { .. } => GuardDecision::Suspect,
            Verdict::Hold { .. } => GuardDecision::Hold,
            Verdict::FailOver { .. } => GuardDecision::Failover,
        }
    }

    /// Same decision for the same reason (what the daemon records once per
    /// change): the decision and, for a hold, its blocker code.
    pub fn key(&self) -> (GuardDecision, Option<&str>) {
        match self {
            Verdict::Hold { code, .. } => (GuardDecision::Hold, Some(code.as_str())),
            other => (other.decision(), None),
        }
    }
}

/// Detector settings of one cluster.
#[derive(Clone, Debug)]
pub struct DetectorSettings {
    /// Consecutive failed probes before the primary counts as lost
    /// (`[services.health] failures`; at least one).
    pub failures: u32,
    pub min_down: Duration,
    pub cooldown: Duration,
    pub limit: u32,
    pub window: Duration,
}

/// The per-cluster state: the run of failed probes.
#[derive(Clone, Debug, Default)]
pub struct Detector {
    first_failure: Option<DateTime<Utc>>,
    failed: u32,
}

impl Detector {
    pub fn observe(&mut self, s: &DetectorSettings, o: &Observation, b: &Brakes) -> Verdict {
        let Some(error) = &o.primary_error else {
            *self = Detector::default();
            return Verdict::Healthy;
        };
        let since = *self.first_failure.get_or_insert(o.at);
        self.failed += 1;
        let down_for = (o.at - since).to_std().unwrap_or_default();
        // Probe rounds are a timer's ticks apart: a tick a hair early must
        // not cost a whole interval.
        if self.failed < s.failures.max(1) || down_for + TICK_JITTER < s.min_down {
            return Verdict::Suspect {
                since,
                failed_probes: self.failed,
            };
        }
        let hold = |code: &str, reason: String| Verdict::Hold {
            since,
            failed_probes: self.failed,
            code: code.into(),
            reason,
        };
        match &o.lease {
            Some(LeaseView::Held { ttl_left_ms }) => {
                return hold(
                    "primary_holds_lease",
                    format!(
                        "drctl cannot reach the primary, but it still renews its lease through the etcd quorum ({:.1}s left): it is alive and only drctl's path to it is lost",
                        *ttl_left_ms as f64 / 1000.0
                    ),
                )
            }
            Some(LeaseView::Unknown { error }) => {
                return hold(
                    "no_quorum",
                    format!(
                        "drctl cannot reach the etcd quorum ({error}): it is on the minority side, where nothing may be promoted"
                    ),
                )
            }
            Some(LeaseView::Released { .. }) | None => {}
        }
        if !o.receiver.confirms_loss() {
            return hold(
                "standby_sees_primary",
                match &o.receiver {
                    ReceiverView::Unknown { error } => format!(
                        "the standby does not answer either ({error}): no second vantage point confirms the primary is lost"
                    ),
                    r => format!(
                        "the standby still hears from the primary ({r:?}): the trouble is on drctl's path, not the primary"
                    ),
                },
            );
        }
        if b.operation_in_progress {
            return hold(
                "operation_in_progress",
                "an operation on the cluster is unfinished".into(),
            );
        }
        if !b.enabled {
            return hold(
                "automatic_off",
                "automatic failover is off for this service: fail over by hand (drctl failover)"
                    .into(),
            );
        }
        if let Some(last) = b.last_automatic {
            let since_last = (o.at - last).to_std().unwrap_or_default();
            if since_last < s.cooldown {
                return hold(
                    "cooldown",
                    format!(
                        "the last automatic failover was {}s ago, the cooldown is {}s",
                        since_last.as_secs(),
                        s.cooldown.as_secs()
                    ),
                );
            }
        }
        if b.automatic_in_window >= s.limit {
            return hold(
                "limit",
                format!(
                    "{} automatic failovers within {}s already (limit {})",
                    b.automatic_in_window,
                    s.window.as_secs(),
                    s.limit
                ),
            );
        }
        Verdict::FailOver {
            detected_at: since,
            failed_probes: self.failed,
            evidence: format!(
                "{} probes failed over {:.1}s (last: {error}); the standby confirms: {:?}",
                self.failed,
                down_for.as_secs_f64(),
                o.receiver
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DetectorSettings {
        DetectorSettings {
            failures: MIN_PROBES,
            min_down: Duration::from_secs(3),
            cooldown: Duration::from_secs(900),
            limit: 3,
            window: Duration::from_secs(86400),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn obs(s: i64, primary_ok: bool, receiver: ReceiverView) -> Observation {
        Observation {
            at: at(s),
            primary_error: (!primary_ok).then(|| "connection refused".into()),
            receiver,
            lease: None,
        }
    }

    fn on() -> Brakes {
        Brakes {
            enabled: true,
            ..Brakes::default()
        }
    }

    const GONE: ReceiverView = ReceiverView::Disconnected { status: None };

    #[test]
    fn a_lost_primary_is_failed_over_after_enough_probes_spanning_min_down() {
        let mut d = Detector::default();
        let s = settings();
        assert_eq!(d.observe(&s, &obs(0, true, GONE), &on()), Verdict::Healthy);
        for t in 1..=3 {
            assert!(
                matches!(
                    d.observe(&s, &obs(t, false, GONE), &on()),
                    Verdict::Suspect { .. }
                ),
                "t={t}"
            );
        }
        match d.observe(&s, &obs(4, false, GONE), &on()) {
            Verdict::FailOver {
                detected_at,
                failed_probes,
                ..
            } => {
                assert_eq!(detected_at, at(1), "RTO counts from the first failed probe");
                assert_eq!(failed_probes, 4);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn three_quick_failures_are_not_enough_without_min_down() {
        let mut d = Detector::default();
        let mut s = settings();
        s.min_down = Duration::from_secs(10);
        for t in 0..5 {
            assert!(matches!(
                d.observe(&s, &obs(t, false, GONE), &on()),
                Verdict::Suspect { .. }
            ));
        }
        // A successful probe starts the count over.
        assert_eq!(d.observe(&s, &obs(6, true, GONE), &on()), Verdict::Healthy);
        assert!(matches!(
            d.observe(&s, &obs(20, false, GONE), &on()),
            Verdict::Suspect {
                failed_probes: 1,
                ..
            }
        ));
    }

    #[test]
    fn a_primary_that_still_renews_its_lease_is_alive() {
        let s = settings();
        let mut d = Detector::default();
        let mut last = Verdict::Healthy;
        for t in 0..20 {
            let mut o = obs(t, false, GONE);
            o.lease = Some(LeaseView::Held { ttl_left_ms: 9000 });
            last = d.observe(&s, &o, &on());
        }
        assert_eq!(last.key().1, Some("primary_holds_lease"));
        let mut o = obs(21, false, GONE);
        o.lease = Some(LeaseView::Unknown {
            error: "timed out".into(),
        });
        assert_eq!(d.observe(&s, &o, &on()).key().1, Some("no_quorum"));
        let mut o = obs(22, false, GONE);
        o.lease = Some(LeaseView::Released { holder: None });
        assert!(matches!(d.observe(&s, &o, &on()), Verdict::FailOver { .. }));
    }

    #[test]
    fn a_standby_that_still_hears_the_primary_holds_the_failover() {
        let mut d = Detector::default();
        let s = settings();
        let streaming = ReceiverView::Streaming { silent_ms: 200 };
        let mut last = Verdict::Healthy;
        for t in 0..10 {
            last = d.observe(&s, &obs(t, false, streaming.clone()), &on());
        }
        assert_eq!(
            last.key(),
            (GuardDecision::Hold, Some("standby_sees_primary"))
        );
        // No second opinion at all: hold too.
        let v = d.observe(
            &s,
            &obs(
                11,
                false,
                ReceiverView::Unknown {
                    error: "timeout".into(),
                },
            ),
            &on(),
        );
        assert_eq!(v.key(), (GuardDecision::Hold, Some("standby_sees_primary")));
        // Silence alone is no proof (an idle primary is silent too) ...
        let v = d.observe(
            &s,
            &obs(12, false, ReceiverView::Streaming { silent_ms: 30_000 }),
            &on(),
        );
        assert_eq!(v.key(), (GuardDecision::Hold, Some("standby_sees_primary")));
        // ... the receiver's connection ending is.
        let v = d.observe(&s, &obs(13, false, GONE), &on());
        assert_eq!(v.key(), (GuardDecision::Failover, None));
    }

    #[test]
    fn cooldown_limit_switch_and_running_operations_hold() {
        let s = settings();
        let lost = |brakes: Brakes| {
            let mut d = Detector::default();
            (0..5)
                .map(|t| d.observe(&s, &obs(t, false, GONE), &brakes))
                .last()
                .unwrap()
        };
        assert_eq!(
            lost(Brakes::default()).key(),
            (GuardDecision::Hold, Some("automatic_off"))
        );
        assert_eq!(
            lost(Brakes {
                last_automatic: Some(at(-60)),
                ..on()
            })
            .key(),
            (GuardDecision::Hold, Some("cooldown"))
        );
        assert_eq!(
            lost(Brakes {
                last_automatic: Some(at(-1000)),
                ..on()
            })
            .key(),
            (GuardDecision::Failover, None)
        );
        assert_eq!(
            lost(Brakes {
                automatic_in_window: 3,
                ..on()
            })
            .key(),
            (GuardDecision::Hold, Some("limit"))
        );
        assert_eq!(
            lost(Brakes {
                operation_in_progress: true,
                ..on()
            })
            .key(),
            (GuardDecision::Hold, Some("operation_in_progress"))
        );
    }
}
