//! The drill's own steps: a scratch clone of the standby (the DR copy) is
//! started isolated, then promoted, probed and announced under the drill
//! record by the shared steps, and [`teardown`] removes it all, also after
//! a failure. Production is only read: the primary keeps its writes, the
//! standby keeps streaming (a base backup is one more walsender client), the
//! production DNS record is never written.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drctl_pg::Lsn;
use serde::{Deserialize, Serialize};

use super::actions::{self, Rpo};
use super::ctx::{blocking, pg_bin, ActionResult, Ctx, StepError};
use super::dns::{self, Announce};
use super::output::{Action, Entry};
use crate::measure::Measured;
use crate::node;
use crate::plan::PlanReport;
use crate::Step;

/// The actions of a drill, in order. The teardown is its finally action:
/// it runs also when an earlier one failed.
pub(crate) const STEPS: &[Step] = &[
    Step::Plan,
    Step::Lease,
    Step::CloneStandby,
    Step::StartClone,
    Step::PromoteTarget,
    Step::WriteProbe,
    Step::DnsFlip,
    Step::DnsConfirm,
    Step::Record,
    Step::Teardown,
];

/// Runs one action of a drill.
pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> Result<Entry, StepError> {
    match step {
        Step::Plan => actions::record(actions::plan(ctx, STEPS).await),
        Step::Lease => actions::record(actions::lease(ctx)),
        Step::CloneStandby => actions::record(clone_standby(ctx).await),
        Step::StartClone => actions::record(start_clone(ctx).await),
        Step::PromoteTarget => actions::record(promote_clone(ctx).await),
        Step::WriteProbe => {
            actions::record(actions::write_probe(ctx, |t| clone_endpoint(ctx, t)).await)
        }
        Step::DnsFlip => actions::record(dns::flip(ctx, Announce::Drill).await),
        Step::DnsConfirm => actions::record(dns::confirm(ctx).await),
        Step::Record => actions::record(record(ctx).await),
        Step::Teardown => actions::record(teardown(ctx).await),
        other => Err(actions::not_in_saga(ctx, other)),
    }
}

const CLONE_READY: Duration = Duration::from_secs(120);

/// Where the clone lives: journaled, so a resumed driver (and the teardown)
/// finds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CloneOutput {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub bytes: u64,
    pub took_ms: u64,
}

impl CloneOutput {
    /// The clone's DSN: the production one's database and user, over the
    /// clone's private socket (a scratch cluster has no TCP listener and
    /// admits only drctl's own OS user).
    pub fn dsn(&self) -> String {
        node::scratch_dsn(&self.data_dir, self.port, &self.user, &self.database)
    }
}

/// The scratch directory of an operation (short: a Unix socket path may not
/// exceed 107 bytes).
fn clone_dir(config: &drctl_config::Config, op_id: &str) -> PathBuf {
    let short: String = op_id.trim_start_matches("op-").chars().take(12).collect();
    let root = config
        .scratch
        .root
        .clone()
        .unwrap_or_else(node::default_scratch_root);
    root.join(format!("drill-{short}"))
}

