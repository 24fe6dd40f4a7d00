//! The backup scheduler: cron schedules per service for backups (followed
//! by retention), verification and restore tests. A verification run checks
//! the newest unverified backup and re-reads the one checked longest ago,
//! each where it was written and in its off-site copy
//! ([`jobs::scheduled_verification`]).
//!
//! Every due time is recorded in the state store (`schedule_runs`): run,
//! failed, or missed. After downtime the scheduler records the due times it
//! slept through as `missed` (the newest [`MAX_MISSED`] one by one, and one
//! row standing for any older ones) and runs the latest one once, late,
//! saying by how much and how many it missed — a missed schedule is visible,
//! never silently skipped, and a long outage costs one run, not one per
//! tick until caught up. A
//! service's backup can only run in one process at a time (the backup
//! lease), so two daemons never take the same backup twice.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use drctl_config::Config;
use drctl_store::states::{ScheduleRunStatus, ScheduledJob};
use drctl_store::{ScheduleRun, Store};
use tokio::sync::watch;

use crate::jobs;

/// How often schedules are checked.
const TICK: Duration = Duration::from_secs(5);
/// How long shutdown waits for scheduled jobs in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(120);
/// At most this many missed due times are recorded one by one per
/// catch-up (the newest); older ones share one row.
const MAX_MISSED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Job {
    Backup,
    Verify,
    RestoreTest,
}

impl Job {
    fn name(self) -> ScheduledJob {
        match self {
            Job::Backup => ScheduledJob::Backup,
            Job::Verify => ScheduledJob::Verify,
            Job::RestoreTest => ScheduledJob::RestoreTest,
        }
    }
}

/// What a schedule owes after `after` (the last due time handled) at `now`.
#[derive(Debug, PartialEq, Eq)]
struct Catchup {
    /// The latest due time in `(after, now]`: the one run.
    latest: DateTime<Utc>,
    /// Due times before it that were missed, newest [`MAX_MISSED`] only,
    /// oldest first.
    missed: Vec<DateTime<Utc>>,
    /// The oldest missed due time when there were more than
    /// [`MAX_MISSED`]: recorded as one row for all the unlisted ones.
    unlisted_since: Option<DateTime<Utc>>,
}

/// The catch-up due in `(after, now]`, `None` when nothing is. Found from
/// `now` backwards, so a long outage costs [`MAX_MISSED`] steps at most,
/// whatever the schedule's frequency.
fn catchup(cron: &Cron, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<Catchup> {
    let latest = cron.find_previous_occurrence(&now, true).ok()?;
    if latest <= after {
        return None;
    }
    let mut missed: Vec<DateTime<Utc>> = cron
        .iter_before(latest)
        .take_while(|t| *t > after)
        .take(MAX_MISSED + 1)
        .collect();
    let unlisted_since = (missed.len() > MAX_MISSED).then(|| {
        missed.truncate(MAX_MISSED);
        cron.find_next_occurrence(&after, false).unwrap_or(after)
    });
    missed.reverse();
    Some(Catchup {
        latest,
        missed,
        unlisted_since,
    })
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run_scheduler(
    config: Arc<Config>,
    store: Store,
    scratch_root: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Utc::now();
    let running: Arc<Mutex<HashSet<(String, Job)>>> = Arc::default();
    // Jobs in flight, awaited at shutdown: a restore test stopped half-way
    // would leave its scratch cluster running.
    let mut jobs = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        while jobs.try_join_next().is_some() {}
        for svc in &config.services {
            let Some(policy) = &svc.backup else { continue };
            for (job, expr) in [
                (Job::Backup, &policy.schedule),
                (Job::Verify, &policy.verify_schedule),
                (Job::RestoreTest, &policy.restore_test_schedule),
            ] {
                let Some(expr) = expr else { continue };
                // Validated with the config; an error here is a bug, logged.
                let Ok(cron) = Cron::from_str(expr) else {
                    tracing::error!(service = %svc.name, schedule = %expr, "unparseable schedule");
                    continue;
                };
                if running
                    .lock()
                    .expect("lock")
                    .contains(&(svc.name.clone(), job))
                {
                    continue;
                }
                let now = Utc::now();
                // Never before the first run of this daemon for a schedule
                // with no history: a new schedule starts now, not in 1970.
                let last = match store.last_schedule_due(&svc.name, job.name()).await {
                    Ok(last) => last.unwrap_or(started),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read schedule history");
                        continue;
                    }
                };
                let Some(Catchup {
                    latest,
                    missed,
                    unlisted_since,
                }) = catchup(&cron, last, now)
                else {
                    continue;
                };
                let missed_row = |due_at, detail: String| ScheduleRun {
                    service: svc.name.clone(),
                    job: job.name(),
                    due_at,
                    started_at: None,
                    ended_at: None,
                    status: ScheduleRunStatus::Missed,
                    detail: Some(detail),
                };
                if let Some(since) = unlisted_since {
                    let until = missed.first().copied().unwrap_or(latest);
                    let _ = store
                        .record_schedule_run(&missed_row(since, format!(
                            "not run at its time (the daemon was down or busy), nor was any due time after it until {until} (more than {MAX_MISSED} missed; not listed one by one)"
                        )))
                        .await;
                }
                for &due in &missed {
                    let _ = store
                        .record_schedule_run(&missed_row(due,
                            "not run at its time (the daemon was down or busy); a later run was due".into()
                        ))
                        .await;
                }
                let late = (now - latest).num_seconds();
                let skipped = match (missed.len(), unlisted_since) {
                    (0, None) => None,
                    (n, None) => Some(format!("{n} earlier due times missed")),
                    (n, Some(since)) => Some(format!(
                        "more than {n} earlier due times missed since {since}"
                    )),
                };
                let detail = [(late > 60).then(|| format!("late by {late}s")), skipped]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ");
                let run = ScheduleRun {
                    service: svc.name.clone(),
                    job: job.name(),
                    due_at: latest,
                    started_at: Some(now),
                    ended_at: None,
                    status: ScheduleRunStatus::Running,
                    detail: (!detail.is_empty()).then_some(detail),
                };
                if store.record_schedule_run(&run).await.is_err() {
                    continue;
                }
                running
                    .lock()
                    .expect("lock")
                    .insert((svc.name.clone(), job));
                let (config, store, running, scratch, service) = (
                    config.clone(),
                    store.clone(),
                    running.clone(),
                    scratch_root.clone(),
                    svc.name.clone(),
                );
                jobs.spawn(async move {
                    let outcome = run_job(&config, &store, &service, job, scratch).await;
                    let (status, detail) = match outcome {
                        Ok(detail) => (ScheduleRunStatus::Ok, detail),
                        Err(e) => (ScheduleRunStatus::Failed, e),
                    };
                    let detail = match &run.detail {
                        Some(late) => format!("{late}; {detail}"),
                        None => detail,
                    };
                    if status == ScheduleRunStatus::Failed {
                        tracing::warn!(%service, job = %job.name(), %detail, "scheduled job failed");
                    }
                    let _ = store
                        .record_schedule_run(&ScheduleRun {
                            ended_at: Some(Utc::now()),
                            status,
                            detail: Some(detail),
                            ..run
                        })
                        .await;
                    running.lock().expect("lock").remove(&(service, job));
                });
            }
        }
    }
    if !jobs.is_empty() {
        tracing::info!(
            jobs = jobs.len(),
            "waiting for scheduled jobs to finish (at most {}s)",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            jobs = jobs.len(),
            "scheduled jobs still running at shutdown were stopped"
        );
    }
}

