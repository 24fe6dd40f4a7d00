//! The drill's own steps: a scratch clone of the standby (the DR copy) is
//! started isolated, then promoted, probed and announced under the drill
//! record by the shared steps, and [`teardown`] removes it all, also after
//! a failure. Production is only read: the primary keeps its writes, the
//! standby keeps streaming (a base backup is one more walsender client), the
//! production DNS record is never written.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drctl_node::{
    CloneRequest, Datastore, Dsn, Position, Promotion, ScratchClone, StartRequest, TeardownRequest,
    CLONE_READY,
};
use serde::{Deserialize, Serialize};

use super::actions::{self, Rpo};
use super::ctx::{node_error, ActionResult, Ctx, StepError};
use super::dns::{self, Announce};
use super::output::{Action, Entry};
use crate::measure::Measured;
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
    /// Where the clone is reached over TCP with TLS: made by the target
    /// region's agent on its own host. `None` (and in journals older than
    /// agents): over its private socket on drctl's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<std::net::SocketAddr>,
}

impl CloneOutput {
    /// The clone as the node made it.
    fn scratch(&self) -> ScratchClone {
        ScratchClone {
            dir: self.dir.clone(),
            data_dir: self.data_dir.clone(),
            port: self.port,
            bytes: self.bytes,
            took_ms: self.took_ms,
            tcp: self.tcp,
        }
    }

    /// The clone's DSN: the production one's database and user, over the
    /// clone's private socket (admitting only drctl's own OS user), or,
    /// for a clone on an agent's host, over TLS with drctl's agent client
    /// certificate as the only credential.
    fn dsn(&self, config: &drctl_config::Config) -> Result<Dsn, StepError> {
        self.scratch()
            .dsn(&self.user, &self.database, config.agents.as_ref())
            .map_err(|e| StepError::stop(e.to_string()))
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
        .unwrap_or_else(drctl_node::default_scratch_root);
    root.join(format!("drill-{short}"))
}

/// A copy of the standby into a scratch directory (the node's scratch
/// clone: a standby of nothing, reachable only by drctl).
async fn clone_standby(ctx: &Ctx<'_>) -> ActionResult<CloneOutput> {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return Ok(Action::skipped(
            "no datastore: the drill rehearses DNS only",
        ));
    }
    let engine = ctx.engine()?;
    let region = &ctx.params.target;
    let dsn =
        drctl_node::service_dsn(service, region).map_err(|e| StepError::stop(e.to_string()))?;
    // The connection string names the database and user to use on the
    // clone; otherwise the engine's defaults.
    let login = engine
        .login_of(&dsn)
        .map_err(|e| StepError::stop(e.to_string()))?;
    let (default_db, default_user) = engine.default_login();
    let database = login.database.unwrap_or_else(|| default_db.into());
    let user = login.user.unwrap_or_else(|| default_user.into());
    // What a copy needs from its source to start.
    let source = ctx.datastore(region, Duration::from_secs(5))?;
    let settings = source.clone_settings().await;
    source.close().await;
    let settings = settings.map_err(|e| StepError::retry(e.to_string()))?;
    // An earlier attempt that died half-way leaves a partial copy: the node
    // replaces it (a rerun of this step is a fresh clone).
    let req = CloneRequest {
        dir: clone_dir(ctx.config, ctx.op_id),
        source: dsn,
        settings,
        roles: vec![user.clone(), default_user.to_string()],
        tls: None,
    };
    let clone = ctx
        .node(&ctx.params.target)
        .clone_scratch(&req)
        .await
        .map_err(node_error)?;
    Ok(Action::Done(CloneOutput {
        dir: clone.dir,
        data_dir: clone.data_dir,
        port: clone.port,
        database,
        user,
        bytes: clone.bytes,
        took_ms: clone.took_ms,
        tcp: clone.tcp,
    }))
}

/// The clone, started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CloneStarted {
    pub port: u16,
    #[serde(alias = "in_recovery")]
    pub standby: bool,
    #[serde(alias = "lsn")]
    pub position: Position,
    pub took_ms: u64,
}

/// The clone runs as a standby of nothing, on a free port, until it is
/// consistent.
async fn start_clone(ctx: &Ctx<'_>) -> ActionResult<CloneStarted> {
    let Some(clone) = ctx.lookup::<CloneOutput>(Step::CloneStandby)?.done() else {
        return Ok(Action::skipped("no clone"));
    };
    let started = Instant::now();
    ctx.node(&ctx.params.target)
        .start(&StartRequest {
            node: clone.scratch().node(),
            wait_ready_ms: Some(CLONE_READY.as_millis() as u64),
            recovered: None,
            unfence: false,
        })
        .await
        .map_err(node_error)?;
    // Consistent (a hot standby answers queries only then) and still a
    // standby of nothing.
    let server = connect_clone(ctx, &clone, Duration::from_secs(5))?;
    let state = server.probe().await;
    server.close().await;
    let state = state.map_err(|e| StepError::retry(e.to_string()))?;
    Ok(Action::Done(CloneStarted {
        port: clone.port,
        standby: state.standby,
        position: state.position,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// The clone promoted (never production).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ClonePromoted {
    pub report: Promotion,
    #[serde(alias = "final_lsn")]
    pub final_position: Option<Position>,
}

async fn promote_clone(ctx: &Ctx<'_>) -> ActionResult<ClonePromoted> {
    if !ctx.service()?.has_datastore() {
        return Ok(Action::skipped("no datastore"));
    }
    let clone = clone_endpoint(ctx, actions::PROMOTE_TIMEOUT)?;
    let (report, before) = actions::promote(ctx, clone).await?;
    Ok(Action::Done(ClonePromoted {
        report,
        final_position: Some(before.position),
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

/// The server the promote and probe use in a drill: the clone.
fn clone_endpoint(ctx: &Ctx<'_>, timeout: Duration) -> Result<Box<dyn Datastore>, StepError> {
    let clone: CloneOutput = ctx.output(Step::CloneStandby)?;
    connect_clone(ctx, &clone, timeout)
}

fn connect_clone(
    ctx: &Ctx<'_>,
    clone: &CloneOutput,
    timeout: Duration,
) -> Result<Box<dyn Datastore>, StepError> {
    ctx.engine()?
        .connect(
            format!("{}@drill-clone", ctx.params.cluster),
            &clone.dsn(ctx.config)?,
            timeout,
        )
        .map_err(|e| StepError::stop(e.to_string()))
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
    let req = TeardownRequest {
        dir: dir.clone(),
        port: clone.as_ref().map_or(0, |c| c.port),
    };
    if ctx
        .node(&ctx.params.target)
        .teardown_scratch(&req)
        .await
        .map_err(node_error)?
        .removed
    {
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
