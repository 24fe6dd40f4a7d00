//! The WAL archiver of one service: keeps the engine's WAL receiver
//! running into a spool directory (started again, with backoff, whenever it
//! exits: a lost connection, a failover, a restart of the server), ships
//! the spool to the archive every pass ([`ship_spool`]), and publishes
//! where it stands for the API and the exposure figures.
//!
//! The receiver comes from the datastore seam
//! ([`drctl_node::Datastore::wal_receiver_command`]); it reads from
//! whatever server the connection string reaches, so pointing the string
//! at the service's DNS name makes the archive follow a failover (the
//! receiver follows the new primary's timeline and fetches its history
//! file). The replication slot must exist on that server (the archiver
//! creates none: that is the caller's, before the first base backup, so
//! the archive starts no later than the oldest backup it serves).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use drctl_node::{Dsn, Engine};
use drctl_pg::wal::Segment;
use drctl_pg::Lsn;
use tokio::sync::watch;

use crate::wal_archive::{ship_spool, Shipped, WalArchive};
use crate::BackupError;

/// What one archiver runs.
#[derive(Clone, Debug)]
pub struct ArchiverSpec {
    pub service: String,
    /// Reaches the server to stream from, with replication rights; never
    /// logged.
    pub dsn: String,
    /// The replication slot on that server.
    pub slot: String,
    /// Where the receiver writes: on a disk of its own, outside the
    /// primary's region.
    pub spool: PathBuf,
    /// The engine's client programs.
    pub tool_dir: PathBuf,
    pub archive: WalArchive,
    /// How often the spool is shipped.
    pub pass_every: Duration,
    /// How often the segment being written is shipped (each time is one
    /// object written) when it has grown.
    pub partial_every: Duration,
}

impl ArchiverSpec {
    /// `drctl_archive_<service>`, as `pg_stat_replication` names the
    /// receiver.
    pub fn application_name(&self) -> String {
        drctl_node::archive_application_name(&self.service)
    }
}

/// The receiver's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReceiverState {
    /// Not started yet.
    Starting,
    Running {
        pid: u32,
    },
    /// Exited; started again after `retry_in_ms`.
    Waiting {
        exits: u32,
        last_exit: String,
        retry_in_ms: u64,
    },
    Stopped,
}

/// Where the archiver stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ArchiverStatus {
    pub receiver: ReceiverState,
    /// Shipping passes done.
    pub passes: u64,
    /// The segment being written and how far its whole records reach in
    /// the spool (durable on the receiver's disk).
    pub receiving: Option<(String, Lsn)>,
    /// How far the archive holds WAL of the newest archived timeline, as
    /// this archiver knows it (durable in the object store).
    pub archived: Option<Lsn>,
    /// Where the run of archived WAL that ends there begins, by the
    /// objects' names ([`crate::archive::ArchiveListing::unbroken_from`]).
    pub unbroken_from: Option<Lsn>,
    /// The server the receiver streams from (`service/region`).
    pub source: Option<String>,
    /// Objects written to the archive so far.
    pub shipped: u64,
    /// The last pass's failure, cleared by the next good pass.
    pub last_error: Option<String>,
}

impl Default for ArchiverStatus {
    fn default() -> Self {
        ArchiverStatus {
            receiver: ReceiverState::Starting,
            passes: 0,
            receiving: None,
            archived: None,
            unbroken_from: None,
            source: None,
            shipped: 0,
            last_error: None,
        }
    }
}

/// Every this many passes the archiver deletes the partial copies that
/// longer ones or whole segments supersede.
const PRUNE_EVERY_PASSES: u64 = 30;

/// Backoff after the receiver exits: 1 s, doubling, at most 30 s; reset
/// once it has run for a minute.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const RAN_LONG_ENOUGH: Duration = Duration::from_secs(60);

