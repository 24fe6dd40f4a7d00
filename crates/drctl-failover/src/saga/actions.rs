//! The actions several kinds share: plan, lease, fence the source,
//! promote, write probe, service health. Each reads only the parameters and
//! earlier outputs, acts idempotently and returns its typed output. Which
//! server a promote or probe acts on (the target, or a drill's clone) is
//! the caller's: the kind's saga module passes it in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_node::{
    Datastore, HardFenceRequest, HardFenced, HookRun, Position, Promotion, ServerState, SoftFence,
};
use serde::{Deserialize, Serialize};

use super::ctx::{node_error, ActionResult, Ctx, StepError};
use super::output::{Action, Entry};
use crate::measure::Measured;
use crate::plan::{self, source_timeout, unfenced_message, PlanReport, REACH_TIMEOUT};
use crate::{OperationKind, Step};

const PROMOTE_WAIT: Duration = Duration::from_secs(60);

/// Stores an action's typed result as a journal entry.
pub(crate) fn record<T: Serialize>(result: ActionResult<T>) -> Result<Entry, StepError> {
    Entry::of(result?).map_err(|e| StepError::stop(format!("cannot encode a step output: {e}")))
}

/// A step that is not in the operation's saga (a journal from elsewhere).
pub(crate) fn not_in_saga(ctx: &Ctx<'_>, step: Step) -> StepError {
    StepError::abandon(format!("a {} has no step {step}", ctx.params.kind.as_str()))
}

// ---------------------------------------------------------------- plan

/// The plan as of now, journaled; refused when a blocker stands.
pub(crate) async fn plan(ctx: &Ctx<'_>, steps: &[Step]) -> ActionResult<PlanReport> {
    let accept = ctx.params.accept_data_loss;
    let mut report = plan::make_plan(ctx.config, ctx.store, ctx.nodes, ctx.params).await;
    report.steps = steps.to_vec();
    executed_plan(ctx, report, accept)
}

/// The plan an operation executes: the one the operator confirmed when
/// there is one (refused when it went stale in a way that matters, see
/// [`PlanReport::stale_against`]), else `now`; refused when a blocker
/// stands.
pub(crate) fn executed_plan(
    ctx: &Ctx<'_>,
    now: PlanReport,
    accept_data_loss: bool,
) -> ActionResult<PlanReport> {
    if let Some(confirmed) = &ctx.params.confirmed_plan {
        let stale = confirmed.stale_against(&now, accept_data_loss);
        if !stale.is_empty() {
            return Err(StepError::refused(
                stale
                    .into_iter()
                    .map(|s| format!("the confirmed plan is stale: {s}; plan again"))
                    .collect(),
                false,
            ));
        }
    }
    let report = match &ctx.params.confirmed_plan {
        Some(confirmed) => PlanReport {
            steps: now.steps,
            ..(**confirmed).clone()
        },
        None => now,
    };
    let standing = report.standing(accept_data_loss);
    if !standing.is_empty() {
        let overridable = standing.iter().all(|b| b.overridable);
        let text: Vec<String> = standing.iter().map(|b| b.message.clone()).collect();
        return Err(StepError::refused(text, overridable));
    }
    Ok(Action::Done(report))
}

/// Which driver holds the cluster's lease, with its fencing token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LeaseOutput {
    pub holder: String,
    pub token: i64,
    pub lease: String,
}

pub(crate) fn lease(ctx: &Ctx<'_>) -> ActionResult<LeaseOutput> {
    Ok(Action::Done(LeaseOutput {
        holder: ctx.lease.holder.clone(),
        token: ctx.lease.token,
        lease: ctx.lease.name.clone(),
    }))
}

