//! The WAL archive against a real PostgreSQL and a real `pg_receivewal`:
//! the record reader agrees with the server on every commit (its xid and
//! its commit time from `pg_xact_commit_timestamp`), shipping passes leave
//! the archive unbroken from the first segment to the newest commit,
//! killing the receiver mid-segment leaves no gap, and a damaged object is
//! refused by name; and a restore to a point in time (a base backup, then
//! the archive's WAL staged and replayed) holds every row committed up to
//! that point and none after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drctl_backup::archive::ArchivedFile;
use drctl_backup::wal_archive::{check_archive, ship_spool, stage_wal, Shipped, WalArchive};
use drctl_backup::{
    new_backup_id, restore_backup, run_backup, BackupRequest, Expected, ObjectStore,
};
use drctl_pg::os::free_port;
use drctl_pg::wal::{
    continuity, scan_segment, Held, Segment, SegmentSize, TimelineHistory, TimelineId,
};
use drctl_pg::{find_pg_bin, find_pg_client_bin, Lsn, PgCluster, RecoveryStop};
use sqlx::{Connection, PgConnection};

const SLOT: &str = "drctl_archive";

/// The DR region's connection of a service whose DR server does not exist
/// (a cold service's: a recovery would create it).
const NO_DR_SERVER: &str = "dsn = \"postgres://app@127.0.0.1:9/orders?connect_timeout=1\"";

struct Receiver {
    child: Child,
}

