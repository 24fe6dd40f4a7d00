//! Moving WAL between a receiver's spool and the archive: packing one WAL
//! file the way base backups are packed (zstd with its content checksum,
//! sealed under the backup key, SHA-256 of the stored bytes), reading it
//! back intact, and one shipping pass over the directory `pg_receivewal`
//! writes.
//!
//! The spool is what `pg_receivewal --synchronous` leaves: finished
//! segments (`000000010000000000000003`), the one it is writing
//! (`…04.partial`, padded with zeros to its full size), history files, and
//! after a timeline switch the old timeline's last segment, which stays
//! `.partial` for good. A pass
//! - ships every finished segment after reading its records whole (a
//!   segment that is not is an error naming it, and is not shipped);
//! - ships history files, and an old timeline's `.partial` up to its last
//!   whole record;
//! - ships the segment being written up to its last whole record, when
//!   that has grown (the caller says how often: a partial copy costs a
//!   write every time);
//! - removes shipped finished files but the newest: `pg_receivewal`
//!   resumes after the newest segment it finds, so the spool must never
//!   be emptied of it.

use std::path::{Path, PathBuf};

use drctl_pg::wal::{scan_segment, Segment, SegmentScan, SegmentSize, TimelineId};
use drctl_pg::Lsn;
use sha2::{Digest, Sha256};

use crate::archive::{wal_prefix, ArchiveListing, ArchivedFile};
use crate::crypto::{Opener, Sealer};
use crate::{BackupError, BackupKey, ObjectStore, SealedObject};

/// Where a service's WAL is archived and how it is packed.
#[derive(Clone, Debug)]
pub struct WalArchive {
    pub store: ObjectStore,
    pub service: String,
    pub size: SegmentSize,
    /// The backup key; `None`: WAL is stored compressed but not sealed.
    pub key: Option<BackupKey>,
    /// zstd level.
    pub level: i32,
}

/// One WAL file as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWal {
    pub file: ArchivedFile,
    /// Relative to the store.
    pub key: String,
    pub stored_size: u64,
    /// Of the stored bytes, lower-case hex.
    pub sha256: String,
    /// WAL bytes before packing.
    pub raw_len: u64,
}

impl WalArchive {
    /// The object key of `file`, relative to the store.
    pub fn object_key(&self, file: &ArchivedFile) -> String {
        format!("{}{}", wal_prefix(&self.service), file.file_name(self.size))
    }

    /// Each object is sealed as itself: bytes of one segment never open
    /// as another's, nor as another service's.
    fn sealed(&self, file: &ArchivedFile) -> SealedObject {
        SealedObject::new(&format!("{}/wal", self.service), &file.file_name(self.size))
    }

    /// zstd (with its checksum) then sealed; returns the stored bytes and
    /// their SHA-256. CPU work: callers run it off the async threads.
    pub fn pack(&self, file: &ArchivedFile, raw: &[u8]) -> Result<(Vec<u8>, String), BackupError> {
        let io = |e: std::io::Error| BackupError::Io {
            what: format!("packing {}", self.object_key(file)),
            source: e,
        };
        let sealer = Sealer::new(Vec::new(), self.key.as_ref(), &self.sealed(file)).map_err(io)?;
        let mut encoder = zstd::stream::write::Encoder::new(sealer, self.level).map_err(io)?;
        encoder.include_checksum(true).map_err(io)?;
        std::io::Write::write_all(&mut encoder, raw).map_err(io)?;
        let stored = encoder.finish().map_err(io)?.finish().map_err(io)?;
        let sha256 = hex::encode(Sha256::digest(&stored));
        Ok((stored, sha256))
    }

