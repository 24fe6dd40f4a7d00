//! One state-store suite, run against SQLite (a file) and PostgreSQL (a real
//! cluster the lab creates).

use chrono::{DateTime, TimeDelta, Utc};
use drctl_lab::{find_pg_bin, free_port, PgCluster};
use drctl_store::{Backend, LagSample, Store};
use drctl_tests::engine::journaled_failover;
use drctl_tests::{Service, TestConfig};

fn sample(service: &str, at: DateTime<Utc>, exposure_us: Option<i64>) -> LagSample {
    LagSample {
        service: service.into(),
        standby_region: "region-b".into(),
        sampled_at: at,
        primary_time: Some(at),
        status: if exposure_us.is_some() {
            drctl_store::states::MonitorStatus::Ok
        } else {
            drctl_store::states::MonitorStatus::Unknown
        },
        rpo_exposure_us: exposure_us,
        exposure_lower_bound: false,
        replay_lag_us: exposure_us,
        byte_lag: exposure_us.map(|e| e / 10),
        replay_byte_lag: Some(0),
        primary_lsn: Some(1 << 40),
        standby_durable_lsn: Some((1 << 40) - 5),
        standby_replay_lsn: Some((1 << 40) - 9),
        naive_replay_delay_us: Some(12_345),
        wal_receiver: Some("streaming".into()),
        probe_us: Some(900),
        error: exposure_us
            .is_none()
            .then(|| "orders@region-a: connection refused".into()),
    }
}

/// The suite: everything the monitor and API rely on.
async fn store_suite(store: Store) {
    // Microsecond precision: what goes in comes out.
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let old = now - TimeDelta::hours(30);
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.push(sample(
            "orders",
            now - TimeDelta::seconds(100 - i),
            Some((i + 1) * 1000),
        ));
    }
    batch.push(sample("orders", now - TimeDelta::milliseconds(500), None));
    // Two whole minutes of samples older than the raw retention.
    for i in 0..120 {
        batch.push(sample("orders", old + TimeDelta::seconds(i), Some(7_000)));
    }
    batch.push(sample("inventory", now, Some(42)));
    store.insert_lag_samples(&batch).await.expect("insert");

    let history = store
        .lag_samples("orders", now - TimeDelta::hours(1), None, 1000)
        .await
        .expect("history");
    assert_eq!(history.len(), 101);
    assert_eq!(history[0], batch[0], "a sample round-trips exactly");
    assert!(
        history
            .windows(2)
            .all(|w| w[0].sampled_at <= w[1].sampled_at),
        "oldest first"
    );
    let limited = store
        .lag_samples("orders", now - TimeDelta::hours(1), None, 10)
        .await
        .unwrap();
    assert_eq!(limited.len(), 10);
    let until = store
        .lag_samples(
            "orders",
            now - TimeDelta::hours(1),
            Some(now - TimeDelta::seconds(50)),
            1000,
        )
        .await
        .unwrap();
    assert_eq!(until.len(), 50);

    let stats = store
        .exposure_stats("orders", Some("region-b"), now - TimeDelta::hours(1))
        .await
        .expect("stats");
    assert_eq!(stats.samples, 101);
    assert_eq!(stats.unknown_samples, 1);
    assert_eq!(stats.p50_us, Some(50_000));
    assert_eq!(stats.p99_us, Some(99_000));
    assert_eq!(stats.max_us, Some(100_000));

    let latest = store.latest_lag_samples().await.expect("latest");
    assert_eq!(latest.len(), 2);
    assert_eq!(
        latest
            .iter()
            .find(|s| s.service == "inventory")
            .unwrap()
            .rpo_exposure_us,
        Some(42)
    );

    let report = store
        .downsample_lag(now - TimeDelta::hours(24), now - TimeDelta::days(30))
        .await
        .expect("downsample");
    assert_eq!(report.raw_deleted, 120);
    assert!(
        report.rollups_written >= 2 && report.rollups_written <= 3,
        "{report:?}"
    );
    let again = store
        .downsample_lag(now - TimeDelta::hours(24), now - TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!(again.raw_deleted, 0, "downsampling twice changes nothing");
    let rollups = store
        .lag_rollups("orders", old - TimeDelta::hours(1), None)
        .await
        .expect("rollups");
    assert_eq!(rollups.iter().map(|r| r.samples).sum::<i64>(), 120);
    assert!(rollups
        .iter()
        .all(|r| r.exposure_max_us == Some(7_000) && r.exposure_avg_us == Some(7_000)));

    let expired = store
        .downsample_lag(now - TimeDelta::hours(24), now)
        .await
        .unwrap();
    assert_eq!(expired.rollups_deleted, rollups.len() as u64);
    let (raw, rolled) = store.lag_row_counts().await.unwrap();
    assert_eq!((raw, rolled), (102, 0));

    lease_suite(&store, now).await;
    journal_suite(&store, now).await;
    store.close().await;
}

