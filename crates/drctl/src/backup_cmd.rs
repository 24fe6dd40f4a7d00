//! `drctl backup run|list|restore|wal|verify`, `drctl restore` and
//! `drctl restore-test`.

use std::time::{Duration, Instant};

use drctl_backup::jobs;
use drctl_backup::RestorePhase;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::{BackupArgs, BackupCommand, OutputFormat, RestoreArgs, RestoreTestArgs};
use crate::config_cmd::open;
use crate::output::{bytes, out, outln, print_json, seconds, table};
use crate::Reported;

pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    let (config, store) = open(&args.config).await?;
    let result = match args.command {
        BackupCommand::Run { service, output } => {
            crate::audit_cmd::record(&store, "backup_started", Some(&service), json!({})).await?;
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            let started = Instant::now();
            let outcome = jobs::backup_service(&config, &store, &service, |p| {
                let rate = p.read_bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "backing up {service}: {} read, {} stored, {}/s",
                    bytes(Some(p.read_bytes as i64)),
                    bytes(Some(p.stored_bytes as i64)),
                    bytes(Some(rate as i64))
                ));
            })
            .await;
            bar.finish_and_clear();
            let (record, manifest) = outcome?;
            match output {
                OutputFormat::Json => print_json(&json!({"backup": record, "manifest": manifest}))?,
                OutputFormat::Table => outln!(
                    "backup {} of {}: {} stored ({} before compression) in {}, consistent at {}; next: drctl backup verify {}",
                    record.id,
                    record.service,
                    bytes(record.stored_bytes),
                    bytes(record.uncompressed_bytes),
                    drctl_config::format_duration_short(started.elapsed()),
                    record.stop_lsn.as_deref().unwrap_or("?"),
                    record.id
                )?,
            }
            Ok(())
        }
        BackupCommand::List { service, output } => {
            let backups = store.backups(service.as_deref(), 1000).await?;
            let locks = locks(&config, &backups).await;
            match output {
                OutputFormat::Json => {
                    let listed: Vec<serde_json::Value> = backups
                        .iter()
                        .zip(&locks)
                        .map(|(b, lock)| {
                            let mut v = json!(b);
                            v["lock"] = lock.json();
                            v
                        })
                        .collect();
                    print_json(&json!({ "backups": listed }))?
                }
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = backups
                        .iter()
                        .zip(&locks)
                        .map(|(b, lock)| {
                            vec![
                                b.id.clone(),
                                b.service.clone(),
                                b.status.to_string(),
                                b.verification
                                    .map(|v| v.to_string())
                                    .unwrap_or_else(|| "unverified".into()),
                                b.ended_at
                                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                                    .unwrap_or_else(|| "-".into()),
                                bytes(b.stored_bytes),
                                b.stop_lsn.clone().unwrap_or_else(|| "-".into()),
                                b.store.clone(),
                                lock.to_string(),
                                match (&b.offsite_store, &b.offsite_status) {
                                    (Some(store), Some(status)) => format!("{store}: {status}"),
                                    _ => "-".into(),
                                },
                                b.error
                                    .clone()
                                    .or_else(|| b.verification_error.clone())
                                    .or_else(|| b.offsite_error.clone())
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect();
                    out!(
                        "{}",
                        table(
                            &[
                                "ID",
                                "SERVICE",
                                "STATUS",
                                "VERIFIED",
                                "ENDED (UTC)",
                                "SIZE",
                                "STOP LSN",
                                "STORE",
                                "LOCK",
                                "OFFSITE",
                                "ERROR"
                            ],
                            &rows
                        )
                    )?;
                }
            }
            Ok(())
        }
        BackupCommand::Restore {
            id,
            target,
            to_time,
            to_lsn,
            latest,
            output,
        } => {
            let to = drctl_backup::pitr::RecoveryTarget::from_options(
                to_time.as_deref(),
                to_lsn.as_deref(),
                latest,
            )?;
            if let Some(to) = to {
                return restore_to_point(&config, &store, &id, &target, to, output).await;
            }
            let detail = json!({ "target": target });
            crate::audit_cmd::record(&store, "backup_restored", Some(&id), detail).await?;
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!(
                "verifying and restoring {id} into {}",
                target.display()
            ));
            bar.enable_steady_tick(Duration::from_millis(120));
            let restored = jobs::restore_recorded_backup(&config, &store, &id, &target).await;
            bar.finish_and_clear();
            let manifest = restored?;
            match output {
                OutputFormat::Json => print_json(&json!({ "restored": id, "target": target, "manifest": manifest }))?,
                OutputFormat::Table => outln!(
                    "restored backup {id} of {} into {} (consistent at {}); start it with pg_ctl -D {} start, as the postgres user, after setting its port",
                    manifest.service,
                    target.display(),
                    manifest.stop_lsn.as_deref().unwrap_or("?"),
                    target.display()
                )?,
            }
            Ok(())
        }
        BackupCommand::Wal { service, output } => {
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!("reading {service}'s WAL archive back"));
            bar.enable_steady_tick(Duration::from_millis(120));
            let report = jobs::check_wal_archive(&config, &store, &service).await;
            bar.finish_and_clear();
            let report = report?;
            match output {
                OutputFormat::Json => print_json(&json!({ "wal_archive": report }))?,
                OutputFormat::Table => {
                    outln!(
                        "{}: timeline {}, WAL unbroken and intact from {} through {} ({} segments); newest commit {}",
                        report.service,
                        report.timeline,
                        report.from,
                        report.through,
                        report.segments,
                        report
                            .newest_commit
                            .map_or("none".into(), |t| t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string())
                    )?;
                    if let Some(hole) = &report.hole {
                        outln!("missing: {hole} (the archive holds later WAL)")?;
                    }
                    if let Some((key, why)) = &report.damaged {
                        outln!("damaged: {key}: {why}")?;
                    }
                }
            }
            if report.intact() {
                Ok(())
            } else {
                Err(Reported(1).into())
            }
        }
        BackupCommand::Verify { id, latest, output } => {
            let id = match (id, latest) {
                (Some(id), None) => id,
                (None, Some(service)) => jobs::latest_complete_backup(&store, &service).await?.id,
                _ => anyhow::bail!("give a backup ID or --latest SERVICE"),
            };
            crate::audit_cmd::record(&store, "verify_started", Some(&id), json!({})).await?;
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!("verifying {id}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            let report = jobs::verify_recorded_backup(&config, &store, &id).await;
            bar.finish_and_clear();
            let report = report?;
            match output {
                OutputFormat::Json => print_json(&json!({ "verification": report }))?,
                OutputFormat::Table if report.verified => outln!(
                    "backup {id}: verified ({} re-read, every checksum matches)",
                    bytes(Some(report.bytes_read as i64))
                )?,
                OutputFormat::Table => eprintln!(
                    "backup {id}: FAILED verification: {}",
                    report.reason.clone().unwrap_or_default()
                ),
            }
            if report.verified {
                Ok(())
            } else {
                Err(Reported(1).into())
            }
        }
    };
    store.close().await;
    result
}

