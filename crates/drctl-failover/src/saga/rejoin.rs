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
//! data directory, and every step refuses another host or another database
//! at that path (a leader elsewhere with the same `data_dir` must not wipe
//! its own server). A fresh clone happens only when pg_rewind reports a
//! divergence it cannot mend, and moves the old directory aside.

use std::time::{Duration, Instant};

use drctl_config::Service;
use drctl_pg::{Lsn, PgCluster};
use serde::{Deserialize, Serialize};

use super::actions;
use super::ctx::{blocking, pg_bin, ActionResult, Ctx, StepError};
use super::output::{Action, Entry};
use crate::node::local_system_identifier;
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
        same_server(&plan, step)?;
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
    let mut report = crate::plan::make_plan(ctx.config, ctx.store, ctx.params).await;
    report.steps = STEPS.to_vec();
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

/// How the old primary became a standby again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejoinMethod {
    /// pg_rewind onto the new primary's timeline.
    Rewind,
    /// A fresh clone (the old directory moved aside).
    Clone,
}

impl std::fmt::Display for RejoinMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejoinMethod::Rewind => "rewind",
            RejoinMethod::Clone => "clone",
        })
    }
}

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
    plan.target_state.is_some_and(|t| t.in_recovery) && plan.fence.starts_with("already")
}

/// The step runs on the host the plan was made on, against the database
/// the plan found there. A rewind may find no control file (a fresh clone
/// that stopped half-way: it clones again); every other step needs the
/// same database.
fn same_server(plan: &PlanReport, step: Step) -> Result<(), StepError> {
    let Some(local) = &plan.local else {
        return Err(StepError::stop(
            "the plan of this rejoin does not record its server's host and database (made by an older drctl): start a new rejoin",
        ));
    };
    let here = crate::this_host();
    if local.host != here {
        return Err(StepError::stop(format!(
            "this rejoin acts on {} of host {}, and this is {here}: resume it on {}",
            local.data_dir, local.host, local.host
        )));
    }
    let found =
        local_system_identifier(std::path::Path::new(&local.data_dir)).map(|i| i.to_string());
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

fn node<'a>(service: &'a Service, region: &str) -> Option<&'a drctl_config::PgNode> {
    service.nodes.get(region)
}

/// The server being rejoined, as a local cluster (port unused: pg_ctl
/// reads it from the server's own configuration).
fn local_cluster(ctx: &Ctx<'_>) -> Result<PgCluster, StepError> {
    let service = ctx.service()?;
    let dir = node(service, &ctx.params.target)
        .and_then(|n| n.data_dir.clone())
        .ok_or_else(|| StepError::abandon(format!("{} has no data_dir", ctx.params.target)))?;
    let bin = pg_bin()?;
    Ok(crate::node::local_server(
        format!("{}@{}", ctx.params.cluster, ctx.params.target),
        dir,
        0,
        bin,
    ))
}

/// How the rejoined server connects to the primary: the primary's
/// `replication_dsn`, else its connection string; named after its region
/// so `pg_stat_replication` says who streams.
fn primary_conninfo(service: &Service, primary: &str, standby: &str) -> Result<String, String> {
    let dsn = match node(service, primary).and_then(|n| n.replication_dsn.as_ref()) {
        Some(s) => s.expose().to_string(),
        None => service
            .postgres
            .get(primary)
            .ok_or_else(|| format!("no connection for {primary}"))?
            .resolve()
            .map_err(|e| e.to_string())?
            .expose()
            .to_string(),
    };
    Ok(if dsn.contains("://") {
        let sep = if dsn.contains('?') { '&' } else { '?' };
        format!("{dsn}{sep}application_name={standby}")
    } else {
        format!("{dsn} application_name={standby}")
    })
}

/// Whether the server was running when it was stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stopped {
    pub was_running: bool,
}