    /// Opens and decompresses stored bytes; damage, a wrong key or an
    /// object passed off under another name fail here.
    pub fn unpack(&self, file: &ArchivedFile, stored: &[u8]) -> Result<Vec<u8>, BackupError> {
        let opened = Opener::new(stored, self.key.as_ref(), &self.sealed(file));
        let mut out = Vec::new();
        opened
            .and_then(zstd::stream::read::Decoder::new)
            .and_then(|mut d| std::io::Read::read_to_end(&mut d, &mut out))
            .map_err(|e| BackupError::Io {
                what: format!("reading archived WAL {}", self.object_key(file)),
                source: e,
            })?;
        Ok(out)
    }

    /// Packs and stores one WAL file.
    pub async fn put(&self, file: ArchivedFile, raw: Vec<u8>) -> Result<StoredWal, BackupError> {
        let this = self.clone();
        let raw_len = raw.len() as u64;
        let (stored, sha256) = tokio::task::spawn_blocking(move || this.pack(&file, &raw))
            .await
            .map_err(|e| BackupError::ObjectStore {
                what: "packing WAL".into(),
                reason: e.to_string(),
            })??;
        let key = self.object_key(&file);
        let stored_size = stored.len() as u64;
        // A partial copy is superseded within seconds by a longer one or
        // the whole segment: locking it would keep every copy for the
        // whole retention time. Whole segments and histories are locked.
        match file {
            ArchivedFile::Partial { .. } => self.store.put_unlocked(&key, stored).await?,
            _ => self.store.put(&key, stored).await?,
        }
        Ok(StoredWal {
            file,
            key,
            stored_size,
            sha256,
            raw_len,
        })
    }

    /// Reads one archived file back: the WAL bytes as they were shipped.
    pub async fn fetch(&self, file: ArchivedFile) -> Result<Vec<u8>, BackupError> {
        let stored = self.store.get(&self.object_key(&file)).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.unpack(&file, &stored))
            .await
            .map_err(|e| BackupError::ObjectStore {
                what: "reading WAL".into(),
                reason: e.to_string(),
            })?
    }

    /// Deletes the partial copies a longer copy or the whole segment
    /// supersedes (see [`crate::archive::prunable`]); returns how many.
    /// Never anything else: the WAL's own retention follows the base
    /// backups'.
    pub async fn prune_superseded(&self) -> Result<usize, BackupError> {
        let listing = self.listing().await?;
        let superseded: Vec<_> = crate::archive::prunable(&listing, Lsn(0), self.size)
            .into_iter()
            .filter(|info| {
                listing
                    .objects
                    .iter()
                    .any(|(f, o)| o.key == info.key && matches!(f, ArchivedFile::Partial { .. }))
            })
            .collect();
        for info in &superseded {
            self.store.delete(&info.key).await?;
        }
        Ok(superseded.len())
    }

    /// What the archive holds now.
    pub async fn listing(&self) -> Result<ArchiveListing, BackupError> {
        let listed = self.store.list(&wal_prefix(&self.service)).await?;
        Ok(ArchiveListing::read(&self.service, &listed, self.size))
    }
}

/// What [`stage_wal`] staged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    pub segments: usize,
    /// WAL bytes staged (partial copies counted as stored, before padding).
    pub bytes: u64,
    /// Every byte from the start through here is staged.
    pub through: drctl_pg::Lsn,
    /// The newest commit staged, microseconds since the Unix epoch on the
    /// primary's clock: no restore reaches past it.
    pub newest_commit_us: Option<i64>,
}

/// The archive objects a recovery along `history` reads from `from` on (the
/// unbroken run, see [`drctl_pg::wal::continuity`]), in WAL order, then the
/// target timeline's history file; and the run itself.
fn run_from(
    listing: &ArchiveListing,
    history: &drctl_pg::wal::TimelineHistory,
    from: drctl_pg::Lsn,
    size: SegmentSize,
) -> (drctl_pg::wal::Continuity, Vec<ArchivedFile>) {
    use drctl_pg::wal::Held;
    let run = drctl_pg::wal::continuity(history, from, &listing.segments, size);
    let mut files = Vec::new();
    let mut number = from.0 / size.bytes();
    while Lsn(number * size.bytes()) < run.through {
        let segment = history.segment(number, size);
        match listing.segments.get(&segment) {
            Some(Held::Complete) => files.push(ArchivedFile::Segment(segment)),
            Some(Held::UpTo(end)) => files.push(ArchivedFile::Partial {
                segment,
                len: end.0 - segment.start(size).0,
            }),
            None => break,
        }
        number += 1;
    }
    if history.timeline != TimelineId::FIRST {
        files.push(ArchivedFile::History(history.timeline));
    }
    (run, files)
}