pub async fn restore_test(args: RestoreTestArgs) -> anyhow::Result<()> {
    let (config, store) = open(&args.config).await?;
    let detail = json!({ "backup_id": args.backup });
    crate::audit_cmd::record(&store, "restore_test_started", Some(&args.service), detail).await?;
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let result = jobs::restore_test_service(
        &config,
        &store,
        &args.service,
        args.backup.as_deref(),
        args.scratch
            .clone()
            .or_else(|| config.scratch.root.clone())
            .unwrap_or_else(drctl_pg::os::scratch_root),
        |phase| {
            let what = match phase {
                RestorePhase::Restoring => "restoring the newest verified backup",
                RestorePhase::Starting => "starting PostgreSQL on the restored copy",
                RestorePhase::Validating => "running the validation queries",
                RestorePhase::CleaningUp => "removing the scratch cluster",
            };
            bar.set_message(format!(
                "[{:>5.1}s] {what}",
                started.elapsed().as_secs_f64()
            ));
        },
    )
    .await;
    bar.finish_and_clear();
    store.close().await;
    let (record, outcome) = result?;
    match args.output {
        OutputFormat::Json => print_json(&json!({ "restore_test": record, "outcome": outcome }))?,
        OutputFormat::Table => {
            outln!(
                "restore test of {} from backup {}: {}; ready after {}",
                record.service,
                record.backup_id,
                if outcome.passed { "PASSED" } else { "FAILED" },
                seconds(outcome.time_to_ready.map(|d| d.as_secs_f64()))
            )?;
            for q in &outcome.queries {
                outln!(
                    "  {} {}  -> {}",
                    if q.passed { "ok  " } else { "FAIL" },
                    q.query,
                    q.error
                        .clone()
                        .or_else(|| q.value.clone())
                        .unwrap_or_default()
                )?;
            }
            if let Some(e) = &outcome.error {
                outln!("  error: {e}")?;
            }
        }
    }
    if outcome.passed {
        Ok(())
    } else {
        Err(Reported(1).into())
    }
}

/// A backup's S3 Object Lock in its own store, for `backup list`.
enum Lock {
    /// A directory: whoever can write to it can delete from it.
    Directory,
    /// A store without `object_lock`, or a backup written before it had one.
    None,
    Held(drctl_backup::LockState),
    Unknown(String),
}

impl Lock {
    fn json(&self) -> serde_json::Value {
        match self {
            Lock::Directory => {
                json!({"immutable": false, "reason": "a directory cannot be made immutable"})
            }
            Lock::None => json!({"immutable": false}),
            Lock::Held(l) => json!({
                "immutable": l.holds_at(chrono::Utc::now()),
                "mode": l.mode,
                "until": l.until,
            }),
            Lock::Unknown(e) => json!({"immutable": null, "error": e}),
        }
    }
}

impl std::fmt::Display for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lock::Directory => f.write_str("none (directory)"),
            Lock::None => f.write_str("none"),
            Lock::Held(l) if l.holds_at(chrono::Utc::now()) => write!(
                f,
                "{} until {}",
                serde_json::to_value(l.mode)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                l.until.format("%Y-%m-%d %H:%M")
            ),
            Lock::Held(l) => write!(f, "ended {}", l.until.format("%Y-%m-%d %H:%M")),
            Lock::Unknown(_) => f.write_str("?"),
        }
    }
}