/// Runs the archiver until `stop` turns true; ships once more on the way
/// out. Errors of a pass are published, not returned: the archiver keeps
/// going (a full disk or an unreachable bucket heals).
pub async fn run_archiver(
    spec: ArchiverSpec,
    status: watch::Sender<ArchiverStatus>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BackupError> {
    tokio::fs::create_dir_all(&spec.spool)
        .await
        .map_err(|e| BackupError::Io {
            what: format!("creating the WAL spool {}", spec.spool.display()),
            source: e,
        })?;
    let mut shipped = Shipped::new(spec.archive.listing().await?);
    let (archived, unbroken_from) = reach(&shipped, &spec);
    status.send_modify(|s| (s.archived, s.unbroken_from) = (archived, unbroken_from));
    let mut receiver: Option<Receiver> = None;
    let mut started_at = tokio::time::Instant::now();
    let mut backoff = BACKOFF_FIRST;
    let mut exits = 0u32;
    let mut retry_at = tokio::time::Instant::now();
    let mut last_partial = tokio::time::Instant::now() - spec.partial_every;
    let mut tick = tokio::time::interval(spec.pass_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The receiver: reaped when it exited, started again when due.
        if let Some(r) = receiver.as_mut() {
            if let Ok(Some(exit)) = r.child.try_wait() {
                let said = r.said.lock().map(|s| s.clone()).unwrap_or_default();
                receiver = None;
                exits += 1;
                // Streaming from a server whose history forked below what
                // the spool holds (the new primary after a failover, while
                // the spool has the old one's WAL past the fork): that WAL
                // is set aside (already shipped: the archive keeps it as
                // an abandoned branch) and the receiver starts again at
                // the fork, from where it follows the new timeline.
                if let Some((timeline, fork)) = fork_in(&said) {
                    match set_aside_past_fork(&spec, timeline, fork).await {
                        Ok(moved) if moved > 0 => {
                            tracing::warn!(service = %spec.service, timeline, %fork, moved, "the WAL spool held WAL past the server's fork; set aside, streaming from the fork");
                            backoff = BACKOFF_FIRST;
                        }
                        Ok(_) => {}
                        Err(e) => status.send_modify(|s| s.last_error = Some(e.to_string())),
                    }
                }
                // Its errors, not only its last word ("disconnected" after
                // the error that made it give up).
                let errors: Vec<&str> = said
                    .iter()
                    .map(String::as_str)
                    .filter(|l| {
                        l.contains("error:") || l.contains("DETAIL") || l.contains("detail:")
                    })
                    .collect();
                let said = if errors.is_empty() {
                    said.last().cloned().unwrap_or_default()
                } else {
                    errors.join("; ")
                };
                if started_at.elapsed() >= RAN_LONG_ENOUGH {
                    backoff = BACKOFF_FIRST;
                }
                retry_at = tokio::time::Instant::now() + backoff;
                let last_exit = if said.is_empty() {
                    exit.to_string()
                } else {
                    format!("{exit}: {said}")
                };
                tracing::warn!(service = %spec.service, %last_exit, "the WAL receiver exited; starting it again in {backoff:?}");
                status.send_modify(|s| {
                    s.receiver = ReceiverState::Waiting {
                        exits,
                        last_exit,
                        retry_in_ms: backoff.as_millis() as u64,
                    }
                });
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        if receiver.is_none() && tokio::time::Instant::now() >= retry_at && !*stop.borrow() {
            if let Err(e) = clear_unpadded(&spec).await {
                status.send_modify(|s| s.last_error = Some(e.to_string()));
            }
            match start_receiver(&spec) {
                Ok(r) => {
                    let pid = r.child.id().unwrap_or_default();
                    started_at = tokio::time::Instant::now();
                    status.send_modify(|s| s.receiver = ReceiverState::Running { pid });
                    receiver = Some(r);
                }
                Err(e) => {
                    exits += 1;
                    retry_at = tokio::time::Instant::now() + backoff;
                    status.send_modify(|s| {
                        s.receiver = ReceiverState::Waiting {
                            exits,
                            last_exit: e.to_string(),
                            retry_in_ms: backoff.as_millis() as u64,
                        }
                    });
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }

        // One shipping pass.
        let stopping = *stop.borrow();
        let ship_writing = stopping || last_partial.elapsed() >= spec.partial_every;
        match ship_spool(&spec.archive, &spec.spool, &mut shipped, ship_writing).await {
            Ok(report) => {
                if ship_writing {
                    last_partial = tokio::time::Instant::now();
                }
                status.send_modify(|s| {
                    s.passes += 1;
                    s.shipped += report.shipped.len() as u64;
                    s.last_error = None;
                    if let Some(scan) = &report.writing {
                        s.receiving = Some((segment_name(&spec, scan.segment), scan.valid_end));
                    }
                    (s.archived, s.unbroken_from) = reach(&shipped, &spec);
                });
            }
            Err(e) => {
                tracing::warn!(service = %spec.service, error = %e, "shipping WAL failed; the next pass tries again");
                status.send_modify(|s| {
                    s.passes += 1;
                    s.last_error = Some(e.to_string());
                });
            }
        }
        if status.borrow().passes.is_multiple_of(PRUNE_EVERY_PASSES) {
            match spec.archive.prune_superseded().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(service = %spec.service, n, "deleted superseded partial WAL copies")
                }
                Err(e) => status.send_modify(|s| s.last_error = Some(e.to_string())),
            }
        }
        if stopping {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
    }
    if let Some(mut r) = receiver.take() {
        let _ = r.child.kill().await;
    }
    status.send_modify(|s| s.receiver = ReceiverState::Stopped);
    Ok(())
}

/// How far the archive reaches, and from where it is unbroken.
fn reach(shipped: &Shipped, spec: &ArchiverSpec) -> (Option<Lsn>, Option<Lsn>) {
    let listing = shipped.listing();
    (
        listing.newest_end(spec.archive.size),
        listing.unbroken_from(spec.archive.size),
    )
}

fn segment_name(spec: &ArchiverSpec, segment: Segment) -> String {
    segment.file_name(spec.archive.size)
}

/// The fork PostgreSQL names when a receiver asks for WAL past it:
/// "This server's history forked from timeline 1 at 0/5000148."
fn fork_in(said: &[String]) -> Option<(u32, Lsn)> {
    if !said
        .iter()
        .any(|l| l.contains("is not in this server's history"))
    {
        return None;
    }
    said.iter().find_map(|line| {
        let rest = line.split("forked from timeline ").nth(1)?;
        let (timeline, rest) = rest.split_once(" at ")?;
        let lsn = rest.trim().trim_end_matches('.').parse().ok()?;
        Some((timeline.trim().parse().ok()?, lsn))
    })
}

/// Moves the spool's files of `timeline` that reach past `fork` into
/// `diverged/` beside them (kept for an operator; the shipper reads only
/// the spool's top level). Returns how many moved.
async fn set_aside_past_fork(
    spec: &ArchiverSpec,
    timeline: u32,
    fork: Lsn,
) -> Result<usize, BackupError> {
    let size = spec.archive.size;
    let aside = spec.spool.join("diverged");
    let io = |what: String| move |e: std::io::Error| BackupError::Io { what, source: e };
    tokio::fs::create_dir_all(&aside)
        .await
        .map_err(io(format!("creating {}", aside.display())))?;
    let mut moved = 0;
    let mut entries = tokio::fs::read_dir(&spec.spool)
        .await
        .map_err(io(format!("listing {}", spec.spool.display())))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io(format!("listing {}", spec.spool.display())))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".partial").unwrap_or(&name);
        let Ok(segment) = Segment::from_file_name(stem, size) else {
            continue;
        };
        if segment.timeline.0 == timeline && segment.end(size) > fork {
            let to = aside.join(&name);
            tokio::fs::rename(entry.path(), &to)
                .await
                .map_err(io(format!("moving {name} aside")))?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// Removes a `.partial` segment the receiver left short: it pads a new
/// segment file to its full size before writing any WAL into it, so a
/// shorter file (its disk filled while padding) holds nothing, and the
/// receiver refuses to start beside it ("has N bytes, should be 0 or …").
async fn clear_unpadded(spec: &ArchiverSpec) -> Result<(), BackupError> {
    let full = spec.archive.size.bytes();
    let io = |what: String| move |e: std::io::Error| BackupError::Io { what, source: e };
    let mut entries = match tokio::fs::read_dir(&spec.spool).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("listing {}", spec.spool.display()))(e)),
    };
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io(format!("listing {}", spec.spool.display())))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".partial") else {
            continue;
        };
        if Segment::from_file_name(stem, spec.archive.size).is_err() {
            continue;
        }
        let len = entry
            .metadata()
            .await
            .map_err(io(format!("reading {name}")))?
            .len();
        if len != 0 && len != full {
            tracing::warn!(service = %spec.service, file = %name, len, "removing a segment file the receiver left short (no WAL in it yet)");
            tokio::fs::remove_file(entry.path())
                .await
                .map_err(io(format!("removing {name}")))?;
        }
    }
    Ok(())
}

