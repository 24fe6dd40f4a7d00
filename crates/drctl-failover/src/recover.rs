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
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drctl_config::Config;
use drctl_pg::PgCluster;
use drctl_store::{BackupRecord, Store};

use crate::measure::Measured;
use crate::plan::{self, Blocker, OperationParams, PlanReport};
use crate::steps::{self, Ctx, StepError, StepResult};
use crate::Step;

const REACH: Duration = Duration::from_secs(3);

fn data_dir(config: &Config, p: &OperationParams) -> Option<PathBuf> {
    config
        .service(&p.service)?
        .nodes
        .get(&p.target)?
        .data_dir
        .clone()
}

/// A marker beside the data directory naming the operation restoring into
/// it: a rerun after a crash may wipe what that operation began, never a
/// directory someone else filled.
fn marker(dir: &std::path::Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".drctl-recover");
    dir.with_file_name(name)
}

fn is_empty_dir(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

pub(crate) async fn make_plan(config: &Config, store: &Store, p: &OperationParams) -> PlanReport {
    let service = config.service(&p.service);
    let mut blockers = Vec::new();
    let mut block = |code: &str, message: String, overridable: bool| {
        blockers.push(Blocker {
            code: code.into(),
            message,
            overridable,
        })
    };
    if p.source == p.target {
        block(
            "same_region",
            format!("source and target are both {}", p.source),
            false,
        );
    }
    let backup: Option<BackupRecord> = store
        .newest_verified_backup(&p.service)
        .await
        .ok()
        .flatten();
    if backup.is_none() {
        block(
            "no_verified_backup",
            format!(
                "{} has no verified backup to recover from (drctl backup run, drctl backup verify)",
                p.service
            ),
            false,
        );
    }
    let dir = data_dir(config, p);
    match &dir {
        None => block(
            "no_data_dir",
            format!("[services.postgres.{}] of {} has no data_dir to restore into", p.target, p.service),
            false,
        ),
        Some(d) if !is_empty_dir(d) && !marker(d).exists() => block(
            "data_dir_not_empty",
            format!("{} is not empty: a recovery never overwrites a directory it did not fill (move it away first)", d.display()),
            false,
        ),
        Some(_) => {}
    }
    let read = |region: String| async move { steps::read_state(service, &region, REACH).await };
    let (source, target) = tokio::join!(read(p.source.clone()), read(p.target.clone()));
    if target.as_ref().is_ok_and(|t| t.writable()) {
        block(
            "target_running",
            format!("a writable server already answers for {} in {}: recovered already? (drctl operations list)", p.service, p.target),
            false,
        );
    }
    let targets = service
        .map(|s| s.targets)
        .unwrap_or_else(|| config.tiers.get(drctl_config::Tier::Cold));
    let end = p
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    let expected_loss_us = backup
        .as_ref()
        .and_then(|b| b.ended_at)
        .map(|e| (end - e).num_microseconds().unwrap_or(i64::MAX).max(0));
    if let Some(loss) = expected_loss_us.filter(|l| *l > plan::us(targets.rpo)) {
        block(
            "data_loss",
            format!(
                "the newest verified backup ended {:.0} s ago, beyond the RPO target {:?}",
                loss as f64 / 1e6,
                targets.rpo
            ),
            true,
        );
    }
    let past = store.operations(500).await.unwrap_or_default();
    PlanReport {
        source_state: source.as_ref().ok().copied(),
        source_error: source.as_ref().err().cloned(),
        target_state: target.as_ref().ok().copied(),
        target_error: target.err(),
        expected_loss_us,
        expected_loss_bytes: None,
        expected_loss_basis: match &backup {
            Some(b) => format!("at most: everything written after backup {} ended", b.id),
            None => "unknown: no verified backup".into(),
        },
        dns: plan::dns_flips(config, &p.members, &p.target, p.kind),
        fence: match (&source, service.and_then(|s| s.failover.fence_hook.as_ref())) {
            (Ok(_), _) => "read-only (ALTER SYSTEM default_transaction_read_only) and terminate client sessions".into(),
            (_, Some(h)) => format!("source unreachable: run the fence hook {}", h.join(" ")),
            _ => "source unreachable and no fence hook: DNS removal only".into(),
        },
        blockers,
        ..PlanReport::skeleton(p, targets, &past)
    }
}

fn target_dir(ctx: &Ctx<'_>) -> Result<PathBuf, StepError> {
    data_dir(ctx.config, ctx.params)
        .ok_or_else(|| StepError::abandon(format!("{} has no data_dir", ctx.params.target)))
}

/// Restores the newest verified backup as of now (a newer one than the
/// plan saw only loses less); its id is journaled with the output.
pub(crate) async fn restore(ctx: &Ctx<'_>) -> StepResult {
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
    steps::to_value(&serde_json::json!({
        "backup": backup.id,
        "backup_ended_at": backup.ended_at,
        "stop_lsn": manifest.stop_lsn,
        "data_dir": dir,
        "took_ms": started.elapsed().as_millis() as u64,
    }))
}

pub(crate) async fn start(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    let dir = target_dir(ctx)?;
    let dsn = service
        .postgres
        .get(&ctx.params.target)
        .ok_or_else(|| StepError::abandon(format!("no connection for {}", ctx.params.target)))?
        .resolve()
        .map_err(|e| StepError::stop(e.to_string()))?;
    let port = dsn_port(dsn.expose()).ok_or_else(|| {
        StepError::abandon(format!(
            "the connection for {} names no port: the recovered server needs one to listen on",
            ctx.params.target
        ))
    })?;
    let bin = steps::pg_bin()?;
    let cluster = PgCluster::new(
        format!("{}@{}", ctx.params.cluster, ctx.params.target),
        dir.clone(),
        port,
        bin,
    );
    let started = Instant::now();
    let dsn = dsn.expose().to_string();
    steps::blocking(move || {
        if !cluster.is_running() {
            cluster.adopt_recovered(&dsn).map_err(|e| e.to_string())?;
            cluster.start().map_err(|e| e.to_string())?;
        }
        let _ = std::fs::remove_file(marker(&cluster.data_dir));
        Ok(())
    })
    .await?;
    steps::to_value(
        &serde_json::json!({ "port": port, "took_ms": started.elapsed().as_millis() as u64 }),
    )
}

/// The port of a URL or keyword connection string.
fn dsn_port(dsn: &str) -> Option<u16> {
    if let Some(rest) = dsn.split_once("://").map(|r| r.1) {
        let authority = rest.split(['/', '?']).next()?;
        let host = authority.rsplit_once('@').map_or(authority, |a| a.1);
        return host.rsplit_once(':')?.1.parse().ok();
    }
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .and_then(|p| p.parse().ok())
}

/// RPO: everything after the backup's end until the source was fenced (or,
/// lost, until the request): an upper bound, what the restore cannot have.
pub(crate) async fn record(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    let restored: serde_json::Value = ctx.output(Step::Restore)?;
    let backup_end = restored
        .get("backup_ended_at")
        .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok());
    let fence: serde_json::Value = ctx.output(Step::FenceSource)?;
    let lost_at = fence
        .get("fenced_at")
        .filter(|_| fence.get("reachable") == Some(&serde_json::Value::Bool(true)))
        .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok())
        .or_else(|| {
            ctx.params
                .detected_at_us
                .and_then(DateTime::from_timestamp_micros)
        })
        .unwrap_or(ctx.op_started);
    let rpo_us = backup_end.map_or(0, |e| {
        (lost_at - e).num_microseconds().unwrap_or(i64::MAX).max(0)
    });
    let end = |s: Step| ctx.timings.get(&s).and_then(|(_, e)| *e);
    let available = [
        end(Step::WriteProbe),
        end(Step::DnsConfirm),
        end(Step::ServiceHealth),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or_else(Utc::now);
    let trigger = ctx
        .params
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(ctx.op_started);
    let rto_ms = (available - trigger).num_milliseconds().max(0) as u64;
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
    let targets = service.targets;
    steps::to_value(&Measured {
        rpo_bytes: 0,
        rpo_us,
        rpo_heartbeats: 0,
        rpo_lower_bound: false,
        rpo_upper_us: Some(rpo_us),
        rpo_basis: format!(
            "backup {}: at most the writes after its end (until the source was {})",
            restored
                .get("backup")
                .and_then(|b| b.as_str())
                .unwrap_or("?"),
            if fence.get("reachable") == Some(&serde_json::Value::Bool(true)) {
                "fenced"
            } else {
                "lost"
            }
        ),
        rto_ms,
        rto_from: if ctx.params.detected_at_us.is_some() {
            "detection"
        } else {
            "request"
        }
        .into(),
        write_outage_ms: None,
        rpo_target_us: plan::us(targets.rpo),
        rto_target_ms: targets.rto.as_millis() as u64,
        rpo_met: rpo_us <= plan::us(targets.rpo),
        rto_met: Duration::from_millis(rto_ms) <= targets.rto,
        steps_ms,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_come_from_either_form_of_connection_string() {
        assert_eq!(super::dsn_port("postgres://u:p@h:5433/db?x=1"), Some(5433));
        assert_eq!(super::dsn_port("postgres://h/db"), None);
        assert_eq!(super::dsn_port("host=h port=6432 dbname=x"), Some(6432));
    }
}
