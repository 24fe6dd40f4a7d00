//! Reading a recorded backup back: which copy is readable (the original or
//! the off-site copy), restoring it, and restore tests.

use super::*;

/// The newest recorded backup of a service that completed (to verify).
pub async fn latest_complete_backup(
    store: &Store,
    service: &str,
) -> Result<BackupRecord, JobError> {
    store
        .backups(Some(service), 1000)
        .await?
        .into_iter()
        .find(|b| b.status == BackupStatus::Complete && b.deleted_at.is_none())
        .ok_or_else(|| JobError::NoVerifiedBackup(service.to_string()))
}

/// Whether `objects` holds the whole of a backup as listed: its manifest
/// and every object at its recorded size. A listing, not a re-read: cheap
/// enough to ask before every restore (which then verifies every byte).
pub(crate) async fn holds_backup(
    objects: &ObjectStore,
    record: &BackupRecord,
    manifest: Option<&Manifest>,
) -> Result<Result<(), String>, crate::BackupError> {
    let prefix = crate::backup_prefix(&record.service, &record.id);
    let listed = objects.list(&prefix).await?;
    let size_of = |key: &str| listed.iter().find(|o| o.key == key).map(|o| o.size);
    if size_of(&format!("{prefix}manifest.json")).is_none() {
        return Ok(Err(format!("{prefix}manifest.json is missing")));
    }
    for o in manifest.map(|m| m.objects.as_slice()).unwrap_or_default() {
        let key = format!("{prefix}{}", o.key);
        match size_of(&key) {
            None => return Ok(Err(format!("{key} is missing"))),
            Some(size) if size != o.size => {
                return Ok(Err(format!("{key} has {size} bytes, not {}", o.size)))
            }
            Some(_) => {}
        }
    }
    Ok(Ok(()))
}

/// The copy of a recorded backup to restore from, and its store's name:
/// the original while its store holds it whole, else the off-site copy
/// (the original's store lost with its region, or the backup damaged or
/// deleted there). Restores, restore tests and `recover` all read through
/// this. Whichever copy it picks is verified before it is restored.
pub async fn readable_copy(
    config: &Config,
    record: &BackupRecord,
) -> Result<(String, ObjectStore), JobError> {
    let manifest: Option<Manifest> = record
        .manifest
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    let probe = |name: String| {
        let manifest = manifest.as_ref();
        async move {
            let objects = open_object_store(config, &name)
                .await
                .map_err(|e| e.to_string())?;
            match holds_backup(&objects, record, manifest).await {
                Ok(Ok(())) => Ok((name, objects)),
                Ok(Err(fault)) => Err(format!("store {name}: {fault}")),
                Err(e) => Err(format!("store {name} cannot be read: {e}")),
            }
        }
    };
    let original = match probe(record.store.clone()).await {
        Ok(found) => return Ok(found),
        Err(why) => why,
    };
    let Some(offsite) = &record.offsite_store else {
        return Err(JobError::NoReadableCopy {
            backup: record.id.clone(),
            reason: format!("{original}, and the backup has no off-site copy"),
        });
    };
    match probe(offsite.clone()).await {
        Ok(found) => {
            tracing::warn!(backup = %record.id, store = %record.store, offsite = %offsite, reason = %original, "reading the off-site copy: the original cannot be read");
            Ok(found)
        }
        Err(copy) => Err(JobError::NoReadableCopy {
            backup: record.id.clone(),
            reason: format!("{original}; off-site copy: {copy}"),
        }),
    }
}

/// Restores a recorded backup into `target` (a new directory) and leaves it
/// there: the recovery path when every replica carries the damage. The
/// backup is read from [`readable_copy`] and verified first, against the
/// manifest recorded when it was taken; an unverifiable one is refused.
pub async fn restore_recorded_backup(
    config: &Config,
    store: &Store,
    backup_id: &str,
    target: &std::path::Path,
) -> Result<Manifest, JobError> {
    let record = super::verify::recorded_backup(store, backup_id, "restore").await?;
    let expected = expected_for(config, &record).map_err(JobError::Config)?;
    let (_, objects) = readable_copy(config, &record).await?;
    Ok(crate::restore_backup(&objects, &record.service, &record.id, target, &expected).await?)
}

