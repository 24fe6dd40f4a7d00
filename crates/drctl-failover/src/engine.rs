//! The driver: takes the cluster's lease, runs the first step not done,
//! journals it, and goes on until the operation succeeds, stops (resumable)
//! or is abandoned. `run` starts an operation; `resume` takes over one whose
//! driver died or stopped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drctl_config::Config;
use drctl_node::{LocalNode, NodeActions, Nodes};
use drctl_store::{Lease, StepRecord, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::attempt::Progress;
use crate::attempt::{crash_point, run_with_retries};
use crate::journal::{self, Event, JournalState, OpStatus, StepState};
use crate::plan::{self, OperationParams, PlanReport};
use crate::saga::ctx::{Ctx, StepError, Timings};
use crate::saga::output::{view_output, Action, Entry};
use crate::{FailoverError, Measured, OperationKind, OperationSaga, Step};

/// A request for an operation.
#[derive(Clone, Debug)]
pub struct Request {
    pub kind: OperationKind,
    pub service: String,
    /// The target region; default: the first region that is not primary.
    pub to: Option<String>,
    pub accept_data_loss: bool,
    /// Fail over although the source cannot be fenced (unreachable, no
    /// fence hook): an operator's explicit decision; automatic failover
    /// never sets it.
    pub accept_unfenced: bool,
    /// `cli`, `api`, `automatic`.
    pub requested_by: String,
    pub reason: Option<String>,
    pub detected_at: Option<DateTime<Utc>>,
}

/// How an operation ended (this time).
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub id: String,
    /// What the operation was (a resume learns it from the journal).
    pub kind: OperationKind,
    /// The region it moved to (or rejoined, or restored in).
    pub target: String,
    pub status: OpStatus,
    pub measured: Option<Measured>,
    /// The journal, each output as the action's own JSON.
    pub steps: Vec<StepRecord>,
    /// The actions' results, for [`Outcome::output`].
    #[serde(skip)]
    outputs: BTreeMap<Step, Entry>,
    /// The automatic rejoin of the old primary that followed a switchover
    /// (`[services.failover] rejoin = "auto"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejoin: Option<FollowUp>,
}

/// An operation started by drctl itself after another ended.
#[derive(Clone, Debug, Serialize)]
pub struct FollowUp {
    pub kind: OperationKind,
    /// The follow-up's operation id, when it started.
    pub id: Option<String>,
    pub status: Option<OpStatus>,
    /// Why it did not start or did not finish (the old primary then stays
    /// fenced; the daemon's guard tries again).
    pub error: Option<String>,
}

impl Outcome {
    /// The plan it executed (its first action's output).
    pub fn plan(&self) -> Option<PlanReport> {
        self.output(Step::Plan)
    }