/// Runs `each` over `files`, `fetches` at a time; the results in the
/// order of `files`.
async fn in_parallel<T, F, Fut>(
    files: &[ArchivedFile],
    fetches: usize,
    each: F,
) -> Vec<Result<T, BackupError>>
where
    T: Send + 'static,
    F: Fn(ArchivedFile) -> Fut,
    Fut: std::future::Future<Output = Result<T, BackupError>> + Send + 'static,
{
    let mut results: Vec<Option<Result<T, BackupError>>> = files.iter().map(|_| None).collect();
    let mut pending = files.iter().copied().enumerate();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < fetches.max(1) {
            let Some((i, file)) = pending.next() else {
                break;
            };
            let fut = each(file);
            running.spawn(async move { (i, fut.await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok((i, result)) => results[i] = Some(result),
            Err(e) => {
                return vec![Err(BackupError::ObjectStore {
                    what: "reading archived WAL".into(),
                    reason: e.to_string(),
                })]
            }
        }
    }
    results.into_iter().flatten().collect()
}

/// Fetches into `dir` the WAL a recovery along `history` reads from `from`
/// on: every segment of the unbroken run the archive holds, named as
/// PostgreSQL names them, each read back intact ([`read_checked`]), the
/// last partial copy padded with zeros to a segment's size, and the target
/// timeline's history file. `fetches` objects are read at once. A hole in
/// the archive, or an object that does not read back intact, fails naming
/// it.
pub async fn stage_wal(
    archive: &WalArchive,
    listing: &ArchiveListing,
    history: &drctl_pg::wal::TimelineHistory,
    from: drctl_pg::Lsn,
    dir: &Path,
    fetches: usize,
) -> Result<Staged, BackupError> {
    let size = archive.size;
    let (run, files) = run_from(listing, history, from, size);
    if run.hole {
        return Err(hole(archive, &run, from));
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| BackupError::Io {
            what: format!("creating {}", dir.display()),
            source: e,
        })?;
    let results = in_parallel(&files, fetches, |file| {
        let archive = archive.clone();
        let dir = dir.to_path_buf();
        async move { stage_one(&archive, file, &dir).await }
    })
    .await;
    let mut staged = Staged {
        segments: 0,
        bytes: 0,
        through: run.through,
        newest_commit_us: None,
    };
    for result in results {
        if let Some((bytes, newest)) = result? {
            staged.segments += 1;
            staged.bytes += bytes;
            staged.newest_commit_us = staged.newest_commit_us.max(newest);
        }
    }
    Ok(staged)
}

fn hole(archive: &WalArchive, run: &drctl_pg::wal::Continuity, from: Lsn) -> BackupError {
    BackupError::Manifest {
        key: archive.object_key(&ArchivedFile::Segment(run.stopped_at)),
        reason: format!(
            "missing: the archive holds later WAL, so this is a hole; WAL from {from} is unbroken only through {}",
            run.through
        ),
    }
}

/// What reading back every object of the archive's unbroken run says
/// ([`check_archive`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveCheck {
    pub from: Lsn,
    /// The unbroken run ends here (by the listing).
    pub through: Lsn,
    /// The object of the first missing segment, when later ones exist.
    pub hole: Option<String>,
    /// The first object in WAL order that does not read back intact, and
    /// why: recovery cannot pass it.
    pub damaged: Option<(String, String)>,
    /// Segments read back intact (whole or partial copies).
    pub segments: usize,
    /// The newest commit the intact run holds, microseconds since the
    /// Unix epoch on the primary's clock.
    pub newest_commit_us: Option<i64>,
}

impl ArchiveCheck {
    /// Whether a restore can use all of the run.
    pub fn intact(&self) -> bool {
        self.hole.is_none() && self.damaged.is_none()
    }
}

/// Reads back every object of the unbroken run along `history` from
/// `from` (the oldest retained base backup's start) the way a restore
/// does, and says whether all of it is usable and which commit it ends
/// with. A damaged object ends the usable run there.
pub async fn check_archive(
    archive: &WalArchive,
    listing: &ArchiveListing,
    history: &drctl_pg::wal::TimelineHistory,
    from: Lsn,
    fetches: usize,
) -> Result<ArchiveCheck, BackupError> {
    let size = archive.size;
    let (run, files) = run_from(listing, history, from, size);
    let results = in_parallel(&files, fetches, |file| {
        let archive = archive.clone();
        async move {
            read_checked(&archive, file)
                .await
                .map(|(_, scan)| scan.and_then(|s| s.last_commit().map(|c| c.at_us)))
        }
    })
    .await;
    let mut check = ArchiveCheck {
        from,
        through: run.through,
        hole: run
            .hole
            .then(|| archive.object_key(&ArchivedFile::Segment(run.stopped_at))),
        damaged: None,
        segments: 0,
        newest_commit_us: None,
    };
    for (file, result) in files.iter().zip(results) {
        match result {
            Ok(newest) => {
                if !matches!(file, ArchivedFile::History(_)) {
                    check.segments += 1;
                }
                check.newest_commit_us = check.newest_commit_us.max(newest);
            }
            Err(e) => {
                check.damaged = Some((archive.object_key(file), e.to_string()));
                if let Some(start) = match file {
                    ArchivedFile::Segment(s) | ArchivedFile::Partial { segment: s, .. } => {
                        Some(s.start(size))
                    }
                    ArchivedFile::History(_) => None,
                } {
                    check.through = check.through.min(start);
                }
                break;
            }
        }
    }
    Ok(check)
}

/// Fetches one archived file and checks it is what its name says: it
/// unpacks (checksum, seal), and a segment's records are whole WAL of that
/// segment up to its end (a partial copy: up to its length). Returns the
/// bytes and, for a segment, its records.
async fn read_checked(
    archive: &WalArchive,
    file: ArchivedFile,
) -> Result<(Vec<u8>, Option<SegmentScan>), BackupError> {
    let size = archive.size;
    let raw = archive.fetch(file).await?;
    let segment = match file {
        ArchivedFile::History(t) => {
            let text = String::from_utf8_lossy(&raw);
            drctl_pg::wal::TimelineHistory::parse(t, &text).map_err(|e| BackupError::Manifest {
                key: archive.object_key(&file),
                reason: e.to_string(),
            })?;
            return Ok((raw, None));
        }
        ArchivedFile::Segment(segment) | ArchivedFile::Partial { segment, .. } => segment,
    };
    let len = raw.len() as u64;
    let not_wal = |reason: String| BackupError::Manifest {
        key: archive.object_key(&file),
        reason,
    };
    let (raw, scan) = scan(raw, segment, size)
        .await
        .map_err(|e| not_wal(format!("not WAL of this segment: {e}")))?;
    let intact = match file {
        ArchivedFile::Segment(_) => scan.is_whole() && len == size.bytes(),
        _ => file.end(size).is_some_and(|end| scan.valid_end >= end),
    };
    if !intact {
        return Err(not_wal(format!(
            "not what its name says ({len} bytes, records end: {:?}); restore cannot use it",
            scan.end
        )));
    }
    Ok((raw, Some(scan)))
}

/// Fetches, checks and writes one archived file; the WAL bytes it held
/// and its newest commit (`None` for a history file).
async fn stage_one(
    archive: &WalArchive,
    file: ArchivedFile,
    dir: &Path,
) -> Result<Option<(u64, Option<i64>)>, BackupError> {
    let size = archive.size;
    let (mut raw, scan) = read_checked(archive, file).await?;
    let (name, bytes) = match file {
        ArchivedFile::History(t) => (t.history_file_name(), None),
        ArchivedFile::Segment(segment) | ArchivedFile::Partial { segment, .. } => {
            let len = raw.len() as u64;
            let newest = scan.and_then(|s| s.last_commit().map(|c| c.at_us));
            raw.resize(size.bytes() as usize, 0);
            (segment.file_name(size), Some((len, newest)))
        }
    };
    let path = dir.join(name);
    tokio::fs::write(&path, &raw)
        .await
        .map_err(|e| BackupError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })?;
    Ok(bytes)
}

