//! The actions an operation journals, by name. Which kind runs which, in
//! what order, is each saga module's list (`crate::saga`).

use serde::{Deserialize, Serialize};

/// One journaled step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Source, target, expected loss and RTO, blockers.
    Plan,
    /// Which driver holds the cluster's lease, with its fencing token.
    Lease,
    /// Drill: a base backup of the standby into a scratch directory.
    CloneStandby,
    /// Drill: the clone runs as a standby of nothing, on a free port, until
    /// it is consistent.
    StartClone,
    /// The old primary refuses writes (or is recorded unreachable and the
    /// fence hook ran) before anything is announced.
    FenceSource,
    /// The source's last position: read from the fenced server, or the last
    /// one the monitor saw when it is gone.
    SourcePosition,
    /// The target receives everything the source had (switchover: required;
    /// failover: a short wait when the source is still reachable).
    CatchUp,
    /// `pg_promote(wait => true)` on the target; the cluster's primary region
    /// is recorded.
    PromoteTarget,
    /// A committed row on the new primary.
    WriteProbe,
    /// The service's DNS record names the target region (upsert, applied).
    DnsFlip,
    /// The authoritative answer for the record is the target's.
    DnsConfirm,
    /// Exactly one writable primary, and it is the target.
    ServiceHealth,
    /// Measured RPO and RTO of the event.
    Record,
    /// Drill: the clone and the drill record are removed. Runs even when an
    /// earlier step failed (the only step that does).
    Teardown,
    /// Rejoin: the old primary's server is stopped.
    StopNode,
    /// Rejoin: pg_rewind onto the new primary's timeline, else a fresh clone.
    Rewind,
    /// Rejoin: standby.signal and the new primary's connection; no fence.
    ConfigureStandby,
    /// Rejoin: the server starts as a standby; recover: the restored
    /// server starts as the primary.
    StartNode,
    /// Recover: the newest verified backup is restored into the target's
    /// data directory.
    Restore,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Lease => "lease",
            Step::FenceSource => "fence_source",
            Step::SourcePosition => "source_position",
            Step::CatchUp => "catch_up",
            Step::PromoteTarget => "promote_target",
            Step::WriteProbe => "write_probe",
            Step::DnsFlip => "dns_flip",
            Step::DnsConfirm => "dns_confirm",
            Step::ServiceHealth => "service_health",
            Step::Record => "record",
            Step::CloneStandby => "clone_standby",
            Step::StartClone => "start_clone",
            Step::Teardown => "teardown",
            Step::StopNode => "stop_node",
            Step::Rewind => "rewind",
            Step::ConfigureStandby => "configure_standby",
            Step::StartNode => "start_node",
            Step::Restore => "restore",
        }
    }

    /// A step that runs when an earlier one failed: the operation unwinds
    /// to it, skipping the rest.
    pub fn is_finally(self) -> bool {
        self == Step::Teardown
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
