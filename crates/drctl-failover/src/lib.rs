//! The failover engine: failover, switchover and drill (and, later,
//! recover) as journaled operations.
//!
//! An operation is a fixed list of [`Step`]s per [`OperationKind`]. The
//! driver ([`Engine`]) takes the cluster's lease in the state store, then runs
//! the first step not done, journaling its start, its output and its end
//! before the next one starts (the saga pattern of oxidecomputer/steno).
//! Steps get their inputs only from the journal, and each is idempotent
//! (fence an already fenced server, promote a primary, upsert the same DNS
//! value: all no-ops), so any drctl process can resume an operation whose
//! driver died at any point, and nothing is applied twice.
//!
//! This crate owns the decisions (plan, blockers, measured RPO/RTO of an
//! event); PostgreSQL actions live in `drctl-pg`, DNS in `drctl-dns`, the
//! journal's storage in `drctl-store`.

pub mod auto;
mod drill;
mod engine;
mod error;
mod hook;
pub mod journal;
mod measure;
mod plan;
mod recover;
mod rejoin;
mod steps;

use serde::{Deserialize, Serialize};

pub use engine::{Engine, Outcome, Progress, Request};
pub use error::FailoverError;
pub use journal::{OpStatus, StepState};
pub use measure::Measured;
pub use plan::{OperationParams, PlanReport};

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

    /// The steps, in order. Failover and switchover share one list; the
    /// steps behave by kind (a switchover's catch-up waits for zero loss, a
    /// failover's only briefly and only when the source was reachable). A
    /// drill promotes, probes and announces its clone, never production.
    pub fn steps(self) -> &'static [Step] {
        if self == OperationKind::Recover {
            return &[
                Step::Plan,
                Step::Lease,
                Step::FenceSource,
                Step::Restore,
                Step::StartNode,
                Step::WriteProbe,
                Step::DnsFlip,
                Step::DnsConfirm,
                Step::ServiceHealth,
                Step::Record,
            ];
        }
        if self == OperationKind::Rejoin {
            return &[
                Step::Plan,
                Step::Lease,
                Step::StopNode,
                Step::Rewind,
                Step::ConfigureStandby,
                Step::StartNode,
                Step::CatchUp,
                Step::Record,
            ];
        }
        if self == OperationKind::Drill {
            return &[
                Step::Plan,
                Step::Lease,
                Step::CloneStandby,
                Step::StartClone,
                Step::PromoteTarget,
                Step::WriteProbe,
                Step::DnsFlip,
                Step::DnsConfirm,
                Step::Record,
                Step::Teardown,
            ];
        }
        &[
            Step::Plan,
            Step::Lease,
            Step::FenceSource,
            Step::SourcePosition,
            Step::CatchUp,
            Step::PromoteTarget,
            Step::WriteProbe,
            Step::DnsFlip,
            Step::DnsConfirm,
            Step::ServiceHealth,
            Step::Record,
        ]
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
            _ => lease_name(cluster),
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

/// This host's name, as host-local operations record it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The lease that serialises operations on one cluster.
pub fn lease_name(cluster: &str) -> String {
    format!("operation:{cluster}")
}
