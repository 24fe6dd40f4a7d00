//! The kinds of operation and what each needs from the engine: its lease,
//! what it excludes, whether it is bound to a host. Its list of actions is
//! its saga module's (`OperationKind::steps`, in `crate::saga`).

use serde::{Deserialize, Serialize};

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Unplanned: the source region is lost (or must be left now).
    Failover,
    /// Planned, zero data loss: the source is fenced, the target catches up
    /// to its last position, then takes over.
    Switchover,
    /// A rehearsal with no production impact: the standby is cloned into a
    /// scratch instance that is promoted, written to and announced under
    /// the drill DNS record, then everything is torn down, also when a step
    /// fails.
    Drill,
    /// An old primary (fenced or lost) becomes a standby of the new one:
    /// pg_rewind, or a fresh clone when rewinding cannot work, so the pair
    /// is protected again and can switch back.
    Rejoin,
    /// Cold tier: the newest verified backup is restored in the DR region,
    /// started, probed and announced in DNS.
    Recover,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Failover => "failover",
            OperationKind::Switchover => "switchover",
            OperationKind::Drill => "drill",
            OperationKind::Rejoin => "rejoin",
            OperationKind::Recover => "recover",
        }
    }

    pub fn parse(s: &str) -> Option<OperationKind> {
        match s {
            "failover" => Some(OperationKind::Failover),
            "switchover" => Some(OperationKind::Switchover),
            "drill" => Some(OperationKind::Drill),
            "rejoin" => Some(OperationKind::Rejoin),
            "recover" => Some(OperationKind::Recover),
            _ => None,
        }
    }

    /// Kinds that act on files of the host that runs them (a rejoin's data
    /// directory, a recovery's restore, a drill's scratch clone): only a
    /// driver on that host may run or resume them.
    pub fn is_host_local(self) -> bool {
        matches!(
            self,
            OperationKind::Rejoin | OperationKind::Recover | OperationKind::Drill
        )
    }

    /// The lease an operation of this kind takes on `cluster`. Drills have
    /// their own, so a rehearsal never delays a real failover.
    pub fn lease_name(self, cluster: &str) -> String {
        match self {
            OperationKind::Drill => format!("drill:{cluster}"),
            _ => crate::lease_name(cluster),
        }
    }

    /// Kinds that exclude each other on one cluster: production changes
    /// (failover, switchover) or drills.
    pub fn exclusive_with(self) -> &'static [&'static str] {
        match self {
            OperationKind::Drill => &["drill"],
            _ => &["failover", "switchover", "recover", "rejoin"],
        }
    }
}
