//! The sampler of one replicated cluster and the services that share it.
//!
//! The cluster is reached through the connections of its first service (in
//! config order); the positions measured apply to every member, each judged
//! against its own target with its own breach clock.
//!
//! Order within a tick matters: standbys are read first, the primary last,
//! so every standby position predates the primary reading it is compared
//! with (a standby cannot be ahead of the primary's later flushed position);
//! the error this leaves is a few milliseconds of *over*-statement, never
//! under-statement.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use drctl_config::Service;
use drctl_node::{Datastore, Position, PrimaryPosition, StandbyPosition};
use drctl_store::LagSample;
use tokio::sync::{mpsc, watch};

use crate::{ArchiveProgress, BreachClock, HeartbeatMap, Monitor, Status, WalArchiveView};

/// Map points taken per sampling interval (one with the sample, the rest
/// between samples).
const MAP_POINTS_PER_INTERVAL: u32 = 4;

/// How often heartbeats older than a day are deleted from the primary.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const HEARTBEAT_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The cluster's servers, each through the datastore seam: the sampler
/// knows no engine, [`drctl_node::connect`] picks it from the service.
struct Endpoints {
    primary: Box<dyn Datastore>,
    standbys: Vec<(String, Box<dyn Datastore>)>,
}

fn connect_endpoints(
    service: &Service,
    primary: &str,
    timeout: Duration,
) -> Result<Endpoints, String> {
    let endpoint = |region: &str| -> Result<Box<dyn Datastore>, String> {
        drctl_node::connect(service, region, timeout).map_err(|e| e.to_string())
    };
    Ok(Endpoints {
        primary: endpoint(primary)?,
        // A cold service's other regions hold no standby (a recovery
        // restores into them): only its primary is read.
        standbys: service
            .regions
            .iter()
            .filter(|r| *r != primary && service.tier.is_replicated())
            .map(|r| Ok((r.clone(), endpoint(r)?)))
            .collect::<Result<_, String>>()?,
    })
}

