//! How a service's replication stands against its RPO target: the
//! monitor's judgement of each lag sample, also used for the RTO.

state_enum! {
    /// How a service stands against its target right now (stored with each
    /// lag sample). How grave each is: [`MonitorStatus::gravity`].
    pub enum MonitorStatus {
        /// Exposure at most half the target.
        Ok,
        /// Exposure above half the target, or above it for less than the grace.
        AtRisk,
        /// Exposure above the target for longer than the grace period.
        Breach,
        /// Not measurable (a database unreachable, a DSN unresolved…); the
        /// service view carries the error.
        Unknown,
    }
}

impl MonitorStatus {
    /// Worst first when sorted descending: `breach` > `at_risk` >
    /// `unknown` > `ok`. A bucket of samples keeps its worst; the store
    /// ranks in SQL with the same numbers.
    pub fn gravity(self) -> u8 {
        match self {
            MonitorStatus::Ok => 0,
            MonitorStatus::Unknown => 1,
            MonitorStatus::AtRisk => 2,
            MonitorStatus::Breach => 3,
        }
    }

    /// The status of a gravity (clamped to the worst).
    pub fn of_gravity(gravity: u8) -> MonitorStatus {
        match gravity {
            0 => MonitorStatus::Ok,
            1 => MonitorStatus::Unknown,
            2 => MonitorStatus::AtRisk,
            _ => MonitorStatus::Breach,
        }
    }
}

crate::stored_as_text!(MonitorStatus);