/// Each backup's lock as its store reports it (the manifest's, written
/// last: its lock ends last). Only stores configured with `object_lock`
/// are asked; a store that cannot be reached shows `?`.
async fn locks(config: &drctl_config::Config, backups: &[drctl_store::BackupRecord]) -> Vec<Lock> {
    let mut stores = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(backups.len());
    for b in backups {
        if !stores.contains_key(&b.store) {
            let opened = jobs::open_object_store(config, &b.store)
                .await
                .map_err(|e| e.to_string());
            stores.insert(b.store.clone(), opened);
        }
        let lock = match &stores[&b.store] {
            Err(e) => Lock::Unknown(e.clone()),
            Ok(objects @ drctl_backup::ObjectStore::Local(_)) if objects.lock().is_none() => {
                Lock::Directory
            }
            Ok(objects) if objects.lock().is_none() => Lock::None,
            Ok(objects) => {
                let key = format!(
                    "{}manifest.json",
                    drctl_backup::backup_prefix(&b.service, &b.id)
                );
                match objects.lock_of(&key).await {
                    Ok(Some(l)) => Lock::Held(l),
                    Ok(None) => Lock::None,
                    Err(e) => Lock::Unknown(e.to_string()),
                }
            }
        };
        out.push(lock);
    }
    out
}

/// `drctl backup restore ID --target DIR --to-time T | --to-lsn L |
/// --latest`.
async fn restore_to_point(
    config: &drctl_config::Config,
    store: &drctl_store::Store,
    id: &str,
    target: &std::path::Path,
    to: drctl_backup::pitr::RecoveryTarget,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let detail = json!({ "target": target, "to": to });
    crate::audit_cmd::record(store, "backup_restored", Some(id), detail).await?;
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!(
        "staging the archived WAL, verifying and restoring {id} into {}",
        target.display()
    ));
    bar.enable_steady_tick(Duration::from_millis(120));
    let restored = jobs::restore_recorded_backup_to(config, store, id, target, to).await;
    bar.finish_and_clear();
    let (manifest, pitr) = restored?;
    match output {
        OutputFormat::Json => print_json(&json!({
            "restored": id,
            "target": target,
            "manifest": manifest,
            "point_in_time": pitr,
        }))?,
        OutputFormat::Table => outln!(
            "restored backup {id} of {} into {}; staged {} WAL segments ({}) through {} into {}; \
             started (pg_ctl -D {} start, as the postgres user, after setting its port), it replays to {} \
             on timeline {} and promotes itself",
            manifest.service,
            target.display(),
            pitr.segments,
            bytes(Some(pitr.wal_bytes as i64)),
            pitr.wal_through,
            pitr.wal_dir.display(),
            target.display(),
            pitr.target,
            pitr.timeline
        )?,
    }
    Ok(())
}

/// `drctl restore SERVICE --to-time T | --to-lsn L | --latest`: the plan
/// (base backup, WAL range, window, expected time), then, unless a dry
/// run, the restore of that base backup replayed to the point.
pub async fn restore_service(args: RestoreArgs) -> anyhow::Result<()> {
    let (config, store) = open(&args.config).await?;
    let to = drctl_backup::pitr::RecoveryTarget::from_options(
        args.to_time.as_deref(),
        args.to_lsn.as_deref(),
        args.latest,
    )?
    .expect("clap requires one of the three");
    let plan = jobs::plan_restore_to(&config, &store, &args.service, to).await?;
    let said = format!(
        "{}: base backup {} (consistent at {}, {}), then {} archived WAL objects ({}) from {} through {} on timeline {}; restorable from {} ({}) through {}; {}",
        plan.service,
        plan.base.backup_id,
        plan.base.stop_lsn,
        plan.base.consistent_at.format("%Y-%m-%d %H:%M:%S UTC"),
        plan.wal_objects,
        bytes(Some(plan.wal_stored_bytes as i64)),
        plan.wal_from,
        plan.wal_through,
        plan.timeline,
        plan.window_from.format("%Y-%m-%d %H:%M:%S UTC"),
        plan.window_from_lsn,
        plan.window_through_lsn,
        match (&plan.expected_base_restore_s, &plan.expected_from) {
            (Some(s), Some(from)) => format!(
                "the base backup restored in {} ({from}), WAL replay on top",
                seconds(Some(*s))
            ),
            _ => "no restore test has timed a restore yet".to_string(),
        }
    );
    let Some(target) = args.target.filter(|_| !args.dry_run) else {
        match args.output {
            OutputFormat::Json => print_json(&json!({ "dry_run": true, "plan": plan }))?,
            OutputFormat::Table => outln!("would restore {said}")?,
        }
        return Ok(());
    };
    let id = plan.base.backup_id.clone();
    if args.output == OutputFormat::Table {
        outln!("restoring {said}")?;
    }
    restore_to_point(&config, &store, &id, &target, plan.target, args.output).await
}