/// Failover `op-1` of `orders`, its driver `old` at the plan step under
/// the lease `operation:orders`.
async fn failover_at_its_plan_step(
    store: &Store,
    ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> drctl_store::Lease {
    let old = journaled_failover(
        store,
        ("operation:orders", "old", ttl),
        "op-1",
        "orders",
        "{}",
        now,
    )
    .await;
    store
        .journal_step_started(&old, "op-1", "plan", 0, now)
        .await
        .unwrap();
    old
}

/// The failover journal's writes are fenced by the lease token: a driver
/// whose lease expired and was taken over (a paused or partitioned one)
/// cannot add a step, end one, or move a cluster's primary; the new holder
/// can.
async fn journal_suite(store: &Store, now: DateTime<Utc>) {
    use std::time::Duration;
    let ttl = Duration::from_secs(10);
    let old = failover_at_its_plan_step(store, ttl, now).await;
    assert_eq!(
        store
            .unfinished_operation(
                "orders",
                &[
                    drctl_store::states::OperationKind::Failover,
                    drctl_store::states::OperationKind::Switchover
                ]
            )
            .await
            .unwrap()
            .unwrap()
            .id,
        "op-1"
    );
    // The old driver pauses past its lease; another takes over.
    let later = now + chrono::TimeDelta::seconds(11);
    let new = store
        .acquire_lease("operation:orders", "new", ttl, later)
        .await
        .unwrap()
        .unwrap();
    assert!(new.token > old.token);
    let late = store
        .journal_step_ended(&old, "op-1", "plan", later, Ok("{}"))
        .await;
    assert!(
        matches!(late, Err(drctl_store::StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    let late = store
        .set_cluster_primary(&old, "orders", "region-b", "op-1", later)
        .await;
    assert!(
        matches!(late, Err(drctl_store::StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    assert!(store.cluster_role("orders").await.unwrap().is_none());
    // The new holder re-runs the step: a second attempt, its own token.
    store
        .journal_step_started(&new, "op-1", "plan", 0, later)
        .await
        .unwrap();
    store
        .journal_step_ended(&new, "op-1", "plan", later, Ok("{\"x\":1}"))
        .await
        .unwrap();
    let steps = store.journal("op-1").await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (steps[0].attempts, steps[0].status),
        (2, drctl_store::states::StepState::Done)
    );
    assert_eq!(
        (steps[0].driver.as_str(), steps[0].lease_token),
        ("new", new.token)
    );
    store
        .set_cluster_primary(&new, "orders", "region-b", "op-1", later)
        .await
        .unwrap();
    assert_eq!(
        store
            .cluster_role("orders")
            .await
            .unwrap()
            .unwrap()
            .primary_region,
        "region-b"
    );
    store
        .journal_operation_status(
            &new,
            "op-1",
            drctl_store::states::OpStatus::Succeeded,
            later,
            Some("{}"),
            None,
        )
        .await
        .unwrap();
    assert!(store
        .unfinished_operation(
            "orders",
            &[
                drctl_store::states::OperationKind::Failover,
                drctl_store::states::OperationKind::Switchover
            ]
        )
        .await
        .unwrap()
        .is_none());
}

/// One holder at a time; expiry hands the lease on with a bigger token; a
/// lost lease cannot be renewed or released by its old holder.
async fn lease_suite(store: &Store, now: DateTime<Utc>) {
    use std::time::Duration;
    let ttl = Duration::from_secs(60);
    let a = store
        .acquire_lease("backup:orders", "a", ttl, now)
        .await
        .unwrap()
        .expect("a takes a free lease");
    assert_eq!(a.token, 1);
    assert!(
        store
            .acquire_lease("backup:orders", "b", ttl, now)
            .await
            .unwrap()
            .is_none(),
        "b waits while a holds it"
    );
    assert!(
        store
            .acquire_lease("backup:catalog", "b", ttl, now)
            .await
            .unwrap()
            .is_some(),
        "leases are per name"
    );
    let later = now + TimeDelta::seconds(61);
    let mut b = store
        .acquire_lease("backup:orders", "b", ttl, later)
        .await
        .unwrap()
        .expect("b takes an expired lease");
    assert_eq!(b.token, 2, "a new holder gets a new token");
    let mut stale = a.clone();
    assert!(
        !store.renew_lease(&mut stale, ttl, later).await.unwrap(),
        "a lost its lease"
    );
    store.release_lease(&a).await.unwrap();
    assert!(
        store
            .acquire_lease("backup:orders", "c", ttl, later)
            .await
            .unwrap()
            .is_none(),
        "a's release did not free b's lease"
    );
    assert!(store.renew_lease(&mut b, ttl, later).await.unwrap());
    store.release_lease(&b).await.unwrap();
    let c = store
        .acquire_lease("backup:orders", "c", ttl, later)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(c.token, 3);

    // A contender's watch reads no wall clock: a lease is taken when free,
    // or after its version stood still for a lease time.
    let t0 = tokio::time::Instant::now();
    let mut held = store
        .take_lease_seen("daemon/leader", "a", None, ttl, now)
        .await
        .unwrap()
        .expect("a lease nobody ever held is taken at once");
    assert!(
        store
            .take_lease_seen("daemon/leader", "b", None, ttl, now)
            .await
            .unwrap()
            .is_none(),
        "only one contender creates it"
    );
    let mut watch = drctl_store::LeaseWatch::default();
    let first = store.lease_sighting("daemon/leader").await.unwrap();
    assert!(!watch.may_take(first.as_ref(), ttl, t0));
    assert!(store.renew_lease(&mut held, ttl, now).await.unwrap());
    let renewed = store.lease_sighting("daemon/leader").await.unwrap();
    assert_ne!(first, renewed, "a renewal is a new version");
    assert!(
        !watch.may_take(renewed.as_ref(), ttl, t0 + ttl),
        "a renewal restarts the count"
    );
    assert!(
        store
            .take_lease_seen("daemon/leader", "b", first.as_ref(), ttl, now)
            .await
            .unwrap()
            .is_none(),
        "a version that is gone takes nothing"
    );
    assert!(watch.may_take(renewed.as_ref(), ttl, t0 + ttl * 2));
    let b = store
        .take_lease_seen("daemon/leader", "b", renewed.as_ref(), ttl, now)
        .await
        .unwrap()
        .expect("a version unchanged for a lease time is taken");
    assert_eq!(b.token, held.token + 1);
    assert!(
        !store.renew_lease(&mut held, ttl, now).await.unwrap(),
        "a lost it"
    );
    store.release_lease(&b).await.unwrap();
    let given_back = store.lease_sighting("daemon/leader").await.unwrap();
    assert!(given_back.as_ref().is_some_and(|s| s.released));
    assert!(drctl_store::LeaseWatch::default().may_take(given_back.as_ref(), ttl, t0));
    store
        .take_lease_seen("daemon/leader", "c", given_back.as_ref(), ttl, now)
        .await
        .unwrap()
        .expect("a lease given back is taken at once");

    let run = drctl_store::ScheduleRun {
        service: "catalog".into(),
        job: drctl_store::states::ScheduledJob::Backup,
        due_at: now,
        started_at: None,
        ended_at: None,
        status: drctl_store::states::ScheduleRunStatus::Missed,
        detail: Some("the daemon was not running".into()),
    };
    store.record_schedule_run(&run).await.unwrap();
    store
        .record_schedule_run(&drctl_store::ScheduleRun {
            status: drctl_store::states::ScheduleRunStatus::Ok,
            ..run.clone()
        })
        .await
        .unwrap();
    let runs = store.schedule_runs(Some("catalog"), 10).await.unwrap();
    assert_eq!(
        runs.len(),
        1,
        "recording the same due time twice updates it"
    );
    assert_eq!(runs[0].status, drctl_store::states::ScheduleRunStatus::Ok);
    assert_eq!(
        store
            .last_schedule_due("catalog", drctl_store::states::ScheduledJob::Backup)
            .await
            .unwrap(),
        Some(now)
    );
    assert_eq!(
        store
            .last_schedule_due("catalog", drctl_store::states::ScheduledJob::Verify)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = Store::open(&url).await.expect("open sqlite");
    assert_eq!(store.backend(), Backend::Sqlite);
    store_suite(store).await;
    // Reopening applies no migration twice.
    Store::open(&url)
        .await
        .expect("reopen sqlite")
        .close()
        .await;
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-store-")
        .tempdir_in("/tmp")
        .unwrap();
    let bin = find_pg_bin().unwrap_or_else(|e| panic!("{e}"));
    let pg = PgCluster::new(
        "store",
        dir.path().join("pg").join("store"),
        free_port(),
        bin,
    );
    pg.init_primary(100).expect("initdb");
    pg.start().expect("start PostgreSQL");
    let url = pg.dsn("postgres");
    let result = tokio::spawn(async move {
        let store = Store::open(&url).await.expect("open postgres");
        assert_eq!(store.backend(), Backend::Postgres);
        store_suite(store).await;
        Store::open(&url)
            .await
            .expect("reopen postgres")
            .close()
            .await;
    })
    .await;
    pg.stop("immediate").expect("stop PostgreSQL");
    result.expect("the suite passes on PostgreSQL");
}

#[tokio::test]
async fn unsupported_store_url_is_a_clear_error() {
    let err = Store::open("mysql://localhost/x").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "state store URL must start with sqlite:// or postgres:// (got scheme \"mysql\")"
    );
}

/// A PostgreSQL cluster for a store test, started with `env` for its
/// processes; stop it with `stop("immediate")` however the test ends.
fn store_cluster(dir: &std::path::Path, env: &[(&str, &str)]) -> PgCluster {
    let bin = find_pg_bin().unwrap_or_else(|e| panic!("{e}"));
    let pg = PgCluster::new("store", dir.join("pg").join("store"), free_port(), bin);
    pg.init_primary(100).expect("initdb");
    pg.start_with_env(env).expect("start PostgreSQL");
    pg
}

/// Sessions of `pg` waiting on a lock while running a statement like `sql`.
async fn waiting_on_a_lock(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
    )
    .bind(sql)
    .fetch_one(&mut conn)
    .await
    .expect("reading pg_stat_activity");
    n
}

/// The race of issue 15 item 13, made deterministic: the old driver's
/// fenced journal write has checked its lease and waits on a row lock when
/// a new driver takes the lease over. Either the takeover waits for the
/// write, or the write must fail: an old holder's write never lands after
/// the takeover it did not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_journal_write_never_lands_after_a_takeover_it_raced() {
    use sqlx::Connection;
    use std::time::Duration;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-store-")
        .tempdir_in("/tmp")
        .unwrap();
    let pg = store_cluster(dir.path(), &[]);
    let url = pg.dsn("postgres");
    let result = tokio::spawn(async move {
        let store = Store::open(&url).await.expect("open postgres");
        let now = Utc::now();
        let ttl = Duration::from_secs(10);
        let old = failover_at_its_plan_step(&store, ttl, now).await;

        // Another session holds the step's row: the old driver's write
        // passes its lease check, then waits.
        let mut blocker = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
        sqlx::query("SELECT 1 FROM operation_steps WHERE operation_id = 'op-1' FOR UPDATE")
            .execute(&mut blocker)
            .await
            .unwrap();
        let write = tokio::spawn({
            let (store, old) = (store.clone(), old.clone());
            async move {
                store
                    .journal_step_ended(&old, "op-1", "plan", now, Ok("{}"))
                    .await
            }
        });
        drctl_tests::wait_for(
            "the old driver's write to wait on the step's row",
            Duration::from_secs(30),
            || async {
                (waiting_on_a_lock(&url, "UPDATE operation_steps%").await > 0).then_some(())
            },
        )
        .await;

        // The lease expired meanwhile (the old driver was paused); a new
        // driver takes it.
        let later = now + TimeDelta::seconds(11);
        let takeover = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .acquire_lease("operation:orders", "new", ttl, later)
                    .await
            }
        });
        let took_over_first = drctl_tests::wait_for(
            "the takeover to finish or to wait for the write",
            Duration::from_secs(30),
            || async {
                if takeover.is_finished() {
                    Some(true)
                } else {
                    (waiting_on_a_lock(&url, "INSERT INTO leases%").await > 0).then_some(false)
                }
            },
        )
        .await;
        sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
        let write = write.await.unwrap();
        let new = takeover
            .await
            .unwrap()
            .unwrap()
            .expect("the new driver takes the expired lease");
        assert!(new.token > old.token);
        if took_over_first {
            assert!(
                matches!(write, Err(drctl_store::StoreError::LeaseLost { .. })),
                "the old driver's write landed after the takeover had committed: {write:?}"
            );
            let steps = store.journal("op-1").await.unwrap();
            assert_eq!(
                steps[0].status,
                drctl_store::states::StepState::Started,
                "{steps:?}"
            );
        } else {
            write.expect("the write the takeover waited for lands");
        }
        store.close().await;
    })
    .await;
    pg.stop("immediate").expect("stop PostgreSQL");
    result.expect("the race is fenced");
}

/// The leader lease's (token, renewals), read directly.
async fn leader_lease_version(conn: &mut sqlx::PgConnection) -> (i64, i64) {
    sqlx::query_as("SELECT token, renewals FROM leases WHERE name = 'daemon/leader'")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Debian's libfaketime (package `faketime`; tests/run.sh installs it).
fn libfaketime() -> String {
    let path = std::env::var("LIBFAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into());
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} is missing: this test runs the store under libfaketime; install it with \
         `apt-get install faketime` (bash tests/run.sh does) or set LIBFAKETIME"
    );
    path
}

/// Issue 15 item 13: two daemons share a PostgreSQL store whose host clock
/// steps an hour forward. The leader keeps renewing; the follower must not
/// take the lease (it used to, at once: the stored expiry was suddenly in
/// the past), so two daemons never lead at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_step_on_the_store_host_does_not_make_a_second_leader() {
    use drctl_daemon::leader::{run, Leadership};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let lib = libfaketime();
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-store-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let offset_file = dir.path().join("faketime");
    std::fs::write(&offset_file, "+0\n").unwrap();
    std::fs::set_permissions(&offset_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let offset_path = offset_file.to_str().unwrap().to_string();
    let pg = store_cluster(
        dir.path(),
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", offset_path.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            // Timeouts and sleeps keep real time; only the wall clock moves.
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let url = pg.dsn("postgres");
    let result = tokio::spawn(async move {
        let store = Store::open(&url).await.expect("open postgres");
        let ttl = Duration::from_secs(4);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let a = Leadership::new("daemon-a".into(), String::new(), ttl);
        let a_task = tokio::spawn(run(a.clone(), store.clone(), stopped.clone()));
        drctl_tests::wait_for("daemon-a to lead", Duration::from_secs(30), || async {
            a.is_leader().then_some(())
        })
        .await;
        let b = Leadership::new("daemon-b".into(), String::new(), ttl);
        let b_task = tokio::spawn(run(b.clone(), store.clone(), stopped.clone()));
        b.decided().await;
        let term = a.standing().term;

        // The step comes right after one of daemon-a's renewals, so
        // daemon-b looks at the lease (it does every tick) before daemon-a
        // renews again: the moment a wall-clock expiry is in the past.
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let mut b_led = false;
        for hours in 1..=3 {
            let seen = leader_lease_version(&mut conn).await;
            let renewed = Instant::now() + Duration::from_secs(30);
            while leader_lease_version(&mut conn).await == seen {
                assert!(
                    Instant::now() < renewed,
                    "daemon-a stopped renewing its lease"
                );
                b_led |= b.is_leader();
            }
            let before = store.clock().await.unwrap();
            std::fs::write(&offset_file, format!("+{}\n", 3600 * hours)).unwrap();
            assert!(
                store.clock().await.unwrap() - before > TimeDelta::minutes(50),
                "libfaketime did not step the store's clock"
            );
            // Two ticks: daemon-b looks at the lease at least once.
            let until = Instant::now() + ttl * 2 / 5;
            while Instant::now() < until {
                let (a_leads, b_leads) = (a.is_leader(), b.is_leader());
                assert!(
                    !(a_leads && b_leads),
                    "two daemons led at once after the store's clock stepped"
                );
                b_led |= b_leads;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // And a lease time more, the steps long past any stored expiry.
        let until = Instant::now() + ttl;
        while Instant::now() < until {
            let (a_leads, b_leads) = (a.is_leader(), b.is_leader());
            assert!(
                !(a_leads && b_leads),
                "two daemons led at once after the store's clock stepped"
            );
            b_led |= b_leads;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !b_led,
            "daemon-b took the lease from a leader that kept renewing it"
        );
        assert!(a.is_leader(), "daemon-a still leads");
        assert_eq!(a.standing().term, term, "in the same term");
        stop.send(true).unwrap();
        a_task.await.unwrap();
        b_task.await.unwrap();
        store.close().await;
    })
    .await;
    pg.stop("immediate").expect("stop PostgreSQL");
    result.expect("one leader through the clock step");
}

/// A TCP relay in front of the store that can partition it: once cut,
/// every connection, open or new, stays open and carries nothing either
/// way (packets lost, no reset), as behind a blackhole route. Ends when
/// dropped.
struct Partition {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Partition {
    async fn start(upstream: std::net::SocketAddr) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let is_cut = *rx.borrow_and_update();
                    if is_cut {
                        // Held open, never answered.
                        std::future::pending::<()>().await;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::try_join!(
                                tokio::io::copy(&mut cr, &mut sw),
                                tokio::io::copy(&mut sr, &mut cw)
                            )
                        } => {}
                        _ = async { rx.wait_for(|c| *c).await.map(|_| ()) } => {
                            // Both sockets stay open and silent.
                            let _held = (cr, cw, sr, sw);
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        Partition { addr, cut, task }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// New connections pass again; the ones cut stay silent.
    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

/// Issue 15 item 19: the store partitioned away while a statement is in
/// flight (no reset, packets lost) used to hold that statement, and its
/// pooled connection, until TCP gave up after about fifteen minutes. Now
/// the statement fails within the store's bound, and once the partition
/// heals the store answers again on fresh connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_off_by_a_partition_fails_instead_of_hanging() {
    use sqlx::Connection;
    use std::time::Duration;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-store-")
        .tempdir_in("/tmp")
        .unwrap();
    let pg = store_cluster(dir.path(), &[]);
    let url = pg.dsn("postgres");
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{}", pg.port).parse().unwrap();
    let result = tokio::spawn(async move {
        let partition = Partition::start(upstream).await;
        let through = url.replace(&upstream.to_string(), &partition.addr.to_string());
        assert_ne!(through, url);
        let store = Store::open(&through)
            .await
            .expect("open postgres through the relay");
        let ttl = Duration::from_secs(60);
        let mut lease = store
            .acquire_lease("backup:orders", "a", ttl, Utc::now())
            .await
            .unwrap()
            .unwrap();

        // A statement in flight: the renewal waits on a row lock held by
        // another session (direct, not through the relay).
        let mut direct = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut direct).await.unwrap();
        sqlx::query("SELECT 1 FROM leases WHERE name = 'backup:orders' FOR UPDATE")
            .execute(&mut direct)
            .await
            .unwrap();
        let renewal = tokio::spawn({
            let store = store.clone();
            async move { store.renew_lease(&mut lease, ttl, Utc::now()).await }
        });
        // And a transaction in flight (its statements run on a connection
        // of their own, not through the pool's bounded executor): a batch
        // of lag samples waits on a table lock.
        sqlx::query("LOCK TABLE lag_samples IN ACCESS EXCLUSIVE MODE")
            .execute(&mut direct)
            .await
            .unwrap();
        let batch = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .insert_lag_samples(&[sample("orders", Utc::now(), Some(0))])
                    .await
            }
        });
        drctl_tests::wait_for(
            "the renewal and the batch to be in flight",
            Duration::from_secs(30),
            || async {
                (waiting_on_a_lock(&url, "UPDATE leases%").await > 0
                    && waiting_on_a_lock(&url, "INSERT INTO lag_samples%").await > 0)
                    .then_some(())
            },
        )
        .await;
        // The partition: their answers will never arrive.
        partition.cut();
        sqlx::query("COMMIT").execute(&mut direct).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(120), renewal)
            .await
            .expect("the statement cut off by the partition still hangs after two minutes")
            .unwrap();
        let err = outcome.expect_err("no answer came back: the renewal cannot have succeeded");
        eprintln!("cut off: {err}");
        let outcome = tokio::time::timeout(Duration::from_secs(120), batch)
            .await
            .expect("the transaction cut off by the partition still hangs after two minutes")
            .unwrap();
        let err = outcome.expect_err("no answer came back: the batch cannot have committed");
        eprintln!("transaction cut off: {err}");

        // New statements fail too, rather than hang, while it lasts.
        tokio::time::timeout(Duration::from_secs(120), store.lease("backup:orders"))
            .await
            .expect("a statement during the partition hangs")
            .expect_err("the store is cut off");
        partition.heal();
        drctl_tests::wait_for(
            "the store to answer again",
            Duration::from_secs(120),
            || async { store.lease("backup:orders").await.ok() },
        )
        .await;
        drop(partition);
        store.close().await;
    })
    .await;
    pg.stop("immediate").expect("stop PostgreSQL");
    result.expect("the partitioned store's statements fail in time");
}

/// Issue 15 item 20: a daemon back after a week down, on a minutely backup
/// schedule (10,080 due times), used to catch up 1,001 due times per
/// five-second tick, each chunk with its own backup and retention run.
/// It must run once, and record the due times it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_long_outage_is_caught_up_by_one_scheduled_run() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    // The backup itself fails at once (nothing listens on its port): what
    // is counted here is how often the scheduler starts one.
    TestConfig::new()
        .store_url("sqlite://state.db")
        .local_object_store("local-backups", "objects")
        .service(
            Service::cold("catalog")
                .postgres(
                    "eu-west",
                    r#"dsn = "postgres://app@127.0.0.1:9/catalog?connect_timeout=1""#,
                )
                .table("[services.backup]\nstore = \"local-backups\"\nschedule = \"* * * * *\""),
        )
        .write(dir.path());
    let config = drctl_config::load(&dir.path().join("drctl.toml")).expect("valid test config");
    let store = Store::open(config.store.url.expose()).await.expect("store");
    // Not at the turn of a minute, so no new due time comes up meanwhile.
    while Utc::now().timestamp() % 60 > 30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let start = Utc::now();
    let minute = DateTime::from_timestamp(start.timestamp() / 60 * 60, 0).unwrap();
    let week_ago = minute - TimeDelta::days(7);
    store
        .record_schedule_run(&drctl_store::ScheduleRun {
            service: "catalog".into(),
            job: drctl_store::states::ScheduledJob::Backup,
            due_at: week_ago,
            started_at: Some(week_ago),
            ended_at: Some(week_ago),
            status: drctl_store::states::ScheduleRunStatus::Ok,
            detail: None,
        })
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(drctl_backup::scheduler::run_scheduler(
        std::sync::Arc::new(config),
        store.clone(),
        dir.path().join("scratch"),
        stopped,
    ));
    // Three ticks of the scheduler (every 5 s).
    tokio::time::sleep(Duration::from_secs(13)).await;
    stop.send(true).unwrap();
    scheduler.await.unwrap();

    let runs = store
        .schedule_runs_in(Some("catalog"), Some(week_ago), None, 100_000)
        .await
        .unwrap();
    let started: Vec<_> = runs
        .iter()
        .filter(|r| r.started_at.is_some() && r.due_at > week_ago && r.due_at <= minute)
        .collect();
    assert_eq!(
        started.len(),
        1,
        "one run catches a week up, not one per tick: {started:#?}"
    );
    assert_eq!(
        started[0].due_at, minute,
        "the latest due time is the one run"
    );
    let missed = runs
        .iter()
        .filter(|r| r.status == drctl_store::states::ScheduleRunStatus::Missed)
        .count();
    assert!(
        missed >= 1000,
        "the missed due times are recorded ({missed})"
    );
    assert!(
        runs.iter().any(
            |r| r.status == drctl_store::states::ScheduleRunStatus::Missed
                && r.due_at == week_ago + TimeDelta::minutes(1)
        ),
        "the oldest missed due time is on record too"
    );
    store.close().await;
}