// ---------------------------------------------------------------- fence

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FenceOutput {
    pub reachable: bool,
    pub method: FenceMethod,
    pub report: Option<SoftFence>,
    pub hook: Option<HookRun>,
    /// Why the source could not be reached.
    pub unreachable: Option<String>,
    pub fenced_at: DateTime<Utc>,
    /// The hard fence through the source's agent: the server stopped and
    /// marked so that nothing but a rejoin or a recovery starts it again
    /// (a soft fence alone is undone by any session's `BEGIN READ WRITE`).
    #[serde(default)]
    pub hard: Option<HardFenced>,
    /// The fenced source's state read just before the agent stopped it:
    /// its last position, for the catch-up and the measured loss.
    #[serde(default)]
    pub state_at_fence: Option<ServerState>,
    /// The primary key in etcd (`[coordination]`), claimed for the target
    /// before anything is promoted: after the source's lease expired, or
    /// after its hard fence was confirmed.
    #[serde(default)]
    pub primary_key: Option<PrimaryKeyClaim>,
}

/// How the operation took the service's primary key in etcd.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PrimaryKeyClaim {
    /// Why the source no longer held it.
    pub released: KeyRelease,
    /// What held the key when the claim began (`None`: nobody).
    pub holder_before: Option<String>,
    /// How long the claim waited for the source's lease to expire.
    pub waited_ms: u64,
    /// The claim's own lease (hex), until the target's agent takes over.
    pub claim_lease: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyRelease {
    /// The source's lease expired in etcd (its agent fenced it before).
    Expired,
    /// The source's hard fence was confirmed; its lease no longer means
    /// a live primary.
    Fenced,
    /// The key already named the target (a resumed claim).
    AlreadyTarget,
}

/// How the source was fenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FenceMethod {
    /// The datastore's soft fence (PostgreSQL: made read-only, its client
    /// sessions terminated); `read_only` in journals of version 2.
    #[serde(alias = "read_only")]
    SoftFence,
    /// Already a standby: nothing to fence.
    Standby,
    /// Unreachable: its fence hook ran.
    Hook,
    /// Unreachable, its agent answered: the server was stopped (or found
    /// stopped) and marked fenced by the agent beside it.
    Agent,
    /// Unreachable, its agent too: its primary lease expired in etcd, and
    /// its agent fences a primary before its lease can expire.
    Lease,
    /// Unreachable, no hook: nothing fenced (accepted by the operator, or
    /// nothing to fence).
    None,
}

/// Whether the service's primary is guarded by a lease in etcd: a
/// `[coordination]` section and an agent beside the source (the agent
/// holds the lease).
fn leased(ctx: &Ctx<'_>) -> Option<drctl_config::CoordinationConfig> {
    let coord = ctx.config.coordination.clone()?;
    ctx.node(&ctx.params.source).agent()?;
    Some(coord)
}

