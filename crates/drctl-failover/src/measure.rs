//! What an event cost: measured RPO (data lost) and RTO (time unavailable).
//!
//! Data lost is placed on the heartbeat map of the old primary's clock: the
//! promoted target carries the replicated `drctl.heartbeat` rows up to its
//! final position, and the state store keeps the primary's positions the
//! monitor sampled until the end. Commits lost are those between the moment
//! the primary passed the target's final position and the source's last
//! known position; the window's length is the measured RPO. With the source
//! gone, its last known position is the monitor's last sample, so the
//! figure can be short by up to one monitor interval (the writes after that
//! sample are unknowable): it is then flagged as a minimum and comes with an
//! upper bound (the plan's: the last sighting until detection).

use std::collections::BTreeMap;

use drctl_monitor::HeartbeatMap;
use drctl_node::{HeartbeatPoint, Position};
use serde::{Deserialize, Serialize};

/// The measured cost of an operation, stored as its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// WAL the target never received.
    pub rpo_bytes: u64,
    /// The time span of commits lost (primary's clock).
    pub rpo_us: i64,
    /// drctl heartbeat rows the primary wrote that the target never got
    /// (one per monitor interval while the primary was seen: a count of
    /// lost intervals with writes on record).
    #[serde(default)]
    pub rpo_heartbeats: u64,
    /// `rpo_us` is a minimum: the map did not reach back far enough, or
    /// the source was lost and what it wrote after the monitor's last
    /// sample is unknowable.
    pub rpo_lower_bound: bool,
    /// With the source lost, the most that can have been lost: from the
    /// last sighting (the monitor's last sample) until the primary was
    /// detected lost (or the request), plus what the target lacked then.
    #[serde(default)]
    pub rpo_upper_us: Option<i64>,
    /// What the source's last position is: `fenced_source` (read from the
    /// server after fencing: exact), `last_sample` (the monitor's last
    /// reading: short by up to one interval), `none` (no datastore).
    pub rpo_basis: String,
    /// From trigger (or detection) until the new primary took a write and
    /// DNS answered with it.
    pub rto_ms: u64,
    /// `request` or `detection`.
    pub rto_from: String,
    /// From the fence (writes stop) until writes work again: what a client
    /// sees in a switchover.
    pub write_outage_ms: Option<u64>,
    pub rpo_target_us: i64,
    pub rto_target_ms: u64,
    pub rpo_met: bool,
    pub rto_met: bool,
    /// Each step's duration (last attempt), in plan order by name.
    pub steps_ms: BTreeMap<String, u64>,
}

/// The loss window: from when the primary passed `durable` to `last` (the
/// source's last position), placed on `points` (any order).
pub fn loss_window(
    points: &[HeartbeatPoint],
    durable: Position,
    last: HeartbeatPoint,
) -> (i64, bool) {
    let mut points: Vec<HeartbeatPoint> = points
        .iter()
        .copied()
        .filter(|p| p.primary_time_us <= last.primary_time_us && p.position <= last.position)
        .collect();
    points.sort_by_key(|p| (p.position, p.primary_time_us));
    let mut map = HeartbeatMap::new();
    for p in points {
        map.record(p);
    }
    map.record(last);
    let e = map.exposure(durable, last);
    (e.us, e.lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, l: u64) -> HeartbeatPoint {
        HeartbeatPoint {
            primary_time_us: t,
            position: Position::from_ordinal(l),
        }
    }

    #[test]
    fn nothing_lost_when_the_target_has_everything() {
        assert_eq!(
            loss_window(&[p(0, 0)], Position::from_ordinal(500), p(10, 500)),
            (0, false)
        );
    }

    #[test]
    fn the_window_starts_where_the_primary_passed_the_target() {
        // The primary wrote 100 bytes a second from t=0; the target has 300.
        let pts: Vec<_> = (0..10).map(|s| p(s * 1_000_000, s as u64 * 100)).collect();
        let (us, lb) = loss_window(&pts, Position::from_ordinal(300), p(9_000_000, 900));
        assert!(!lb);
        assert_eq!(us, 6_000_000);
    }

    #[test]
    fn points_after_the_source_position_are_ignored() {
        // Heartbeats of the new timeline (after promotion) must not bend the map.
        let pts = vec![p(0, 0), p(1_000_000, 100), p(50_000_000, 50)];
        let (us, _) = loss_window(&pts, Position::from_ordinal(0), p(2_000_000, 200));
        assert!(us >= 1_000_000, "{us}");
    }
}
