//! The failover engine: failover, switchover, drill, rejoin and recover as
//! sagas — journaled, crash-safe, fenced operations.
//!
//! Layout (one way, no circles):
//! - [`OperationKind`], [`OpStatus`], [`StepState`]: the store's typed
//!   states (`drctl_store::states`), re-exported; [`OperationSaga`]
//!   (`kind.rs`) is the engine's side of a kind (its actions, lease,
//!   exclusions); [`Step`] (`step.rs`) names the actions.
//! - `plan/`: what an operation would do and cost now, and what blocks it;
//!   one file per kind (`failover.rs` also plans switchovers and drills).
//! - `saga/`: one module per kind declaring its list of actions
//!   (`failover.rs` serves failover and switchover, `drill.rs`,
//!   `rejoin.rs`, `recover.rs`), the actions they share (`actions.rs`,
//!   `dns.rs`), what an action may read (`ctx.rs`) and the typed,
//!   versioned journal entry each action leaves (`output.rs`).
//! - `node.rs`: the plans' reads of a region's server. Every action on a
//!   server goes through the two seams of `drctl-node`: the datastore
//!   (`Datastore`: probe, soft fence, catch-up, promote, write probe, over
//!   the engine the service names) and the node actions (`NodeActions`:
//!   stop, start, rewind or re-clone, restore, scratch clones, the hard
//!   fence; [`Engine::new`] acts on this host, [`Engine::with_node`] through
//!   any other implementation, such as an agent). No PostgreSQL type
//!   appears in a journaled output: a second engine plugs in below the
//!   seams without touching this crate.
//! - `engine.rs`: the driver — replay the journal, execute the next action,
//!   finish (succeed, stop resumable, or unwind and fail); `attempt.rs`:
//!   one action's run (host and lease checks, retries in place, progress,
//!   the `fault-injection` hooks); `journal.rs`: the pure state machine
//!   the driver asks before every journal write.
//!
//! Plan once: [`Engine::plan`] is what an operator confirms, and
//! [`Engine::run_plan`] executes exactly that plan (stored with the
//! operation, journaled as the Plan action's output, refused when stale);
//! [`Engine::run`] executes the plan its own Plan action makes.
//!
//! The driver ([`Engine`]) takes the cluster's lease in the state store,
//! then runs the first action not done, journaling its start, its typed
//! output and its end before the next one starts (the saga pattern of
//! oxidecomputer/steno). Actions get their inputs only from the journal,
//! read back by type, and each is idempotent (fence an already fenced
//! server, promote a primary, upsert the same DNS value: all no-ops), so
//! any drctl process can resume an operation whose driver died at any
//! point, and nothing is applied twice.
//!
//! This crate owns the decisions (plan, blockers, measured RPO/RTO of an
//! event); server work lives behind `drctl-node`, DNS in `drctl-dns`, the
//! journal's storage in `drctl-store`.

mod attempt;
pub mod auto;
mod engine;
mod error;
pub mod journal;
mod kind;
mod measure;
mod node;
mod plan;
mod saga;
mod step;

pub use drctl_store::states::OperationKind;
pub use engine::{Engine, FollowUp, Outcome, Progress, Request};
pub use error::FailoverError;
pub use journal::{OpStatus, StepState};
pub use kind::OperationSaga;
pub use measure::Measured;
pub use plan::{Blocker, LocalNode, OperationParams, PlanReport};
pub use saga::output::{view_output, JOURNAL_VERSION};
pub use saga::{RejoinMethod, Rejoined};
pub use step::Step;

/// This host's name, as host-local operations record it.
pub use drctl_node::this_host;

/// Who requested an operation, when it is the daemon's automatic failover
/// (`Request.requested_by`; people and API callers are named otherwise):
/// such a request can never accept an unfenced source.
pub const REQUESTED_BY_AUTOMATIC: &str = "automatic";

/// The lease that serialises operations on one cluster.
pub fn lease_name(cluster: &str) -> String {
    format!("operation:{cluster}")
}