/// A running receiver.
struct Receiver {
    child: tokio::process::Child,
    /// The passfile and the like: dropped with the receiver.
    _keep: Box<dyn std::any::Any + Send>,
    /// What it wrote on stderr, the last lines (read as it goes, so a
    /// chatty receiver never blocks on a full pipe).
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn start_receiver(spec: &ArchiverSpec) -> Result<Receiver, BackupError> {
    let source = Engine::Postgres
        .connect(
            format!("{} archive", spec.service),
            &Dsn::new(spec.dsn.clone()),
            Duration::from_secs(10),
        )
        .map_err(|e| BackupError::BaseBackup(e.to_string()))?;
    let tool = source
        .wal_receiver_command(
            &spec.tool_dir,
            &spec.spool,
            &spec.slot,
            &spec.application_name(),
        )
        .map_err(|e| BackupError::BaseBackup(e.to_string()))?;
    let mut command = tokio::process::Command::from(tool.command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| BackupError::Io {
        what: format!("starting the WAL receiver of {}", spec.service),
        source: e,
    })?;
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(stderr) = child.stderr.take() {
        let said = said.clone();
        let service = spec.service.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(service = %service, "WAL receiver: {line}");
                if let Ok(mut s) = said.lock() {
                    if s.len() == 20 {
                        s.remove(0);
                    }
                    s.push(line);
                }
            }
        });
    }
    Ok(Receiver {
        child,
        _keep: tool.keep_alive,
        said,
    })
}