/// Whether the source's lease is gone from etcd now (`false` when etcd
/// cannot say).
async fn lease_released(ctx: &Ctx<'_>) -> bool {
    let Some(coord) = leased(ctx) else {
        return false;
    };
    let Ok(etcd) = drctl_coord::Etcd::shared(&coord.etcd, coord.request_timeout) else {
        return false;
    };
    match drctl_coord::PrimaryLeases::new(etcd)
        .current(&ctx.params.cluster)
        .await
    {
        Ok(Some(c)) => c.region() != Some(ctx.params.source.as_str()) || c.ttl_left.is_none(),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Claims the primary key for the target (see [`PrimaryKeyClaim`]): with
/// `fence_confirmed`, at once; else only once the source's lease expired,
/// waiting up to twice its time. A source that keeps renewing its lease is
/// alive and reaches the quorum: the operation is refused.
async fn claim_primary_key(
    ctx: &Ctx<'_>,
    fence_confirmed: bool,
) -> Result<Option<PrimaryKeyClaim>, StepError> {
    let Some(coord) = leased(ctx) else {
        return Ok(None);
    };
    let p = ctx.params;
    let etcd = drctl_coord::Etcd::shared(&coord.etcd, coord.request_timeout)
        .map_err(|e| StepError::stop(e.to_string()))?;
    let leases = drctl_coord::PrimaryLeases::new(etcd);
    let unreachable = |e: drctl_coord::CoordError| {
        StepError::retry(format!(
            "cannot reach the etcd quorum to claim the primary key of {}: {e}",
            p.cluster
        ))
    };
    let started = std::time::Instant::now();
    let before = leases.current(&p.cluster).await.map_err(unreachable)?;
    let holder_before = before.as_ref().map(|c| {
        c.region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "a value drctl did not write".to_string())
    });
    let mut released = if fence_confirmed {
        KeyRelease::Fenced
    } else {
        KeyRelease::Expired
    };
    if !fence_confirmed {
        let wait = coord.lease_ttl * 2 + Duration::from_secs(2);
        match leases
            .wait_released(&p.cluster, &p.source, wait, Duration::from_millis(250))
            .await
            .map_err(unreachable)?
        {
            Ok(_) => {}
            Err(still) => {
                return Err(StepError::refused(
                    vec![format!(
                        "the source {}@{} still renews its primary lease in etcd ({} left after waiting {}s): it is alive and reaches the etcd quorum, so only drctl is cut off from it; promoting another server now would leave two writable primaries",
                        p.cluster,
                        p.source,
                        still
                            .ttl_left
                            .map(|t| format!("{}s", t.as_secs()))
                            .unwrap_or_else(|| "time unknown".into()),
                        wait.as_secs()
                    )],
                    false,
                ))
            }
        }
    }
    ctx.check_lease("claiming the primary key in etcd").await?;
    let claim_ttl = (coord.lease_ttl * 6).max(Duration::from_secs(60));
    let fenced = fence_confirmed.then_some(p.source.as_str());
    let claim = leases
        .claim(&p.cluster, &p.target, ctx.op_id, fenced, claim_ttl)
        .await
        .map_err(unreachable)?;
    let claim_lease = match claim {
        drctl_coord::Claim::Claimed { lease } => Some(lease.to_string()),
        drctl_coord::Claim::AlreadyTarget(_) => {
            released = KeyRelease::AlreadyTarget;
            None
        }
        drctl_coord::Claim::HeldBy(c) => {
            return Err(StepError::retry(format!(
            "the primary key of {} is held by {} (lease time left {:?}); waiting for it to expire",
            p.cluster,
            c.region().unwrap_or("an unknown holder"),
            c.ttl_left
        )))
        }
    };
    Ok(Some(PrimaryKeyClaim {
        released,
        holder_before,
        waited_ms: started.elapsed().as_millis() as u64,
        claim_lease,
    }))
}

/// Fences the old primary before anything is announced: the datastore's
/// soft fence when it answers, else the node's hard fence (the operator's
/// fence hook); refused when nothing can fence it.
pub(crate) async fn fence_source(ctx: &Ctx<'_>) -> ActionResult<FenceOutput> {
    let service = ctx.service()?;
    let p = ctx.params;
    let reached = if service.has_datastore() {
        let server = ctx.datastore(&p.source, source_timeout(p, Duration::from_secs(5)))?;
        ctx.check_lease("fencing the source").await?;
        let r = server.soft_fence().await;
        server.close().await;
        match r {
            Ok(report) => Ok(report),
            // Only a server that cannot be connected to at all is
            // "unreachable". One that answered and refused or failed the
            // fence (permission denied, a statement timeout) is up and may
            // still take writes: never announce another primary beside it.
            Err(e) if e.is_connection_failure() => Err(e.to_string()),
            Err(e) => {
                return Err(StepError::stop(format!(
                    "cannot fence the source {}@{}: {e}; it answers, so it may still take writes: fix the cause (its role's privileges, its load) and resume",
                    p.cluster, p.source
                )))
            }
        }
    } else {
        Err("a service without a datastore has nothing to fence".to_string())
    };
    let mut out = FenceOutput {
        reachable: reached.is_ok(),
        method: FenceMethod::None,
        report: None,
        hook: None,
        unreachable: None,
        fenced_at: Utc::now(),
        hard: None,
        state_at_fence: None,
        primary_key: None,
    };
    // The hard fence goes through the agent beside the source, when the
    // config names one (it owns the server's process and data directory).
    let agent_fence = drctl_node::NodeRef::for_service(service, &p.source)
        .filter(|_| ctx.node(&p.source).agent().is_some());
    match reached {
        Ok(report) => {
            out.method = if report.was_standby {
                FenceMethod::Standby
            } else {
                FenceMethod::SoftFence
            };
            if !report.was_standby && agent_fence.is_some() {
                // Its last position first: once stopped, it answers nothing.
                let server = ctx.datastore(&p.source, REACH_TIMEOUT)?;
                let state = server.probe().await;
                server.close().await;
                out.state_at_fence = state.ok();
                ctx.check_lease("stopping the source through its agent")
                    .await?;
                // A switchover's source stops cleanly, so its standbys
                // receive everything it wrote first; a failover's at once.
                let mode = if p.kind == OperationKind::Switchover {
                    drctl_node::StopMode::Fast
                } else {
                    drctl_node::StopMode::Immediate
                };
                let req = HardFenceRequest::for_service(service, &p.source, ctx.op_id, true)
                    .with_mode(mode);
                let fenced = ctx
                    .node(&p.source)
                    .hard_fence(&req)
                    .await
                    .map_err(node_error)?;
                out.hard = Some(fenced);
                out.primary_key = claim_primary_key(ctx, true).await?;
            } else if report.was_standby {
                out.primary_key = claim_primary_key(ctx, true).await?;
            }
            out.report = Some(report);
        }
        Err(e) => {
            // A lease already expired in etcd fences it: its agent stopped
            // it before, and waiting on an agent cut off with it would
            // only lengthen the outage.
            if p.kind != OperationKind::Switchover
                && agent_fence.is_some()
                && lease_released(ctx).await
            {
                out.unreachable = Some(e.clone());
                out.primary_key = claim_primary_key(ctx, false).await?;
                out.method = FenceMethod::Lease;
                return Ok(Action::Done(out));
            }
            // Down because this very operation's earlier attempt stopped it
            // through its agent (the driver died before journaling that):
            // the fence is done; its last position is the monitor's.
            if let Some(server) = &agent_fence {
                if let Ok(status) = ctx.node(&p.source).status(server).await {
                    if status.fenced_by.as_deref() == Some(ctx.op_id) && !status.running {
                        out.method = FenceMethod::Agent;
                        out.unreachable = Some(format!(
                            "{e}; stopped and marked by this operation's earlier attempt"
                        ));
                        out.hard = Some(HardFenced {
                            method: drctl_node::HardFenceMethod::Stopped,
                            was_running: Some(false),
                            hook: None,
                            host: Some(status.host),
                        });
                        out.primary_key = claim_primary_key(ctx, true).await?;
                        return Ok(Action::Done(out));
                    }
                }
            }
            if p.kind == OperationKind::Switchover && service.has_datastore() {
                return Err(StepError::abandon(format!(
                    "cannot fence the source for a switchover ({e}); nothing was changed. Use `drctl failover` if the source region is lost"
                )));
            }
            out.unreachable = Some(e.clone());
            if agent_fence.is_some() {
                ctx.check_lease("fencing the source through its agent")
                    .await?;
                // The agent stops the server (or finds it stopped) and
                // marks it; its own host runs no hook.
                let req = HardFenceRequest {
                    hook: None,
                    ..HardFenceRequest::for_service(service, &p.source, ctx.op_id, true)
                };
                match ctx.node(&p.source).hard_fence(&req).await {
                    // Stopped, found stopped, or (its data directory gone)
                    // nothing there to run: the agent answered for it.
                    Ok(fenced) => {
                        out.method = FenceMethod::Agent;
                        out.hard = Some(fenced);
                        out.primary_key = claim_primary_key(ctx, true).await?;
                        return Ok(Action::Done(out));
                    }
                    Err(agent_error) => {
                        out.unreachable = Some(format!("{e}; its agent: {agent_error}"));
                    }
                }
                // Its agent fences it before its lease can expire: once the
                // lease expired in etcd, nothing of it takes writes.
                if leased(ctx).is_some() {
                    out.primary_key = claim_primary_key(ctx, false).await?;
                    out.method = FenceMethod::Lease;
                    return Ok(Action::Done(out));
                }
            }
            match &service.failover.fence_hook {
                Some(_) => {
                    ctx.check_lease("running the fence hook").await?;
                    // The hook only: a server drctl cannot reach is not
                    // stopped from here, even when its data directory is.
                    let req = HardFenceRequest::for_service(service, &p.source, ctx.op_id, false);
                    // The hook runs where drctl runs: an agent never runs
                    // a command a request names.
                    let fenced = ctx
                        .nodes
                        .default_node()
                        .hard_fence(&req)
                        .await
                        .map_err(node_error)?;
                    out.method = FenceMethod::Hook;
                    out.hook = fenced.hook;
                }
                // Nothing fences a server drctl cannot reach: only an
                // operator's explicit override goes on without a fence.
                // (A cold-tier recovery keeps its own plan for now.)
                None if service.has_datastore()
                    && p.kind == OperationKind::Failover
                    && !p.accept_unfenced =>
                {
                    let why = out.unreachable.clone().unwrap_or(e);
                    return Err(StepError::refused(vec![unfenced_message(p, &why)], false));
                }
                None => out.method = FenceMethod::None,
            }
        }
    }
    Ok(Action::Done(out))
}

// ---------------------------------------------------------------- promote

/// Promotes `target` (a primary already is a no-op) after the fenced
/// check, and returns what it had just before.
pub(crate) async fn promote(
    ctx: &Ctx<'_>,
    target: Box<dyn Datastore>,
) -> Result<(Promotion, ServerState), StepError> {
    let before = target.probe().await;
    let before = match before {
        Ok(b) => b,
        Err(e) => {
            target.close().await;
            return Err(StepError::retry(e.to_string()));
        }
    };
    ctx.check_lease("promoting the target").await?;
    let report = target.promote(PROMOTE_WAIT).await;
    target.close().await;
    let report = report.map_err(|e| StepError::retry(e.to_string()))?;
    Ok((report, before))
}

/// How long a promote's connection may take.
pub(crate) const PROMOTE_TIMEOUT: Duration = Duration::from_secs(65);

// ---------------------------------------------------------------- probe

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Probe {
    pub written_at_us: i64,
    #[serde(alias = "lsn")]
    pub position: Position,
}

/// A committed row on the server `target` opens (the new primary, or a
/// drill's clone).
pub(crate) async fn write_probe(
    ctx: &Ctx<'_>,
    target: impl FnOnce(Duration) -> Result<Box<dyn Datastore>, StepError>,
) -> ActionResult<Probe> {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return Ok(Action::skipped("no datastore"));
    }
    let target = target(REACH_TIMEOUT)?;
    ctx.check_lease("writing the probe").await?;
    let r = target.write_probe(ctx.op_id).await;
    target.close().await;
    let probe = r.map_err(|e| StepError::retry(e.to_string()))?;
    Ok(Action::Done(Probe {
        written_at_us: probe.written_at_us,
        position: probe.position,
    }))
}

