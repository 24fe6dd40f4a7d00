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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drctl_config::{Config, Service};
use drctl_pg::{Lsn, PgCluster};
use drctl_store::Store;
use serde::{Deserialize, Serialize};

use crate::plan::{Blocker, LocalNode, OperationParams, PlanReport};
use crate::steps::{self, blocking, Ctx, StepError, StepResult};
use crate::Step;

const REACH: Duration = Duration::from_secs(5);
const CATCH_UP: Duration = Duration::from_secs(20);

pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> StepResult {
    if step == Step::Plan {
        let report = make_plan(ctx.config, ctx.store, ctx.params).await;
        let standing = report.standing(false);
        if !standing.is_empty() {
            let text = standing.iter().map(|b| b.message.clone()).collect();
            return Err(StepError::refused(text, false));
        }
        return steps::to_value(&report);
    }
    if step == Step::Lease {
        return steps::to_value(&serde_json::json!({
            "holder": ctx.lease.holder, "token": ctx.lease.token, "lease": ctx.lease.name,
        }));
    }
    let plan: PlanReport = ctx.output(Step::Plan)?;
    if already_standby(&plan) && step != Step::Record {
        return steps::skipped("already a standby of the primary");
    }
    if step != Step::Record && step != Step::CatchUp {
        same_server(&plan, step)?;
    }
    match step {
        Step::StopNode => stop_node(ctx).await,
        Step::Rewind => rewind(ctx).await,
        Step::ConfigureStandby => configure(ctx).await,
        Step::StartNode => start_node(ctx).await,
        Step::CatchUp => streaming(ctx).await,
        Step::Record => steps::to_value(&serde_json::json!({
            "rejoined": ctx.params.target,
            "streams_from": ctx.params.source,
            "method": ctx.outputs.get(&Step::Rewind).and_then(|v| v.get("method")).cloned(),
        })),
        other => Err(StepError::abandon(format!("a rejoin has no step {other}"))),
    }
}

fn already_standby(plan: &PlanReport) -> bool {
    plan.target_state.is_some_and(|t| t.in_recovery) && plan.fence.starts_with("already")
}

