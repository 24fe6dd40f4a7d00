//! Planning: what an operation would do and cost right now, and what blocks
//! it. `--dry-run` prints this; a real run journals it as its first action
//! and refuses when a blocker stands (data-loss blockers can be accepted).
//! The plan's types are in `report.rs`; each kind plans in its own file.

mod failover;
mod recover;
mod rejoin;
mod report;

use drctl_config::Config;
use drctl_node::NodeActions;
use drctl_store::Store;

pub(crate) use failover::{source_timeout, unfenced_message, REACH_TIMEOUT};
pub(crate) use report::{regions, us};
pub use report::{Blocker, LocalNode, OperationParams, PlanReport};

use crate::OperationKind;

/// Reads both sides and the monitor's evidence (and, for the kinds that act
/// on a server's files, what the node finds there); never fails (what
/// cannot be read becomes a blocker or an unknown).
pub(crate) async fn make_plan(
    config: &Config,
    store: &Store,
    node: &dyn NodeActions,
    p: &OperationParams,
) -> PlanReport {
    match p.kind {
        OperationKind::Rejoin => rejoin::make_plan(config, store, node, p).await,
        OperationKind::Recover => recover::make_plan(config, store, node, p).await,
        // Refused before planning (`Engine::params`); planned as a
        // failover would be if it ever got here.
        OperationKind::Failover
        | OperationKind::Switchover
        | OperationKind::Drill
        | OperationKind::Backup
        | OperationKind::Verify
        | OperationKind::RestoreTest => failover::make_plan(config, store, p).await,
    }
}
