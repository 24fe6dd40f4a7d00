//! Failover and switchover: one list of actions, behaving by kind (a
//! switchover's catch-up waits for zero loss, a failover's only briefly and
//! only when the source was fenced while reachable). This module owns the
//! list and the actions only these kinds run: the source's last position,
//! the catch-up and the measured RPO/RTO of the event.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_node::{CatchUpGoal, HeartbeatPoint, Position, Promotion};
use serde::{Deserialize, Serialize};

use super::actions::{self, FenceOutput};
use super::ctx::{node_error, ActionResult, Ctx, StepError};
use super::dns;
use super::output::{Action, Entry};
use crate::measure::{loss_window, Measured};
use crate::plan::{PlanReport, REACH_TIMEOUT};
use crate::{OperationKind, Step};

/// The actions of a failover and of a switchover, in order.
pub(crate) const STEPS: &[Step] = &[
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
];

/// A switchover waits this long for the target to catch up before it
/// gives the source back.
const SWITCHOVER_CATCH_UP: Duration = Duration::from_secs(60);
/// A failover with a reachable source waits this long for the last WAL.
const FAILOVER_CATCH_UP: Duration = Duration::from_secs(5);

/// Runs one action of a failover or switchover.
pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> Result<Entry, StepError> {
    match step {
        Step::Plan => actions::record(actions::plan(ctx, STEPS).await),
        Step::Lease => actions::record(actions::lease(ctx)),
        Step::FenceSource => actions::record(actions::fence_source(ctx).await),
        Step::SourcePosition => actions::record(source_position(ctx).await),
        Step::CatchUp => actions::record(catch_up(ctx).await),
        Step::PromoteTarget => actions::record(promote_target(ctx).await),
        Step::WriteProbe => {
            let target = |timeout| ctx.datastore(&ctx.params.target, timeout);
            actions::record(actions::write_probe(ctx, target).await)
        }
        Step::DnsFlip => actions::record(dns::flip(ctx, dns::Announce::FromSource).await),
        Step::DnsConfirm => actions::record(dns::confirm(ctx).await),
        Step::ServiceHealth => actions::record(actions::service_health(ctx).await),
        Step::Record => actions::record(record(ctx).await),
        other => Err(actions::not_in_saga(ctx, other)),
    }
}

// ---------------------------------------------------------------- position

/// Where the source's last position comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PositionBasis {
    /// Read from the source itself after it was fenced: nothing more can
    /// be written there.
    FencedSource,
    /// The monitor's last sample of the lost source: a lower bound.
    LastSample,
    Unknown,
}