/// A base backup of the standby into a scratch directory.
async fn clone_standby(ctx: &Ctx<'_>) -> ActionResult<CloneOutput> {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return Ok(Action::skipped(
            "no datastore: the drill rehearses DNS only",
        ));
    }
    let region = &ctx.params.target;
    let dsn = crate::node::dsn(service, region).map_err(StepError::stop)?;
    // The connection string names the database and user to use on the
    // clone; otherwise PostgreSQL's defaults.
    let parts = crate::node::dsn_parts(&dsn).map_err(StepError::stop)?;
    let database = parts.database.unwrap_or_else(|| "postgres".into());
    let user = parts.user.unwrap_or_else(|| "postgres".into());
    let dir = clone_dir(ctx.config, ctx.op_id);
    let bin = pg_bin()?;
    // What a hot standby needs at least as high as its primary.
    let source = ctx.endpoint(region, Duration::from_secs(5))?;
    let parity = node::standby_parity(&source).await;
    source.close().await;
    let parity = parity.map_err(StepError::retry)?;
    let started = Instant::now();
    let (data_dir, port) = (dir.join("data"), node::free_port());
    let (d, u) = (dir.clone(), user.clone());
    // An earlier attempt that died half-way leaves a partial copy: a rerun
    // of this step is a fresh clone.
    let bytes = blocking(move || {
        node::clone_scratch(&d, port, bin, &dsn, &parity, &[u.as_str(), "postgres"])
    })
    .await?;
    Ok(Action::Done(CloneOutput {
        dir,
        data_dir,
        port,
        database,
        user,
        bytes,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// The clone, started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CloneStarted {
    pub port: u16,
    pub in_recovery: bool,
    pub lsn: Lsn,
    pub took_ms: u64,
}

/// The clone runs as a standby of nothing, on a free port, until it is
/// consistent.
async fn start_clone(ctx: &Ctx<'_>) -> ActionResult<CloneStarted> {
    let Some(clone) = ctx.lookup::<CloneOutput>(Step::CloneStandby)?.done() else {
        return Ok(Action::skipped("no clone"));
    };
    let bin = pg_bin()?;
    let started = Instant::now();
    let (data_dir, port) = (clone.data_dir.clone(), clone.port);
    blocking(move || node::start_scratch(&data_dir, port, bin, CLONE_READY)).await?;
    // Consistent (a hot standby answers queries only then) and still a
    // standby of nothing.
    let ep = node::connect("drill clone", &clone.dsn(), Duration::from_secs(5))
        .map_err(StepError::stop)?;
    let state = ep.node_state().await;
    ep.close().await;
    let state = state.map_err(|e| StepError::retry(e.to_string()))?;
    Ok(Action::Done(CloneStarted {
        port: clone.port,
        in_recovery: state.in_recovery,
        lsn: state.lsn,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// The clone promoted (never production).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ClonePromoted {
    pub report: drctl_pg::PromoteReport,
    pub final_lsn: Option<Lsn>,
}

async fn promote_clone(ctx: &Ctx<'_>) -> ActionResult<ClonePromoted> {
    if !ctx.service()?.has_datastore() {
        return Ok(Action::skipped("no datastore"));
    }
    let clone = clone_endpoint(ctx, actions::PROMOTE_TIMEOUT)?;
    let (report, before) = actions::promote(ctx, clone).await?;
    Ok(Action::Done(ClonePromoted {
        report,
        final_lsn: Some(before.lsn),
    }))
}

/// Nothing was lost; what a real failover would have lost at that moment
/// is the monitor's exposure the plan read.
async fn record(ctx: &Ctx<'_>) -> ActionResult<Measured> {
    let plan: PlanReport = ctx.output(Step::Plan)?;
    let rpo = Rpo {
        us: plan.expected_loss_us.unwrap_or(0),
        bytes: plan.expected_loss_bytes.unwrap_or(0),
        lower_bound: plan.expected_loss_us.is_none(),
        basis: format!("drill: {}", plan.expected_loss_basis),
        ..Rpo::default()
    };
    Ok(Action::Done(actions::measured(ctx, rpo, false)?))
}

/// The endpoint the promote and probe use in a drill.
fn clone_endpoint(ctx: &Ctx<'_>, timeout: Duration) -> Result<drctl_pg::PgEndpoint, StepError> {
    let clone: CloneOutput = ctx.output(Step::CloneStandby)?;
    node::connect(
        &format!("{}@drill-clone", ctx.params.cluster),
        &clone.dsn(),
        timeout,
    )
    .map_err(StepError::stop)
}

/// Stops and removes the clone and deletes the drill records. Reads the
/// clone's place from the journal when the clone step got that far, else
/// from the operation id (a clone that died before journaling).
async fn teardown(ctx: &Ctx<'_>) -> ActionResult<TornDown> {
    let clone: Option<CloneOutput> = ctx.output(Step::CloneStandby).ok();
    let dir = clone
        .as_ref()
        .map_or_else(|| clone_dir(ctx.config, ctx.op_id), |c| c.dir.clone());
    let mut removed = Vec::new();
    if dir.exists() {
        let bin = pg_bin()?;
        let port = clone.as_ref().map_or(0, |c| c.port);
        let d = dir.clone();
        blocking(move || node::remove_scratch(&d, port, bin)).await?;
        removed.push(format!("clone {}", dir.display()));
    }
    // Every drill record the config names, not only what the flip
    // journaled: a flip that died after applying left no output.
    let mut records = Vec::new();
    for (service, provider, record) in dns::dns_records(ctx, Announce::Drill)? {
        provider
            .delete(&record.name, record.rtype)
            .await
            .map_err(dns::dns_error)?;
        records.push(DeletedRecord {
            service,
            record: record.name,
        });
    }
    Ok(Action::Done(TornDown {
        removed,
        dns_deleted: records,
    }))
}

/// What the teardown removed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TornDown {
    pub removed: Vec<String>,
    pub dns_deleted: Vec<DeletedRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DeletedRecord {
    pub service: String,
    pub record: String,
}
