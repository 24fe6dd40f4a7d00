//! Primary leases through etcd on the namespaced lab (real etcd members in
//! region-a, region-b and the witness site; real PostgreSQL; agents that
//! hold the leases): the guarantees against split brain, checked against
//! what writers really saw acknowledged. Region-a cut off (also with its
//! wall clock stepped); region-b, the witness, the etcd leader or the
//! region link lost; drctl alone cut off; flapping partitions under a
//! cooldown; the leading `drctl serve` killed mid-failover; a primary's
//! agent killed (its watchdog fences).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drctl_lab::{Partition, Site, REGION_A, REGION_B};
use drctl_store::states::{GuardDecision, OpStatus, OperationKind};
use drctl_store::Store;
use drctl_tests::*;
use sqlx::{Connection, PgConnection};

/// Commits one row every 50 ms straight to `dsn` from inside `site` (not
/// through DNS: an application server in that region), reconnecting after
/// any failure; remembers when each commit was acknowledged.
struct SiteWriter {
    acked: Arc<Mutex<Vec<Instant>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SiteWriter {
    fn start(lab: &drctl_lab::Lab, site: Site, dsn: String) -> SiteWriter {
        let insert = format!(
            "INSERT INTO shop.direct (note) VALUES ('{} app')",
            site.name()
        );
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let log = acked.clone();
        let rt = lab.site_runtime(site).expect("a namespaced lab");
        let task = rt.spawn(async move {
            let mut conn: Option<PgConnection> = None;
            while !*stopped.borrow() {
                if conn.is_none() {
                    if let Ok(Ok(c)) = tokio::time::timeout(
                        Duration::from_millis(500),
                        PgConnection::connect(&dsn),
                    )
                    .await
                    {
                        conn = Some(c);
                    }
                }
                if let Some(c) = conn.as_mut() {
                    let r = tokio::time::timeout(
                        Duration::from_millis(500),
                        sqlx::query(&insert).execute(&mut *c),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => log.lock().unwrap().push(Instant::now()),
                        _ => conn = None,
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        let task = tokio::spawn(async move {
            let _ = task.await;
        });
        SiteWriter { acked, stop, task }
    }

    async fn finish(self) -> Vec<Instant> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_cut_off_from_everyone_fences_itself_before_the_other_is_promoted() {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    region_a_cut_off(&lab, || {}).await;
}

/// Debian's libfaketime (package `faketime`; tests/run.sh installs it).
fn libfaketime() -> String {
    let path = std::env::var("LIBFAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install it with `apt-get install faketime` (bash tests/run.sh does) or set LIBFAKETIME"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_whose_wall_clock_steps_five_seconds_either_way_still_fences_itself_in_time() {
    // region-a's agent (the lease holder) runs under libfaketime: its wall
    // clock is read from a file the test rewrites, as an NTP step or a VM
    // resumed would move it; the monotonic clock is left alone, as such a
    // step leaves it.
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+5s\n").unwrap();
    let env = [
        ("LD_PRELOAD", libfaketime()),
        ("FAKETIME_TIMESTAMP_FILE", clock.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ];
    let (lab, _dir) = start_leased_lab_with(vec![orders()], |spec| {
        for (k, v) in &env {
            spec.agent_env
                .push((REGION_A.to_string(), k.to_string(), v.clone()));
        }
    })
    .await;
    // Stepped back by ten seconds just before the cut: a holder that
    // counted its deadline on the wall clock would now fence 10 s late.
    region_a_cut_off(&lab, || std::fs::write(&clock, "-5s\n").unwrap()).await;
}

/// Pauses the lab's workload (only the test's writers write) and creates
/// the table [`SiteWriter`] writes to, on region-a's primary.
async fn quiet_with_direct_table(lab: &drctl_lab::Lab) {
    lab.workload().pause();
    let mut c = connect(&lab.cluster("orders", REGION_A).dsn("orders")).await;
    sqlx::query("CREATE TABLE shop.direct (id bigserial PRIMARY KEY, note text)")
        .execute(&mut c)
        .await
        .unwrap();
}

/// Cuts region-a off from everyone under a writer inside region-a and one
/// that follows DNS, and checks the guarantees against what they saw
/// acknowledged. `before_cut` runs just before the partition.
async fn region_a_cut_off(lab: &drctl_lab::Lab, before_cut: impl FnOnce()) {
    quiet_with_direct_table(lab).await;
    let config = lab_config(lab);
    assert!(
        config.coordination.is_some(),
        "the leased lab writes [coordination]"
    );
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    // An application server inside region-a writing straight to its
    // primary, and one that follows DNS.
    let direct = SiteWriter::start(lab, Site::RegionA, lab.dsn("orders", REGION_A, "orders"));
    let via_dns = Writer::start(lab).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    before_cut();
    lab.partition(Partition::Isolate(Site::RegionA)).unwrap();
    let cut = Instant::now();
    eprintln!("cut at {}", chrono::Utc::now());
    // The first write region-b acknowledges, asked every 50 ms from here.
    let b_dsn = lab.cluster("orders", REGION_B).dsn("orders");
    let first_b = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let wrote = async {
                let mut c =
                    tokio::time::timeout(Duration::from_millis(500), PgConnection::connect(&b_dsn))
                        .await
                        .ok()?
                        .ok()?;
                sqlx::query("INSERT INTO shop.direct (note) VALUES ('region-b probe')")
                    .execute(&mut c)
                    .await
                    .ok()
            }
            .await;
            if wrote.is_some() {
                break Instant::now();
            }
            if Instant::now() > deadline {
                let decisions = store.decisions(Some("orders"), 50).await.unwrap();
                let ops = store.operations(10).await.unwrap();
                panic!("region-b took no write within 120 s of the cut; decisions: {decisions:#?}; operations: {ops:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let op = wait_for("the failover recorded", Duration::from_secs(60), || async {
        store
            .operations(10)
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.kind == OperationKind::Failover && o.status == OpStatus::Succeeded)
    })
    .await;
    let steps = store.journal(&op.id).await.unwrap();
    for s in &steps {
        eprintln!("step {} {:?} .. {:?}", s.step, s.started_at, s.ended_at);
    }
    eprintln!("operation started {:?}", op.started_at);
    for d in store
        .decisions(Some("orders"), 50)
        .await
        .unwrap()
        .iter()
        .rev()
    {
        eprintln!("decision {:?} {:?} at {}", d.action, d.code, d.decided_at);
    }
    let fence = journaled_output(&store, &op.id, "fence_source").await;
    eprintln!("fence: {fence}");
    assert_eq!(fence["method"], "lease", "{fence}");
    assert_eq!(fence["primary_key"]["released"], "expired", "{fence}");

    // DNS names region-b, and the application that follows it writes there.
    wait_for("DNS naming region-b", Duration::from_secs(30), || async {
        (resolve(lab).await == Some(front(lab, REGION_B))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let region_a_acks = direct.finish().await;
    let dns_acks = via_dns.finish().await;
    assert!(
        dns_acks.iter().any(|(_, at)| *at > first_b),
        "the writer that follows DNS writes again after the failover"
    );

    // The guarantee: nothing the old primary acknowledged came after the
    // new primary's first acknowledged write.
    let last_a = region_a_acks
        .iter()
        .max()
        .copied()
        .expect("region-a acknowledged writes before the cut");
    let split_brain = region_a_acks.iter().filter(|at| **at >= first_b).count();
    eprintln!(
        "region-a cut off: its last acknowledged write {:.2} s after the cut, region-b's first {:.2} s after it; {} split-brain rows",
        last_a.saturating_duration_since(cut).as_secs_f64(),
        first_b.saturating_duration_since(cut).as_secs_f64(),
        split_brain
    );
    assert_eq!(
        split_brain, 0,
        "rows acknowledged by the old primary after the new one's first write"
    );
    assert!(last_a < first_b);
    // After region-a's last acknowledged write, only region-b acknowledges.
    let first_b_dns = dns_acks
        .iter()
        .map(|(_, at)| *at)
        .find(|at| *at > last_a && *at > cut)
        .expect("the writer following DNS wrote to region-b");
    eprintln!(
        "region-b's first write through DNS {:.2} s after the cut",
        first_b_dns.saturating_duration_since(cut).as_secs_f64()
    );
    // The measured loss: a minimum (the monitor lost sight of region-a at
    // the cut) and a maximum that holds what region-a really acknowledged
    // after the cut, all of it lost (region-b never received it).
    let measured: drctl_failover::Measured =
        serde_json::from_str(op.result.as_deref().unwrap()).unwrap();
    let truth = last_a.saturating_duration_since(cut);
    eprintln!(
        "measured loss: at least {:.2} s, at most {:.2} s; region-a acknowledged writes for {:.2} s after the cut",
        measured.rpo_us as f64 / 1e6,
        measured.rpo_upper_us.unwrap_or(-1) as f64 / 1e6,
        truth.as_secs_f64()
    );
    assert!(measured.rpo_lower_bound, "{measured:?}");
    let upper = measured.rpo_upper_us.expect("an upper bound");
    assert!(
        upper as u128 >= truth.as_micros(),
        "upper bound {upper} µs below the {} µs region-a acknowledged after the cut",
        truth.as_micros()
    );
    // It fenced itself: its agent says so in its log.
    let log = std::fs::read_to_string(
        &lab.record
            .agents
            .iter()
            .find(|a| a.region == REGION_A)
            .unwrap()
            .log,
    )
    .unwrap();
    assert!(log.contains("primary fenced itself"), "{log}");

    // The guard waited for the lease, as its decisions say.
    let decisions = store.decisions(Some("orders"), 50).await.unwrap();
    let decided = decisions
        .iter()
        .find(|d| d.action == GuardDecision::Failover)
        .expect("the guard decided the failover");
    let evidence: serde_json::Value = serde_json::from_str(&decided.evidence).unwrap();
    assert_eq!(
        evidence["observation"]["lease"]["state"], "released",
        "the guard failed over only once the lease was released: {evidence}"
    );
    assert!(
        decisions
            .iter()
            .any(|d| d.evidence.contains("\"state\":\"held\"")),
        "before that, the guard saw the cut-off primary still holding its lease"
    );
    lab.heal().unwrap();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drctl_cut_off_from_a_primary_that_renews_its_lease_fails_nothing_over() {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    // drctl's daemon in the control-plane site, cut off region-a only:
    // region-a still reaches the etcd quorum and renews its lease.
    let net = lab.network().expect("a namespaced lab").clone();
    let ctl = net
        .runtime_with_workers(Site::Ctl, 2)
        .expect("a runtime in ctl");
    let daemon = ctl
        .run(start_daemon_automatic(config))
        .await
        .expect("starting the daemon in ctl");
    lab.partition(Partition::Cut(Site::Ctl, Site::RegionA))
        .unwrap();
    let hold = wait_for("the guard holding", Duration::from_secs(40), || async {
        store
            .decisions(Some("orders"), 50)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.action == GuardDecision::Hold)
    })
    .await;
    assert!(
        matches!(
            hold.code.as_deref(),
            Some("primary_holds_lease") | Some("standby_sees_primary")
        ),
        "{hold:?}"
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        no_failover(&store).await,
        "no failover while the primary renews its lease"
    );
    lab.heal().unwrap();
    assert!(writable(&lab, REGION_A).await);
    daemon.stop().await;
}

/// Whether the agent of `region` has fenced its own server so far.
fn self_fenced(lab: &drctl_lab::Lab, region: &str) -> bool {
    let log = &lab
        .record
        .agents
        .iter()
        .find(|a| a.region == region)
        .unwrap()
        .log;
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("primary fenced itself")
}

/// Whether no failover was recorded.
async fn no_failover(store: &Store) -> bool {
    store
        .operations(10)
        .await
        .unwrap()
        .iter()
        .all(|o| o.kind != OperationKind::Failover)
}

/// Acknowledged writes within `from..to`.
fn acked_between(acks: &[Instant], from: Instant, to: Instant) -> usize {
    acks.iter().filter(|at| **at >= from && **at < to).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_region_b_the_witness_the_etcd_leader_or_the_region_link_fences_nothing_and_fails_nothing_over(
) {
    let (mut lab, _dir) = start_leased_lab(vec![orders()]).await;
    quiet_with_direct_table(&lab).await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    let direct = SiteWriter::start(&lab, Site::RegionA, lab.dsn("orders", REGION_A, "orders"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lease_ttl = Duration::from_secs(10);

    // Each loss lasts longer than a lease: a primary that needed the lost
    // site to renew would have fenced itself within it.
    let mut windows = Vec::new();
    for site in [Site::RegionB, Site::Witness] {
        lab.partition(Partition::Isolate(site)).unwrap();
        let from = Instant::now();
        tokio::time::sleep(lease_ttl + Duration::from_secs(5)).await;
        windows.push((site.name().to_string(), from, Instant::now()));
        lab.heal().unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let killed = lab.kill_etcd_leader().await.unwrap();
    let from = Instant::now();
    tokio::time::sleep(lease_ttl + Duration::from_secs(5)).await;
    windows.push((
        format!("etcd leader ({killed}) killed"),
        from,
        Instant::now(),
    ));
    lab.restart_etcd_member(&killed).unwrap();

    // Only the two regions lose each other: both still reach the quorum
    // through the witness, drctl reaches both; exposure grows, nothing
    // fails over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.partition(Partition::Cut(Site::RegionA, Site::RegionB))
        .unwrap();
    let cut_at = chrono::Utc::now();
    let from = Instant::now();
    let exposed = wait_for(
        "exposure growing under the a-b cut",
        Duration::from_secs(60),
        || async {
            store
                .last_known_exposure("orders", REGION_B)
                .await
                .ok()?
                .filter(|s| s.sampled_at > cut_at && s.rpo_exposure_us.unwrap_or(0) > 3_000_000)
        },
    )
    .await;
    tokio::time::sleep(lease_ttl).await;
    windows.push(("a-b".to_string(), from, Instant::now()));
    eprintln!(
        "exposure under the a-b cut: {:?} µs",
        exposed.rpo_exposure_us
    );
    lab.heal().unwrap();

    let acks = direct.finish().await;
    for (what, from, to) in &windows {
        let n = acked_between(&acks, *from, *to);
        eprintln!("{what}: {n} writes acknowledged by region-a's primary");
        assert!(n > 0, "{what}: region-a's primary kept taking writes");
    }
    assert!(
        !self_fenced(&lab, REGION_A),
        "region-a's primary never fenced itself"
    );
    assert!(no_failover(&store).await, "no failover");
    assert!(writable(&lab, REGION_A).await);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemons_in_two_sites_keep_one_leader_through_etcd_when_a_site_is_lost() {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    let config = lab_config(&lab);
    let net = lab.network().expect("a namespaced lab").clone();
    let ctl = net
        .runtime_with_workers(Site::Ctl, 2)
        .expect("a runtime in ctl");
    let witness = net
        .runtime_with_workers(Site::Witness, 2)
        .expect("a runtime in the witness site");
    let first = ctl
        .run(start_daemon_automatic(config.clone()))
        .await
        .expect("a daemon in ctl");
    wait_for(
        "the daemon in ctl leading",
        Duration::from_secs(20),
        || async { first.is_leader().then_some(()) },
    )
    .await;
    let second = witness
        .run(start_daemon_automatic(config))
        .await
        .expect("a daemon in the witness site");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(first.is_leader() && !second.is_leader());

    // The control plane's site is lost: the daemon there cannot renew and
    // steps down; the one in the witness site takes over once the lease
    // expired in etcd. Never both at once.
    lab.partition(Partition::Isolate(Site::Ctl)).unwrap();
    let lost = Instant::now();
    let mut both = 0;
    let took_over = loop {
        if first.is_leader() && second.is_leader() {
            both += 1;
        }
        if second.is_leader() {
            break Instant::now();
        }
        assert!(
            lost.elapsed() < Duration::from_secs(60),
            "the witness site's daemon did not take over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "leadership moved to the witness site's daemon {:.1} s after the control plane's site was lost",
        took_over.duration_since(lost).as_secs_f64()
    );
    assert_eq!(both, 0, "two daemons led at once");
    assert!(!first.is_leader());
    lab.heal().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(second.is_leader() && !first.is_leader());
    first.stop().await;
    second.stop().await;
}

/// How often the acknowledgements of the writers beside each region's
/// server changed hands, in time order: `[A, B, A]` is two clean handovers;
/// any more runs than handovers + 1 means two servers acknowledged writes
/// in the same period, which is split brain.
fn ack_runs(per_region: &[(&'static str, &[Instant])]) -> Vec<(&'static str, usize)> {
    let mut all: Vec<(Instant, &'static str)> = per_region
        .iter()
        .flat_map(|(region, acks)| acks.iter().map(move |at| (*at, *region)))
        .collect();
    all.sort();
    let mut runs: Vec<(&'static str, usize)> = Vec::new();
    for (_, region) in all {
        match runs.last_mut() {
            Some((r, n)) if *r == region => *n += 1,
            _ => runs.push((region, 1)),
        }
    }
    runs
}

/// Checks that the writes acknowledged beside region-a's and region-b's
/// servers changed hands exactly as `expected` (e.g. A, then B, then A):
/// one writable primary at a time.
fn assert_handovers(a_acks: &[Instant], b_acks: &[Instant], expected: &[&str]) {
    let runs = ack_runs(&[(REGION_A, a_acks), (REGION_B, b_acks)]);
    let shown: Vec<_> = runs.iter().take(12).collect();
    eprintln!(
        "acknowledgements in time order ({} runs): {shown:?}",
        runs.len()
    );
    assert_eq!(
        runs.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        expected,
        "split brain: the acknowledgements changed hands {} times; the first runs: {shown:?}",
        runs.len().saturating_sub(1)
    );
}

/// The succeeded failovers so far, oldest first.
async fn failovers(store: &Store) -> Vec<drctl_store::OperationRecord> {
    let mut ops: Vec<_> = store
        .operations(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == OperationKind::Failover)
        .collect();
    ops.sort_by_key(|o| o.started_at);
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_partitions_fail_over_at_most_once_per_cooldown_and_never_leave_two_writable_primaries(
) {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    quiet_with_direct_table(&lab).await;
    let cooldown = Duration::from_secs(60);
    let mut config = Arc::unwrap_or_clone(lab_config(&lab));
    for service in &mut config.services {
        service.failover.cooldown = cooldown;
    }
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(Arc::new(config)).await;
    // An application server beside each region's server, writing straight
    // to it: whichever is writable acknowledges.
    let in_a = SiteWriter::start(&lab, Site::RegionA, lab.dsn("orders", REGION_A, "orders"));
    let in_b = SiteWriter::start(&lab, Site::RegionB, lab.dsn("orders", REGION_B, "orders"));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Blips shorter than the lease: nothing fences, nothing fails over.
    for _ in 0..3 {
        lab.partition(Partition::Isolate(Site::RegionA)).unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        lab.heal().unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(no_failover(&store).await, "no failover for 4 s blips");
    assert!(!self_fenced(&lab, REGION_A), "no fence for 4 s blips");

    // A cut longer than the lease: one failover, to region-b.
    lab.partition(Partition::Isolate(Site::RegionA)).unwrap();
    wait_for("the first failover", Duration::from_secs(60), || async {
        failovers(&store)
            .await
            .first()
            .filter(|o| o.status == OpStatus::Succeeded)
            .cloned()
    })
    .await;
    lab.heal().unwrap();
    // The old primary is made region-b's standby (automatic rejoin), so a
    // failover back is possible at all.
    wait_for(
        "region-a back as a standby",
        Duration::from_secs(120),
        || async {
            (role(&lab, REGION_A).await.map(|(standby, _)| standby) == Some(true)).then_some(())
        },
    )
    .await;
    // And seen so by the monitor: a failover back needs a sighting of
    // what region-a has (without one the loss is unknown, and the guard
    // leaves the choice to a person).
    let rejoined_at = chrono::Utc::now();
    wait_for(
        "the monitor sampling region-a as a standby",
        Duration::from_secs(30),
        || async {
            store
                .last_known_exposure("orders", REGION_A)
                .await
                .ok()?
                .filter(|s| s.sampled_at > rejoined_at)
        },
    )
    .await;

    // Now the new primary's region flaps: a cut longer than the lease (it
    // fences itself), a heal, a short cut. A failover back is due, but
    // the cooldown holds it until it has passed.
    lab.partition(Partition::Isolate(Site::RegionB)).unwrap();
    tokio::time::sleep(Duration::from_secs(16)).await;
    lab.heal().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.partition(Partition::Isolate(Site::RegionB)).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    lab.heal().unwrap();
    assert!(self_fenced(&lab, REGION_B), "region-b fenced itself");
    let ops = {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ops = failovers(&store).await;
            if ops.len() >= 2 && ops[1].status == OpStatus::Succeeded {
                break ops;
            }
            if Instant::now() > deadline {
                let decisions = store.decisions(Some("orders"), 30).await.unwrap();
                let all = store.operations(20).await.unwrap();
                panic!("no failover back within 90 s of the flaps; decisions: {decisions:#?}; operations: {all:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a_acks = in_a.finish().await;
    let b_acks = in_b.finish().await;

    let ops = {
        let later = failovers(&store).await;
        assert_eq!(later.len(), ops.len(), "no third failover: {later:#?}");
        later
    };
    assert_eq!(ops.len(), 2, "{ops:#?}");
    // The cooldown counts from the guard's decisions to fail over.
    let decisions = store.decisions(Some("orders"), 500).await.unwrap();
    let mut decided: Vec<_> = decisions
        .iter()
        .filter(|d| d.action == GuardDecision::Failover)
        .map(|d| d.decided_at)
        .collect();
    decided.sort();
    assert_eq!(decided.len(), 2, "{decisions:#?}");
    let apart = (decided[1] - decided[0]).to_std().unwrap_or_default();
    eprintln!(
        "failover decisions {:.1} s apart (cooldown {} s)",
        apart.as_secs_f64(),
        cooldown.as_secs()
    );
    assert!(
        apart >= cooldown,
        "the second failover was decided {apart:?} after the first, within the cooldown"
    );
    assert!(
        decisions
            .iter()
            .any(|d| d.code.as_deref() == Some("cooldown")),
        "the guard held for the cooldown"
    );

    // Never two writable primaries: the acknowledgements changed hands
    // exactly twice, A to B to A.
    assert_handovers(&a_acks, &b_acks, &[REGION_A, REGION_B, REGION_A]);
    // One writable primary, the one DNS names.
    assert!(writable(&lab, REGION_A).await);
    assert!(!writable(&lab, REGION_B).await);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_A)));
    daemon.stop().await;
}

/// The lab's config for `drctl serve` processes in the lab's sites: a 3 s
/// operation lease (a resumer need not wait long for a dead driver's) and
/// the API on the site's own loopback, on a port the kernel picks.
fn serve_config(lab: &drctl_lab::Lab) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let listen = text
        .lines()
        .find(|l| l.starts_with("listen = "))
        .expect("the lab's config has [api] listen")
        .to_string();
    let edited = text
        .replace(&listen, "listen = \"127.0.0.1:0\"")
        .replace("\n[failover]\n", "\n[failover]\nlease = \"3s\"\n");
    assert!(edited.contains("lease = \"3s\""), "{edited}");
    let path = lab.config_path().with_file_name("serve.toml");
    std::fs::write(&path, edited).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leading_drctl_killed_after_the_lease_fence_is_replaced_and_the_failover_ends_with_one_primary(
) {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    quiet_with_direct_table(&lab).await;
    let store = Store::open(lab_config(&lab).store.url.expose())
        .await
        .unwrap();
    let net = lab.network().expect("a namespaced lab").clone();
    let config = serve_config(&lab);
    // The leading daemon in the control plane's site aborts (as kill -9)
    // right after the fence step is journaled: the primary key is claimed
    // for region-b under that daemon's operation, nothing promoted yet.
    let crash = "fence_source:done";
    let mut leader = Serve::start_in(
        Some((&net, Site::Ctl)),
        &config,
        "ctl",
        &[("DRCTL_FAULT_CRASH_AT", crash)],
    )
    .await;
    wait_for("ctl's daemon leading", Duration::from_secs(30), || async {
        leader.took_up_leading().then_some(())
    })
    .await;
    let follower = Serve::start_in(Some((&net, Site::Witness)), &config, "witness", &[]).await;
    let in_a = SiteWriter::start(&lab, Site::RegionA, lab.dsn("orders", REGION_A, "orders"));
    let in_b = SiteWriter::start(&lab, Site::RegionB, lab.dsn("orders", REGION_B, "orders"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!follower.took_up_leading(), "one leader");

    lab.partition(Partition::Isolate(Site::RegionA)).unwrap();
    let cut = Instant::now();
    let died = leader.aborted_at(crash, Duration::from_secs(90)).await;
    wait_for(
        "the witness site's daemon leading",
        Duration::from_secs(60),
        || async { follower.took_up_leading().then_some(()) },
    )
    .await;
    let op = wait_for(
        "the failover finished by the new leader",
        Duration::from_secs(90),
        || async {
            failovers(&store)
                .await
                .into_iter()
                .find(|o| o.status == OpStatus::Succeeded)
        },
    )
    .await;
    eprintln!(
        "leader died {:.1} s after the cut; the failover finished {:.1} s after that",
        died.duration_since(cut).as_secs_f64(),
        died.elapsed().as_secs_f64()
    );
    // One failover, every step once; the steps after the fence were the
    // new leader's.
    assert_eq!(failovers(&store).await.len(), 1, "one failover");
    let steps = store.journal(&op.id).await.unwrap();
    for s in &steps {
        assert_eq!(s.attempts, 1, "step {} ran {} times", s.step, s.attempts);
    }
    let first_driver = &steps[0].driver;
    assert!(
        steps
            .iter()
            .skip_while(|s| s.step != "fence_source")
            .skip(1)
            .all(|s| &s.driver != first_driver),
        "{steps:?}"
    );
    let fence = journaled_output(&store, &op.id, "fence_source").await;
    assert_eq!(fence["method"], "lease", "{fence}");
    assert_eq!(fence["primary_key"]["released"], "expired", "{fence}");

    // One writable primary, DNS naming it; region-a fenced itself and
    // nothing it acknowledged came after region-b's first write.
    wait_for("DNS naming region-b", Duration::from_secs(30), || async {
        (resolve(&lab).await == Some(front(&lab, REGION_B))).then_some(())
    })
    .await;
    assert!(writable(&lab, REGION_B).await);
    assert!(self_fenced(&lab, REGION_A), "region-a fenced itself");
    lab.heal().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!writable(&lab, REGION_A).await, "region-a stays fenced");
    let a_acks = in_a.finish().await;
    let b_acks = in_b.finish().await;
    assert_handovers(&a_acks, &b_acks, &[REGION_A, REGION_B]);
    follower.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_whose_agent_died_is_fenced_by_its_watchdog_before_another_is_promoted() {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    quiet_with_direct_table(&lab).await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let daemon = start_daemon_automatic(config).await;
    let in_a = SiteWriter::start(&lab, Site::RegionA, lab.dsn("orders", REGION_A, "orders"));
    let in_b = SiteWriter::start(&lab, Site::RegionB, lab.dsn("orders", REGION_B, "orders"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let agent = lab
        .record
        .agents
        .iter()
        .find(|a| a.region == REGION_A)
        .unwrap()
        .clone();
    let data_dir = lab.cluster("orders", REGION_A).data_dir;
    let watchdog = drctl_agent::watchdog::pid(&data_dir).unwrap_or_else(|| {
        panic!(
            "region-a's agent started no lease watchdog for its primary; its log:\n{}",
            std::fs::read_to_string(&agent.log).unwrap_or_default()
        )
    });
    assert_ne!(watchdog, agent.pid);

    // The agent killed (no clean-up, no renewal from here on) and
    // region-a cut off, so drctl cannot fence the server either: only the
    // watchdog stops it before the lease can expire.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &agent.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    lab.partition(Partition::Isolate(Site::RegionA)).unwrap();
    let cut = Instant::now();
    let op = wait_for("the failover", Duration::from_secs(90), || async {
        failovers(&store)
            .await
            .into_iter()
            .find(|o| o.status == OpStatus::Succeeded)
    })
    .await;
    wait_for("DNS naming region-b", Duration::from_secs(30), || async {
        (resolve(&lab).await == Some(front(&lab, REGION_B))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a_acks = in_a.finish().await;
    let b_acks = in_b.finish().await;
    let last_a = a_acks.iter().max().copied().unwrap();
    eprintln!(
        "region-a's last acknowledged write {:.2} s after the kill and cut",
        last_a.saturating_duration_since(cut).as_secs_f64()
    );
    assert_handovers(&a_acks, &b_acks, &[REGION_A, REGION_B]);
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(
        log.contains("wrote no renewal by its deadline") && log.contains("primary fenced itself"),
        "the watchdog fenced region-a's primary: {log}"
    );
    let fence = journaled_output(&store, &op.id, "fence_source").await;
    assert_eq!(fence["method"], "lease", "{fence}");
    lab.heal().unwrap();
    daemon.stop().await;
}