impl PositionBasis {
    fn describe(self) -> &'static str {
        match self {
            PositionBasis::FencedSource => "fenced_source",
            PositionBasis::LastSample => "last_sample",
            PositionBasis::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SourcePosition {
    pub basis: PositionBasis,
    #[serde(alias = "source_lsn")]
    pub source_position: Option<Position>,
    /// The source's clock at that position (µs).
    pub source_time_us: Option<i64>,
    /// When the monitor took the sample (`last_sample` only).
    pub sampled_at: Option<DateTime<Utc>>,
    /// The target's durable position now.
    #[serde(alias = "target_lsn")]
    pub target_position: Option<Position>,
}

/// The source's last position: read from the fenced server, or the last
/// one the monitor saw when it is gone.
async fn source_position(ctx: &Ctx<'_>) -> ActionResult<SourcePosition> {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return Ok(Action::skipped("no datastore"));
    }
    let p = ctx.params;
    let fence: FenceOutput = ctx.output(Step::FenceSource)?;
    let target = ctx.datastore(&p.target, REACH_TIMEOUT)?;
    let target_state = target.probe().await.ok();
    target.close().await;
    let mut out = SourcePosition {
        basis: PositionBasis::Unknown,
        source_position: None,
        source_time_us: None,
        sampled_at: None,
        target_position: target_state.map(|t| t.position),
    };
    if let Some(s) = fence.state_at_fence.filter(|s| !s.standby) {
        // Read by the fence just before its agent stopped it.
        out.basis = PositionBasis::FencedSource;
        out.source_position = Some(s.position);
        out.source_time_us = Some(s.clock_us);
        return Ok(Action::Done(out));
    }
    if fence.reachable {
        let source = ctx.datastore(&p.source, REACH_TIMEOUT)?;
        let state = source.probe().await;
        source.close().await;
        match state {
            Ok(s) if !s.standby => {
                out.basis = PositionBasis::FencedSource;
                out.source_position = Some(s.position);
                out.source_time_us = Some(s.clock_us);
                return Ok(Action::Done(out));
            }
            // Lost between the fence and now: fall back on the monitor.
            _ => {}
        }
    }
    let since = ctx.op_started - chrono::TimeDelta::hours(1);
    let points = ctx
        .store
        .primary_points(&p.service, since)
        .await
        .map_err(|e| StepError::retry(e.to_string()))?;
    if let Some((t, l)) = points.iter().max_by_key(|(t, l)| (*l, *t)) {
        out.basis = PositionBasis::LastSample;
        out.source_position = Some(Position::from_ordinal((*l).max(0) as u64));
        out.source_time_us = Some(*t);
        out.sampled_at = DateTime::from_timestamp_micros(*t);
    }
    Ok(Action::Done(out))
}

// ---------------------------------------------------------------- catch up

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CatchUp {
    pub required: bool,
    pub reached: bool,
    pub waited_ms: u64,
    #[serde(alias = "target_lsn")]
    pub target_position: Option<Position>,
    #[serde(alias = "source_lsn")]
    pub source_position: Option<Position>,
}

/// The target receives everything the source had (switchover: required,
/// else the switchover is undone; failover: a short wait, only when the
/// source was fenced while reachable).
async fn catch_up(ctx: &Ctx<'_>) -> ActionResult<CatchUp> {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return Ok(Action::skipped("no datastore"));
    }
    let p = ctx.params;
    let pos: SourcePosition = ctx.output(Step::SourcePosition)?;
    let (required, limit) = match (p.kind, pos.basis) {
        (OperationKind::Switchover, _) => (true, SWITCHOVER_CATCH_UP),
        (OperationKind::Failover, PositionBasis::FencedSource) => (false, FAILOVER_CATCH_UP),
        _ => {
            return Ok(Action::skipped(
                "the source is gone: nothing more can arrive",
            ))
        }
    };
    let Some(goal) = pos.source_position else {
        return Ok(Action::skipped("the source's position is unknown"));
    };
    let engine = ctx.engine()?;
    let target = ctx.datastore(&p.target, REACH_TIMEOUT)?;
    // A target already promoted (by an earlier attempt) counts as there.
    let caught = target.catch_up(CatchUpGoal::Durable(goal), limit).await;
    target.close().await;
    let caught = caught.map_err(|e| StepError::retry(e.to_string()))?;
    if !caught.reached && required {
        // Give the source back rather than leave the service without a
        // writable primary: the switchover is abandoned, nothing changed.
        ctx.check_lease("lifting the source's fence").await?;
        let fence: actions::FenceOutput = ctx.output(Step::FenceSource)?;
        if fence.hard.is_some() {
            // Stopped by its agent: started again first, the mark lifted.
            if let Some(node) = drctl_node::NodeRef::for_service(service, &p.source) {
                ctx.node(&p.source)
                    .start(&drctl_node::StartRequest {
                        node,
                        wait_ready_ms: Some(60_000),
                        recovered: None,
                        unfence: true,
                    })
                    .await
                    .map_err(node_error)?;
            }
        }
        let source = ctx.datastore(&p.source, REACH_TIMEOUT)?;
        let undo = source.unfence().await;
        source.close().await;
        return Err(StepError::abandon(format!(
            "the target did not receive the source's final position {} within {limit:?} (it has {}); {}",
            engine.format_position(goal),
            caught
                .last
                .map_or("nothing readable".to_string(), |l| engine.format_position(l)),
            match undo {
                Ok(()) => "the source's fence was lifted and it is writable again".to_string(),
                Err(e) => format!(
                    "lifting the source's fence FAILED ({e}): {}",
                    engine.unfence_by_hand()
                ),
            }
        )));
    }
    Ok(Action::Done(CatchUp {
        required,
        reached: caught.reached,
        waited_ms: caught.waited_ms,
        target_position: caught.last,
        source_position: Some(goal),
    }))
}

// ---------------------------------------------------------------- promote

/// The target promoted, and what it kept of the old history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Promoted {
    pub report: Promotion,
    /// What the target had when it stopped replaying: the last position
    /// the new history keeps from the old one.
    #[serde(alias = "final_lsn")]
    pub final_position: Option<Position>,
}

/// Promotes the target and records the cluster's new primary region.
async fn promote_target(ctx: &Ctx<'_>) -> ActionResult<Promoted> {
    let service = ctx.service()?;
    let p = ctx.params;
    if !service.has_datastore() {
        return Ok(Action::skipped("no datastore"));
    }
    let target = ctx.datastore(&p.target, actions::PROMOTE_TIMEOUT)?;
    let (report, before) = actions::promote(ctx, target).await?;
    ctx.store
        .set_cluster_primary(ctx.lease, &p.cluster, &p.target, ctx.op_id, Utc::now())
        .await
        .map_err(|e| StepError::stop(e.to_string()))?;
    let final_position = if before.standby {
        Some(before.position)
    } else {
        // Promoted by an attempt that died before journaling: the position
        // read before the catch-up is the best record of what it had.
        ctx.lookup::<SourcePosition>(Step::SourcePosition)
            .ok()
            .and_then(Action::done)
            .and_then(|s| s.target_position)
    };
    Ok(Action::Done(Promoted {
        report,
        final_position,
    }))
}