fn time_of(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) async fn sample_cluster(
    monitor: Monitor,
    members: Vec<Service>,
    tx: mpsc::Sender<LagSample>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(service) = members.first().cloned() else {
        return;
    };
    let cfg = monitor.config().monitor.clone();
    // Clusters tick at different offsets within the interval, so a thousand
    // samplers spread their probes (and the store its writes) over the
    // second instead of firing together.
    let offset = cfg.interval.mul_f64(spread(&service.cluster));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Between samples, extra map points: WAL is not written at an even rate
    // (page splits and full-page images come in bursts), so interpolating
    // across a whole interval can misplace a standby's position by up to
    // the interval; points every quarter interval bound that error to a
    // quarter. Each costs one trivial query on the primary.
    let mut map_ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + offset + cfg.interval / MAP_POINTS_PER_INTERVAL,
        cfg.interval / MAP_POINTS_PER_INTERVAL,
    );
    map_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut endpoints: Option<Endpoints> = None;
    // The region sampled as primary; a failover moves it (the monitor reads
    // the store's cluster roles), and then the map starts over from the new
    // primary's heartbeats.
    let mut primary_region = monitor.primary_region(&service);
    let mut map = HeartbeatMap::new();
    let mut map_loaded = false;
    // Flushed position right after our last heartbeat: the primary is idle
    // while its position stays there, and then no heartbeat is written (an
    // idle primary is left idle, and its standbys' replay timestamps age as
    // they would without drctl).
    let mut after_last_heartbeat = Position::ZERO;
    let mut last_prune: Option<Instant> = None;
    let mut breach: Vec<BreachClock> = vec![BreachClock::default(); members.len()];

    loop {
        let full_sample = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            _ = ticker.tick() => true,
            _ = map_ticker.tick() => false,
        };
        if !full_sample {
            if let Some(ep) = endpoints.as_ref() {
                let sent = Instant::now();
                if let Ok(point) = ep.primary.probe_primary_point().await {
                    map.record_observed(point, sent, Instant::now());
                }
            }
            continue;
        }
        let started = Instant::now();
        let sampled_at = Utc::now();
        let now_primary = monitor.primary_region(&service);
        if now_primary != primary_region {
            tracing::info!(cluster = %service.cluster, from = %primary_region, to = %now_primary, "primary moved; sampling the new one");
            primary_region = now_primary;
            if let Some(ep) = endpoints.take() {
                ep.primary.close().await;
                for (_, s) in &ep.standbys {
                    s.close().await;
                }
            }
            map = HeartbeatMap::new();
            map_loaded = false;
            after_last_heartbeat = Position::ZERO;
        }
        if endpoints.is_none() {
            match connect_endpoints(&service, &primary_region, cfg.probe_timeout) {
                Ok(e) => endpoints = Some(e),
                Err(error) => {
                    for m in &members {
                        monitor.update_view(&m.name, |v| {
                            v.status = Status::Unknown;
                            v.error = Some(error.clone());
                            v.sampled_at = Some(sampled_at);
                        });
                    }
                    continue;
                }
            }
        }
        let ep = endpoints.as_ref().expect("set above");

        let mut standby_reads: Vec<(String, Result<StandbyPosition, String>)> = Vec::new();
        for (region, standby) in &ep.standbys {
            standby_reads.push((
                region.clone(),
                standby
                    .probe_standby_position()
                    .await
                    .map_err(|e| e.to_string()),
            ));
        }
        let primary_sent = Instant::now();
        let primary: Result<PrimaryPosition, String> = ep
            .primary
            .probe_primary_position()
            .await
            .map_err(|e| e.to_string());
        let primary_received = Instant::now();

        if let Ok(p) = &primary {
            if !map_loaded {
                // After a restart, the heartbeats on the primary give back the
                // map for a standby that was already behind.
                match ep.primary.load_heartbeats(Duration::from_secs(3600)).await {
                    Ok(points) => points.into_iter().for_each(|pt| map.record(pt)),
                    Err(e) => {
                        tracing::debug!(service = %service.name, error = %e, "no heartbeats to load")
                    }
                }
                map_loaded = true;
            }
            map.record_observed(p.point, primary_sent, primary_received);
        }

        let mut samples = Vec::new();
        for (region, read) in standby_reads {
            let mut s = LagSample {
                service: service.name.clone(),
                standby_region: region,
                sampled_at,
                primary_time: None,
                status: Status::Unknown,
                rpo_exposure_us: None,
                exposure_lower_bound: false,
                replay_lag_us: None,
                byte_lag: None,
                replay_byte_lag: None,
                primary_lsn: None,
                standby_durable_lsn: None,
                standby_replay_lsn: None,
                naive_replay_delay_us: None,
                wal_receiver: None,
                probe_us: None,
                error: None,
            };
            match &read {
                Ok(sb) => {
                    s.standby_durable_lsn = Some(sb.durable.ordinal() as i64);
                    s.standby_replay_lsn = Some(sb.applied.ordinal() as i64);
                    s.naive_replay_delay_us = sb.naive_replay_delay_us;
                    s.wal_receiver = sb.receiver.map(|r| r.to_string());
                }
                Err(e) => s.error = Some(e.clone()),
            }
            match (&primary, &read) {
                (Ok(p), Ok(sb)) => {
                    let exposure = map.exposure(sb.durable, p.point);
                    let replay = map.exposure(sb.applied, p.point);
                    s.primary_time = Some(time_of(p.point.primary_time_us));
                    s.primary_lsn = Some(p.point.position.ordinal() as i64);
                    s.rpo_exposure_us = Some(exposure.us);
                    s.exposure_lower_bound = exposure.lower_bound;
                    s.replay_lag_us = Some(replay.us);
                    s.byte_lag = Some(p.point.position.distance_after(sb.durable) as i64);
                    s.replay_byte_lag = Some(p.point.position.distance_after(sb.applied) as i64);
                }
                (Err(e), _) => {
                    s.error = Some(match &s.error {
                        Some(standby_err) => format!("{e}; {standby_err}"),
                        None => e.clone(),
                    })
                }
                _ => {}
            }
            samples.push(s);
        }

        // The WAL archive of each member, placed on the map like a standby.
        let archives: Vec<Option<(ArchiveProgress, WalArchiveView)>> =
            members
                .iter()
                .map(|m| {
                    let mut progress = monitor.archive_progress(&m.name)?;
                    // What the receiver has flushed, as the primary heard it
                    // now (the archiver's own figure is as of its last pass).
                    let name = drctl_node::archive_application_name(&m.name);
                    let flushed = primary.as_ref().ok().and_then(|p| {
                        p.archivers
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, at)| *at)
                    });
                    progress.received = progress.received.max(flushed);
                    let evidence = monitor.view(&m.name).and_then(|v| v.backup_evidence);
                    let mut view = archive_view(&map, &progress, primary.as_ref().ok(), sampled_at);
                    let engine = drctl_node::Engine::of(m);
                    let base = evidence.iter().flat_map(|e| &e.oldest_backups).find(|b| {
                    let start = b.start_lsn.as_deref().and_then(|t| engine.parse_position(t));
                    matches!((start, progress.unbroken_from), (Some(s), Some(from)) if from <= s)
                });
                    if let (Some(base), Some(lag), Ok(p)) = (base, view.archive_lag_us, &primary) {
                        view.restorable_from = base.ended_at;
                        view.restorable_from_backup = Some(base.id.clone());
                        view.restorable_to = Some(time_of(p.point.primary_time_us - lag));
                    }
                    Some((progress, view))
                })
                .collect();

        // The map only needs to reach back to the least advanced standby
        // or archive.
        let archived = archives
            .iter()
            .flatten()
            .filter_map(|(p, _)| p.archived)
            .map(|p| p.ordinal() as i64);
        if let Some(oldest) = samples
            .iter()
            .filter_map(|s| s.standby_durable_lsn)
            .chain(archived)
            .min()
        {
            map.forget_before(Position::from_ordinal(oldest.max(0) as u64));
        }

        // Heartbeat when the primary wrote something since the last one.
        if let Ok(p) = &primary {
            // What a primary writes by itself after our heartbeat still
            // counts as idle (the engine says how much that is).
            let idle_slack = ep.primary.engine().idle_slack();
            if p.point.position.distance_after(after_last_heartbeat) > idle_slack
                || after_last_heartbeat == Position::ZERO
            {
                let sent = Instant::now();
                match ep.primary.write_heartbeat().await {
                    Ok((point, end)) => {
                        map.record_observed(point, sent, Instant::now());
                        after_last_heartbeat = end;
                        monitor
                            .counters()
                            .heartbeats
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(service = %service.name, error = %e, "could not write a heartbeat")
                    }
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                if let Err(e) = ep.primary.prune_heartbeats(HEARTBEAT_KEEP).await {
                    tracing::debug!(service = %service.name, error = %e, "could not prune heartbeats");
                }
            }
        }

        let probe_us = started.elapsed().as_micros() as i64;
        for s in samples.iter_mut() {
            s.probe_us = Some(probe_us);
        }
        let failed = samples.iter().all(|s| s.rpo_exposure_us.is_none());
        if failed {
            monitor
                .counters()
                .probe_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        for ((member, clock), archive) in members.iter().zip(breach.iter_mut()).zip(&archives) {
            let archive_sample;
            // A cold service is judged on its archive: what a restore
            // from it would lose now. Without an archiver's word (a
            // follower daemon, or not started yet) its backups say.
            let serves = || {
                let evidence = monitor.view(&member.name).and_then(|v| v.backup_evidence);
                monitor.archive_serves(member, evidence.as_ref())
            };
            let measured = if member.tier.is_replicated() {
                &samples[..]
            } else if let Some((progress, view)) = archive.as_ref().filter(|_| serves()) {
                archive_sample = [LagSample {
                    service: member.name.clone(),
                    standby_region: crate::ARCHIVE_STANDBY.to_string(),
                    sampled_at,
                    primary_time: primary
                        .as_ref()
                        .ok()
                        .map(|p| time_of(p.point.primary_time_us)),
                    status: Status::Unknown,
                    rpo_exposure_us: view.archive_lag_us,
                    exposure_lower_bound: view.lag_lower_bound,
                    replay_lag_us: None,
                    byte_lag: match (&primary, progress.archived) {
                        (Ok(p), Some(a)) => Some(p.point.position.distance_after(a) as i64),
                        _ => None,
                    },
                    replay_byte_lag: None,
                    primary_lsn: primary
                        .as_ref()
                        .ok()
                        .map(|p| p.point.position.ordinal() as i64),
                    standby_durable_lsn: view.archived_lsn,
                    standby_replay_lsn: None,
                    naive_replay_delay_us: None,
                    wal_receiver: Some(view.receiver.to_string()),
                    probe_us: Some(probe_us),
                    error: view
                        .last_error
                        .clone()
                        .or_else(|| view.receiver_error.clone())
                        .filter(|_| view.archive_lag_us.is_none()),
                }];
                &archive_sample[..]
            } else {
                // Its backups say (refresh_backup_evidence); the archive's
                // lags are shown all the same.
                monitor.update_view(&member.name, |v| {
                    v.wal_archive = archive.as_ref().map(|(_, view)| view.clone())
                });
                continue;
            };
            let judged = judge_member(
                &monitor,
                member,
                Measured {
                    samples: measured,
                    wal_archive: archive.as_ref().map(|(_, view)| view.clone()),
                },
                clock,
                cfg.breach_grace,
                sampled_at,
                primary.as_ref().err(),
            );
            monitor
                .counters()
                .samples
                .fetch_add(judged.len() as u64, Ordering::Relaxed);
            for s in judged {
                if tx.send(s).await.is_err() {
                    return;
                }
            }
        }
    }
    if let Some(ep) = endpoints {
        ep.primary.close().await;
        for (_, s) in ep.standbys {
            s.close().await;
        }
    }
}