/// One file of a receiver's spool, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SpoolFile {
    Finished(Segment),
    Partial(Segment),
    History(TimelineId),
}

impl SpoolFile {
    fn parse(name: &str, size: SegmentSize) -> Option<SpoolFile> {
        if let Ok(t) = TimelineId::from_history_file_name(name) {
            return Some(SpoolFile::History(t));
        }
        match name.strip_suffix(".partial") {
            Some(stem) => Segment::from_file_name(stem, size)
                .ok()
                .map(SpoolFile::Partial),
            None => Segment::from_file_name(name, size)
                .ok()
                .map(SpoolFile::Finished),
        }
    }
}

/// What one pass shipped and what it found.
#[derive(Clone, Debug, Default)]
pub struct ShipReport {
    pub shipped: Vec<StoredWal>,
    /// The segment being written, read up to its last whole record.
    pub writing: Option<SegmentScan>,
    /// Spool files removed after shipping.
    pub removed: Vec<PathBuf>,
}

/// Remembers between passes what is already archived, so a pass ships only
/// what is new. Starts from the archive's listing.
#[derive(Clone, Debug, Default)]
pub struct Shipped {
    listing: ArchiveListing,
    /// The segment being written as last read, and when the receiver had
    /// last written it then: read again only once it has changed (a pass
    /// a second over an idle primary reads nothing).
    writing: Option<(std::time::SystemTime, SegmentScan)>,
}

