//! Rejoin: the old primary of a cluster (fenced, or lost and back) becomes
//! a standby of the new one, so the pair is protected again and a
//! switchover can go back. The server's data directory must be on the host
//! running drctl (`[services.postgres.REGION] data_dir`): run `drctl
//! rejoin` there. Steps: stop it; `pg_rewind` onto the new primary's
//! timeline (falling back to a fresh `pg_basebackup` when rewinding cannot
//! work); configure it as a standby of the new primary (its own
//! configuration files kept, the fence lifted: a standby refuses writes
//! anyway, and a later promotion must not inherit it); start it; wait until
//! it streams and has caught up.
//!
//! A rejoin acts on files, so it is bound to the server it planned for: the
//! plan records the host and the database system identifier found in the
//! data directory, and every step asks the node again and refuses another
//! host or another database at that path (a leader elsewhere with the same
//! `data_dir` must not wipe its own server). A fresh clone happens only
//! when pg_rewind reports a divergence it cannot mend, and moves the old
//! directory aside. The work on the server's files is the node's
//! ([`drctl_node::NodeActions`]); this module decides and journals.

use std::time::{Duration, Instant};

use drctl_node::{
    CatchUpGoal, NodeRef, Position, ResyncRequest, StandbyRequest, StartRequest, StopMode,
};
use serde::{Deserialize, Serialize};

use super::actions;
use super::ctx::{node_error, ActionResult, Ctx, StepError};
use super::output::{Action, Entry};
use crate::plan::PlanReport;
use crate::Step;

const REACH: Duration = Duration::from_secs(5);
const CATCH_UP: Duration = Duration::from_secs(20);

/// The actions of a rejoin, in order.
pub(crate) const STEPS: &[Step] = &[
    Step::Plan,
    Step::Lease,
    Step::StopNode,
    Step::Rewind,
    Step::ConfigureStandby,
    Step::StartNode,
    Step::CatchUp,
    Step::Record,
];

/// Runs one action of a rejoin.
pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> Result<Entry, StepError> {
    match step {
        // A rejoin discards nothing the service still has: no data-loss
        // override applies.
        Step::Plan => return actions::record(plan(ctx).await),
        Step::Lease => return actions::record(actions::lease(ctx)),
        _ => {}
    }
    let plan: PlanReport = ctx.output(Step::Plan)?;
    if already_standby(&plan) && step != Step::Record {
        return actions::record(Ok(Action::<()>::skipped(
            "already a standby of the primary",
        )));
    }
    if step != Step::Record && step != Step::CatchUp {
        same_server(ctx, &plan, step).await?;
    }
    match step {
        Step::StopNode => actions::record(stop_node(ctx).await),
        Step::Rewind => actions::record(rewind(ctx).await),
        Step::ConfigureStandby => actions::record(configure(ctx).await),
        Step::StartNode => actions::record(start_node(ctx).await),
        Step::CatchUp => actions::record(streaming(ctx).await),
        Step::Record => actions::record(record(ctx)),
        other => Err(actions::not_in_saga(ctx, other)),
    }
}

async fn plan(ctx: &Ctx<'_>) -> ActionResult<PlanReport> {
    let mut report = crate::plan::make_plan(ctx.config, ctx.store, ctx.nodes, ctx.params).await;
    report.steps = STEPS.to_vec();
    // An agent that does not answer (restarting, its host rebooting) is
    // waited for, not a refusal: the step is tried again, then stops
    // resumably.
    if let Some(b) = report
        .blockers
        .iter()
        .find(|b| b.code == "node_unreachable")
    {
        return Err(StepError::retry(b.message.clone()));
    }
    actions::executed_plan(ctx, report, false)
}

/// What a rejoin did, for the operator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rejoined {
    pub rejoined: String,
    pub streams_from: String,
    /// How: a rewind or a fresh clone; `None` when it was already a
    /// standby.
    pub method: Option<RejoinMethod>,
}

/// How the old primary became a standby again: the node's resync (a
/// rewind onto the new primary's history, or a fresh clone with the old
/// directory moved aside).
pub type RejoinMethod = drctl_node::ResyncMethod;

fn record(ctx: &Ctx<'_>) -> ActionResult<Rejoined> {
    Ok(Action::Done(Rejoined {
        rejoined: ctx.params.target.clone(),
        streams_from: ctx.params.source.clone(),
        method: ctx
            .lookup::<Rewound>(Step::Rewind)?
            .done()
            .map(|r| r.method),
    }))
}

fn already_standby(plan: &PlanReport) -> bool {
    plan.target_state.is_some_and(|t| t.standby) && plan.fence.starts_with("already")
}

/// The step runs on the host the plan was made on, against the database
/// the plan found there (the node says which host it is and what its data
/// directory holds). A rewind may find no database (a fresh clone that
/// stopped half-way: it clones again); every other step needs the same
/// database.
async fn same_server(ctx: &Ctx<'_>, plan: &PlanReport, step: Step) -> Result<(), StepError> {
    let Some(local) = &plan.local else {
        return Err(StepError::stop(
            "the plan of this rejoin does not record its server's host and database (made by an older drctl): start a new rejoin",
        ));
    };
    let status = ctx
        .node(&ctx.params.target)
        .status(&server(ctx)?)
        .await
        .map_err(node_error)?;
    if local.host != status.host {
        return Err(StepError::stop(format!(
            "this rejoin acts on {} of host {}, and this is {}: resume it on {}",
            local.data_dir, local.host, status.host, local.host
        )));
    }
    let found = status.dataset_id;
    if found == local.system_identifier || (found.is_none() && step == Step::Rewind) {
        return Ok(());
    }
    Err(StepError::stop(format!(
        "{} now holds database {} but the plan found {}: another server is at this path; refusing to touch it",
        local.data_dir,
        found.as_deref().unwrap_or("none"),
        local.system_identifier.as_deref().unwrap_or("none")
    )))
}

