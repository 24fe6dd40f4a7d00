//! Operations as sagas: one module per kind declaring its list of actions
//! and running them (`failover` serves failover and switchover). The
//! actions several kinds share are in `actions` and `dns`; `ctx` is what an
//! action may read, `output` the typed, versioned journal entry it leaves.
//! This module only picks the kind's module.

mod actions;
#[cfg(test)]
mod compat;
pub(crate) mod ctx;
mod dns;
mod drill;
mod failover;
pub(crate) mod output;
mod recover;
mod rejoin;

pub use rejoin::{RejoinMethod, Rejoined};

use ctx::{Ctx, StepError};
use output::Entry;

use crate::Step;
use drctl_store::states::OperationKind;

/// The actions of `kind`, in order; none for a job the engine does not
/// drive (a backup, a verification, a restore test).
pub(crate) fn steps(kind: OperationKind) -> &'static [Step] {
    match kind {
        OperationKind::Failover | OperationKind::Switchover => failover::STEPS,
        OperationKind::Drill => drill::STEPS,
        OperationKind::Rejoin => rejoin::STEPS,
        OperationKind::Recover => recover::STEPS,
        OperationKind::Backup | OperationKind::Verify | OperationKind::RestoreTest => &[],
    }
}

/// Runs one action of the operation `ctx` drives.
pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> Result<Entry, StepError> {
    match ctx.params.kind {
        OperationKind::Failover | OperationKind::Switchover => failover::run(step, ctx).await,
        OperationKind::Drill => drill::run(step, ctx).await,
        OperationKind::Rejoin => rejoin::run(step, ctx).await,
        OperationKind::Recover => recover::run(step, ctx).await,
        OperationKind::Backup | OperationKind::Verify | OperationKind::RestoreTest => {
            Err(StepError::abandon(format!(
                "a {} is not an operation the failover engine drives",
                ctx.params.kind
            )))
        }
    }
}
