//! What each kind of operation needs from the engine: its actions, its
//! lease, whether it is bound to a host. The kinds themselves, and what
//! each excludes (`OperationKind::exclusive_with`), are the store's one
//! list (`drctl_store::states`); this extension trait is the engine's part.

use drctl_store::states::OperationKind;

use crate::Step;

/// The engine's side of an [`OperationKind`].
pub trait OperationSaga: Copy {
    /// The actions, in order, as the kind's saga module declares them;
    /// empty for a job the engine does not drive.
    fn steps(self) -> &'static [Step];

    /// Kinds that act on files of the host that runs them (a rejoin's data
    /// directory, a recovery's restore, a drill's scratch clone): only a
    /// driver on that host may run or resume them.
    fn is_host_local(self) -> bool;

    /// The lease an operation of this kind takes on `cluster`. Drills have
    /// their own, so a rehearsal never delays a real failover.
    fn lease_name(self, cluster: &str) -> String;
}

impl OperationSaga for OperationKind {
    fn steps(self) -> &'static [Step] {
        crate::saga::steps(self)
    }

    fn is_host_local(self) -> bool {
        matches!(
            self,
            OperationKind::Rejoin | OperationKind::Recover | OperationKind::Drill
        )
    }

    fn lease_name(self, cluster: &str) -> String {
        match self {
            OperationKind::Drill => format!("drill:{cluster}"),
            _ => crate::lease_name(cluster),
        }
    }
}