/// The database system identifier in `data_dir`'s `global/pg_control`:
/// its first field, a 64-bit number in the host's byte order. `None` when
/// there is no control file.
fn local_system_identifier(data_dir: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(data_dir.join("global/pg_control")).ok()?;
    Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
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
    let bin = steps::pg_bin()?;
    Ok(PgCluster::new(
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

pub(crate) async fn make_plan(config: &Config, store: &Store, p: &OperationParams) -> PlanReport {
    let service = config.service(&p.service);
    let mut blockers = Vec::new();
    let mut block = |code: &str, message: String| {
        blockers.push(Blocker {
            code: code.into(),
            message,
            overridable: false,
        })
    };
    if p.source == p.target {
        block(
            "same_region",
            format!("{} is the primary: there is nothing to rejoin", p.target),
        );
    }
    let read = |region: String| async move { steps::read_state(service, &region, REACH).await };
    let (primary, old) = tokio::join!(read(p.source.clone()), read(p.target.clone()));
    match &primary {
        Err(e) => block(
            "primary_unreachable",
            format!("the primary {}@{} is unreachable: {e}", p.cluster, p.source),
        ),
        Ok(s) if !s.writable() => block(
            "primary_not_writable",
            format!(
                "{}@{} is not a writable primary (in recovery: {}, read-only: {})",
                p.cluster, p.source, s.in_recovery, s.read_only
            ),
        ),
        Ok(_) => {}
    }
    if let Ok(o) = &old {
        if o.writable() {
            block(
                "second_writable_primary",
                format!("{}@{} takes writes: fence it first (the daemon's watchdog does) — stopping it now would drop its clients' writes", p.cluster, p.target),
            );
        }
    }
    let data_dir: Option<PathBuf> = service
        .and_then(|s| node(s, &p.target))
        .and_then(|n| n.data_dir.clone());
    match &data_dir {
        None => block(
            "no_data_dir",
            format!("[services.postgres.{}] has no data_dir: drctl rejoin needs the server's data directory", p.target),
        ),
        Some(d) if !d.join("PG_VERSION").exists() => block(
            "data_dir_not_here",
            format!("{} is not a PostgreSQL data directory on this host: run drctl rejoin on the host of {}", d.display(), p.target),
        ),
        Some(_) => {}
    }
    // The database in the data directory must be a copy of the primary's
    // (physical copies share the system identifier): anything else is
    // another cluster's server at the same path.
    let local_id = data_dir.as_deref().and_then(local_system_identifier);
    let primary_id = match (service, primary.is_ok()) {
        (Some(s), true) => match steps::endpoint(s, &p.source, REACH) {
            Ok(ep) => {
                let id = ep.system_identifier().await.ok();
                ep.close().await;
                id
            }
            Err(_) => None,
        },
        _ => None,
    };
    match (local_id, primary_id) {
        (Some(l), Some(pid)) if l != pid => block(
            "other_database",
            format!(
                "{} holds database {l}, not a copy of the primary {}@{} (database {pid}): it is another server's data; refusing to touch it",
                data_dir.as_deref().map_or("?".into(), |d| d.display().to_string()),
                p.cluster,
                p.source
            ),
        ),
        (None, _) if data_dir.as_deref().is_some_and(|d| d.join("PG_VERSION").exists()) => block(
            "no_control_file",
            format!(
                "{} has no readable global/pg_control: cannot tell which database it holds",
                data_dir.as_deref().map_or("?".into(), |d| d.display().to_string())
            ),
        ),
        (Some(_), None) if primary.is_ok() => block(
            "primary_identity_unknown",
            format!("cannot read the system identifier of the primary {}@{}", p.cluster, p.source),
        ),
        _ => {}
    }
    let standby_already = old.as_ref().is_ok_and(|o| o.in_recovery);
    let past = store.operations(500).await.unwrap_or_default();
    let targets = service
        .map(|s| s.targets)
        .unwrap_or_else(|| config.tiers.get(drctl_config::Tier::Hot));
    PlanReport {
        source_state: primary.as_ref().ok().copied(),
        source_error: primary.err(),
        target_state: old.as_ref().ok().copied(),
        target_error: old.err(),
        expected_loss_us: None,
        expected_loss_bytes: None,
        expected_loss_basis: "a rejoin discards only what the old primary wrote after the new one took over (already lost to the service)".into(),
        dns: Vec::new(),
        fence: if standby_already {
            format!("already a standby: {} needs nothing", p.target)
        } else {
            format!(
                "stop {} ({}), pg_rewind onto {} (a fresh clone, the old directory moved aside, only if pg_rewind reports a divergence it cannot mend), start it as its standby",
                p.target,
                data_dir.as_ref().map_or("?".into(), |d| d.display().to_string()),
                p.source
            )
        },
        blockers,
        local: data_dir.as_ref().map(|d| LocalNode {
            host: crate::this_host(),
            data_dir: d.display().to_string(),
            system_identifier: local_id.map(|i| i.to_string()),
        }),
        ..PlanReport::skeleton(p, targets, &past)
    }
}

async fn stop_node(ctx: &Ctx<'_>) -> StepResult {
    let cluster = local_cluster(ctx)?;
    let was_running = cluster.is_running();
    ctx.check_lease("stopping the server").await?;
    let c = cluster.clone();
    blocking(move || c.stop("fast").map_err(|e| e.to_string())).await?;
    steps::to_value(&serde_json::json!({ "was_running": was_running }))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rewound {
    /// `rewind` or `clone`.
    method: String,
    rewind_error: Option<String>,
    took_ms: u64,
}

async fn rewind(ctx: &Ctx<'_>) -> StepResult {
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
            Ok(()) => ("rewind", None),
            Err(e) if half_cloned || rewind_diverged(&e) => {
                // Diverged beyond what pg_rewind can mend (no wal_log_hints
                // or checksums, missing WAL): start over from a copy; the
                // old directory is moved aside, not deleted.
                c.reclone(&clone_dsn).map_err(|e2| {
                    format!("pg_rewind failed ({e}) and so did a fresh clone: {e2}")
                })?;
                ("clone", Some(e))
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
            method: method.into(),
            rewind_error,
            took_ms: 0,
        })
    })
    .await?;
    steps::to_value(&Rewound {
        took_ms: started.elapsed().as_millis() as u64,
        ..out
    })
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

async fn configure(ctx: &Ctx<'_>) -> StepResult {
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
    steps::to_value(&serde_json::json!({ "standby_of": ctx.params.source }))
}

async fn start_node(ctx: &Ctx<'_>) -> StepResult {
    let cluster = local_cluster(ctx)?;
    let c = cluster.clone();
    blocking(move || {
        if !c.is_running() {
            c.start().map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await?;
    steps::to_value(&serde_json::json!({ "started": true }))
}

/// Streams from the primary and has replayed what the primary had when the
/// wait began.
async fn streaming(ctx: &Ctx<'_>) -> StepResult {
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
    steps::to_value(&serde_json::json!({
        "goal": goal,
        "replayed": last.map(|l| l.1),
        "waited_ms": started.elapsed().as_millis() as u64,
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