impl Shipped {
    pub fn new(listing: ArchiveListing) -> Shipped {
        Shipped {
            listing,
            writing: None,
        }
    }

    fn has(&self, file: &ArchivedFile, size: SegmentSize) -> bool {
        use drctl_pg::wal::Held;
        match file {
            ArchivedFile::History(t) => self.listing.histories.contains(t),
            ArchivedFile::Segment(s) => self.listing.segments.get(s) == Some(&Held::Complete),
            ArchivedFile::Partial { segment, .. } => match self.listing.segments.get(segment) {
                Some(Held::Complete) => true,
                Some(Held::UpTo(end)) => file.end(size).is_some_and(|e| e <= *end),
                None => false,
            },
        }
    }

    fn record(&mut self, file: ArchivedFile, size: SegmentSize) {
        use drctl_pg::wal::Held;
        match file {
            ArchivedFile::History(t) => {
                self.listing.histories.insert(t);
            }
            ArchivedFile::Segment(s) => {
                self.listing.segments.insert(s, Held::Complete);
            }
            ArchivedFile::Partial { segment, .. } => {
                let end = file.end(size).expect("a partial copy ends");
                self.listing.segments.insert(segment, Held::UpTo(end));
            }
        }
    }

    /// What is archived as far as this shipper knows.
    pub fn listing(&self) -> &ArchiveListing {
        &self.listing
    }
}

