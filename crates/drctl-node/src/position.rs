//! Engine-neutral replication positions and the heartbeat map's points.
//!
//! A [`Position`] is a point in one primary's stream of changes, totally
//! ordered within one history, with a distance between two positions in
//! the engine's own unit. PostgreSQL: the WAL position in bytes since `0/0`
//! (an LSN), the distance is bytes. MariaDB (later): the sequence number of
//! the GTID domain drctl writes its heartbeats in, the distance is
//! transactions. The monitor and the engine only compare, subtract and
//! store positions; what one means is the datastore's to say
//! ([`crate::Engine::format_position`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in a primary's change stream (see the module doc). Ordered;
/// comparing positions of two different histories (before and after a
/// restore or a re-clone) means nothing, which is why the heartbeat map
/// starts over when a position goes backwards.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(u64);

impl Position {
    /// The start of every history.
    pub const ZERO: Position = Position(0);

    /// The position at `ordinal` in the engine's unit (bytes of WAL,
    /// transactions of a GTID domain).
    pub const fn from_ordinal(ordinal: u64) -> Self {
        Position(ordinal)
    }

    /// The position as a number in the engine's unit, for storing (the
    /// state store keeps it as an integer) and for distances.
    pub const fn ordinal(self) -> u64 {
        self.0
    }

    /// How far `self` is ahead of `other`, zero when `other` is ahead (the
    /// monitor's byte lag for PostgreSQL).
    pub fn distance_after(self, other: Position) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

/// Neutral by itself: the number. [`crate::Engine::format_position`] shows
/// it in the engine's own form (`1/A0` for PostgreSQL).
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<drctl_pg::Lsn> for Position {
    fn from(lsn: drctl_pg::Lsn) -> Self {
        Position(lsn.0)
    }
}

impl From<Position> for drctl_pg::Lsn {
    fn from(p: Position) -> Self {
        drctl_pg::Lsn(p.0)
    }
}

/// A point of the heartbeat map: at `primary_time_us` (the primary's clock,
/// microseconds since the epoch) the primary had made durable everything up
/// to `position`. Every point is read on the primary, so the map has one
/// clock (DESIGN.md, "one clock").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatPoint {
    pub primary_time_us: i64,
    #[serde(alias = "lsn")]
    pub position: Position,
}

impl From<drctl_pg::HeartbeatPoint> for HeartbeatPoint {
    fn from(p: drctl_pg::HeartbeatPoint) -> Self {
        HeartbeatPoint {
            primary_time_us: p.primary_time_us,
            position: p.lsn.into(),
        }
    }
}

impl From<HeartbeatPoint> for drctl_pg::HeartbeatPoint {
    fn from(p: HeartbeatPoint) -> Self {
        drctl_pg::HeartbeatPoint {
            primary_time_us: p.primary_time_us,
            lsn: p.position.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_round_trips_through_an_lsn_and_keeps_its_order() {
        let a = Position::from(drctl_pg::Lsn(0x1_0000_00A0));
        assert_eq!(drctl_pg::Lsn::from(a), drctl_pg::Lsn(0x1_0000_00A0));
        assert!(Position::from_ordinal(5) < a);
        assert_eq!(
            a.distance_after(Position::from_ordinal(0x1_0000_0000)),
            0xA0
        );
        assert_eq!(Position::ZERO.distance_after(a), 0);
    }
}
