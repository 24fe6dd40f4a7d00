//! Planning: what an operation would do and cost right now, and what blocks
//! it. `--dry-run` prints this; a real run journals it as its first action
//! and refuses when a blocker stands (data-loss blockers can be accepted).
//! The plan's types are in `report.rs`; each kind plans in its own file.

mod failover;
mod recover;
mod rejoin;
mod report;

use drctl_config::Config;
use drctl_node::Nodes;
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
    nodes: &Nodes,
    p: &OperationParams,
) -> PlanReport {
    // A rejoin and a recovery act on the target region's host.
    let node = nodes.of(&p.service, &p.target);
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
        | OperationKind::RestoreTest => {
            // A failover fences the source through the source's node.
            let source_node = nodes.of(&p.service, &p.source);
            failover::make_plan(config, store, source_node, p).await
        }
    }
}