/// What a point-in-time restore of a recorded backup prepared
/// ([`restore_recorded_backup_to`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PointInTime {
    pub target: crate::pitr::RecoveryTarget,
    /// The timeline replay follows (the archive's newest).
    pub timeline: u32,
    /// Where the WAL was staged (beside the data directory).
    pub wal_dir: std::path::PathBuf,
    pub segments: usize,
    pub wal_bytes: u64,
    /// The archive's WAL is unbroken through here.
    pub wal_through: String,
    /// The newest commit in the archive: no restore reaches past it.
    pub newest_commit: Option<chrono::DateTime<Utc>>,
}

/// A service's WAL archive (in its backup store), what it holds, and the
/// history of its newest timeline (read from the archive's history file).
/// An empty archive is an error saying how to have one.
pub async fn open_wal_archive(
    config: &Config,
    svc: &Service,
) -> Result<
    (
        crate::wal_archive::WalArchive,
        crate::archive::ArchiveListing,
        drctl_pg::wal::TimelineHistory,
    ),
    JobError,
> {
    use drctl_pg::wal::{TimelineHistory, TimelineId};
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(svc.name.clone()))?;
    let archive = wal_archive_of(config, svc).await?;
    let listing = archive.listing().await?;
    if listing.segments.is_empty() {
        let why = if policy.wal_archive.is_some() {
            "the leading `drctl serve` archives it (is one running?)"
        } else {
            "its [services.backup] has wal_archive = false"
        };
        return Err(JobError::Config(format!(
            "{} has no archived WAL in {}: {why}",
            svc.name, policy.store
        )));
    }
    let timeline = listing.newest_timeline().unwrap_or(TimelineId::FIRST);
    let history = if timeline == TimelineId::FIRST {
        TimelineHistory::root(timeline)
    } else {
        let text = archive
            .fetch(crate::archive::ArchivedFile::History(timeline))
            .await?;
        TimelineHistory::parse(timeline, &String::from_utf8_lossy(&text)).map_err(|e| {
            JobError::Config(format!("the archive's history of timeline {timeline}: {e}"))
        })?
    };
    Ok((archive, listing, history))
}

/// What reading a service's WAL archive back says ([`check_wal_archive`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct WalArchiveReport {
    pub service: String,
    pub timeline: u32,
    /// Where the check started: the oldest retained backup's start on the
    /// archive's history (else the oldest archived segment).
    pub from: String,
    /// The WAL is unbroken and intact through here.
    pub through: String,
    pub segments: usize,
    pub newest_commit: Option<chrono::DateTime<Utc>>,
    /// The first missing segment's object, when later ones exist.
    pub hole: Option<String>,
    /// The first object that does not read back intact, and why.
    pub damaged: Option<(String, String)>,
}

impl WalArchiveReport {
    pub fn intact(&self) -> bool {
        self.hole.is_none() && self.damaged.is_none()
    }
}

/// Reads the service's WAL archive back as a restore would, from the
/// oldest retained backup on the archive's history to its newest WAL.
pub async fn check_wal_archive(
    config: &Config,
    store: &Store,
    service_name: &str,
) -> Result<WalArchiveReport, JobError> {
    let svc = service(config, service_name)?;
    let (archive, listing, history) = open_wal_archive(config, svc).await?;
    let oldest_backup = store
        .backups(Some(&svc.name), 100_000)
        .await?
        .into_iter()
        .filter(|b| b.status == BackupStatus::Complete && b.deleted_at.is_none())
        .filter_map(|b| {
            let start: drctl_pg::Lsn = b.start_lsn.as_deref()?.parse().ok()?;
            let timeline = drctl_pg::wal::TimelineId(b.timeline? as u32);
            history.passes_through(timeline, start).then_some(start)
        })
        .min();
    let from = oldest_backup.unwrap_or_else(|| {
        listing
            .segments
            .keys()
            .find(|s| history.segment(s.number, archive.size) == **s)
            .map_or(drctl_pg::Lsn(0), |s| s.start(archive.size))
    });
    let check = crate::wal_archive::check_archive(&archive, &listing, &history, from, 4).await?;
    Ok(WalArchiveReport {
        service: svc.name.clone(),
        timeline: history.timeline.0,
        from: check.from.to_string(),
        through: check.through.to_string(),
        segments: check.segments,
        newest_commit: check
            .newest_commit_us
            .and_then(chrono::DateTime::from_timestamp_micros),
        hole: check.hole,
        damaged: check.damaged,
    })
}