/// One shipping pass over `spool` (see the module doc). `ship_writing`:
/// whether to ship the segment being written this time.
pub async fn ship_spool(
    archive: &WalArchive,
    spool: &Path,
    shipped: &mut Shipped,
    ship_writing: bool,
) -> Result<ShipReport, BackupError> {
    let size = archive.size;
    let mut files = Vec::new();
    let mut entries = tokio::fs::read_dir(spool)
        .await
        .map_err(|e| BackupError::Io {
            what: format!("listing the WAL spool {}", spool.display()),
            source: e,
        })?;
    while let Some(entry) = entries.next_entry().await.map_err(|e| BackupError::Io {
        what: format!("listing the WAL spool {}", spool.display()),
        source: e,
    })? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(file) = SpoolFile::parse(&name, size) {
            files.push((file, entry.path()));
        }
    }
    // The segment being written: the newest partial, if nothing finished
    // is newer.
    let newest = files
        .iter()
        .filter_map(|(f, _)| match f {
            SpoolFile::Finished(s) | SpoolFile::Partial(s) => Some(*s),
            SpoolFile::History(_) => None,
        })
        .max();
    let newest_finished = files
        .iter()
        .filter_map(|(f, _)| match f {
            SpoolFile::Finished(s) => Some(*s),
            _ => None,
        })
        .max();
    let mut report = ShipReport::default();
    // Histories first: a segment of a timeline is never archived before
    // the file that says where the timeline came from.
    files.sort_by_key(|(f, _)| match f {
        SpoolFile::History(t) => (
            0,
            Segment {
                number: 0,
                timeline: *t,
            },
        ),
        SpoolFile::Finished(s) | SpoolFile::Partial(s) => (1, *s),
    });
    for (file, path) in files {
        let read = || async {
            tokio::fs::read(&path).await.map_err(|e| BackupError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            })
        };
        match file {
            SpoolFile::History(t) => {
                let file = ArchivedFile::History(t);
                if !shipped.has(&file, size) {
                    report.shipped.push(archive.put(file, read().await?).await?);
                    shipped.record(file, size);
                }
            }
            SpoolFile::Finished(segment) => {
                let file = ArchivedFile::Segment(segment);
                if !shipped.has(&file, size) {
                    let (raw, scan) = scan(read().await?, segment, size).await?;
                    if !scan.is_whole() {
                        return Err(BackupError::Manifest {
                            key: path.display().to_string(),
                            reason: format!(
                                "the received segment is not whole WAL: {:?}; not archived",
                                scan.end
                            ),
                        });
                    }
                    report.shipped.push(archive.put(file, raw).await?);
                    shipped.record(file, size);
                }
                if Some(segment) != newest_finished {
                    remove(&path, &mut report).await?;
                }
            }
            SpoolFile::Partial(segment) => {
                let writing = Some(segment) == newest;
                if writing && !ship_writing {
                    continue;
                }
                let modified = match writing {
                    true => tokio::fs::metadata(&path)
                        .await
                        .and_then(|m| m.modified())
                        .ok(),
                    false => None,
                };
                // A file time is coarse (a write just after a read can
                // leave it unchanged): a read is reused only when the file
                // had not been written for a second before it.
                let settled = |at: std::time::SystemTime| {
                    at.elapsed()
                        .is_ok_and(|age| age > std::time::Duration::from_secs(1))
                };
                if let (Some(at), Some((seen_at, seen))) = (modified, &shipped.writing) {
                    if *seen_at == at && seen.segment == segment && settled(at) {
                        report.writing = Some(seen.clone());
                        continue;
                    }
                }
                let (mut raw, scan) = scan(read().await?, segment, size).await?;
                let len = scan.valid_end.0 - segment.start(size).0;
                raw.truncate(len as usize);
                let file = ArchivedFile::Partial { segment, len };
                if len > 0 && !shipped.has(&file, size) {
                    report.shipped.push(archive.put(file, raw).await?);
                    shipped.record(file, size);
                }
                if writing {
                    // Kept only when the file had settled before it was
                    // read: a write since then has a later file time.
                    if let Some(at) = modified.filter(|at| settled(*at)) {
                        shipped.writing = Some((at, scan.clone()));
                    }
                    report.writing = Some(scan);
                } else if len == 0 || shipped.has(&file, size) {
                    // An old timeline's last segment: shipped, not needed by
                    // the receiver (it resumes on the newer timeline).
                    remove(&path, &mut report).await?;
                }
            }
        }
    }
    Ok(report)
}