// ---------------------------------------------------------------- record

/// How long after the end of the plan's loss bound (the detection, else
/// the plan) the source was fenced, in µs; 0 when nothing fenced it (the
/// operator accepted an unfenced source: their word is that it was down).
fn fenced_after_plan_us(ctx: &Ctx<'_>) -> i64 {
    let bound_end = ctx
        .params
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .or_else(|| ctx.timings.get(&Step::Plan).map(|(began, _)| *began))
        .unwrap_or(ctx.op_started);
    ctx.lookup::<FenceOutput>(Step::FenceSource)
        .ok()
        .and_then(Action::done)
        .filter(|f| f.method != actions::FenceMethod::None)
        .and_then(|f| (f.fenced_at - bound_end).num_microseconds())
        .unwrap_or(0)
        .max(0)
}

/// Measured RPO and RTO of the event: the bytes and time between the
/// source's last position and what the target kept.
async fn record(ctx: &Ctx<'_>) -> ActionResult<Measured> {
    let service = ctx.service()?;
    let p = ctx.params;
    let mut rpo = actions::Rpo {
        basis: "none".into(),
        ..actions::Rpo::default()
    };
    if service.has_datastore() {
        let pos: SourcePosition = ctx.output(Step::SourcePosition)?;
        let promoted: Promoted = ctx.output(Step::PromoteTarget)?;
        rpo.basis = pos.basis.describe().to_string();
        if let (Some(src), Some(t), Some(fin)) = (
            pos.source_position,
            pos.source_time_us,
            promoted.final_position,
        ) {
            rpo.bytes = src.distance_after(fin);
            if rpo.bytes > 0 {
                let mut points: Vec<HeartbeatPoint> = ctx
                    .store
                    .primary_points(&p.service, ctx.op_started - chrono::TimeDelta::hours(1))
                    .await
                    .map_err(|e| StepError::retry(e.to_string()))?
                    .into_iter()
                    .map(|(t, l)| HeartbeatPoint {
                        primary_time_us: t,
                        position: Position::from_ordinal(l.max(0) as u64),
                    })
                    .collect();
                // The primary's sampled positions past the target's final
                // one: each was a heartbeat row the target never received.
                rpo.heartbeats = points
                    .iter()
                    .filter(|pt| pt.position > fin && pt.position <= src)
                    .count() as u64;
                // The replicated heartbeat rows the new primary carries.
                let target = ctx.datastore(&p.target, REACH_TIMEOUT)?;
                if let Ok(hb) = target.load_heartbeats(Duration::from_secs(3600)).await {
                    points.extend(hb);
                }
                target.close().await;
                let last = HeartbeatPoint {
                    primary_time_us: t,
                    position: src,
                };
                (rpo.us, rpo.lower_bound) = loss_window(&points, fin, last);
            }
        } else {
            rpo.lower_bound = true;
            rpo.basis = format!("{} (positions unknown: no figure)", rpo.basis);
        }
        // The source was lost: its writes after the monitor's last sample
        // are unknowable, so the figure is a minimum; the maximum is the
        // plan's bound (last sighting until detection) stretched to the
        // fence, since a lost primary may take its own region's writes
        // until then (a leased one until it fences itself, before its
        // lease expires), plus one monitor interval, the resolution of
        // the sighting's exposure.
        if pos.basis == PositionBasis::LastSample && !rpo.basis.ends_with("no figure)") {
            rpo.lower_bound = true;
            let after_plan_us = fenced_after_plan_us(ctx);
            let resolution_us = crate::plan::us(ctx.config.monitor.interval);
            rpo.upper_us = ctx
                .output::<PlanReport>(Step::Plan)
                .ok()
                .and_then(|p| p.expected_loss_us)
                .map(|u| (u + after_plan_us + resolution_us).max(rpo.us));
        }
    }
    // The write outage counts from the fence of a source that answered.
    let fenced_reachable = ctx
        .lookup::<FenceOutput>(Step::FenceSource)
        .ok()
        .and_then(Action::done)
        .is_some_and(|f| f.reachable);
    Ok(Action::Done(actions::measured(ctx, rpo, fenced_reachable)?))
}
