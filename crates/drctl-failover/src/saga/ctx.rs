//! What an action may use: the operation's parameters, the journaled
//! outputs of the actions before it (read back by type), the config and
//! store as clients, and the lease that fences every side effect. Also the
//! action's error, which says what the driver does next.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_config::{Config, Service};
use drctl_node::{Datastore, NodeActions, Nodes};
use drctl_store::Store;
use serde::de::DeserializeOwned;

use crate::plan::OperationParams;
use crate::saga::output::{Action, Entry};
use crate::Step;

/// Why an action did not complete, as what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepError {
    /// Worth retrying in place (a timeout, a provider's 5xx); when the
    /// retries run out the operation stops, resumable.
    RetryInPlace(String),
    /// The operation stops here, resumable: nothing is half-applied and a
    /// resume runs the action again.
    StopResumable(String),
    /// The operation ends without its goal (nothing was changed, or the
    /// action undid what it had done), after its finally action if any.
    FailAndUnwind(String),
    /// The plan's standing blockers: the operation was refused, not
    /// attempted. `overridable`: `--accept-data-loss` overrides them all.
    Refused {
        blockers: Vec<String>,
        overridable: bool,
    },
}

impl StepError {
    pub fn stop(message: impl Into<String>) -> Self {
        StepError::StopResumable(message.into())
    }
    pub fn retry(message: impl Into<String>) -> Self {
        StepError::RetryInPlace(message.into())
    }
    pub fn abandon(message: impl Into<String>) -> Self {
        StepError::FailAndUnwind(message.into())
    }
    pub fn refused(blockers: Vec<String>, overridable: bool) -> Self {
        StepError::Refused {
            blockers,
            overridable,
        }
    }

    /// What the journal records as the step's error.
    pub fn message(&self) -> String {
        match self {
            StepError::RetryInPlace(m)
            | StepError::StopResumable(m)
            | StepError::FailAndUnwind(m) => m.clone(),
            StepError::Refused {
                blockers,
                overridable,
            } => format!(
                "refused: {}{}",
                blockers.join("; "),
                if *overridable {
                    " (--accept-data-loss overrides)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// An action's result, typed.
pub(crate) type ActionResult<T> = Result<Action<T>, StepError>;

/// Step timings so far, from the journal: start and, when done, end.
pub(crate) type Timings = BTreeMap<Step, (DateTime<Utc>, Option<DateTime<Utc>>)>;

/// Everything an action may read.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub params: &'a OperationParams,
    pub op_id: &'a str,
    pub op_started: DateTime<Utc>,
    pub lease: &'a drctl_store::Lease,
    /// The node actions (stop, start, rewind, restore, scratch copies,
    /// hard fence) per region: drctl's own host, or the agent the config
    /// names beside the region's server.
    pub nodes: &'a Nodes,
    /// Results of the actions done so far, from the journal.
    pub outputs: &'a BTreeMap<Step, Entry>,
    pub timings: &'a Timings,
}

impl Ctx<'_> {
    /// The node actions on the host of the service's server in `region`.
    pub(crate) fn node(&self, region: &str) -> &dyn NodeActions {
        self.nodes.of(&self.params.service, region)
    }

    /// The result of an earlier action, as its type (steno's
    /// `ctx.lookup::<T>()`): done with `T`, or skipped.
    pub(crate) fn lookup<T: DeserializeOwned>(&self, step: Step) -> Result<Action<T>, StepError> {
        let entry = self
            .outputs
            .get(&step)
            .ok_or_else(|| StepError::stop(format!("the journal has no output of step {step}")))?;
        entry.read().map_err(|e| {
            StepError::stop(format!(
                "the journal's output of step {step} is unreadable: {e}"
            ))
        })
    }

    /// The output of an earlier action that must have one.
    pub(crate) fn output<T: DeserializeOwned>(&self, step: Step) -> Result<T, StepError> {
        match self.lookup(step)? {
            Action::Done(t) => Ok(t),
            Action::Skipped(s) => Err(StepError::stop(format!(
                "step {step} was skipped ({}) and has no output",
                s.reason
            ))),
        }
    }

    pub(crate) fn service(&self) -> Result<&Service, StepError> {
        self.config.service(&self.params.service).ok_or_else(|| {
            StepError::abandon(format!(
                "service {} is no longer in the config",
                self.params.service
            ))
        })
    }

    /// A connection to the service's server in `region` (the datastore
    /// seam: the engine the service names).
    pub(crate) fn datastore(
        &self,
        region: &str,
        timeout: Duration,
    ) -> Result<Box<dyn Datastore>, StepError> {
        drctl_node::connect(self.service()?, region, timeout)
            .map_err(|e| StepError::stop(e.to_string()))
    }

    /// The engine of the operation's service.
    pub(crate) fn engine(&self) -> Result<drctl_node::Engine, StepError> {
        Ok(drctl_node::Engine::of(self.service()?))
    }

    /// The fenced check before an external action (`action` says which):
    /// this driver still holds the operation's lease with its token, and
    /// holds it for a whole lease term from now (a conditional renewal on
    /// the store's clock). Journal writes are fenced by the store; this
    /// fences the side effects, which the store cannot see. A driver that
    /// was paused past its lease (GC, frozen VM, SIGSTOP) fails here,
    /// before it touches a server or DNS: whoever took over owns the
    /// cluster now.
    pub(crate) async fn check_lease(&self, action: &str) -> Result<(), StepError> {
        let unreachable = |e: drctl_store::StoreError| {
            StepError::retry(format!(
                "cannot check the operation's lease before {action}: {e}"
            ))
        };
        let now = self.store.clock().await.map_err(unreachable)?;
        let mut lease = self.lease.clone();
        match self
            .store
            .renew_lease(&mut lease, self.config.failover.lease, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(StepError::stop(format!(
                "this driver no longer holds the lease {} (token {}): another driver took over; not {action}",
                lease.name, lease.token
            ))),
            Err(e) => Err(unreachable(e)),
        }
    }
}

/// A node action's failure as what happens next: an action it refused
/// (it would harm what it does not own) ends the operation, anything else
/// stops it resumable (every node action is safe to repeat); an agent
/// that did not answer is tried again.
pub(crate) fn node_error(e: drctl_node::NodeError) -> StepError {
    match e.kind {
        drctl_node::NodeErrorKind::Refused => StepError::abandon(e.message),
        drctl_node::NodeErrorKind::Unreachable => StepError::retry(e.message),
        drctl_node::NodeErrorKind::Missing | drctl_node::NodeErrorKind::Failed => {
            StepError::stop(e.message)
        }
    }
}
