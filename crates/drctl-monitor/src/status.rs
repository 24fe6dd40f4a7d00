//! From exposure to a service status: `ok`, `at_risk`, `breach`, `unknown`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How a service stands against its RPO target right now: the one
/// definition is the store's, since every lag sample stores it.
pub use drctl_store::states::MonitorStatus as Status;

/// Remembers since when exposure has been above target, to apply the grace.
#[derive(Clone, Copy, Debug, Default)]
pub struct BreachClock {
    above_since: Option<DateTime<Utc>>,
}

impl BreachClock {
    pub fn above_since(&self) -> Option<DateTime<Utc>> {
        self.above_since
    }

    /// Decides the status of one sample taken at `at`.
    pub fn judge(
        &mut self,
        exposure: Option<Duration>,
        target: Duration,
        grace: Duration,
        at: DateTime<Utc>,
    ) -> Status {
        let Some(exposure) = exposure else {
            // Unknown does not end a breach in progress: we cannot tell.
            return Status::Unknown;
        };
        if exposure > target {
            let since = *self.above_since.get_or_insert(at);
            let above_for = (at - since).to_std().unwrap_or_default();
            if above_for >= grace {
                Status::Breach
            } else {
                Status::AtRisk
            }
        } else {
            self.above_since = None;
            if exposure * 2 > target {
                Status::AtRisk
            } else {
                Status::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    const T: Duration = Duration::from_secs(5);
    const G: Duration = Duration::from_secs(10);

    #[test]
    fn thresholds() {
        let mut c = BreachClock::default();
        assert_eq!(
            c.judge(Some(Duration::from_millis(2500)), T, G, at(0)),
            Status::Ok
        );
        assert_eq!(
            c.judge(Some(Duration::from_millis(2501)), T, G, at(0)),
            Status::AtRisk
        );
        assert_eq!(c.judge(None, T, G, at(0)), Status::Unknown);
    }

    #[test]
    fn breach_only_after_grace_and_ends_when_back_under_target() {
        let mut c = BreachClock::default();
        let over = Some(Duration::from_secs(6));
        assert_eq!(c.judge(over, T, G, at(0)), Status::AtRisk);
        assert_eq!(c.judge(over, T, G, at(9)), Status::AtRisk);
        assert_eq!(c.judge(over, T, G, at(10)), Status::Breach);
        assert_eq!(c.judge(None, T, G, at(11)), Status::Unknown);
        assert_eq!(
            c.judge(over, T, G, at(12)),
            Status::Breach,
            "unknown does not reset the clock"
        );
        assert_eq!(
            c.judge(Some(Duration::from_secs(1)), T, G, at(13)),
            Status::Ok
        );
        assert_eq!(
            c.judge(over, T, G, at(14)),
            Status::AtRisk,
            "a new excursion starts a new grace"
        );
    }
}