impl Receiver {
    /// `pg_receivewal` as drctl runs it: a slot, an fsync after every
    /// write, no reconnect loop (the supervisor restarts it).
    fn start(pg: &PgCluster, spool: &Path) -> Receiver {
        let bin = find_pg_client_bin()
            .expect("PostgreSQL client binaries (apt-get install postgresql-client)");
        let child = Command::new(bin.join("pg_receivewal"))
            .arg("-D")
            .arg(spool)
            .args([
                "--slot",
                SLOT,
                "--synchronous",
                "--no-loop",
                "--no-password",
                "-d",
            ])
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres application_name=drctl_archive",
                pg.port
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pg_receivewal");
        Receiver { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Committed {
    id: i64,
    xid: u32,
    /// `pg_xact_commit_timestamp`, µs since the Unix epoch.
    at_us: i64,
    /// `pg_current_wal_lsn()` after the commit: the commit record ends
    /// before it.
    after: Lsn,
}

async fn connect(pg: &PgCluster) -> PgConnection {
    PgConnection::connect(&pg.dsn("postgres"))
        .await
        .expect("connect")
}

/// One row per transaction, with what the server says of its commit.
async fn write_rows(c: &mut PgConnection, n: usize, out: &mut Vec<Committed>) {
    for _ in 0..n {
        let (id, xid): (i64, i64) = sqlx::query_as(
            "INSERT INTO orders (note) VALUES (repeat(md5(random()::text), 20)) \
             RETURNING id, pg_current_xact_id()::text::bigint",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        let (at_us, after): (i64, String) = sqlx::query_as(
            "SELECT (extract(epoch FROM pg_xact_commit_timestamp($1::text::xid)) * 1000000)::bigint, \
                    pg_current_wal_lsn()::text",
        )
        .bind(xid.to_string())
        .fetch_one(&mut *c)
        .await
        .unwrap();
        out.push(Committed {
            id,
            xid: xid as u32,
            at_us,
            after: after.parse().unwrap(),
        });
    }
}

async fn ship(archive: &WalArchive, spool: &Path, shipped: &mut Shipped) {
    ship_spool(archive, spool, shipped, true)
        .await
        .expect("a shipping pass");
}

/// Every commit the archive holds, by xid, read back from the store.
async fn archived_commits(archive: &WalArchive) -> BTreeMap<u32, i64> {
    let listing = archive.listing().await.unwrap();
    let mut out = BTreeMap::new();
    for (file, _) in &listing.objects {
        let segment = match file {
            ArchivedFile::Segment(s) | ArchivedFile::Partial { segment: s, .. } => *s,
            ArchivedFile::History(_) => continue,
        };
        let bytes = archive.fetch(*file).await.unwrap();
        let scan = scan_segment(&bytes, segment, archive.size).unwrap();
        if matches!(file, ArchivedFile::Segment(_)) {
            assert!(scan.is_whole(), "{file:?}: {:?}", scan.end);
        }
        for t in scan.transactions.iter().filter(|t| t.committed) {
            out.insert(t.xid, t.at_us);
        }
    }
    out
}

fn through(
    archive_listing: &BTreeMap<Segment, Held>,
    history: &TimelineHistory,
    from: Lsn,
    size: SegmentSize,
) -> (Lsn, bool) {
    let c = continuity(history, from, archive_listing, size);
    (c.through, c.hole)
}

fn timeline_1() -> TimelineHistory {
    TimelineHistory::root(TimelineId::FIRST)
}

/// Shipping passes until the archive reaches `newest` unbroken from
/// `start` along `history`.
async fn ship_until(
    archive: &WalArchive,
    spool: &Path,
    shipped: &mut Shipped,
    history: &TimelineHistory,
    start: Lsn,
    newest: Lsn,
) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        ship(archive, spool, shipped).await;
        let (reached, _) = through(&shipped.listing().segments, history, start, archive.size);
        if reached >= newest {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "the archive reaches {reached} after 30 s, the newest commit ends at {newest}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A primary that records every commit's time, with `orders` and the
/// archive's slot; returns it and the slot's first position.
async fn primary(dir: &Path) -> (PgCluster, PgConnection, Lsn) {
    let pg = PgCluster::new(
        "wal-archive",
        dir.join("pg").join("data"),
        free_port(),
        find_pg_bin().expect("PostgreSQL server binaries (apt-get install postgresql)"),
    );
    pg.init_primary(20).expect("initdb");
    // The ground truth of every commit's time.
    let conf = pg.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("track_commit_timestamp = on\n");
    std::fs::write(&conf, text).unwrap();
    pg.start().expect("start PostgreSQL");
    pg.wait_ready(Duration::from_secs(30)).unwrap();
    let mut c = connect(&pg).await;
    sqlx::query("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
        .execute(&mut c)
        .await
        .unwrap();
    let (start,): (String,) =
        sqlx::query_as("SELECT lsn::text FROM pg_create_physical_replication_slot($1, true)")
            .bind(SLOT)
            .fetch_one(&mut c)
            .await
            .unwrap();
    (pg, c, start.parse().unwrap())
}

/// A streaming standby of `a` that also records commit times.
fn standby_of(a: &PgCluster, dir: &Path) -> PgCluster {
    let b = PgCluster::new(
        "wal-archive-b",
        dir.join("pgb").join("data"),
        free_port(),
        find_pg_bin().unwrap(),
    );
    b.clone_standby(a.port, "region-b", 20)
        .expect("clone a standby");
    let conf = b.data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("track_commit_timestamp = on\n");
    std::fs::write(&conf, text).unwrap();
    b.start().expect("start the standby");
    b.wait_ready(Duration::from_secs(30)).unwrap();
    b
}

/// Waits until the standby behind `cb` has replayed through `lsn`.
async fn caught_up(cb: &mut PgConnection, lsn: Lsn) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (replayed,): (String,) = sqlx::query_as("SELECT pg_last_wal_replay_lsn()::text")
            .fetch_one(&mut *cb)
            .await
            .unwrap();
        if replayed.parse::<Lsn>().unwrap() >= lsn {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "the standby did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A base backup of `pg` into the archive's store.
async fn base_backup(
    pg: &PgCluster,
    archive: &WalArchive,
    backup_id: &str,
) -> drctl_backup::Manifest {
    run_backup(
        &BackupRequest {
            service: "orders".into(),
            region: "region-a".into(),
            dsn: pg.dsn("postgres"),
            pg_bin: find_pg_client_bin().unwrap(),
            compression_level: 1,
            compression_threads: 1,
            store: archive.store.clone(),
            encryption: None,
        },
        backup_id,
        chrono::Utc::now(),
        |_| {},
    )
    .await
    .expect("a base backup")
}

async fn local_archive(dir: &Path) -> WalArchive {
    WalArchive {
        store: ObjectStore::local(dir.join("objects")).await.unwrap(),
        service: "orders".into(),
        size: SegmentSize::DEFAULT,
        key: None,
        level: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_holds_every_commit_unbroken_across_a_killed_receiver() {
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-wal-")
        .tempdir_in("/tmp")
        .unwrap();
    let (pg, mut c, start) = primary(dir.path()).await;

    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let archive = local_archive(dir.path()).await;
    let mut shipped = Shipped::new(archive.listing().await.unwrap());
    let mut receiver = Receiver::start(&pg, &spool);

    let mut rows = Vec::new();
    write_rows(&mut c, 200, &mut rows).await;
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut c)
        .await
        .unwrap();
    write_rows(&mut c, 100, &mut rows).await;
    let newest = rows.last().unwrap().after;
    ship_until(&archive, &spool, &mut shipped, &timeline_1(), start, newest).await;

    // Killed mid-segment, more commits meanwhile, started again.
    receiver.kill();
    write_rows(&mut c, 150, &mut rows).await;
    let mut receiver = Receiver::start(&pg, &spool);
    write_rows(&mut c, 50, &mut rows).await;
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut c)
        .await
        .unwrap();
    write_rows(&mut c, 20, &mut rows).await;
    let newest = rows.last().unwrap().after;
    ship_until(&archive, &spool, &mut shipped, &timeline_1(), start, newest).await;

    // What the store holds, read back from it: unbroken from the slot's
    // start, every commit there with the server's own commit time.
    let listing = archive.listing().await.unwrap();
    let (reached, hole) = through(&listing.segments, &timeline_1(), start, archive.size);
    assert!(!hole, "a hole in the archive: {listing:?}");
    assert!(
        reached >= newest,
        "the archive reaches {reached}, the newest commit ends before {newest}"
    );
    let commits = archived_commits(&archive).await;
    for row in &rows {
        let at = commits
            .get(&row.xid)
            .unwrap_or_else(|| panic!("row {} (xid {}) is not in the archive", row.id, row.xid));
        assert_eq!(
            *at, row.at_us,
            "row {}: commit time in the WAL against the server's",
            row.id
        );
    }
    eprintln!(
        "{} commits checked; archive through {reached}; {} objects",
        rows.len(),
        listing.objects.len()
    );
    receiver.kill();

    // Read back whole, the run is intact and ends with the newest commit.
    let check = check_archive(&archive, &listing, &timeline_1(), start, 4)
        .await
        .unwrap();
    assert!(check.intact(), "{check:?}");
    assert_eq!(check.newest_commit_us, Some(rows.last().unwrap().at_us));

    // A damaged segment object: the check, a fetch and staging name it, and
    // the usable run ends before it.
    let segments: Vec<(ArchivedFile, PathBuf)> = listing
        .objects
        .iter()
        .filter(|(f, _)| matches!(f, ArchivedFile::Segment(_)))
        .map(|(f, info)| (*f, dir.path().join("objects").join(&info.key)))
        .collect();
    let (file, path) = segments
        .first()
        .cloned()
        .expect("a finished segment is archived");
    let key = archive.object_key(&file);
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let err = archive.fetch(file).await.unwrap_err().to_string();
    assert!(err.contains(&key), "{err}");
    let check = check_archive(&archive, &listing, &timeline_1(), start, 4)
        .await
        .unwrap();
    assert_eq!(
        check.damaged.as_ref().map(|d| d.0.as_str()),
        Some(key.as_str()),
        "{check:?}"
    );
    assert!(!check.intact() && check.through < reached, "{check:?}");
    let stage = dir.path().join("stage");
    let err = stage_wal(&archive, &listing, &timeline_1(), start, &stage, 4)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&key), "{err}");

    // Another segment's (valid) object under this one's name: its records
    // are not this segment's, and the check says so.
    let (_, other) = segments.get(1).cloned().expect("two finished segments");
    std::fs::copy(&other, &path).unwrap();
    let check = check_archive(&archive, &listing, &timeline_1(), start, 4)
        .await
        .unwrap();
    let (named, why) = check.damaged.clone().expect("the swapped object is caught");
    assert_eq!(named, key);
    assert!(why.contains("not WAL of this segment"), "{why}");
    std::fs::write(&path, &original).unwrap();
    pg.stop("immediate").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_point_in_time_holds_every_row_up_to_it_and_none_after() {
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-pitr-")
        .tempdir_in("/tmp")
        .unwrap();
    let (pg, mut c, start) = primary(dir.path()).await;
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let archive = local_archive(dir.path()).await;
    let mut shipped = Shipped::new(archive.listing().await.unwrap());
    let mut receiver = Receiver::start(&pg, &spool);

    let mut rows = Vec::new();
    write_rows(&mut c, 50, &mut rows).await;
    let backup_id = new_backup_id(chrono::Utc::now());
    let manifest = base_backup(&pg, &archive, &backup_id).await;
    // After the backup, across a segment boundary.
    write_rows(&mut c, 150, &mut rows).await;
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut c)
        .await
        .unwrap();
    write_rows(&mut c, 150, &mut rows).await;
    let newest = rows.last().unwrap().after;
    ship_until(&archive, &spool, &mut shipped, &timeline_1(), start, newest).await;
    receiver.kill();
    pg.stop("fast").unwrap();

    let history = TimelineHistory::root(TimelineId::FIRST);
    let backup_start: Lsn = manifest.start_lsn.as_deref().unwrap().parse().unwrap();
    for k in [120, 260] {
        let target = &rows[k];
        let at = chrono::DateTime::from_timestamp_micros(target.at_us).unwrap();
        let scratch = dir.path().join(format!("restore-{k}"));
        let restored = PgCluster::new(
            format!("pitr-{k}"),
            scratch.join("data"),
            free_port(),
            find_pg_bin().unwrap(),
        );
        restore_backup(
            &archive.store,
            "orders",
            &backup_id,
            &restored.data_dir,
            &Expected {
                manifest: None,
                key: None,
            },
        )
        .await
        .expect("restore the base backup");
        restored.adopt_restored().unwrap();
        let listing = archive.listing().await.unwrap();
        let stage = scratch.join("wal");
        let staged = stage_wal(&archive, &listing, &history, backup_start, &stage, 4)
            .await
            .expect("stage the WAL");
        assert!(staged.through >= newest, "{staged:?}");
        restored
            .prepare_recovery(
                &stage,
                1,
                &RecoveryStop::Time(at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()),
            )
            .unwrap();
        restored.start().expect("the restored server starts");
        let dsn = restored.scratch_dsn("postgres", "postgres");
        let until = std::time::Instant::now() + Duration::from_secs(60);
        let mut r = loop {
            if let Ok(mut r) = PgConnection::connect(&dsn).await {
                let (recovering,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut r)
                    .await
                    .unwrap();
                if !recovering {
                    break r;
                }
            }
            assert!(
                std::time::Instant::now() < until,
                "the restore did not finish recovery in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (max, count): (Option<i64>, i64) =
            sqlx::query_as("SELECT max(id), count(*) FROM orders")
                .fetch_one(&mut r)
                .await
                .unwrap();
        eprintln!(
            "restore to {at} (row {}): {count} rows, newest {max:?}; {} segments ({} bytes) staged",
            target.id, staged.segments, staged.bytes
        );
        assert_eq!(
            max,
            Some(target.id),
            "the newest row restored is the one committed at the target"
        );
        assert_eq!(
            count,
            k as i64 + 1,
            "every row committed up to the target, none after"
        );
        restored.stop("immediate").unwrap();
    }
}

/// Restores `backup_id` and replays the staged archive along `history` to
/// `at`; returns (newest id, row count) of the restored `orders`.
async fn restore_to_time(
    archive: &WalArchive,
    backup_id: &str,
    backup_start: Lsn,
    history: &TimelineHistory,
    at: chrono::DateTime<chrono::Utc>,
    scratch: &Path,
) -> (Option<i64>, i64) {
    let stop = RecoveryStop::Time(at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string());
    restore_to(archive, backup_id, backup_start, history, stop, scratch).await
}

/// A restore of backup `backup_id` replayed to `stop` along `history`,
/// started: the newest row id and the number of rows it holds.
async fn restore_to(
    archive: &WalArchive,
    backup_id: &str,
    backup_start: Lsn,
    history: &TimelineHistory,
    stop: RecoveryStop,
    scratch: &Path,
) -> (Option<i64>, i64) {
    let restored = PgCluster::new(
        "pitr",
        scratch.join("data"),
        free_port(),
        find_pg_bin().unwrap(),
    );
    restore_backup(
        &archive.store,
        "orders",
        backup_id,
        &restored.data_dir,
        &Expected {
            manifest: None,
            key: None,
        },
    )
    .await
    .expect("restore the base backup");
    restored.adopt_restored().unwrap();
    let listing = archive.listing().await.unwrap();
    let stage = scratch.join("wal");
    stage_wal(archive, &listing, history, backup_start, &stage, 4)
        .await
        .expect("stage the WAL");
    restored
        .prepare_recovery(&stage, history.timeline.0, &stop)
        .unwrap();
    restored.start().expect("the restored server starts");
    let dsn = restored.scratch_dsn("postgres", "postgres");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let mut r = loop {
        if let Ok(mut r) = PgConnection::connect(&dsn).await {
            let (recovering,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                .fetch_one(&mut r)
                .await
                .unwrap();
            if !recovering {
                break r;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "the restore did not finish recovery in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let found = sqlx::query_as("SELECT max(id), count(*) FROM orders")
        .fetch_one(&mut r)
        .await
        .unwrap();
    restored.stop("immediate").unwrap();
    found
}

/// Across a failover: the receiver follows the promoted standby onto its
/// timeline, and restores along the new timeline's history reach points on
/// both sides of the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_point_follows_the_archive_across_a_failover() {
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-pitr-failover-")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, mut c, start) = primary(dir.path()).await;
    let b = standby_of(&a, dir.path());

    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let archive = local_archive(dir.path()).await;
    let mut shipped = Shipped::new(archive.listing().await.unwrap());
    let mut receiver = Receiver::start(&a, &spool);
    let backup_id = new_backup_id(chrono::Utc::now());
    let manifest = base_backup(&a, &archive, &backup_id).await;
    let mut rows = Vec::new();
    write_rows(&mut c, 120, &mut rows).await;
    let on_a = rows.len();
    let newest_on_a = rows.last().unwrap().after;
    ship_until(
        &archive,
        &spool,
        &mut shipped,
        &timeline_1(),
        start,
        newest_on_a,
    )
    .await;

    // The standby has everything; region-a's server stops; region-b's is
    // promoted and gets the archive's slot.
    let mut cb = PgConnection::connect(&b.dsn("postgres")).await.unwrap();
    caught_up(&mut cb, newest_on_a).await;
    drop(c);
    receiver.kill();
    a.stop("fast").unwrap();
    let (promoted,): (bool,) = sqlx::query_as("SELECT pg_promote(true, 60)")
        .fetch_one(&mut cb)
        .await
        .unwrap();
    assert!(promoted);
    sqlx::query("SELECT pg_create_physical_replication_slot($1, true)")
        .bind(SLOT)
        .execute(&mut cb)
        .await
        .unwrap();
    let history_text = std::fs::read_to_string(b.data_dir.join("pg_wal/00000002.history"))
        .expect("the promoted server's history file");
    let history = TimelineHistory::parse(TimelineId(2), &history_text).unwrap();
    let mut receiver = Receiver::start(&b, &spool);
    write_rows(&mut cb, 120, &mut rows).await;
    let newest = rows.last().unwrap().after;
    ship_until(&archive, &spool, &mut shipped, &history, start, newest).await;
    receiver.kill();
    assert!(
        archive
            .listing()
            .await
            .unwrap()
            .histories
            .contains(&TimelineId(2)),
        "the new timeline's history file is archived"
    );
    b.stop("fast").unwrap();

    let backup_start: Lsn = manifest.start_lsn.as_deref().unwrap().parse().unwrap();
    for k in [on_a / 2, on_a + 60] {
        let target = &rows[k];
        let at = chrono::DateTime::from_timestamp_micros(target.at_us).unwrap();
        let (max, count) = restore_to_time(
            &archive,
            &backup_id,
            backup_start,
            &history,
            at,
            &dir.path().join(format!("restore-{k}")),
        )
        .await;
        eprintln!(
            "restore to {at} (row {}, {} the switch at {}): {count} rows, newest {max:?}",
            target.id,
            if k < on_a { "before" } else { "after" },
            history.ancestors[0].switch_point
        );
        assert_eq!(
            max,
            Some(target.id),
            "the newest row restored is the target's"
        );
        assert_eq!(
            count,
            k as i64 + 1,
            "every row up to the target, none after"
        );
    }
}

/// The archiver as drctl runs it: the receiver started through the
/// datastore seam and started again after it is killed, the archive
/// unbroken through every commit, where it stands published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_restarts_a_killed_receiver_and_the_archive_stays_unbroken() {
    use drctl_backup::archiver::{run_archiver, ArchiverSpec, ArchiverStatus, ReceiverState};
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-archiver-")
        .tempdir_in("/tmp")
        .unwrap();
    let (pg, mut c, start) = primary(dir.path()).await;
    let archive = local_archive(dir.path()).await;
    let spec = ArchiverSpec {
        service: "orders".into(),
        dsn: pg.dsn("postgres"),
        slot: SLOT.into(),
        spool: dir.path().join("spool"),
        tool_dir: find_pg_client_bin().unwrap(),
        archive: archive.clone(),
        pass_every: Duration::from_millis(200),
        partial_every: Duration::from_millis(500),
    };
    let (status_tx, mut status) = tokio::sync::watch::channel(ArchiverStatus::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_archiver(spec, status_tx, stop));
    let running = |s: &ArchiverStatus| match s.receiver {
        ReceiverState::Running { pid } => Some(pid),
        _ => None,
    };
    let first = wait_status(&mut status, "the receiver running", |s| running(s)).await;

    let mut rows = Vec::new();
    write_rows(&mut c, 100, &mut rows).await;
    let reached = |archive: &WalArchive| {
        let archive = archive.clone();
        async move {
            let listing = archive.listing().await.unwrap();
            through(&listing.segments, &timeline_1(), start, archive.size).0
        }
    };
    let newest = rows.last().unwrap().after;
    wait_until_reached(&archive, newest, &reached).await;

    // Killed: started again by the archiver, nothing lost meanwhile.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    write_rows(&mut c, 100, &mut rows).await;
    let second = wait_status(&mut status, "the receiver running again", |s| {
        running(s).filter(|pid| *pid != first)
    })
    .await;
    assert_ne!(first, second);
    write_rows(&mut c, 100, &mut rows).await;
    let newest = rows.last().unwrap().after;
    wait_until_reached(&archive, newest, &reached).await;

    let listing = archive.listing().await.unwrap();
    let check = check_archive(&archive, &listing, &timeline_1(), start, 4)
        .await
        .unwrap();
    assert!(check.intact(), "{check:?}");
    assert_eq!(check.newest_commit_us, Some(rows.last().unwrap().at_us));
    let seen = status.borrow().clone();
    assert_eq!(seen.last_error, None, "{seen:?}");
    assert!(seen.receiving.is_some(), "{seen:?}");
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(status.borrow().receiver, ReceiverState::Stopped);
    pg.stop("immediate").unwrap();
}

async fn wait_status<T>(
    status: &mut tokio::sync::watch::Receiver<drctl_backup::archiver::ArchiverStatus>,
    what: &str,
    found: impl Fn(&drctl_backup::archiver::ArchiverStatus) -> Option<T>,
) -> T {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = found(&status.borrow()) {
            return t;
        }
        let seen = status.borrow().clone();
        tokio::time::timeout_at(until, status.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}: {seen:?}"))
            .unwrap();
    }
}

async fn wait_until_reached<F, Fut>(archive: &WalArchive, newest: Lsn, reached: &F)
where
    F: Fn(&WalArchive) -> Fut,
    Fut: std::future::Future<Output = Lsn>,
{
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let at = reached(archive).await;
        if at >= newest {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "the archive reaches {at} after 30 s; the newest commit ends at {newest}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After a failover whose old primary kept taking writes (cut off, not yet
/// fenced) while the archive's receiver still streamed from it: the spool
/// holds WAL past the new primary's fork. Streaming from the new primary
/// then fails ("not in this server's history"); the archiver sets that WAL
/// aside and follows the new timeline from the fork, and a restore along it
/// holds the rows of both primaries up to the fork and after, and none of
/// the old primary's after the fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_follows_the_new_primary_past_a_diverged_old_one() {
    use drctl_backup::archiver::{run_archiver, ArchiverSpec, ArchiverStatus, ReceiverState};
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-archiver-fork-")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, mut ca, start) = primary(dir.path()).await;
    let b = standby_of(&a, dir.path());
    let archive = local_archive(dir.path()).await;
    let spec = |dsn: String| ArchiverSpec {
        service: "orders".into(),
        dsn,
        slot: SLOT.into(),
        spool: dir.path().join("spool"),
        tool_dir: find_pg_client_bin().unwrap(),
        archive: archive.clone(),
        pass_every: Duration::from_millis(200),
        partial_every: Duration::from_millis(300),
    };
    let backup_id = new_backup_id(chrono::Utc::now());
    let manifest = base_backup(&a, &archive, &backup_id).await;

    // The archiver on region-a's server.
    let (status_tx, _status) = tokio::sync::watch::channel(ArchiverStatus::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_archiver(spec(a.dsn("postgres")), status_tx, stop));
    let mut rows = Vec::new();
    write_rows(&mut ca, 80, &mut rows).await;
    let before_fork = rows.len();
    let mut cb = PgConnection::connect(&b.dsn("postgres")).await.unwrap();
    let before_promotion = rows.last().unwrap().after;
    caught_up(&mut cb, before_promotion).await;
    // Region-b is promoted; region-a is cut off from it but not fenced: it
    // takes 70 more rows, into the next segment, and the archive's
    // receiver streams them.
    let (promoted,): (bool,) = sqlx::query_as("SELECT pg_promote(true, 60)")
        .fetch_one(&mut cb)
        .await
        .unwrap();
    assert!(promoted);
    let mut lost = Vec::new();
    write_rows(&mut ca, 60, &mut lost).await;
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut ca)
        .await
        .unwrap();
    write_rows(&mut ca, 10, &mut lost).await;
    let diverged_end = lost.last().unwrap().after;
    wait_until_reached(&archive, diverged_end, &|archive: &WalArchive| {
        let archive = archive.clone();
        async move {
            let listing = archive.listing().await.unwrap();
            through(&listing.segments, &timeline_1(), start, archive.size).0
        }
    })
    .await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    drop(ca);
    a.stop("immediate").unwrap();

    // The archiver now reaches the new primary (as the service's DNS name
    // would after the flip), which needs the slot.
    sqlx::query("SELECT pg_create_physical_replication_slot($1, true)")
        .bind(SLOT)
        .execute(&mut cb)
        .await
        .unwrap();
    let history = TimelineHistory::parse(
        TimelineId(2),
        &std::fs::read_to_string(b.data_dir.join("pg_wal/00000002.history")).unwrap(),
    )
    .unwrap();
    let fork = history.ancestors[0].switch_point;
    assert!(diverged_end > fork, "region-a wrote past the fork");
    let (status_tx, status) = tokio::sync::watch::channel(ArchiverStatus::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_archiver(spec(b.dsn("postgres")), status_tx, stop));
    write_rows(&mut cb, 80, &mut rows).await;
    let newest = rows.last().unwrap().after;
    let reached = |archive: &WalArchive| {
        let archive = archive.clone();
        let history = history.clone();
        async move {
            let listing = archive.listing().await.unwrap();
            through(&listing.segments, &history, start, archive.size).0
        }
    };
    wait_until_reached(&archive, newest, &reached).await;
    let seen = status.borrow().clone();
    assert!(
        matches!(seen.receiver, ReceiverState::Running { .. }),
        "{seen:?}"
    );
    assert!(
        dir.path()
            .join("spool/diverged")
            .read_dir()
            .unwrap()
            .count()
            > 0,
        "region-a's WAL past the fork was set aside"
    );
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    b.stop("fast").unwrap();

    // Restored along timeline 2: region-a's rows up to the fork, region-b's
    // after it, none of the 60 region-a took after the fork.
    let backup_start: Lsn = manifest.start_lsn.as_deref().unwrap().parse().unwrap();
    let k = before_fork + 40;
    let at = chrono::DateTime::from_timestamp_micros(rows[k].at_us).unwrap();
    let (max, count) = restore_to_time(
        &archive,
        &backup_id,
        backup_start,
        &history,
        at,
        &dir.path().join("restore"),
    )
    .await;
    eprintln!(
        "fork at {fork}; region-a wrote to {diverged_end}; restore to {at}: {count} rows, newest {max:?}"
    );
    assert_eq!(max, Some(rows[k].id));
    assert_eq!(
        count,
        k as i64 + 1,
        "none of the {} rows region-a took after the fork",
        lost.len()
    );
}

/// `orders` archiving WAL as configured (`wal_archive`, `wal_spool`) from
/// region-a's server `a` (region-b's connection: `dr_dsn`), into the local
/// store of [`local_archive`], the daemon's archivers running on it.
struct Archiving {
    cfg: PathBuf,
    config: std::sync::Arc<drctl_config::Config>,
    store: drctl_store::Store,
    archive: WalArchive,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// `backup_lines`: more keys of its `[services.backup]`.
async fn archiving(dir: &Path, a: &PgCluster, dr_dsn: &str, backup_lines: &str) -> Archiving {
    let archive = local_archive(dir).await;
    let cfg = archiving_config(dir, a, dr_dsn, backup_lines);
    let config = std::sync::Arc::new(drctl_config::load(&cfg).expect("a valid config"));
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(drctl_backup::archiver::run_archivers(
        config.clone(),
        store.clone(),
        std::sync::Arc::new(|_, _| {}),
        stopped,
    ));
    Archiving {
        cfg,
        config,
        store,
        archive,
        stop,
        task,
    }
}

/// The config of [`archiving`]: the cold service `orders` archiving WAL
/// from `a` into `dir/objects` through the spool `dir/spool`.
/// `backup_lines`: more keys of its `[services.backup]`.
fn archiving_config(dir: &Path, a: &PgCluster, dr_dsn: &str, backup_lines: &str) -> PathBuf {
    use drctl_tests::config::{DR_REGION, PRIMARY_REGION};
    drctl_tests::TestConfig::new()
        .store_url(&format!("sqlite://{}/state.db", dir.display()))
        .local_object_store("archive", &dir.join("objects").display().to_string())
        .service(
            drctl_tests::Service::cold("orders")
                .postgres(PRIMARY_REGION, &format!("dsn = \"{}\"", a.dsn("postgres")))
                .postgres(DR_REGION, dr_dsn)
                .table(&format!(
                    "[services.backup]\nstore = \"archive\"\nwal_archive = true\nwal_spool = \"{}\"\n{backup_lines}",
                    dir.join("spool").display()
                )),
        )
        .write(dir)
}

impl Archiving {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

/// Waits for the slot the archiver makes on the server behind `c`; its
/// first position.
async fn archive_slot(c: &mut PgConnection) -> Lsn {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let slot: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'drctl_archive_orders'",
        )
        .fetch_optional(&mut *c)
        .await
        .unwrap();
        if let Some((Some(lsn),)) = slot {
            return lsn.parse().unwrap();
        }
        assert!(std::time::Instant::now() < until, "no archive slot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The daemon's duty as configured (`wal_archive`, `wal_spool`): an
/// archiver on the service's primary, its slot created there, and on the
/// new primary once an operation records the move, the archive unbroken
/// along the new timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_archivers_follow_the_recorded_primary() {
    use drctl_tests::config::DR_REGION;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-archivers-")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, mut ca, _) = primary(dir.path()).await;
    let b = standby_of(&a, dir.path());
    let archiving = archiving(
        dir.path(),
        &a,
        &format!("dsn = \"{}\"", b.dsn("postgres")),
        "",
    )
    .await;
    let (config, store, archive) = (
        archiving.config.clone(),
        archiving.store.clone(),
        archiving.archive.clone(),
    );
    let first = archive_slot(&mut ca).await;
    let mut rows = Vec::new();
    write_rows(&mut ca, 80, &mut rows).await;
    let newest = rows.last().unwrap().after;
    let along = |history: TimelineHistory| {
        move |archive: &WalArchive| {
            let archive = archive.clone();
            let history = history.clone();
            async move {
                let listing = archive.listing().await.unwrap();
                through(&listing.segments, &history, first, archive.size).0
            }
        }
    };
    wait_until_reached(&archive, newest, &along(timeline_1())).await;

    // Region-b promoted, the move recorded as an operation would.
    let mut cb = PgConnection::connect(&b.dsn("postgres")).await.unwrap();
    caught_up(&mut cb, newest).await;
    drop(ca);
    a.stop("fast").unwrap();
    let (promoted,): (bool,) = sqlx::query_as("SELECT pg_promote(true, 60)")
        .fetch_one(&mut cb)
        .await
        .unwrap();
    assert!(promoted);
    let cluster = config.service("orders").unwrap().cluster.clone();
    let lease = store
        .acquire_lease(
            "op:test",
            "test",
            Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .expect("the lease");
    store
        .set_cluster_primary(&lease, &cluster, DR_REGION, "op-test", chrono::Utc::now())
        .await
        .unwrap();
    let history = TimelineHistory::parse(
        TimelineId(2),
        &std::fs::read_to_string(b.data_dir.join("pg_wal/00000002.history")).unwrap(),
    )
    .unwrap();
    write_rows(&mut cb, 80, &mut rows).await;
    let newest = rows.last().unwrap().after;
    wait_until_reached(&archive, newest, &along(history.clone())).await;
    let listing = archive.listing().await.unwrap();
    let check = check_archive(&archive, &listing, &history, first, 4)
        .await
        .unwrap();
    assert!(check.intact(), "{check:?}");
    assert_eq!(check.newest_commit_us, Some(rows.last().unwrap().at_us));
    archiving.stop().await;
    b.stop("fast").unwrap();
}

/// `drctl backup restore ID --target DIR --to-time T`: the base backup
/// restored, the archived WAL staged beside it, and the directory, once
/// started, holding every row committed up to T and none after. A
/// malformed time and one past the archive are refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_to_a_time_through_the_cli() {
    use drctl_tests::drctl;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-pitr-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, mut ca, _) = primary(dir.path()).await;
    let archiving = archiving(dir.path(), &a, NO_DR_SERVER, "").await;
    let (config, store, archive) = (
        archiving.config.clone(),
        archiving.store.clone(),
        archiving.archive.clone(),
    );
    let objects = dir.path().join("objects");
    archive_slot(&mut ca).await;
    let mut rows = Vec::new();
    write_rows(&mut ca, 40, &mut rows).await;
    let (record, _) = drctl_backup::jobs::backup_service(&config, &store, "orders", |_| {})
        .await
        .expect("a base backup");
    write_rows(&mut ca, 100, &mut rows).await;
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut ca)
        .await
        .unwrap();
    write_rows(&mut ca, 60, &mut rows).await;
    let newest = rows.last().unwrap().after;
    let start: Lsn = record.start_lsn.as_deref().unwrap().parse().unwrap();
    wait_until_reached(&archive, newest, &|archive: &WalArchive| {
        let archive = archive.clone();
        async move {
            let listing = archive.listing().await.unwrap();
            through(&listing.segments, &timeline_1(), start, archive.size).0
        }
    })
    .await;
    let cfg = archiving.cfg.display().to_string();
    archiving.stop().await;
    drop(ca);
    a.stop("fast").unwrap();

    let restored_dir = dir.path().join("restored");
    let restored_arg = restored_dir.display().to_string();
    // Refused, before anything is restored: a time without a zone, and
    // one past the newest archived commit.
    let (code, _, err) = drctl(&[
        "backup",
        "restore",
        &record.id,
        "--target",
        &restored_arg,
        "--to-time",
        "2026-12-07 14:03",
        "--config",
        &cfg,
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no time zone") && err.contains("accepted:"),
        "{err}"
    );
    let late = chrono::DateTime::from_timestamp_micros(rows.last().unwrap().at_us).unwrap()
        + chrono::Duration::hours(1);
    let (code, _, err) = drctl(&[
        "backup",
        "restore",
        &record.id,
        "--target",
        &restored_arg,
        "--to-time",
        &late.to_rfc3339(),
        "--config",
        &cfg,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("after the newest archived commit"), "{err}");
    assert!(
        !restored_dir.exists(),
        "nothing restored for a refused target"
    );

    let k = 40 + 70;
    let at = chrono::DateTime::from_timestamp_micros(rows[k].at_us).unwrap();
    let (code, out, err) = drctl(&[
        "backup",
        "restore",
        &record.id,
        "--target",
        &restored_arg,
        "--to-time",
        &at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "--config",
        &cfg,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        reply["point_in_time"]["segments"].as_u64().unwrap() >= 2,
        "{reply}"
    );

    // Started as it is (its own configuration, region-a's port, which is
    // free now): it replays to the time and promotes itself.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&restored_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    drctl_pg::os::give_to_postgres(&restored_dir).unwrap();
    drctl_pg::os::give_to_postgres(&dir.path().join("restored-wal")).unwrap();
    let restored = PgCluster::new(
        "restored",
        restored_dir.clone(),
        a.port,
        find_pg_bin().unwrap(),
    );
    restored.start().expect("the restored directory starts");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let mut r = loop {
        if let Ok(mut r) = PgConnection::connect(&a.dsn("postgres")).await {
            let (recovering,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                .fetch_one(&mut r)
                .await
                .unwrap();
            if !recovering {
                break r;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "recovery did not end in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (max, count): (Option<i64>, i64) = sqlx::query_as("SELECT max(id), count(*) FROM orders")
        .fetch_one(&mut r)
        .await
        .unwrap();
    eprintln!("restored to {at}: {count} rows, newest {max:?}");
    assert_eq!(max, Some(rows[k].id));
    assert_eq!(count, k as i64 + 1, "every row up to the time, none after");
    restored.stop("immediate").unwrap();

    // `drctl backup wal`: the archive read back, intact, ending with the
    // newest commit; then a damaged segment named, exit 1.
    let (code, out, err) = drctl(&["backup", "wal", "orders", "--config", &cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let newest_commit = chrono::DateTime::parse_from_rfc3339(
        report["wal_archive"]["newest_commit"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        newest_commit.timestamp_micros(),
        rows.last().unwrap().at_us,
        "{report}"
    );
    let listing = archive.listing().await.unwrap();
    // A whole segment the check reads: from the backup's start on (the
    // archive also holds WAL from before the backup, which no restore of
    // it needs).
    let (_, damaged) = listing
        .objects
        .iter()
        .find(|(f, _)| matches!(f, ArchivedFile::Segment(s) if s.end(archive.size) > start))
        .expect("a whole segment archived");
    let path = objects.join(&damaged.key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x08;
    std::fs::write(&path, &bytes).unwrap();
    let (code, out, _) = drctl(&["backup", "wal", "orders", "--config", &cfg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("damaged: {}", damaged.key)), "{out}");
}

/// A tmpfs of its own for the spool, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount (as root)");
        assert!(
            ok.success(),
            "mounting a tmpfs at {} needs root",
            at.display()
        );
        SmallDisk(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The receiver's disk full: the receiver stops, the archiver says why
/// and keeps trying, the archive claims no WAL it lacks; with space back
/// it catches up without a gap (the slot kept the WAL on the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_stops_the_receiver_loudly_and_loses_nothing() {
    use drctl_backup::archiver::{run_archiver, ArchiverSpec, ArchiverStatus, ReceiverState};
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-archiver-full-")
        .tempdir_in("/tmp")
        .unwrap();
    let (pg, mut c, start) = primary(dir.path()).await;
    let spool = dir.path().join("spool");
    // Room for one 16 MiB segment, not for the next beside it.
    let disk = SmallDisk::mount(&spool, "20m");
    let archive = local_archive(dir.path()).await;
    let spec = ArchiverSpec {
        service: "orders".into(),
        dsn: pg.dsn("postgres"),
        slot: SLOT.into(),
        spool: spool.clone(),
        tool_dir: find_pg_client_bin().unwrap(),
        archive: archive.clone(),
        pass_every: Duration::from_millis(200),
        partial_every: Duration::from_millis(300),
    };
    let (status_tx, mut status) = tokio::sync::watch::channel(ArchiverStatus::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_archiver(spec, status_tx, stop));
    let reached = |archive: &WalArchive| {
        let archive = archive.clone();
        async move {
            let listing = archive.listing().await.unwrap();
            through(&listing.segments, &timeline_1(), start, archive.size).0
        }
    };
    let mut rows = Vec::new();
    write_rows(&mut c, 50, &mut rows).await;
    wait_until_reached(&archive, rows.last().unwrap().after, &reached).await;

    // The next segment does not fit.
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut c)
        .await
        .unwrap();
    write_rows(&mut c, 50, &mut rows).await;
    let said = wait_status(
        &mut status,
        "the receiver to stop on the full disk",
        |s| match &s.receiver {
            ReceiverState::Waiting { last_exit, .. } => Some(last_exit.clone()),
            _ => None,
        },
    )
    .await;
    eprintln!("the receiver stopped: {said}");
    assert!(said.contains("No space left on device"), "{said}");
    let newest = rows.last().unwrap().after;
    let listing = archive.listing().await.unwrap();
    let check = check_archive(&archive, &listing, &timeline_1(), start, 4)
        .await
        .unwrap();
    assert!(check.intact(), "{check:?}");
    assert!(
        check.through < newest,
        "the archive claims WAL it could not receive: {check:?}"
    );
    assert_ne!(check.newest_commit_us, Some(rows.last().unwrap().at_us));

    // Space again: it catches up, unbroken, through the newest commit.
    disk.resize("64m");
    wait_until_reached(&archive, newest, &reached).await;
    let listing = archive.listing().await.unwrap();
    let check = check_archive(&archive, &listing, &timeline_1(), start, 4)
        .await
        .unwrap();
    assert!(check.intact(), "{check:?}");
    assert_eq!(check.newest_commit_us, Some(rows.last().unwrap().at_us));
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    pg.stop("immediate").unwrap();
}

/// The archive's lag against ground truth, the daemon running its archiver
/// as configured: with the receiver frozen (SIGSTOP) while a writer goes
/// on, the cold service's RPO exposure is the archive lag, and it matches,
/// within half a second, the age on the primary's clock of the oldest row
/// that a restore of the archive (`--latest`) does not bring back; with
/// the receiver thawed the lag falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_lag_is_the_age_of_the_oldest_commit_a_restore_would_lose() {
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-archive-lag-")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, mut ca, _) = primary(dir.path()).await;
    let cfg = archiving_config(dir.path(), &a, NO_DR_SERVER, "");
    let config = std::sync::Arc::new(drctl_config::load(&cfg).expect("a valid config"));
    let daemon = drctl_tests::start_daemon_with(config.clone()).await;
    let archive = local_archive(dir.path()).await;
    archive_slot(&mut ca).await;
    let (record, _) =
        drctl_backup::jobs::backup_service(&config, daemon.monitor.store(), "orders", |_| {})
            .await
            .expect("a base backup");
    // The exposure stands on a verified backup the archive replays from.
    drctl_backup::jobs::verify_recorded_backup(&config, daemon.monitor.store(), &record.id)
        .await
        .expect("the backup verifies");
    let start: Lsn = record.start_lsn.as_deref().unwrap().parse().unwrap();

    // A writer: one row every 50 ms, each with its commit time.
    let (stop_writer, mut stopping) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut rows = Vec::new();
        while !*stopping.borrow() {
            write_rows(&mut ca, 1, &mut rows).await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopping.changed() => {}
            }
        }
        (ca, rows)
    });
    let view = || daemon.monitor.view("orders").unwrap();
    let measured = drctl_tests::wait_for("the archive lag", Duration::from_secs(60), || async {
        let v = view();
        let w = v.wal_archive.clone()?;
        (w.receiver == drctl_monitor::ArchiveReceiver::Running
            && w.archive_lag_us.is_some()
            && v.rpo_exposure_us.is_some())
        .then_some(v)
    })
    .await;
    assert_eq!(
        measured.rpo_exposure_us,
        measured.wal_archive.as_ref().unwrap().archive_lag_us,
        "a cold service's exposure is its archive's lag"
    );
    // The restorable window: from the backup to the newest archived commit.
    let window =
        drctl_tests::wait_for("the restorable window", Duration::from_secs(30), || async {
            let w = view().wal_archive?;
            (w.restorable_from_backup.as_deref() == Some(record.id.as_str())).then_some(w)
        })
        .await;
    assert_eq!(window.restorable_from, record.ended_at);
    assert!(
        window.restorable_to.unwrap() > record.ended_at.unwrap(),
        "{window:?}"
    );

    // The receiver frozen: nothing more reaches the spool, the shipper
    // ships what is there, and the archive stands still while the primary
    // goes on.
    let receiver = receiver_pid(&dir.path().join("spool"));
    signal(receiver, "STOP");
    let archived_still = drctl_tests::wait_for(
        "the archive to stand still",
        Duration::from_secs(30),
        || async {
            let before = view().wal_archive?.archived_lsn?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            (view().wal_archive?.archived_lsn? == before).then_some(before)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let frozen = view();
    let exposure_us = frozen.rpo_exposure_us.expect("an exposure while frozen");
    let primary_at = frozen
        .primary_time
        .expect("the primary's time of the sample");
    assert_eq!(
        frozen.wal_archive.as_ref().unwrap().archived_lsn,
        Some(archived_still)
    );
    assert!(!frozen.exposure_lower_bound);

    // The rows a restore of the archive brings back: the ground truth.
    stop_writer.send(true).unwrap();
    let (mut ca, rows) = writer.await.unwrap();
    let listing = archive.listing().await.unwrap();
    let (restored_max, _) = restore_to(
        &archive,
        &record.id,
        start,
        &timeline_1(),
        RecoveryStop::EndOfWal,
        &dir.path().join("latest"),
    )
    .await;
    drop(listing);
    let restored_max = restored_max.expect("rows restored");
    let lost = rows
        .iter()
        .find(|r| r.id > restored_max)
        .expect("rows past the archive");
    let truth_us = primary_at.timestamp_micros() - lost.at_us;
    eprintln!(
        "archive lag {exposure_us} µs; ground truth {truth_us} µs (oldest row not restorable: {})",
        lost.id
    );
    assert!(
        (exposure_us - truth_us).abs() <= 500_000,
        "archive lag {exposure_us} µs, ground truth {truth_us} µs (oldest row not restorable: {}, committed {} µs; sample at {primary_at})",
        lost.id,
        lost.at_us
    );

    // Served: the API's figures and /metrics.
    let api = drctl_tests::api::ApiClient::http(&daemon.api_url());
    let figures = api.service_figures("orders").await;
    assert_eq!(figures["wal_archive"]["receiver"], "running");
    assert!(
        figures["wal_archive"]["archive_lag_s"].as_f64().unwrap() > 1.0,
        "{figures}"
    );
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("drctl_wal_archive_lag_seconds{service=\"orders\""),
        "{metrics}"
    );

    // Thawed: the receiver catches up and the lag falls back.
    signal(receiver, "CONT");
    write_rows(&mut ca, 5, &mut Vec::new()).await;
    drctl_tests::wait_for(
        "the archive to catch up",
        Duration::from_secs(60),
        || async {
            let lag = view().wal_archive?.archive_lag_us?;
            (lag < 3_000_000).then_some(())
        },
    )
    .await;
    daemon.stop().await;
    drop(ca);
    a.stop("fast").unwrap();
}

/// The pid of the `pg_receivewal` writing into `spool`.
fn receiver_pid(spool: &Path) -> u32 {
    let out = Command::new("pgrep")
        .args(["-f", &format!("pg_receivewal.*{}", spool.display())])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pg_receivewal writing into {}", spool.display()))
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([&format!("-{which}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{which} {pid}");
}

/// Retention and the archive: once the older of two backups goes, so does
/// the WAL only it needed (every segment before the newer one's start),
/// the archive is still unbroken from the retained backup on, and a
/// restore is planned from that backup; a point before it is refused with
/// the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_wal_no_retained_backup_needs() {
    use drctl_backup::pitr::RecoveryTarget;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-wal-retention-")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, mut ca, _) = primary(dir.path()).await;
    let archiving = archiving(
        dir.path(),
        &a,
        NO_DR_SERVER,
        "keep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n",
    )
    .await;
    let (config, store, archive) = (
        archiving.config.clone(),
        archiving.store.clone(),
        archiving.archive.clone(),
    );
    archive_slot(&mut ca).await;
    let mut rows = Vec::new();
    write_rows(&mut ca, 20, &mut rows).await;
    let (older, _) = drctl_backup::jobs::backup_service(&config, &store, "orders", |_| {})
        .await
        .expect("the first base backup");
    let before_newer = rows.len();
    for _ in 0..3 {
        write_rows(&mut ca, 10, &mut rows).await;
        sqlx::query("SELECT pg_switch_wal()")
            .execute(&mut ca)
            .await
            .unwrap();
    }
    let (newer, _) = drctl_backup::jobs::backup_service(&config, &store, "orders", |_| {})
        .await
        .expect("the second base backup");
    write_rows(&mut ca, 20, &mut rows).await;
    let newest = rows.last().unwrap().after;
    let from: Lsn = older.start_lsn.as_deref().unwrap().parse().unwrap();
    let newer_start: Lsn = newer.start_lsn.as_deref().unwrap().parse().unwrap();
    wait_until_reached(&archive, newest, &|archive: &WalArchive| {
        let archive = archive.clone();
        async move {
            let listing = archive.listing().await.unwrap();
            through(&listing.segments, &timeline_1(), from, archive.size).0
        }
    })
    .await;
    let size = archive.size;
    let before_older = |listing: &drctl_backup::archive::ArchiveListing| {
        listing
            .segments
            .keys()
            .filter(|s| s.end(size) <= newer_start)
            .count()
    };
    assert!(before_older(&archive.listing().await.unwrap()) >= 3);

    let plan = drctl_backup::jobs::apply_retention(&config, &store, "orders", false)
        .await
        .expect("retention");
    assert_eq!(plan.delete, vec![older.id.clone()], "{plan:?}");
    assert!(plan.wal_deleted >= 3, "{plan:?}");
    assert_eq!(plan.wal_waiting, 0);
    let listing = archive.listing().await.unwrap();
    assert_eq!(before_older(&listing), 0, "{:?}", listing.segments);

    // Unbroken from the retained backup to the newest commit.
    let report = drctl_backup::jobs::check_wal_archive(&config, &store, "orders")
        .await
        .expect("the archive reads back");
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.from, newer_start.to_string());
    assert!(report.through.parse::<Lsn>().unwrap() >= newest);

    // A restore is planned from the retained backup; a point before it is
    // refused, naming where the window starts.
    let plan =
        drctl_backup::jobs::plan_restore_to(&config, &store, "orders", RecoveryTarget::Latest)
            .await
            .expect("a plan");
    assert_eq!(plan.base.backup_id, newer.id);
    assert_eq!(plan.wal_from, newer_start.to_string());
    assert!(plan.wal_objects >= 1);
    let early = chrono::DateTime::from_timestamp_micros(rows[before_newer - 1].at_us).unwrap();
    let err =
        drctl_backup::jobs::plan_restore_to(&config, &store, "orders", RecoveryTarget::Time(early))
            .await
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("no backup of orders is consistent by") && err.contains("window starts at"),
        "{err}"
    );

    archiving.stop().await;
    drop(ca);
    a.stop("fast").unwrap();
}