// ---------------------------------------------------------------- health

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Health {
    pub target: Option<ServerState>,
    pub source: Option<ServerState>,
    pub source_error: Option<String>,
    /// The source was writable again and was fenced once more.
    pub refenced_source: bool,
}

/// Exactly one writable primary, and it is the target: a source that takes
/// writes again is fenced once more.
pub(crate) async fn service_health(ctx: &Ctx<'_>) -> ActionResult<Health> {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return Ok(Action::skipped(
            "no datastore: DNS is the service's failover",
        ));
    }
    let p = ctx.params;
    let target = ctx.datastore(&p.target, REACH_TIMEOUT)?;
    let t = target.probe().await;
    target.close().await;
    let t = t.map_err(|e| StepError::retry(e.to_string()))?;
    if !t.writable() {
        return Err(StepError::retry(format!(
            "the target {}@{} is not a writable primary (standby: {}, fenced: {})",
            p.cluster, p.target, t.standby, t.fenced
        )));
    }
    // Exactly one writable primary: if the source answers and takes writes
    // (restarted, or unfenced by hand), fence it now.
    let source = ctx.datastore(&p.source, REACH_TIMEOUT)?;
    let mut out = Health {
        target: Some(t),
        source: None,
        source_error: None,
        refenced_source: false,
    };
    match source.probe().await {
        Ok(s) if s.writable() => {
            ctx.check_lease("fencing the old primary again").await?;
            source.soft_fence().await.map_err(|e| {
                StepError::retry(format!(
                    "the old primary is writable and fencing it failed: {e}"
                ))
            })?;
            out.refenced_source = true;
            out.source = source.probe().await.ok();
        }
        Ok(s) => out.source = Some(s),
        Err(e) => out.source_error = Some(e.to_string()),
    }
    source.close().await;
    Ok(Action::Done(out))
}

