//! Recover, for cold-tier services (no standby to promote): the newest
//! verified backup is restored into the target region's data directory
//! (`[services.postgres.REGION] data_dir`, on the host running drctl), the
//! server is started on its connection's port, written to and announced in
//! DNS. The source is fenced first when it answers (its writes after the
//! backup are lost either way; fencing keeps clients from adding more), or
//! its fence hook runs. The shared steps do the fence, probe, DNS and
//! health; this module owns the plan, the restore, the start and the
//! measured loss (everything after the backup's end, as an upper bound).

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::actions::{self, FenceOutput, Rpo};
use super::ctx::{blocking, pg_bin, ActionResult, Ctx, StepError};
use super::dns::{self, Announce};
use super::output::{Action, Entry};
use crate::measure::Measured;
use crate::plan::recover::{data_dir, is_empty_dir, marker};
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
            let target = |timeout| ctx.endpoint(&ctx.params.target, timeout);
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

fn target_dir(ctx: &Ctx<'_>) -> Result<PathBuf, StepError> {
    data_dir(ctx.config, ctx.params)
        .ok_or_else(|| StepError::abandon(format!("{} has no data_dir", ctx.params.target)))
}

/// Restores the newest verified backup as of now (a newer one than the
/// plan saw only loses less); its id is journaled with the output.
async fn restore(ctx: &Ctx<'_>) -> ActionResult<Restored> {
    let dir = target_dir(ctx)?;
    let backup = ctx
        .store
        .newest_verified_backup(&ctx.params.service)
        .await
        .map_err(|e| StepError::retry(e.to_string()))?
        .ok_or_else(|| {
            StepError::abandon(format!("{} has no verified backup", ctx.params.service))
        })?;
    let mark = marker(&dir);
    let started = Instant::now();
    // A rerun: this operation's own partial restore is wiped and redone.
    if std::fs::read_to_string(&mark).is_ok_and(|m| m.trim() == ctx.op_id) {
        let _ = std::fs::remove_dir_all(&dir);
    } else if !is_empty_dir(&dir) {
        return Err(StepError::abandon(format!(
            "{} is not empty",
            dir.display()
        )));
    }
    std::fs::write(&mark, ctx.op_id)
        .map_err(|e| StepError::stop(format!("writing {}: {e}", mark.display())))?;
    let _ = std::fs::remove_dir(&dir);
    let manifest =
        drctl_backup::jobs::restore_recorded_backup(ctx.config, ctx.store, &backup.id, &dir)
            .await
            .map_err(|e| StepError::stop(e.to_string()))?;
    Ok(Action::Done(Restored {
        backup: backup.id,
        backup_ended_at: backup.ended_at,
        stop_lsn: manifest.stop_lsn,
        data_dir: dir,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

async fn start(ctx: &Ctx<'_>) -> ActionResult<Started> {
    let service = ctx.service()?;
    let dir = target_dir(ctx)?;
    let dsn = crate::node::dsn(service, &ctx.params.target).map_err(StepError::abandon)?;
    // The recovered server listens where its clients connect.
    let port = crate::node::dsn_parts(&dsn)
        .map_err(StepError::abandon)?
        .port;
    let bin = pg_bin()?;
    let cluster = crate::node::local_server(
        format!("{}@{}", ctx.params.cluster, ctx.params.target),
        dir.clone(),
        port,
        bin,
    );
    let started = Instant::now();
    blocking(move || {
        if !cluster.is_running() {
            cluster.adopt_recovered(&dsn).map_err(|e| e.to_string())?;
            cluster.start().map_err(|e| e.to_string())?;
        }
        let _ = std::fs::remove_file(marker(&cluster.data_dir));
        Ok(())
    })
    .await?;
    Ok(Action::Done(Started {
        port,
        took_ms: started.elapsed().as_millis() as u64,
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