/// Runs one job; `Ok` carries a one-line summary, `Err` the reason.
async fn run_job(
    config: &Config,
    store: &Store,
    service: &str,
    job: Job,
    scratch: PathBuf,
) -> Result<String, String> {
    match job {
        Job::Backup => {
            let (record, _) = jobs::backup_service(config, store, service, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            let plan = jobs::apply_retention(config, store, service, false)
                .await
                .map_err(|e| format!("backup {} taken; retention failed: {e}", record.id))?;
            let waiting = match plan.waiting.len() {
                0 => String::new(),
                n => format!(" ({n} more wait for their Object Lock to end)"),
            };
            let wal = match (plan.wal_deleted, plan.wal_waiting) {
                (0, 0) => String::new(),
                (d, 0) => format!(", {d} archived WAL objects no retained backup needs"),
                (d, w) => {
                    format!(", {d} archived WAL objects no retained backup needs ({w} more locked)")
                }
            };
            Ok(format!(
                "backup {}; retention deleted {}{waiting}{wal}",
                record.id,
                plan.delete.len()
            ))
        }
        Job::Verify => {
            let checked = jobs::scheduled_verification(config, store, service)
                .await
                .map_err(|e| e.to_string())?;
            if checked.is_empty() {
                return Ok("no complete backup to verify".into());
            }
            let summary = checked
                .iter()
                .map(jobs::BackupVerification::summary)
                .collect::<Vec<_>>()
                .join("; ");
            if checked.iter().all(jobs::BackupVerification::passed) {
                Ok(summary)
            } else {
                Err(summary)
            }
        }
        Job::RestoreTest => {
            let (record, outcome) =
                jobs::restore_test_service(config, store, service, None, scratch, |_| {})
                    .await
                    .map_err(|e| e.to_string())?;
            if outcome.passed {
                Ok(format!("restore test {} passed", record.id))
            } else {
                Err(format!(
                    "restore test {} failed: {}",
                    record.id,
                    outcome.error.unwrap_or_default()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn due_times_between_two_instants() {
        let hourly = Cron::from_str("0 * * * *").unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let due = catchup(&hourly, after, now).unwrap();
        let hm = |t: &DateTime<Utc>| t.format("%H:%M").to_string();
        assert_eq!(hm(&due.latest), "12:00");
        assert_eq!(
            due.missed.iter().map(hm).collect::<Vec<_>>(),
            ["10:00", "11:00"]
        );
        assert_eq!(due.unlisted_since, None);
        assert!(
            catchup(&hourly, now, now).is_none(),
            "nothing due again at the same instant"
        );
    }

    /// Issue 15 item 20: a week down on a minutely schedule (10,080 due
    /// times) used to be caught up 1,001 due times a tick, each chunk with
    /// its own backup and retention run. One catch-up owes one run: the
    /// latest due time, the newest missed listed, the rest in one row.
    #[test]
    fn a_week_long_outage_is_caught_up_by_one_run() {
        let minutely = Cron::from_str("* * * * *").unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 16, 12, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 30).unwrap();
        let due = catchup(&minutely, after, now).unwrap();
        assert_eq!(
            due.latest,
            Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
        );
        assert_eq!(due.missed.len(), MAX_MISSED);
        assert_eq!(
            due.missed.last().copied(),
            Some(due.latest - chrono::TimeDelta::minutes(1))
        );
        assert!(due.missed.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert_eq!(
            due.unlisted_since,
            Some(Utc.with_ymd_and_hms(2026, 11, 16, 12, 1, 0).unwrap())
        );
        assert!(
            catchup(&minutely, due.latest, now).is_none(),
            "once the latest due time is handled, nothing more is owed until the next"
        );
    }
}