/// Restores a recorded backup into `target` (as
/// [`restore_recorded_backup`]), then stages the service's archived WAL
/// from the backup's start into `<target>-wal` and writes the recovery
/// settings: started, PostgreSQL replays to `to` along the archive's newest
/// timeline and promotes itself. A target past the archive's newest
/// commit or WAL, or a backup not on the archive's history, is refused
/// before the backup is restored (the WAL staged for it removed).
pub async fn restore_recorded_backup_to(
    config: &Config,
    store: &Store,
    backup_id: &str,
    target: &std::path::Path,
    to: crate::pitr::RecoveryTarget,
) -> Result<(Manifest, PointInTime), JobError> {
    use crate::pitr::RecoveryTarget;
    use drctl_pg::wal::TimelineId;
    let record = super::verify::recorded_backup(store, backup_id, "restore").await?;
    let svc = service(config, &record.service)?;
    let (archive, listing, history) = open_wal_archive(config, svc).await?;
    let timeline = history.timeline;
    let lsn = |text: &Option<String>, what: &str| {
        text.as_deref()
            .and_then(|t| t.parse::<drctl_pg::Lsn>().ok())
            .ok_or_else(|| JobError::Config(format!("backup {backup_id} has no recorded {what}")))
    };
    let (start, stop) = (
        lsn(&record.start_lsn, "start position")?,
        lsn(&record.stop_lsn, "stop position")?,
    );
    let backup_timeline = TimelineId(record.timeline.unwrap_or(1) as u32);
    if !history.passes_through(backup_timeline, stop) {
        return Err(JobError::Config(format!(
            "backup {backup_id} (timeline {backup_timeline}, {stop}) is not on the archive's history of timeline {timeline}: pick a backup taken since"
        )));
    }
    let wal_dir = {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "restore".into());
        target.with_file_name(format!("{name}-wal"))
    };
    // The WAL first: a target the archive cannot reach is refused before
    // the base backup is restored.
    let staged =
        crate::wal_archive::stage_wal(&archive, &listing, &history, start, &wal_dir, 4).await?;
    let newest = staged
        .newest_commit_us
        .and_then(chrono::DateTime::from_timestamp_micros);
    let window = || {
        format!(
            "backup {backup_id} reaches from {stop} to {} (newest commit {})",
            staged.through,
            newest.map_or("none".into(), |t| t.to_rfc3339())
        )
    };
    let stop_at = match to {
        RecoveryTarget::Time(t) if newest.is_none_or(|n| t > n) => Err(format!(
            "{} is after the newest archived commit: {}; pick a time inside the window, or --latest",
            t.to_rfc3339(),
            window()
        )),
        RecoveryTarget::Time(t) => Ok(drctl_pg::RecoveryStop::Time(
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        RecoveryTarget::Lsn(l) if l < stop || l > staged.through => {
            Err(format!("{l} is outside the window: {}", window()))
        }
        RecoveryTarget::Lsn(l) => Ok(drctl_pg::RecoveryStop::Lsn(l)),
        RecoveryTarget::Latest => Ok(drctl_pg::RecoveryStop::EndOfWal),
    };
    let stop_at = match stop_at {
        Ok(s) => s,
        Err(why) => {
            let _ = tokio::fs::remove_dir_all(&wal_dir).await;
            return Err(JobError::Config(why));
        }
    };
    let manifest = restore_recorded_backup(config, store, backup_id, target).await?;
    drctl_pg::write_recovery_settings(target, &wal_dir, timeline.0, &stop_at)?;
    Ok((
        manifest,
        PointInTime {
            target: to,
            timeline: timeline.0,
            wal_dir,
            segments: staged.segments,
            wal_bytes: staged.bytes,
            wal_through: staged.through.to_string(),
            newest_commit: newest,
        },
    ))
}

/// Where a service's restore tests run: on the agent of a region other than
/// the backed-up one (the DR region, where a restore would happen), else on
/// the backed-up region's agent, else (no agent named) on this host.
fn restore_test_place(
    config: &Config,
    svc: &Service,
    from_region: &str,
) -> Option<crate::AgentPlace> {
    let with_agent = |r: &&String| svc.nodes.get(*r).is_some_and(|n| n.agent.is_some());
    let region = svc
        .regions
        .iter()
        .filter(|r| r.as_str() != from_region)
        .find(with_agent)
        .or_else(|| {
            svc.regions
                .iter()
                .filter(|r| r.as_str() == from_region)
                .find(with_agent)
        })?
        .clone();
    let nodes = drctl_agent::nodes_for(config, std::sync::Arc::new(drctl_node::LocalNode::new()));
    Some(crate::AgentPlace {
        node: nodes.shared(&svc.name, &region),
        region,
        tls: config.agents.clone(),
    })
}

/// Restore-tests a backup of a service (the newest verified one unless
/// `backup_id` names another) and records it.
pub async fn restore_test_service(
    config: &Config,
    store: &Store,
    service_name: &str,
    backup_id: Option<&str>,
    scratch_root: PathBuf,
    phase: impl FnMut(RestorePhase),
) -> Result<(RestoreTestRecord, RestoreTestOutcome), JobError> {
    let svc = service(config, service_name)?;
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(svc.name.clone()))?;
    let backup = match backup_id {
        Some(id) => store
            .backup(id)
            .await?
            .filter(|b| b.service == svc.name)
            .ok_or_else(|| JobError::UnknownBackup(id.to_string()))?,
        None => store
            .newest_verified_backup(&svc.name)
            .await?
            .ok_or_else(|| JobError::NoVerifiedBackup(svc.name.clone()))?,
    };
    let expected = expected_for(config, &backup).map_err(JobError::Config)?;
    // With no readable copy the test still runs on the original, to fail
    // there and be recorded: a backup that cannot be restored is evidence.
    let objects = match readable_copy(config, &backup).await {
        Ok((_, objects)) => objects,
        Err(e) => {
            tracing::warn!(backup = %backup.id, error = %e, "restore test of a backup with no readable copy");
            open_object_store(config, &backup.store).await?
        }
    };
    let database = svc
        .postgres
        .get(&policy.from_region)
        .and_then(|d| d.resolve().ok())
        .and_then(|dsn| {
            dsn.expose()
                .parse::<sqlx::postgres::PgConnectOptions>()
                .ok()
        })
        .and_then(|o| o.get_database().map(str::to_string))
        .unwrap_or_else(|| "postgres".to_string());
    let on_agent = restore_test_place(config, svc, &policy.from_region);
    let req = RestoreTestRequest {
        service: svc.name.clone(),
        backup_id: backup.id.clone(),
        store: objects,
        // Only a copy made here needs the server programs here.
        pg_bin: match on_agent {
            Some(_) => PathBuf::new(),
            None => drctl_pg::find_pg_bin()?,
        },
        on_agent,
        scratch_root,
        database,
        validation_queries: policy.validation_queries.clone(),
        key: expected.key,
        manifest: expected.manifest,
    };
    let id = format!("rt-{}", new_backup_id(Utc::now()));
    store
        .restore_test_started(&id, &svc.name, &backup.id, Utc::now())
        .await?;
    let outcome = run_restore_test(&req, phase).await;
    let results = serde_json::to_string(&outcome.queries).expect("results serialize");
    store
        .restore_test_finished(
            &id,
            Utc::now(),
            outcome.passed,
            outcome
                .time_to_ready
                .map(|d: Duration| d.as_micros() as i64),
            Some(&results),
            outcome.error.as_deref(),
        )
        .await?;
    let record = store
        .restore_tests(Some(&svc.name), 1)
        .await?
        .into_iter()
        .next()
        .expect("just recorded");
    Ok((record, outcome))
}