/// What one tick measured for a member.
struct Measured<'a> {
    /// Its standbys' samples (a cold service's: its archive's).
    samples: &'a [LagSample],
    /// Its WAL archive's lags, shown beside them.
    wal_archive: Option<WalArchiveView>,
}

/// One member's view of the cluster's samples: the service stands by its
/// best standby (where a failover would go; a cold service's: its WAL
/// archive), judged on its own target.
/// Updates the member's live view and returns its samples for the store.
fn judge_member(
    monitor: &Monitor,
    member: &Service,
    measured: Measured<'_>,
    clock: &mut BreachClock,
    grace: Duration,
    sampled_at: DateTime<Utc>,
    primary_error: Option<&String>,
) -> Vec<LagSample> {
    let Measured {
        samples: measured,
        wal_archive,
    } = measured;
    let mut samples: Vec<LagSample> = measured
        .iter()
        .map(|s| LagSample {
            service: member.name.clone(),
            ..s.clone()
        })
        .collect();
    let best = samples
        .iter()
        .filter(|s| s.rpo_exposure_us.is_some())
        .min_by_key(|s| s.rpo_exposure_us)
        .cloned();
    let as_duration = |us: Option<i64>| us.map(|us| Duration::from_micros(us.max(0) as u64));
    let status = clock.judge(
        as_duration(best.as_ref().and_then(|b| b.rpo_exposure_us)),
        member.targets.rpo,
        grace,
        sampled_at,
    );
    for s in samples.iter_mut() {
        s.status = if best
            .as_ref()
            .is_some_and(|b| b.standby_region == s.standby_region)
        {
            status
        } else {
            // Another standby: judged on the target alone, without the grace.
            BreachClock::default().judge(
                as_duration(s.rpo_exposure_us),
                member.targets.rpo,
                Duration::MAX,
                sampled_at,
            )
        };
    }
    let error = match &best {
        Some(_) => None,
        None => samples
            .iter()
            .find_map(|s| s.error.clone())
            .or_else(|| primary_error.cloned()),
    };
    monitor.update_view(&member.name, |v| {
        v.status = status;
        v.rpo_exposure_us = best.as_ref().and_then(|b| b.rpo_exposure_us);
        v.exposure_lower_bound = best.as_ref().is_some_and(|b| b.exposure_lower_bound);
        v.best_standby = best
            .as_ref()
            .map(|b| b.standby_region.clone())
            .or(v.best_standby.take());
        v.sampled_at = Some(sampled_at);
        v.primary_time = best.as_ref().and_then(|b| b.primary_time);
        v.error = error;
        v.above_target_since = clock.above_since();
        v.standbys = samples.clone();
        // In the same update: a reader never sees one tick's exposure
        // beside another tick's archive lag.
        v.wal_archive = wal_archive;
    });
    samples
}