async fn stop_node(ctx: &Ctx<'_>) -> ActionResult<Stopped> {
    let cluster = local_cluster(ctx)?;
    let was_running = cluster.is_running();
    ctx.check_lease("stopping the server").await?;
    let c = cluster.clone();
    blocking(move || c.stop("fast").map_err(|e| e.to_string())).await?;
    Ok(Action::Done(Stopped { was_running }))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Rewound {
    pub method: RejoinMethod,
    pub rewind_error: Option<String>,
    pub took_ms: u64,
}

async fn rewind(ctx: &Ctx<'_>) -> ActionResult<Rewound> {
    let service = ctx.service()?;
    let cluster = local_cluster(ctx)?;
    let source_dsn = endpoint_dsn(service, &ctx.params.source)?;
    let clone_dsn = primary_conninfo(service, &ctx.params.source, &ctx.params.target)
        .map_err(StepError::stop)?;
    let started = Instant::now();
    // A just-promoted primary's control file still names the old timeline
    // until a checkpoint: pg_rewind would see no divergence and do nothing.
    let primary = ctx.endpoint(&ctx.params.source, Duration::from_secs(120))?;
    let checkpoint = primary.checkpoint().await;
    primary.close().await;
    checkpoint.map_err(|e| StepError::retry(e.to_string()))?;
    ctx.check_lease("rewinding the data directory").await?;
    let c = cluster.clone();
    let out = blocking(move || {
        // A clone that stopped half-way left no control file: clone again.
        let half_cloned = !c.data_dir.join("global/pg_control").exists();
        if !half_cloned {
            c.save_config().map_err(|e| e.to_string())?;
        }
        let rewound = if half_cloned {
            Err(
                "the data directory has no control file (a fresh clone stopped half-way)"
                    .to_string(),
            )
        } else {
            c.rewind(&source_dsn).map(|_| ()).map_err(|e| e.to_string())
        };
        let (method, rewind_error) = match rewound {
            Ok(()) => (RejoinMethod::Rewind, None),
            Err(e) if half_cloned || rewind_diverged(&e) => {
                // Diverged beyond what pg_rewind can mend (no wal_log_hints
                // or checksums, missing WAL): start over from a copy; the
                // old directory is moved aside, not deleted.
                c.reclone(&clone_dsn).map_err(|e2| {
                    format!("pg_rewind failed ({e}) and so did a fresh clone: {e2}")
                })?;
                (RejoinMethod::Clone, Some(e))
            }
            // Anything else (the primary unreachable, a permission, a full
            // disk) may pass: the data directory stays as it is.
            Err(e) => {
                return Err(format!(
                "pg_rewind failed ({e}); the data directory is untouched: fix the cause and resume"
            ))
            }
        };
        c.restore_config().map_err(|e| e.to_string())?;
        Ok(Rewound {
            method,
            rewind_error,
            took_ms: 0,
        })
    })
    .await?;
    Ok(Action::Done(Rewound {
        took_ms: started.elapsed().as_millis() as u64,
        ..out
    }))
}

/// pg_rewind's own words for a divergence it cannot mend, the only case a
/// fresh clone (which replaces the data directory) is the answer for.
fn rewind_diverged(error: &str) -> bool {
    const DIVERGED: &[&str] = &[
        "wal_log_hints",
        "could not find previous WAL record",
        "could not find common ancestor",
        "could not find WAL file",
    ];
    DIVERGED.iter().any(|d| error.contains(d))
        || (error.contains("could not open file")
            && error.contains("pg_wal")
            && error.contains("No such file"))
}

fn endpoint_dsn(service: &Service, region: &str) -> Result<String, StepError> {
    Ok(service
        .postgres
        .get(region)
        .ok_or_else(|| StepError::abandon(format!("no connection for {region}")))?
        .resolve()
        .map_err(|e| StepError::stop(e.to_string()))?
        .expose()
        .to_string())
}

/// Whom the server is now configured to stream from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Configured {
    pub standby_of: String,
}

async fn configure(ctx: &Ctx<'_>) -> ActionResult<Configured> {
    let service = ctx.service()?;
    let cluster = local_cluster(ctx)?;
    let conninfo = primary_conninfo(service, &ctx.params.source, &ctx.params.target)
        .map_err(StepError::stop)?;
    let c = cluster.clone();
    blocking(move || {
        c.configure_standby(&conninfo).map_err(|e| e.to_string())?;
        c.forget_saved_config();
        Ok(())
    })
    .await?;
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
    let cluster = local_cluster(ctx)?;
    let c = cluster.clone();
    blocking(move || {
        if !c.is_running() {
            c.start().map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await?;
    Ok(Action::Done(NodeStarted { started: true }))
}

/// Streams from the primary and has replayed what the primary had when the
/// wait began.
/// The rejoined server streams and has replayed up to `goal`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Streaming {
    pub goal: Lsn,
    pub replayed: Option<Lsn>,
    pub waited_ms: u64,
}

async fn streaming(ctx: &Ctx<'_>) -> ActionResult<Streaming> {
    let p = ctx.params;
    let primary = ctx.endpoint(&p.source, REACH)?;
    // The flushed position (the insert position may run ahead of what any
    // standby can receive).
    let goal = primary
        .probe_primary_position()
        .await
        .map_err(|e| StepError::retry(e.to_string()));
    primary.close().await;
    let goal = goal?.point.lsn;
    let node = ctx.endpoint(&p.target, REACH)?;
    let started = Instant::now();
    let mut last: Option<(String, Lsn)> = None;
    let reached = loop {
        let receiver = node.wal_receiver().await.ok().flatten();
        if let (Ok(s), Some((status, _))) = (node.node_state().await, receiver) {
            let done = s.in_recovery && status == "streaming" && s.replay_lsn >= goal;
            last = Some((status, s.replay_lsn));
            if done {
                break true;
            }
        }
        if started.elapsed() > CATCH_UP {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    node.close().await;
    if !reached {
        return Err(StepError::stop(format!(
            "{}@{} did not stream and replay up to {goal} within {CATCH_UP:?} (last: {last:?}); its log says why",
            p.cluster, p.target
        )));
    }
    Ok(Action::Done(Streaming {
        goal,
        replayed: last.map(|l| l.1),
        waited_ms: started.elapsed().as_millis() as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::rewind_diverged;

    #[test]
    fn only_a_divergence_pg_rewind_cannot_mend_leads_to_a_fresh_clone() {
        // pg_rewind 15's own words.
        for diverged in [
            "pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\"",
            "pg_rewind: error: could not find previous WAL record at 0/3000028",
            "pg_rewind: error: could not find common ancestor of the source and target cluster's timelines",
            "pg_rewind: error: could not open file \"/d/pg_wal/000000010000000000000002\": No such file or directory",
        ] {
            assert!(rewind_diverged(diverged), "{diverged}");
        }
        for transient in [
            "pg_rewind: error: could not connect to server: connection refused",
            "pg_rewind: error: source and target clusters are from different systems",
            "pg_rewind: error: could not write file \"/d/base/1/1259\": No space left on device",
            "pg_rewind: error: target server must be shut down cleanly",
            "pg_rewind: error: could not open file \"/d/pg_wal/000000010000000000000002\": Permission denied",
        ] {
            assert!(!rewind_diverged(transient), "{transient}");
        }
    }
}