/// What a restore of a service to a point needs, found before anything is
/// fetched: the base backup (the newest on the archive's history that is
/// consistent by the target), the WAL range to replay from it, and what
/// past restores say of how long it takes ([`plan_restore_to`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestorePlan {
    pub service: String,
    pub target: crate::pitr::RecoveryTarget,
    pub base: crate::pitr::BasePoint,
    /// The archive's timeline the restore follows.
    pub timeline: u32,
    /// WAL replayed from the base backup's start through here (the
    /// target's position, else the end of the archive's unbroken WAL).
    pub wal_from: String,
    pub wal_through: String,
    /// Archive objects and their stored bytes in that range.
    pub wal_objects: usize,
    pub wal_stored_bytes: u64,
    /// The window every base backup and the unbroken archive span: the
    /// oldest usable backup's consistency point to the archive's end (its
    /// newest commit time is read when the WAL is staged).
    pub window_from: chrono::DateTime<Utc>,
    pub window_from_lsn: String,
    pub window_through_lsn: String,
    /// The newest passed restore test's time to ready (restoring a base
    /// backup), when there is one; WAL replay comes on top.
    pub expected_base_restore_s: Option<f64>,
    pub expected_from: Option<String>,
}

/// Plans a restore of `service` to `to` (see [`RestorePlan`]). A target
/// before every usable base backup, or past the archive's unbroken WAL,
/// is refused with the window.
pub async fn plan_restore_to(
    config: &Config,
    store: &Store,
    service_name: &str,
    to: crate::pitr::RecoveryTarget,
) -> Result<RestorePlan, JobError> {
    use crate::pitr::{pick_base, BasePoint, RecoveryTarget};
    use drctl_pg::wal::TimelineId;
    let svc = service(config, service_name)?;
    let (archive, listing, history) = open_wal_archive(config, svc).await?;
    let bases: Vec<BasePoint> = store
        .backups(Some(&svc.name), 100_000)
        .await?
        .into_iter()
        .filter(|b| b.status == BackupStatus::Complete && b.deleted_at.is_none())
        .filter(|b| b.verification != Some(VerificationStatus::Failed))
        .filter_map(|b| {
            Some(BasePoint {
                timeline: TimelineId(b.timeline.unwrap_or(1) as u32),
                start_lsn: b.start_lsn.as_deref()?.parse().ok()?,
                stop_lsn: b.stop_lsn.as_deref()?.parse().ok()?,
                // drctl's clock when the backup ended: the primary had
                // passed the stop position by then (an upper bound).
                consistent_at: b.ended_at?,
                backup_id: b.id,
            })
        })
        .filter(|b| history.passes_through(b.timeline, b.stop_lsn))
        .collect();
    let oldest = bases
        .iter()
        .min_by_key(|b| b.stop_lsn)
        .ok_or_else(|| {
            JobError::Config(format!(
                "{} has no complete backup on the archive's timeline {}: take one (drctl backup run {})",
                svc.name, history.timeline, svc.name
            ))
        })?;
    let run =
        drctl_pg::wal::continuity(&history, oldest.start_lsn, &listing.segments, archive.size);
    // The window's end in time is the newest commit, read when the WAL is
    // staged (a later time is refused then); its end in WAL is known now.
    if let RecoveryTarget::Lsn(l) = &to {
        if *l > run.through || *l < oldest.stop_lsn {
            return Err(JobError::Config(format!(
                "{l} is outside the restorable window of {}: {} to {} on timeline {}; pick a point inside it, or --latest",
                svc.name, oldest.stop_lsn, run.through, history.timeline
            )));
        }
    }
    let base = pick_base(&bases, &history, &to).cloned().ok_or_else(|| {
        JobError::Config(format!(
            "no backup of {} is consistent by {to}: the restorable window starts at {} ({}); pick a later point",
            svc.name,
            oldest.consistent_at.to_rfc3339(),
            oldest.stop_lsn
        ))
    })?;
    let wal_through = match &to {
        RecoveryTarget::Lsn(l) => *l,
        _ => run.through,
    };
    let size = archive.size.bytes();
    let (mut wal_objects, mut wal_stored_bytes) = (0, 0);
    for (file, info) in &listing.objects {
        let segment = match file {
            crate::archive::ArchivedFile::Segment(s) => *s,
            crate::archive::ArchivedFile::Partial { segment, .. } => *segment,
            crate::archive::ArchivedFile::History(_) => continue,
        };
        let on_path = history.segment(segment.number, archive.size) == segment;
        let start = drctl_pg::Lsn(segment.number * size);
        if on_path && start.0 + size > base.start_lsn.0 && start < wal_through {
            wal_objects += 1;
            wal_stored_bytes += info.size;
        }
    }
    let tested = store
        .restore_tests(Some(&svc.name), 50)
        .await?
        .into_iter()
        .find(|t| t.status == drctl_store::states::RestoreTestStatus::Passed);
    Ok(RestorePlan {
        service: svc.name.clone(),
        target: to,
        timeline: history.timeline.0,
        wal_from: base.start_lsn.to_string(),
        wal_through: wal_through.to_string(),
        wal_objects,
        wal_stored_bytes,
        window_from: oldest.consistent_at,
        window_from_lsn: oldest.stop_lsn.to_string(),
        window_through_lsn: run.through.to_string(),
        expected_base_restore_s: tested
            .as_ref()
            .and_then(|t| t.time_to_ready_us)
            .map(|us| us as f64 / 1e6),
        expected_from: tested.map(|t| format!("restore_test {}", t.id)),
        base,
    })
}