/// Where the supervisors publish each archiver's status as it changes
/// (the daemon hands it to the monitor, which turns positions into lags).
pub type Publish = std::sync::Arc<dyn Fn(&str, &ArchiverStatus) + Send + Sync>;

/// How often the supervisor looks for a new primary.
const PRIMARY_CHECK: Duration = Duration::from_secs(2);
/// After a failed start (no slot, no store), before trying again.
const SUPERVISOR_RETRY: Duration = Duration::from_secs(5);

/// Runs an archiver for every service whose backup policy has
/// `wal_archive`, until `stop`: on the service's current primary (the
/// store's cluster role, else the config's primary), after making sure the
/// archive's slot exists there; started again on the new primary when an
/// operation moves it (the spool carries over, and the receiver follows
/// the new timeline from where it was).
pub async fn run_archivers(
    config: std::sync::Arc<drctl_config::Config>,
    store: drctl_store::Store,
    publish: Publish,
    stop: watch::Receiver<bool>,
) {
    let mut archivers = tokio::task::JoinSet::new();
    for svc in config.services.iter() {
        if svc.backup.as_ref().is_some_and(|p| p.wal_archive.is_some()) {
            archivers.spawn(archive_service(
                config.clone(),
                store.clone(),
                svc.name.clone(),
                publish.clone(),
                stop.clone(),
            ));
        }
    }
    while archivers.join_next().await.is_some() {}
}