// ---------------------------------------------------------------- record

/// An event's measured data loss, as each kind works it out.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rpo {
    pub bytes: u64,
    pub us: i64,
    pub heartbeats: u64,
    /// The figure is a minimum (what happened after is unknowable).
    pub lower_bound: bool,
    /// The most it can be, when known.
    pub upper_us: Option<i64>,
    pub basis: String,
}

/// The event's measurement: `rpo` as the kind found it, the RTO from the
/// trigger (detection, else the request) until the service answered (the
/// last of write probe, DNS confirmed, health), each step's duration, and
/// the write outage from the source's fence when `write_outage` (a source
/// that answered was fenced).
pub(crate) fn measured(ctx: &Ctx<'_>, rpo: Rpo, write_outage: bool) -> Result<Measured, StepError> {
    let service = ctx.service()?;
    let p = ctx.params;
    let targets = service.targets;
    let end = |s: Step| ctx.timings.get(&s).and_then(|(_, e)| *e);
    let start = |s: Step| ctx.timings.get(&s).map(|(b, _)| *b);
    let trigger = p
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(ctx.op_started);
    let available = end(Step::ServiceHealth)
        .into_iter()
        .chain(end(Step::DnsConfirm))
        .chain(end(Step::WriteProbe))
        .max()
        .unwrap_or_else(Utc::now);
    let rto_ms = (available - trigger).num_milliseconds().max(0) as u64;
    let write_outage_ms = start(Step::FenceSource)
        .filter(|_| write_outage)
        .map(|f| (available - f).num_milliseconds().max(0) as u64);
    let steps_ms = ctx
        .timings
        .iter()
        .filter_map(|(s, (b, e))| {
            e.map(|e| {
                (
                    s.as_str().to_string(),
                    (e - *b).num_milliseconds().max(0) as u64,
                )
            })
        })
        .collect();
    let rpo_target_us = plan::us(targets.rpo);
    let rto_target_ms = targets.rto.as_millis() as u64;
    let rpo_met = match rpo.upper_us {
        Some(upper) => upper <= rpo_target_us,
        None => rpo.us <= rpo_target_us && !rpo.lower_bound,
    };
    Ok(Measured {
        rpo_bytes: rpo.bytes,
        rpo_us: rpo.us,
        rpo_heartbeats: rpo.heartbeats,
        rpo_lower_bound: rpo.lower_bound,
        rpo_upper_us: rpo.upper_us,
        rpo_basis: rpo.basis,
        rto_ms,
        rto_from: if p.detected_at_us.is_some() {
            "detection"
        } else {
            "request"
        }
        .into(),
        write_outage_ms,
        rpo_target_us,
        rto_target_ms,
        rpo_met,
        rto_met: rto_ms <= rto_target_ms,
        steps_ms,
    })
}