/// The server being rejoined (port 0: its own configuration says).
fn server(ctx: &Ctx<'_>) -> Result<NodeRef, StepError> {
    NodeRef::for_service(ctx.service()?, &ctx.params.target)
        .ok_or_else(|| StepError::abandon(format!("{} has no data_dir", ctx.params.target)))
}

/// How the rejoined server connects to the primary: the primary's
/// `replication_dsn`, else its connection string; named after its region
/// so the primary says who streams.
fn primary_conninfo(ctx: &Ctx<'_>) -> Result<drctl_node::Dsn, StepError> {
    drctl_node::standby_source(ctx.service()?, &ctx.params.source, &ctx.params.target)
        .map_err(|e| StepError::stop(e.to_string()))
}

/// Whether the server was running when it was stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stopped {
    pub was_running: bool,
}

async fn stop_node(ctx: &Ctx<'_>) -> ActionResult<Stopped> {
    let server = server(ctx)?;
    ctx.check_lease("stopping the server").await?;
    let stopped = ctx
        .node(&ctx.params.target)
        .stop(&server, StopMode::Fast)
        .await
        .map_err(node_error)?;
    Ok(Action::Done(Stopped {
        was_running: stopped.was_running,
    }))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Rewound {
    pub method: RejoinMethod,
    pub rewind_error: Option<String>,
    pub took_ms: u64,
}

async fn rewind(ctx: &Ctx<'_>) -> ActionResult<Rewound> {
    let service = ctx.service()?;
    let req = ResyncRequest {
        node: server(ctx)?,
        source: drctl_node::service_dsn(service, &ctx.params.source)
            .map_err(|e| StepError::abandon(e.to_string()))?,
        clone_source: primary_conninfo(ctx)?,
    };
    let started = Instant::now();
    // A just-promoted primary's durable state may still name the old
    // history: a rewind would see no divergence and do nothing.
    let primary = ctx.datastore(&ctx.params.source, Duration::from_secs(120))?;
    let prepared = primary.prepare_as_copy_source().await;
    primary.close().await;
    prepared.map_err(|e| StepError::retry(e.to_string()))?;
    ctx.check_lease("rewinding the data directory").await?;
    let done = ctx
        .node(&ctx.params.target)
        .rewind_or_reclone(&req)
        .await
        .map_err(node_error)?;
    Ok(Action::Done(Rewound {
        method: done.method,
        rewind_error: done.rewind_error,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// Whom the server is now configured to stream from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Configured {
    pub standby_of: String,
}

async fn configure(ctx: &Ctx<'_>) -> ActionResult<Configured> {
    let req = StandbyRequest {
        node: server(ctx)?,
        primary: primary_conninfo(ctx)?,
    };
    ctx.node(&ctx.params.target)
        .configure_standby(&req)
        .await
        .map_err(node_error)?;
    Ok(Action::Done(Configured {
        standby_of: ctx.params.source.clone(),
    }))
}

/// The server was started (or already ran).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NodeStarted {
    pub started: bool,
}

async fn start_node(ctx: &Ctx<'_>) -> ActionResult<NodeStarted> {
    let req = StartRequest {
        node: server(ctx)?,
        wait_ready_ms: None,
        recovered: None,
        unfence: true,
    };
    ctx.node(&ctx.params.target)
        .start(&req)
        .await
        .map_err(node_error)?;
    Ok(Action::Done(NodeStarted { started: true }))
}

/// The rejoined server streams from the primary and has applied what the
/// primary had made durable when the wait began.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Streaming {
    pub goal: Position,
    pub replayed: Option<Position>,
    pub waited_ms: u64,
}

async fn streaming(ctx: &Ctx<'_>) -> ActionResult<Streaming> {
    let p = ctx.params;
    let engine = ctx.engine()?;
    let primary = ctx.datastore(&p.source, REACH)?;
    // The durable position (the insert position may run ahead of what any
    // standby can receive).
    let goal = primary
        .probe_primary_point()
        .await
        .map_err(|e| StepError::retry(e.to_string()));
    primary.close().await;
    let goal = goal?.position;
    let node = ctx.datastore(&p.target, REACH)?;
    let caught = node
        .catch_up(CatchUpGoal::StreamingApplied(goal), CATCH_UP)
        .await;
    node.close().await;
    let caught = caught.map_err(|e| StepError::retry(e.to_string()))?;
    if !caught.reached {
        return Err(StepError::stop(format!(
            "{}@{} did not stream and apply up to {} within {CATCH_UP:?} (last: receiver {}, applied {}); its log says why",
            p.cluster,
            p.target,
            engine.format_position(goal),
            caught
                .receiver
                .map_or("not running".to_string(), |r| r.to_string()),
            caught
                .last
                .map_or("unknown".to_string(), |l| engine.format_position(l)),
        )));
    }
    Ok(Action::Done(Streaming {
        goal,
        replayed: caught.last,
        waited_ms: caught.waited_ms,
    }))
}