/// A stable fraction in [0, 1) for a name.
fn spread(name: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// The archive's lags: its positions placed on the heartbeat map against
/// the primary's reading of this tick (none when the primary could not be
/// read: then the lags are unknown, not zero).
fn archive_view(
    map: &HeartbeatMap,
    progress: &ArchiveProgress,
    primary: Option<&PrimaryPosition>,
    sampled_at: DateTime<Utc>,
) -> WalArchiveView {
    let lag = |at: Option<Position>| {
        let (p, at) = (primary?, at?);
        Some(map.exposure(at, p.point))
    };
    let received = lag(progress.received);
    let archived = lag(progress.archived);
    WalArchiveView {
        source: progress.source.clone(),
        receiver: progress.receiver,
        receiver_error: progress.receiver_error.clone(),
        receive_lag_us: received.map(|e| e.us),
        archive_lag_us: archived.map(|e| e.us),
        lag_lower_bound: received.is_some_and(|e| e.lower_bound)
            || archived.is_some_and(|e| e.lower_bound),
        received_lsn: progress.received.map(|p| p.ordinal() as i64),
        archived_lsn: progress.archived.map(|p| p.ordinal() as i64),
        last_error: progress.last_error.clone(),
        sampled_at: Some(sampled_at),
        restorable_from: None,
        restorable_from_backup: None,
        restorable_to: None,
    }
}