async fn archive_service(
    config: std::sync::Arc<drctl_config::Config>,
    store: drctl_store::Store,
    service: String,
    publish: Publish,
    mut stop: watch::Receiver<bool>,
) {
    // What was last published survives a move to another primary: the
    // archive's position stays where it is until the new archiver ships.
    let mut last = ArchiverStatus::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let primary = current_primary(&config, &store, &service).await;
        let source = format!("{service}/{primary}");
        match start_on(&config, &service, &primary).await {
            Ok(spec) => {
                tracing::info!(service = %service, region = %primary, "archiving WAL from the primary");
                let (status_tx, mut status) = watch::channel(ArchiverStatus {
                    receiver: ReceiverState::Starting,
                    source: Some(source),
                    ..last.clone()
                });
                let (halt, halted) = watch::channel(false);
                let mut task = tokio::spawn(run_archiver(spec, status_tx, halted));
                let forward = {
                    let publish = publish.clone();
                    let service = service.clone();
                    tokio::spawn(async move {
                        loop {
                            let now = status.borrow_and_update().clone();
                            publish(&service, &now);
                            if status.changed().await.is_err() {
                                return now;
                            }
                        }
                    })
                };
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(PRIMARY_CHECK) => {}
                        _ = stop.changed() => {}
                        ended = &mut task => {
                            // It stops only when told to, or when it cannot
                            // start (the store unreachable): not in a loop.
                            let why = match ended {
                                Ok(Ok(())) => "stopped".to_string(),
                                Ok(Err(e)) => e.to_string(),
                                Err(e) => e.to_string(),
                            };
                            tracing::warn!(service = %service, error = %why, "the WAL archiver ended; starting it again");
                            tokio::select! {
                                _ = tokio::time::sleep(SUPERVISOR_RETRY) => {}
                                _ = stop.changed() => {}
                            }
                            break;
                        }
                    }
                    let moved = current_primary(&config, &store, &service).await != primary;
                    if *stop.borrow() || moved {
                        let _ = halt.send(true);
                        let _ = (&mut task).await;
                        break;
                    }
                }
                if let Ok(final_status) = forward.await {
                    last = final_status;
                }
            }
            Err(e) => {
                tracing::warn!(service = %service, region = %primary, error = %e, "cannot archive WAL yet; trying again");
                last.source = Some(source);
                last.receiver = ReceiverState::Waiting {
                    exits: 0,
                    last_exit: e.to_string(),
                    retry_in_ms: SUPERVISOR_RETRY.as_millis() as u64,
                };
                publish(&service, &last);
                tokio::select! {
                    _ = tokio::time::sleep(SUPERVISOR_RETRY) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// The region holding the service's writable primary.
async fn current_primary(
    config: &drctl_config::Config,
    store: &drctl_store::Store,
    service: &str,
) -> String {
    let Some(svc) = config.service(service) else {
        return String::new();
    };
    match store.cluster_role(&svc.cluster).await {
        Ok(Some(role)) => role.primary_region,
        _ => svc.primary.clone(),
    }
}

/// The archiver's spec on `region`'s server, its slot made sure of.
async fn start_on(
    config: &drctl_config::Config,
    service: &str,
    region: &str,
) -> Result<ArchiverSpec, crate::jobs::JobError> {
    use crate::jobs::JobError;
    let svc = config
        .service(service)
        .ok_or_else(|| JobError::Config(format!("no service {service:?}")))?;
    let policy = svc
        .backup
        .as_ref()
        .ok_or_else(|| JobError::NoBackupPolicy(service.to_string()))?;
    let wal = policy
        .wal_archive
        .as_ref()
        .ok_or_else(|| JobError::Config(format!("{service} does not archive WAL")))?;
    let dsn = svc
        .postgres
        .get(region)
        .ok_or_else(|| JobError::Config(format!("{service} has no connection in {region}")))?
        .resolve()
        .map_err(|e| JobError::Config(e.to_string()))?;
    let spec = ArchiverSpec {
        service: service.to_string(),
        dsn: dsn.expose().to_string(),
        slot: String::new(),
        spool: wal.spool.clone(),
        tool_dir: drctl_pg::find_pg_client_bin()?,
        archive: crate::jobs::wal_archive_of(config, svc).await?,
        pass_every: wal.ship_interval,
        partial_every: wal.ship_interval,
    };
    let spec = ArchiverSpec {
        slot: spec.application_name(),
        ..spec
    };
    let source = Engine::Postgres
        .connect(
            format!("{service}/{region}"),
            &Dsn::new(spec.dsn.clone()),
            Duration::from_secs(10),
        )
        .map_err(|e| JobError::Config(e.to_string()))?;
    let created = source
        .ensure_archive_slot(&spec.slot)
        .await
        .map_err(|e| JobError::Config(format!("the archive's slot on {region}: {e}")));
    source.close().await;
    if created? {
        tracing::info!(service, region, slot = %spec.slot, "created the WAL archive's replication slot");
    }
    Ok(spec)
}
