//! The heartbeat map and RPO exposure.
//!
//! The map is a series of `(primary time, primary durable position)`
//! points, all read on the primary, so time on it is the primary's clock
//! alone. Positions are engine-neutral ([`Position`]: a PostgreSQL LSN, a
//! MariaDB GTID sequence number), so the map serves every datastore. A
//! standby's durable position is placed on the map: the moment the primary's
//! flushed position passed it is when the oldest commit the standby lacks was
//! made; exposure is the primary's "now" minus that moment. No wall clock
//! but the primary's is read: an idle primary (no new changes) has exposure zero
//! however long it idles, and clock skew between hosts cannot leak in.
//!
//! When the primary's clock is *stepped* (an NTP step, a restart with
//! another time), points before the step are in a different frame. Live
//! points carry the monotonic instants drctl sent and received the probe;
//! a step is what the primary's clock moved beyond the real time that
//! passed, and the older points are re-expressed in the new frame by the
//! smallest step consistent with those instants, so their times err early
//! and the exposure errs large, never small.

use std::collections::VecDeque;

use drctl_node::{HeartbeatPoint, Position};

/// Exposure of one standby: microseconds of commits it lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub us: i64,
    /// The standby is behind the oldest point of the map: the true figure is
    /// at least `us` (the map does not reach back far enough to say more).
    pub lower_bound: bool,
}

/// Map points, ordered by LSN and by time.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatMap {
    points: VecDeque<HeartbeatPoint>,
    /// The newest live point and the monotonic instants around its probe.
    last_observed: Option<(HeartbeatPoint, std::time::Instant, std::time::Instant)>,
}

/// A clock step smaller than this (beyond the probes' own uncertainty) is
/// left alone: it moves exposure by at most this much.
const CLOCK_STEP_TOLERANCE_US: i64 = 100_000;

/// Bounded memory: a day of points at one per second, plus heartbeats.
const MAX_POINTS: usize = 200_000;