/// Reads the records of a spool file off the async threads; hands the
/// bytes back with what they hold.
async fn scan(
    raw: Vec<u8>,
    segment: Segment,
    size: SegmentSize,
) -> Result<(Vec<u8>, SegmentScan), BackupError> {
    let (raw, scanned) = tokio::task::spawn_blocking(move || {
        let scanned = scan_segment(&raw, segment, size);
        (raw, scanned)
    })
    .await
    .map_err(|e| BackupError::ObjectStore {
        what: "reading WAL records".into(),
        reason: e.to_string(),
    })?;
    let scanned = scanned.map_err(|e| BackupError::Manifest {
        key: segment.file_name(size),
        reason: e.to_string(),
    })?;
    Ok((raw, scanned))
}

async fn remove(path: &Path, report: &mut ShipReport) -> Result<(), BackupError> {
    tokio::fs::remove_file(path)
        .await
        .map_err(|e| BackupError::Io {
            what: format!("removing shipped {}", path.display()),
            source: e,
        })?;
    report.removed.push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn archive(key: Option<BackupKey>) -> (WalArchive, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::local(dir.path()).await.unwrap();
        let archive = WalArchive {
            store,
            service: "orders".into(),
            size: SegmentSize::DEFAULT,
            key,
            level: 1,
        };
        (archive, dir)
    }

    fn segment(n: u64) -> ArchivedFile {
        ArchivedFile::Segment(Segment {
            number: n,
            timeline: TimelineId(1),
        })
    }

    #[tokio::test]
    async fn superseded_partial_copies_are_pruned_and_nothing_else() {
        let (archive, _dir) = archive(None).await;
        let partial = |n: u64, len: u64| ArchivedFile::Partial {
            segment: Segment {
                number: n,
                timeline: TimelineId(1),
            },
            len,
        };
        for file in [
            segment(3),
            partial(3, 0x100),
            partial(4, 0x100),
            partial(4, 0x200),
            ArchivedFile::History(TimelineId(2)),
        ] {
            archive.put(file, vec![1; 16]).await.unwrap();
        }
        assert_eq!(archive.prune_superseded().await.unwrap(), 2);
        let mut left: Vec<String> = archive
            .listing()
            .await
            .unwrap()
            .objects
            .into_iter()
            .map(|(_, o)| o.key)
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "orders/wal/000000010000000000000003.zst",
                "orders/wal/000000010000000000000004.00000200.partial.zst",
                "orders/wal/00000002.history.zst",
            ]
        );
        assert_eq!(archive.prune_superseded().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn wal_round_trips_sealed_and_plain_and_damage_is_caught() {
        let key = BackupKey::from_hex(&"ab".repeat(32)).unwrap();
        for key in [None, Some(key)] {
            let sealed = key.is_some();
            let (archive, dir) = archive(key).await;
            let raw: Vec<u8> = (0..100_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect();
            let stored = archive.put(segment(3), raw.clone()).await.unwrap();
            assert_eq!(stored.key, "orders/wal/000000010000000000000003.zst");
            assert_eq!(archive.fetch(segment(3)).await.unwrap(), raw);
            let listing = archive.listing().await.unwrap();
            assert_eq!(listing.segments.len(), 1);

            // One flipped byte in the stored object: refused, naming it.
            let path = dir.path().join(&stored.key);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
            let err = archive.fetch(segment(3)).await.unwrap_err().to_string();
            assert!(
                err.contains("000000010000000000000003"),
                "sealed {sealed}: {err}"
            );

            // Another segment's bytes under this name: a sealed archive
            // refuses them (the name is bound into every sealed block).
            let other = archive.put(segment(4), raw.clone()).await.unwrap();
            std::fs::copy(dir.path().join(&other.key), &path).unwrap();
            assert_eq!(archive.fetch(segment(3)).await.is_err(), sealed);
        }
    }
}