    /// An action's output, read back by type (`None` when it was skipped,
    /// did not run, or is not a `T`).
    pub fn output<T: DeserializeOwned>(&self, step: Step) -> Option<T> {
        self.outputs.get(&step)?.read::<T>().ok()?.done()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The failover engine bound to a config, a store and the node actions it
/// drives.
#[derive(Clone)]
pub struct Engine {
    config: Arc<Config>,
    store: Store,
    nodes: Nodes,
    driver: String,
}

impl Engine {
    /// The engine acting on each server through the agent its region names
    /// (`[services.postgres.REGION] agent`), else on this host
    /// ([`LocalNode`], restoring the backups the store recorded).
    pub fn new(config: Arc<Config>, store: Store) -> Engine {
        let backups = drctl_backup::RecordedBackups::new(config.clone(), store.clone());
        let local = Arc::new(LocalNode::new().with_backups(Arc::new(backups)));
        let nodes = drctl_agent::nodes_for(&config, local);
        Engine::with_nodes(config, store, nodes)
    }

    /// The engine acting through `node` for every server.
    pub fn with_node(config: Arc<Config>, store: Store, node: Arc<dyn NodeActions>) -> Engine {
        Engine::with_nodes(config, store, Nodes::uniform(node))
    }

    /// The engine acting through `nodes`: per service and region, drctl's
    /// own host or the agent beside the server.
    pub fn with_nodes(config: Arc<Config>, store: Store, nodes: Nodes) -> Engine {
        let host = crate::this_host();
        let driver = format!(
            "{host}/{}/{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Engine {
            config,
            store,
            nodes,
            driver,
        }
    }

    /// The node actions on the host of `service`'s server in `region`.
    pub fn node(&self, service: &str, region: &str) -> &dyn NodeActions {
        self.nodes.of(service, region)
    }

    pub fn driver(&self) -> &str {
        &self.driver
    }

    fn lease_ttl(&self) -> Duration {
        self.config.failover.lease
    }

    /// Resolves a request into the parameters stored with the operation.
    pub async fn params(&self, req: &Request) -> Result<OperationParams, FailoverError> {
        if !req.kind.is_journaled() {
            return Err(FailoverError::Refused {
                blockers: vec![format!(
                    "a {} is a job, not an operation the failover engine drives",
                    req.kind
                )],
                overridable: false,
            });
        }
        let service = self
            .config
            .service(&req.service)
            .ok_or_else(|| FailoverError::UnknownService(req.service.clone()))?;
        let primary = self
            .store
            .cluster_role(&service.cluster)
            .await?
            .map(|r| r.primary_region)
            .unwrap_or_else(|| service.primary.clone());
        let (source, target) = plan::regions(service, &primary, req.to.as_deref())?;
        Ok(OperationParams {
            kind: req.kind,
            service: service.name.clone(),
            cluster: service.cluster.clone(),
            members: self
                .config
                .cluster_members(&service.cluster)
                .map(|s| s.name.clone())
                .collect(),
            source,
            target,
            accept_data_loss: req.accept_data_loss,
            // Automatic failover never fails over unfenced, whatever asked.
            accept_unfenced: req.accept_unfenced
                && req.requested_by != crate::REQUESTED_BY_AUTOMATIC,
            requested_by: req.requested_by.clone(),
            reason: req.reason.clone(),
            detected_at_us: req.detected_at.map(|t| t.timestamp_micros()),
            host: req.kind.is_host_local().then(crate::this_host),
            confirmed_plan: None,
        })
    }

    /// The plan right now, without taking anything (`--dry-run`).
    pub async fn plan(&self, req: &Request) -> Result<PlanReport, FailoverError> {
        let params = self.params(req).await?;
        let mut report = plan::make_plan(&self.config, &self.store, &self.nodes, &params).await;
        report.steps = params.kind.steps().to_vec();
        Ok(report)
    }

    /// Starts an operation and drives it to its end. Its Plan action plans
    /// (once) and that plan is the one executed.
    pub async fn run(
        &self,
        req: &Request,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, FailoverError> {
        let params = self.params(req).await?;
        let outcome = self.start(params, progress).await?;
        Ok(self.follow_up(outcome, progress).await)
    }

    /// After a switchover, the old primary becomes a standby of the new
    /// one at once (`rejoin = "auto"`, the default) with its own journaled
    /// rejoin, so the service is protected again without a person: what
    /// Patroni and CloudNativePG do. A rejoin that cannot start or finish
    /// is reported with the switchover, which stays a success.
    async fn follow_up(
        &self,
        mut outcome: Outcome,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Outcome {
        let Some(req) = self.auto_rejoin_request(&outcome) else {
            return outcome;
        };
        let result = match self.params(&req).await {
            Ok(params) => self.start(params, progress).await,
            Err(e) => Err(e),
        };
        outcome.rejoin = Some(match result {
            Ok(r) => FollowUp {
                kind: OperationKind::Rejoin,
                id: Some(r.id),
                status: Some(r.status),
                error: None,
            },
            Err(e) => {
                tracing::warn!(service = %req.service, error = %e, "the automatic rejoin after the switchover did not complete");
                FollowUp {
                    kind: OperationKind::Rejoin,
                    id: None,
                    status: None,
                    error: Some(e.to_string()),
                }
            }
        });
        outcome
    }

    /// The rejoin a finished operation calls for, if any.
    fn auto_rejoin_request(&self, outcome: &Outcome) -> Option<Request> {
        if outcome.kind != OperationKind::Switchover || outcome.status != OpStatus::Succeeded {
            return None;
        }
        let params = outcome.output::<PlanReport>(Step::Plan)?;
        let service = self.config.service(&params.service)?;
        let old = params.source.clone();
        let wanted = service.failover.rejoin == drctl_config::RejoinPolicy::Auto
            && service
                .nodes
                .get(&old)
                .is_some_and(|n| n.data_dir.is_some());
        wanted.then(|| Request {
            kind: OperationKind::Rejoin,
            service: service.name.clone(),
            to: Some(old),
            accept_data_loss: false,
            accept_unfenced: false,
            requested_by: crate::REQUESTED_BY_AUTOMATIC.into(),
            reason: Some(format!("rejoin after the switchover {}", outcome.id)),
            detected_at: None,
        })
    }

    /// Starts an operation that executes `confirmed`, the plan the operator
    /// saw and confirmed ([`Engine::plan`]): it is stored with the
    /// operation, journaled as the Plan action's output, and refused when it
    /// went stale in a way that matters ([`PlanReport::stale_against`]).
    pub async fn run_plan(
        &self,
        req: &Request,
        confirmed: PlanReport,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, FailoverError> {
        let mut params = self.params(req).await?;
        if confirmed.kind != params.kind || confirmed.service != params.service {
            return Err(FailoverError::Refused {
                blockers: vec![format!(
                    "the confirmed plan is a {} of {}, not a {} of {}",
                    confirmed.kind.as_str(),
                    confirmed.service,
                    params.kind.as_str(),
                    params.service
                )],
                overridable: false,
            });
        }
        params.confirmed_plan = Some(Box::new(confirmed));
        let outcome = self.start(params, progress).await?;
        Ok(self.follow_up(outcome, progress).await)
    }

    async fn start(
        &self,
        params: OperationParams,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, FailoverError> {
        let exclusive = params.kind.exclusive_with();
        let lease = match self.take_lease(params.kind, &params.cluster).await {
            Ok(l) => l,
            Err(busy @ FailoverError::LeaseBusy { .. }) => {
                return Err(
                    match self
                        .store
                        .unfinished_operation(&params.cluster, exclusive)
                        .await?
                    {
                        Some(op) => FailoverError::InProgress {
                            detail: format!(
                                "{} of {}, {}",
                                op.kind,
                                op.service.unwrap_or_default(),
                                busy
                            ),
                            id: op.id,
                            cluster: params.cluster,
                        },
                        None => busy,
                    },
                )
            }
            Err(e) => return Err(e),
        };
        if let Some(op) = self
            .store
            .unfinished_operation(&params.cluster, exclusive)
            .await?
        {
            self.store.release_lease(&lease).await?;
            return Err(FailoverError::InProgress {
                detail: format!(
                    "{} {}, {}",
                    op.kind,
                    op.status,
                    op.service.unwrap_or_default()
                ),
                id: op.id,
                cluster: params.cluster,
            });
        }
        let id = format!("op-{}", uuid::Uuid::new_v4().simple());
        let encoded = serde_json::to_string(&params).expect("params encode");
        let started = Utc::now();
        self.store
            .journal_operation_created(
                &lease,
                &id,
                params.kind,
                &params.service,
                &params.cluster,
                &encoded,
                started,
            )
            .await?;
        progress(Progress::Operation {
            id: id.clone(),
            resumed: false,
        });
        self.drive(&id, params, lease, started, progress).await
    }

    /// Takes over an operation whose driver died (its lease expires: this
    /// waits up to `wait` for that) or that stopped, and drives it on.
    pub async fn resume(
        &self,
        id: &str,
        wait: Duration,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, FailoverError> {
        let op = self
            .store
            .operation(id)
            .await?
            .ok_or_else(|| FailoverError::NotFound(id.to_string()))?;
        if op.status.is_final() {
            return Err(FailoverError::NotResumable {
                id: id.to_string(),
                status: op.status.to_string(),
            });
        }
        let params: OperationParams = self
            .store
            .operation_params(id)
            .await?
            .and_then(|p| serde_json::from_str(&p).ok())
            .ok_or_else(|| FailoverError::Journal {
                id: id.to_string(),
                detail: "its parameters are missing or unreadable".into(),
            })?;
        let deadline = Instant::now() + wait;
        let lease = loop {
            match self.take_lease(params.kind, &params.cluster).await {
                Ok(l) => break l,
                Err(FailoverError::LeaseBusy { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => return Err(e),
            }
        };
        progress(Progress::Operation {
            id: id.to_string(),
            resumed: true,
        });
        self.drive(id, params, lease, op.started_at, progress).await
    }

    async fn take_lease(&self, kind: OperationKind, cluster: &str) -> Result<Lease, FailoverError> {
        let name = kind.lease_name(cluster);
        match self
            .store
            .acquire_lease(
                &name,
                &self.driver,
                self.lease_ttl(),
                self.store.clock().await?,
            )
            .await?
        {
            Some(l) => Ok(l),
            None => {
                let held = self.store.lease(&name).await?;
                Err(FailoverError::LeaseBusy {
                    cluster: cluster.to_string(),
                    holder: held.as_ref().map_or("?".into(), |l| l.holder.clone()),
                    until: held.map_or("?".into(), |l| l.expires_at.to_rfc3339()),
                })
            }
        }
    }

    async fn drive(
        &self,
        id: &str,
        params: OperationParams,
        lease: Lease,
        op_started: DateTime<Utc>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, FailoverError> {
        let lost = Arc::new(AtomicBool::new(false));
        // Aborted on drop too: a drive dropped half-way (its daemon stopped
        // leading) must let the lease expire for the next driver.
        let renewer = AbortOnDrop(self.spawn_renewal(lease.clone(), lost.clone()));
        let result = self
            .drive_steps(id, &params, &lease, op_started, &lost, progress)
            .await;
        drop(renewer);
        if !matches!(result, Err(FailoverError::LeaseLost { .. })) {
            let _ = self.store.release_lease(&lease).await;
        }
        result
    }

    fn spawn_renewal(&self, lease: Lease, lost: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let ttl = self.lease_ttl();
        tokio::spawn(async move {
            let mut lease = lease;
            loop {
                tokio::time::sleep(ttl / 3).await;
                // Lease times are on the store's clock, like every holder's.
                let renewed = match store.clock().await {
                    Ok(now) => store.renew_lease(&mut lease, ttl, now).await,
                    Err(e) => Err(e),
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        tracing::error!(lease = %lease.name, "lease lost: another driver took over");
                        return;
                    }
                    // The store is unreachable: keep trying; the fenced
                    // journal writes protect the operation meanwhile.
                    Err(e) => tracing::warn!(error = %e, "cannot renew the operation lease"),
                }
            }
        })
    }

    /// Replay, execute, finish: the journal is read back into the state
    /// machine and the actions' outputs, every action not done runs in
    /// turn, and the operation ends as its actions decided.
    async fn drive_steps(
        &self,
        id: &str,
        params: &OperationParams,
        lease: &Lease,
        op_started: DateTime<Utc>,
        lost: &AtomicBool,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, FailoverError> {
        let mut run = self.replay(id, params.kind.steps()).await?;
        if run.state.status != OpStatus::Running {
            run.state = self.transition(id, &run.state, Event::Resume)?;
            self.store
                .journal_operation_status(lease, id, OpStatus::Running, Utc::now(), None, None)
                .await
                .map_err(|e| self.store_error(id, e))?;
        }
        while let Some(step) = run.state.next_step() {
            if lost.load(Ordering::SeqCst) {
                return Err(FailoverError::LeaseLost { id: id.to_string() });
            }
            let ctx = Driving {
                id,
                params,
                lease,
                op_started,
                progress,
            };
            if let Some(end) = self.execute(&ctx, &mut run, step).await? {
                return self.finish_failed(&ctx, &run, end).await;
            }
        }
        self.finish(id, params, lease, run).await
    }

    /// The operation as its journal left it: the state machine, the done
    /// actions' entries (each decoded by its format version), the timings,
    /// and why it was unwinding if it was.
    async fn replay(&self, id: &str, plan: &'static [Step]) -> Result<Replayed, FailoverError> {
        let op = self
            .store
            .operation(id)
            .await?
            .ok_or_else(|| FailoverError::NotFound(id.to_string()))?;
        let records = self.store.journal(id).await?;
        let state = JournalState::from_records(
            plan,
            op.status,
            &records
                .iter()
                .map(|r| (r.step.clone(), r.status))
                .collect::<Vec<_>>(),
        );
        let mut outputs = BTreeMap::new();
        let mut timings = Timings::new();
        for r in &records {
            let Some(step) = plan.iter().find(|s| s.as_str() == r.step) else {
                continue;
            };
            if r.status == StepState::Done {
                let entry = match r.output.as_deref() {
                    Some(text) => Entry::decode(text).map_err(|e| FailoverError::Journal {
                        id: id.to_string(),
                        detail: format!("output of {}: {e}", r.step),
                    })?,
                    None => Entry::Done(serde_json::Value::Null),
                };
                outputs.insert(*step, entry);
            }
            timings.insert(*step, (r.started_at, r.ended_at));
        }
        let unwound = records
            .iter()
            .filter(|r| r.status == StepState::Failed)
            .find_map(|r| {
                plan.iter()
                    .find(|s| s.as_str() == r.step && !s.is_finally())
                    .map(|s| (*s, StepError::abandon(r.error.clone().unwrap_or_default())))
            })
            .filter(|_| state.unwinding());
        Ok(Replayed {
            plan,
            state,
            outputs,
            timings,
            unwound,
        })
    }

    /// Runs one action and journals how it went. `Some` when the operation
    /// ends here (stopped, failed or refused); an action that fails in a
    /// saga with a finally action unwinds to it instead.
    async fn execute(
        &self,
        d: &Driving<'_>,
        run: &mut Replayed,
        step: Step,
    ) -> Result<Option<(Step, StepError)>, FailoverError> {
        let fenced = |e| self.store_error(d.id, e);
        run.state = self.transition(d.id, &run.state, Event::Start(step))?;
        let began = Utc::now();
        self.store
            .journal_step_started(d.lease, d.id, step.as_str(), seq(run.plan, step), began)
            .await
            .map_err(fenced)?;
        run.timings.insert(step, (began, None));
        crash_point(step, "started");
        let ctx = Ctx {
            config: &self.config,
            store: &self.store,
            params: d.params,
            op_id: d.id,
            op_started: d.op_started,
            lease: d.lease,
            nodes: &self.nodes,
            outputs: &run.outputs,
            timings: &run.timings,
        };
        let result = run_with_retries(step, &ctx, d.progress).await;
        crash_point(step, "applied");
        let ended = Utc::now();
        match result {
            Ok(entry) => {
                run.state = self.transition(d.id, &run.state, Event::Done(step))?;
                self.store
                    .journal_step_ended(d.lease, d.id, step.as_str(), ended, Ok(&entry.encode()))
                    .await
                    .map_err(fenced)?;
                run.outputs.insert(step, entry);
                run.timings.insert(step, (began, Some(ended)));
                (d.progress)(Progress::StepDone {
                    step,
                    took_ms: (ended - began).num_milliseconds().max(0) as u64,
                });
                crash_point(step, "done");
                Ok(None)
            }
            Err(e) => {
                let message = e.message();
                (d.progress)(Progress::StepFailed {
                    step,
                    error: message.clone(),
                });
                run.state = self.transition(d.id, &run.state, Event::Fail(step))?;
                self.store
                    .journal_step_ended(d.lease, d.id, step.as_str(), ended, Err(&message))
                    .await
                    .map_err(fenced)?;
                if !step.is_finally() && run.plan.iter().any(|s| s.is_finally()) {
                    // Run the finally action (a drill's teardown) before
                    // the operation ends failed.
                    run.state = self.transition(d.id, &run.state, Event::Unwind)?;
                    run.unwound = Some((step, e));
                    return Ok(None);
                }
                Ok(Some((step, e)))
            }
        }
    }

    /// The operation ends at `step`, as its error says: stopped
    /// (resumable) or failed (refused, or undone).
    async fn finish_failed(
        &self,
        d: &Driving<'_>,
        run: &Replayed,
        (step, e): (Step, StepError),
    ) -> Result<Outcome, FailoverError> {
        let message = e.message();
        let (event, status) = match e {
            StepError::RetryInPlace(_) | StepError::StopResumable(_) => {
                (Event::Stop, OpStatus::Stopped)
            }
            StepError::FailAndUnwind(_) | StepError::Refused { .. } => {
                (Event::Abandon, OpStatus::Failed)
            }
        };
        self.transition(d.id, &run.state, event)?;
        self.store
            .journal_operation_status(d.lease, d.id, status, Utc::now(), None, Some(&message))
            .await
            .map_err(|e| self.store_error(d.id, e))?;
        Err(ended_error(d.id, step, e, message))
    }

    /// Every action ran: the operation succeeded, or (it unwound to its
    /// finally action) failed at the action that failed.
    async fn finish(
        &self,
        id: &str,
        params: &OperationParams,
        lease: &Lease,
        run: Replayed,
    ) -> Result<Outcome, FailoverError> {
        let fenced = |e| self.store_error(id, e);
        if let Some((step, e)) = run.unwound {
            let message = format!("{step} failed: {}; torn down", e.message());
            self.transition(id, &run.state, Event::Abandon)?;
            self.store
                .journal_operation_status(
                    lease,
                    id,
                    OpStatus::Failed,
                    Utc::now(),
                    None,
                    Some(&message),
                )
                .await
                .map_err(fenced)?;
            // Refused stays refused; anything else failed, whatever it
            // would have been without the unwinding.
            let e = match e {
                refused @ StepError::Refused { .. } => refused,
                other => StepError::FailAndUnwind(other.message()),
            };
            return Err(ended_error(id, step, e, message));
        }
        let measured: Option<Measured> = run
            .outputs
            .get(&Step::Record)
            .and_then(|e| e.read::<Measured>().ok())
            .and_then(Action::done);
        self.transition(id, &run.state, Event::Succeed)?;
        let result = measured
            .as_ref()
            .map(|m| serde_json::to_string(m).expect("json encodes"));
        self.store
            .journal_operation_status(
                lease,
                id,
                OpStatus::Succeeded,
                Utc::now(),
                result.as_deref(),
                None,
            )
            .await
            .map_err(fenced)?;
        Ok(Outcome {
            rejoin: None,
            id: id.to_string(),
            kind: params.kind,
            target: params.target.clone(),
            status: OpStatus::Succeeded,
            measured,
            steps: readable(self.store.journal(id).await?),
            outputs: run.outputs,
        })
    }

    fn transition(
        &self,
        id: &str,
        state: &JournalState,
        event: Event,
    ) -> Result<JournalState, FailoverError> {
        journal::apply(state, event).map_err(|e| FailoverError::Journal {
            id: id.to_string(),
            detail: e.to_string(),
        })
    }

    fn store_error(&self, id: &str, e: StoreError) -> FailoverError {
        match e {
            StoreError::LeaseLost { .. } => FailoverError::LeaseLost { id: id.to_string() },
            e => FailoverError::Store(e),
        }
    }
}

/// The journal replayed, as the driver carries it from action to action.
struct Replayed {
    plan: &'static [Step],
    state: JournalState,
    outputs: BTreeMap<Step, Entry>,
    timings: Timings,
    /// The action that failed while the operation unwinds to its finally
    /// action, with its error.
    unwound: Option<(Step, StepError)>,
}

/// What every action of one drive shares.
struct Driving<'a> {
    id: &'a str,
    params: &'a OperationParams,
    lease: &'a Lease,
    op_started: DateTime<Utc>,
    progress: &'a (dyn Fn(Progress) + Send + Sync),
}

/// The error an operation that ended at `step` returns.
fn ended_error(id: &str, step: Step, e: StepError, message: String) -> FailoverError {
    match e {
        StepError::Refused {
            blockers,
            overridable,
        } => FailoverError::Refused {
            blockers,
            overridable,
        },
        StepError::FailAndUnwind(_) => FailoverError::Failed {
            id: id.to_string(),
            step: step.to_string(),
            error: message,
        },
        StepError::RetryInPlace(_) | StepError::StopResumable(_) => FailoverError::Stopped {
            id: id.to_string(),
            step: step.to_string(),
            error: message,
        },
    }
}

/// Journal rows as people read them: each output as the action's own
/// JSON, not its envelope.
fn readable(mut records: Vec<StepRecord>) -> Vec<StepRecord> {
    for r in &mut records {
        if let Some(text) = &r.output {
            r.output = Some(view_output(text).to_string());
        }
    }
    records
}

fn seq(plan: &[Step], step: Step) -> i64 {
    plan.iter().position(|s| *s == step).unwrap_or(0) as i64
}