impl HeartbeatMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn oldest(&self) -> Option<HeartbeatPoint> {
        self.points.front().copied()
    }

    /// Adds a point (from history: [`Self::record_observed`] for live ones).
    /// Points and positions are taken as anything that converts into the
    /// neutral types, so drctl-pg's own (`HeartbeatPoint`, `Lsn`) still
    /// serve callers that read PostgreSQL directly.
    /// A position behind the newest one means a different
    /// server history (a restored or re-cloned primary): the old map no
    /// longer describes it, so it starts over. A time behind the newest
    /// (the primary's clock stepped back) is held at the newest time, which
    /// keeps the map monotonic and errs towards larger exposure.
    pub fn record(&mut self, point: impl Into<HeartbeatPoint>) {
        let mut point = point.into();
        if let Some(last) = self.points.back() {
            if point.position < last.position {
                self.points.clear();
                self.last_observed = None;
            } else {
                point.primary_time_us = point.primary_time_us.max(last.primary_time_us);
                if point == *last {
                    return;
                }
            }
        }
        self.points.push_back(point);
        if self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
    }

    /// Adds a point read live on the primary by a probe sent at `sent` and
    /// answered at `received` (drctl's monotonic clock). A primary clock
    /// that moved more or less than the real time since the last live point
    /// was stepped: the map's older points are shifted into the new frame
    /// first (see the module comment).
    pub fn record_observed(
        &mut self,
        point: impl Into<HeartbeatPoint>,
        sent: std::time::Instant,
        received: std::time::Instant,
    ) {
        let point = point.into();
        if let Some((last, last_sent, last_received)) = self.last_observed {
            let us = |d: std::time::Duration| d.as_micros().min(i64::MAX as u128) as i64;
            // Real time between the two readings on the primary, bounded by
            // the probes' round trips.
            let elapsed_min = us(sent.saturating_duration_since(last_received));
            let elapsed_max = us(received.saturating_duration_since(last_sent));
            let moved = point.primary_time_us - last.primary_time_us;
            let (step_min, step_max) = (moved - elapsed_max, moved - elapsed_min);
            let stepped = step_max < -CLOCK_STEP_TOLERANCE_US || step_min > CLOCK_STEP_TOLERANCE_US;
            if stepped && point.position >= last.position {
                // The smallest step consistent with the instants: history
                // lands at or before where it truly belongs.
                let shift = step_min;
                for p in self.points.iter_mut() {
                    p.primary_time_us += shift;
                }
                tracing::warn!(
                    step_ms = shift / 1000,
                    "the primary's clock was stepped; the heartbeat map follows it"
                );
            }
        }
        self.last_observed = Some((point, sent, received));
        self.record(point);
    }

    /// Drops points no longer needed to place any position at or after
    /// `durable` (positions only move forward).
    pub fn forget_before(&mut self, durable: impl Into<Position>) {
        let durable = durable.into();
        while self.points.len() >= 2 && self.points[1].position <= durable {
            self.points.pop_front();
        }
    }

    /// Exposure of a standby holding WAL up to `durable`, as of the primary's
    /// `now` (its clock and flushed position, read after the standby's).
    pub fn exposure(
        &self,
        durable: impl Into<Position>,
        now: impl Into<HeartbeatPoint>,
    ) -> Exposure {
        let (durable, now) = (durable.into(), now.into());
        if durable >= now.position {
            return Exposure {
                us: 0,
                lower_bound: false,
            };
        }
        let Some(at) = self.time_at(durable, now) else {
            // Behind everything the map knows: at least as old as its start.
            let oldest = self
                .points
                .front()
                .map_or(now.primary_time_us, |p| p.primary_time_us);
            return Exposure {
                us: (now.primary_time_us - oldest).max(0),
                lower_bound: true,
            };
        };
        Exposure {
            us: (now.primary_time_us - at).max(0),
            lower_bound: false,
        }
    }

    /// When the primary's durable position passed `position`, interpolating
    /// linearly between the points around it; `None` before the map starts.
    fn time_at(&self, position: Position, now: HeartbeatPoint) -> Option<i64> {
        // The last point at or before `position`: with runs of equal positions (an
        // idle primary) that is the latest time the primary was still there.
        let idx = self.points.partition_point(|p| p.position <= position);
        if idx == 0 {
            return None;
        }
        let before = self.points[idx - 1];
        let after = self.points.get(idx).copied().unwrap_or(now);
        if after.position <= before.position {
            return Some(before.primary_time_us);
        }
        let span_bytes = (after.position.ordinal() - before.position.ordinal()) as f64;
        let into = (position.ordinal() - before.position.ordinal()) as f64;
        let span_us = (after.primary_time_us - before.primary_time_us) as f64;
        Some(before.primary_time_us + (span_us * into / span_bytes).round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t_s: f64, lsn: u64) -> HeartbeatPoint {
        HeartbeatPoint {
            primary_time_us: (t_s * 1e6) as i64,
            position: Position::from_ordinal(lsn),
        }
    }

    #[test]
    fn a_clock_stepped_back_moves_history_so_exposure_stays_true() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut m = HeartbeatMap::new();
        // One point a second, 1 MB of WAL a second, clock right.
        for i in 0..5 {
            m.record_observed(
                p(100.0 + i as f64, i * 1_000_000),
                at(i as f64),
                at(i as f64 + 0.001),
            );
        }
        // The primary restarts with its clock 5 s behind: the next reading,
        // 1 s later, says 100.0 + 5 - 5 = 100.0 for position 5 MB.
        m.record_observed(p(100.0, 5_000_000), at(5.0), at(5.001));
        m.record_observed(p(101.0, 6_000_000), at(6.0), at(6.001));
        // A standby at 3 MB lacks what was written since 3 s before the
        // step, i.e. 4 s before "now" at 6 MB (clock now 101.0 = real 106).
        let e = m.exposure(Position::from_ordinal(3_000_000), p(101.0, 6_000_000));
        assert!(!e.lower_bound);
        assert!(
            (3_000_000..=3_010_000).contains(&e.us),
            "exposure {} us",
            e.us
        );
        // Jitter of a few milliseconds is not a step.
        let mut m = HeartbeatMap::new();
        m.record_observed(p(10.0, 0), at(0.0), at(0.002));
        m.record_observed(p(11.05, 1_000_000), at(1.0), at(1.002));
        assert_eq!(m.oldest().unwrap().primary_time_us, 10_000_000);
    }

    fn map(points: &[HeartbeatPoint]) -> HeartbeatMap {
        let mut m = HeartbeatMap::new();
        for &pt in points {
            m.record(pt);
        }
        m
    }

    #[test]
    fn caught_up_standby_has_zero_exposure() {
        let m = map(&[p(0.0, 100), p(1.0, 200)]);
        assert_eq!(m.exposure(Position::from_ordinal(300), p(2.0, 300)).us, 0);
    }

    #[test]
    fn idle_primary_stays_at_zero_however_long() {
        // Nothing written for an hour: same position at every point.
        let pts: Vec<_> = (0..3600).map(|s| p(s as f64, 500)).collect();
        let m = map(&pts);
        assert_eq!(
            m.exposure(Position::from_ordinal(500), p(3600.0, 500)),
            Exposure {
                us: 0,
                lower_bound: false
            }
        );
    }

    #[test]
    fn standby_stuck_at_a_point_is_exposed_since_that_point() {
        // Steady writes, 100 bytes a second; the standby stopped at t=3.
        let pts: Vec<_> = (0..=10).map(|s| p(s as f64, 1000 + 100 * s)).collect();
        let m = map(&pts);
        let e = m.exposure(Position::from_ordinal(1300), p(10.0, 2000));
        assert_eq!(
            e,
            Exposure {
                us: 7_000_000,
                lower_bound: false
            }
        );
    }

    #[test]
    fn interpolates_between_points() {
        let m = map(&[p(0.0, 0), p(1.0, 1000)]);
        // 250 bytes into a second of 1000 bytes: the primary passed it at 0.25 s.
        let e = m.exposure(Position::from_ordinal(250), p(2.0, 2000));
        assert_eq!(e.us, 1_750_000);
    }

    #[test]
    fn burst_after_idle_is_placed_at_the_last_idle_point() {
        // Idle at 500 from t=0 to t=5, then a burst: the standby at 500 lacks
        // only what came after t=5, not since t=0.
        let m = map(&[p(0.0, 500), p(5.0, 500), p(6.0, 900)]);
        let e = m.exposure(Position::from_ordinal(500), p(6.0, 900));
        assert_eq!(e.us, 1_000_000);
    }

    #[test]
    fn behind_the_map_is_a_lower_bound() {
        let m = map(&[p(10.0, 1000), p(11.0, 1100)]);
        let e = m.exposure(Position::from_ordinal(10), p(12.0, 1200));
        assert_eq!(
            e,
            Exposure {
                us: 2_000_000,
                lower_bound: true
            }
        );
    }

    #[test]
    fn new_history_resets_the_map() {
        let mut m = map(&[p(0.0, 1000), p(1.0, 2000)]);
        m.record(p(2.0, 10));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn clock_stepping_back_never_shrinks_time() {
        let m = map(&[p(10.0, 100), p(9.0, 200)]);
        assert_eq!(m.oldest().unwrap().primary_time_us, 10_000_000);
        assert_eq!(
            m.exposure(Position::from_ordinal(150), p(11.0, 300)).us,
            1_000_000
        );
    }

    #[test]
    fn forgetting_keeps_the_point_that_places_the_standby() {
        let mut m = map(&[p(0.0, 0), p(1.0, 100), p(2.0, 200), p(3.0, 300)]);
        m.forget_before(Position::from_ordinal(250));
        assert_eq!(m.oldest(), Some(p(2.0, 200)));
        assert_eq!(
            m.exposure(Position::from_ordinal(250), p(4.0, 400)).us,
            1_500_000
        );
    }
}
