//! Recover, for cold-tier services (no standby to promote): the newest
//! verified backup is restored into the target region's data directory
//! (`[services.postgres.REGION] data_dir`, on the host running drctl), the
//! server is started on its connection's port, written to and announced in
//! DNS. The source is fenced first when it answers (its writes after the
//! backup are lost either way; fencing keeps clients from adding more), or
//! its fence hook runs. The shared steps do the fence, probe, DNS and
//! health; this module owns the plan, the restore, the start and the
//! measured loss (everything after the backup's end, as an upper bound).

use chrono::{DateTime, Utc};
use drctl_node::{NodeRef, RecoveredServer, RestoreRequest, StartRequest};
use serde::{Deserialize, Serialize};

use super::actions::{self, FenceOutput, Rpo};
use super::ctx::{node_error, ActionResult, Ctx, StepError};
use super::dns::{self, Announce};
use super::output::{Action, Entry};
use crate::measure::Measured;
use crate::Step;

/// The actions of a recovery, in order.
pub(crate) const STEPS: &[Step] = &[
    Step::Plan,
    Step::Lease,
    Step::FenceSource,
    Step::Restore,
    Step::StartNode,
    Step::WriteProbe,
    Step::DnsFlip,
    Step::DnsConfirm,
    Step::ServiceHealth,
    Step::Record,
];

/// Runs one action of a recovery.
pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> Result<Entry, StepError> {
    match step {
        Step::Plan => actions::record(actions::plan(ctx, STEPS).await),
        Step::Lease => actions::record(actions::lease(ctx)),
        Step::FenceSource => actions::record(actions::fence_source(ctx).await),
        Step::Restore => actions::record(restore(ctx).await),
        Step::StartNode => actions::record(start(ctx).await),
        Step::WriteProbe => {
            let target = |timeout| ctx.datastore(&ctx.params.target, timeout);
            actions::record(actions::write_probe(ctx, target).await)
        }
        Step::DnsFlip => actions::record(dns::flip(ctx, Announce::Unconditional).await),
        Step::DnsConfirm => actions::record(dns::confirm(ctx).await),
        Step::ServiceHealth => actions::record(actions::service_health(ctx).await),
        Step::Record => actions::record(record(ctx).await),
        other => Err(actions::not_in_saga(ctx, other)),
    }
}

/// The backup restored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Restored {
    pub backup: String,
    pub backup_ended_at: Option<DateTime<Utc>>,
    pub stop_lsn: Option<String>,
    pub data_dir: std::path::PathBuf,
    pub took_ms: u64,
}

/// The restored server, started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Started {
    pub port: u16,
    pub took_ms: u64,
}

/// The server to restore into (`[services.postgres.REGION] data_dir`).
fn target_server(ctx: &Ctx<'_>) -> Result<NodeRef, StepError> {
    NodeRef::for_service(ctx.service()?, &ctx.params.target)
        .ok_or_else(|| StepError::abandon(format!("{} has no data_dir", ctx.params.target)))
}

/// Restores the newest verified backup as of now (a newer one than the
/// plan saw only loses less); its id is journaled with the output.
async fn restore(ctx: &Ctx<'_>) -> ActionResult<Restored> {
    let server = target_server(ctx)?;
    let backup = ctx
        .store
        .newest_verified_backup(&ctx.params.service)
        .await
        .map_err(|e| StepError::retry(e.to_string()))?
        .ok_or_else(|| {
            StepError::abandon(format!("{} has no verified backup", ctx.params.service))
        })?;
    // The node claims the directory for this operation: a rerun wipes its
    // own partial restore and redoes it; a directory anyone else filled is
    // refused (and the operation ends).
    let restored = ctx
        .node(&ctx.params.target)
        .restore_backup(&RestoreRequest {
            node: server,
            backup_id: backup.id.clone(),
            operation_id: ctx.op_id.to_string(),
        })
        .await
        .map_err(node_error)?;
    Ok(Action::Done(Restored {
        backup: backup.id,
        backup_ended_at: backup.ended_at,
        stop_lsn: restored.stop_position,
        data_dir: restored.data_dir,
        took_ms: restored.took_ms,
    }))
}

/// Starts the restored server as a production one (the engine's own
/// configuration, never the backup's), listening where its clients
/// connect; the start releases the restore's claim on the directory.
async fn start(ctx: &Ctx<'_>) -> ActionResult<Started> {
    let service = ctx.service()?;
    let dsn = drctl_node::service_dsn(service, &ctx.params.target)
        .map_err(|e| StepError::abandon(e.to_string()))?;
    let port = ctx
        .engine()?
        .login_of(&dsn)
        .map_err(|e| StepError::abandon(e.to_string()))?
        .port;
    let node = NodeRef {
        port,
        ..target_server(ctx)?
    };
    let started = ctx
        .node(&ctx.params.target)
        .start(&StartRequest {
            node,
            wait_ready_ms: None,
            recovered: Some(RecoveredServer::from_dsn(&dsn)),
            unfence: true,
        })
        .await
        .map_err(node_error)?;
    Ok(Action::Done(Started {
        port,
        took_ms: started.took_ms,
    }))
}

/// RPO: everything after the backup's end until the source was fenced (or,
/// lost, until the request): an upper bound, what the restore cannot have.
async fn record(ctx: &Ctx<'_>) -> ActionResult<Measured> {
    let restored: Restored = ctx.output(Step::Restore)?;
    let fence = ctx.lookup::<FenceOutput>(Step::FenceSource)?.done();
    let fenced = fence.as_ref().filter(|f| f.reachable);
    let lost_at = fenced
        .map(|f| f.fenced_at)
        .or_else(|| {
            ctx.params
                .detected_at_us
                .and_then(DateTime::from_timestamp_micros)
        })
        .unwrap_or(ctx.op_started);
    let rpo_us = restored.backup_ended_at.map_or(0, |e| {
        (lost_at - e).num_microseconds().unwrap_or(i64::MAX).max(0)
    });
    let rpo = Rpo {
        us: rpo_us,
        upper_us: Some(rpo_us),
        basis: format!(
            "backup {}: at most the writes after its end (until the source was {})",
            restored.backup,
            if fenced.is_some() { "fenced" } else { "lost" }
        ),
        ..Rpo::default()
    };
    Ok(Action::Done(actions::measured(ctx, rpo, false)?))
}
