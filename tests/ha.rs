//! Several `drctl serve` processes on one PostgreSQL state store: one leads,
//! the others follow. The leader is killed at every step boundary of a
//! failover it drives, and paused (SIGSTOP) in the middle of a step; a
//! follower takes the lease and finishes the failover from the journal, with
//! one writable primary, DNS naming it and no step applied twice, and the
//! paused ex-leader writes nothing once it wakes.
//!
//! Real processes, a real PostgreSQL store, the lab's real clusters and DNS.
//! Takeover times are printed (`takeover:` lines), not asserted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use drctl_failover::{OperationKind, OperationSaga};
use drctl_lab::{find_pg_bin, free_port, Lab, PgCluster, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;
use serde_json::{json, Value};

/// The leader lease of these tests (`[failover] lease`).
const LEASE: Duration = Duration::from_secs(2);

/// The lab (orders, workload paused) beside a PostgreSQL cluster for the
/// state store, which is stopped however the test ends.
struct HaLab {
    lab: Lab,
    pg: PgCluster,
    /// The store's URL.
    url: String,
    /// The operator token of the lab's API.
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for HaLab {
    fn drop(&mut self) {
        let _ = self.pg.stop("immediate");
    }
}

async fn ha_lab() -> HaLab {
    let (lab, dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let bin = find_pg_bin().unwrap_or_else(|e| panic!("{e}"));
    let pg = PgCluster::new("store", dir.path().join("store"), free_port(), bin);
    pg.init_primary(100).expect("initdb of the store cluster");
    pg.start().expect("starting the store cluster");
    let (url, token) = (pg.dsn("postgres"), lab_token(&lab, "operator"));
    HaLab {
        lab,
        pg,
        url,
        token,
        _dir: dir,
    }
}

/// The lab's config on the shared store: a 2 s lease, the API on a port the
/// kernel picks (each daemon its own), automatic failover off (these tests
/// start the failovers).
fn ha_config(lab: &Lab, store_url: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let api = text
        .lines()
        .find(|l| l.starts_with("listen = "))
        .expect("the lab's config has [api] listen")
        .to_string();
    let replaced = text
        .replace(
            "url = \"sqlite://drctl-state.db\"",
            &format!("url = \"{store_url}\""),
        )
        .replace(&api, "listen = \"127.0.0.1:0\"")
        .replace(
            "\n[failover]\nautomatic_limit = 1000\n",
            &format!(
                "\n[failover]\nlease = \"{}s\"\nautomatic_limit = 0\n",
                LEASE.as_secs()
            ),
        );
    assert!(
        replaced.contains(store_url) && replaced.contains("automatic_limit = 0"),
        "{replaced}"
    );
    let path = lab.config_path().with_file_name("ha.toml");
    std::fs::write(&path, replaced).unwrap();
    path
}

/// `POST /api/v1/services/orders/operations` on `api`: (status, body).
async fn start_failover(api: &str, token: &str, to: &str) -> (u16, Value) {
    let reply = ApiClient::http(api)
        .with_token(token)
        .post(
            "/api/v1/services/orders/operations",
            Some(json!({ "kind": "failover", "to": to, "reason": "ha test" })),
        )
        .await;
    (reply.status.as_u16(), reply.json_or_null())
}

async fn finished(store: &Store, id: &str) -> drctl_store::OperationRecord {
    wait_for(
        &format!("operation {id} to succeed"),
        Duration::from_secs(90),
        || async {
            store
                .operation(id)
                .await
                .ok()
                .flatten()
                .filter(|o| o.status == drctl_store::states::OpStatus::Succeeded)
        },
    )
    .await
}

/// One writable primary (`target`), DNS naming it, the store agreeing, and
/// one write probe row for the operation.
async fn one_primary_named_by_dns(
    lab: &Lab,
    store: &Store,
    op: &str,
    source: &str,
    target: &str,
    what: &str,
) {
    assert!(writable(lab, target).await, "{what}: {target} is writable");
    assert!(!writable(lab, source).await, "{what}: {source} is not");
    let expected_ip = if target == REGION_B {
        "127.0.2.1"
    } else {
        "127.0.1.1"
    };
    assert_eq!(
        resolve(lab).await.as_deref(),
        Some(expected_ip),
        "{what}: DNS names {target}"
    );
    let role = store.cluster_role("orders").await.unwrap().unwrap();
    assert_eq!(role.primary_region, target, "{what}");
    let mut c = connect(&lab.cluster("orders", target).dsn("orders")).await;
    let (probes,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM drctl.write_probe WHERE operation_id = $1")
            .bind(op)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(probes, 1, "{what}: one probe row");
}

/// [`wait_for`] at 20 ms, for the instants that takeover times are made of.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_at_each_step_boundary_is_replaced_and_the_follower_finishes_the_failover()
{
    let h = ha_lab().await;
    let (lab, token) = (&h.lab, &h.token);
    let config = ha_config(lab, &h.url);
    let store = Store::open(&h.url).await.unwrap();

    let (mut source, mut target) = (REGION_A, REGION_B);
    let mut takeovers = Vec::new();
    let mut completions = Vec::new();
    for step in OperationKind::Failover.steps() {
        let crash = format!("{}:done", step.as_str());
        let mut leader = Serve::start(&config, "leader", &[("DRCTL_FAULT_CRASH_AT", &crash)]).await;
        wait_for(
            "the first daemon to lead",
            Duration::from_secs(30),
            || async { leader.leading().await.then_some(()) },
        )
        .await;
        let follower = Serve::start(&config, "follower", &[]).await;
        let seen = follower.cluster().await.expect("the follower answers");
        assert_eq!(seen["this"]["leading"], json!(false), "{crash}: {seen}");

        // A follower refuses work and names the leader.
        let (code, body) = start_failover(&follower.api, token, target).await;
        assert_eq!(code, 503, "{crash}: {body}");
        assert_eq!(body["error"]["code"], "not_leader", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&leader.api),
            "{crash}: the refusal names the leader's API: {message}"
        );

        let (code, body) = start_failover(&leader.api, token, target).await;
        assert_eq!(code, 202, "{crash}: {body}");
        let id = body["operation"]["id"].as_str().unwrap().to_string();

        let died = leader.aborted_at(&crash, Duration::from_secs(60)).await;
        poll(
            &format!("the follower to lead after {crash}"),
            Duration::from_secs(30),
            || async { follower.leading().await.then_some(()) },
        )
        .await;
        let took_over = died.elapsed();
        let op = finished(&store, &id).await;
        let completed = died.elapsed();
        eprintln!(
            "takeover: {crash}: follower leading {:.2} s after the leader died, failover completed after {:.2} s",
            took_over.as_secs_f64(),
            completed.as_secs_f64()
        );
        takeovers.push(took_over);
        completions.push(completed);

        one_primary_named_by_dns(lab, &store, &op.id, source, target, &crash).await;
        let steps = store.journal(&op.id).await.unwrap();
        assert_eq!(
            steps.len(),
            OperationKind::Failover.steps().len(),
            "{crash}: {steps:?}"
        );
        for s in &steps {
            assert_eq!(
                s.status,
                drctl_store::states::StepState::Done,
                "{crash}: {s:?}"
            );
            // A boundary crash leaves nothing half-done: every step once.
            assert_eq!(
                s.attempts, 1,
                "{crash}: step {} ran {} times",
                s.step, s.attempts
            );
        }
        let resumed_by_follower = steps
            .iter()
            .skip_while(|s| s.step != step.as_str())
            .skip(1)
            .all(|s| s.driver != steps[0].driver);
        assert!(
            resumed_by_follower,
            "{crash}: the steps after the crash were the follower's: {steps:?}"
        );

        follower.stop();
        reclone(lab, source, target);
        std::mem::swap(&mut source, &mut target);
    }
    eprintln!(
        "takeover: lease {} s; over {} runs: follower leading p50 {:.2} s (max {:.2} s), failover completed p50 {:.2} s (max {:.2} s)",
        LEASE.as_secs(),
        takeovers.len(),
        median(takeovers.clone()).as_secs_f64(),
        takeovers.iter().max().unwrap().as_secs_f64(),
        median(completions.clone()).as_secs_f64(),
        completions.iter().max().unwrap().as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_is_fenced_and_writes_nothing_when_it_wakes() {
    let h = ha_lab().await;
    let (lab, token) = (&h.lab, &h.token);
    let config = ha_config(lab, &h.url);
    let store = Store::open(&h.url).await.unwrap();

    let pause = "promote_target:applied";
    let leader = Serve::start(&config, "paused", &[("DRCTL_FAULT_PAUSE_AT", pause)]).await;
    wait_for(
        "the first daemon to lead",
        Duration::from_secs(30),
        || async { leader.leading().await.then_some(()) },
    )
    .await;
    let term = leader.cluster().await.unwrap()["this"]["term"]
        .as_i64()
        .unwrap();
    let follower = Serve::start(&config, "follower", &[]).await;
    let (code, body) = start_failover(&leader.api, token, REGION_B).await;
    assert_eq!(code, 202, "{body}");
    let id = body["operation"]["id"].as_str().unwrap().to_string();
    wait_for(
        "the leader to stop itself mid-promote",
        Duration::from_secs(60),
        || {
            let stopped = leader.stopped();
            async move { stopped.then_some(()) }
        },
    )
    .await;

    // The follower takes over the lease and the operation, which it finishes.
    let op = finished(&store, &id).await;
    let seen = follower.cluster().await.unwrap();
    assert_eq!(seen["this"]["leading"], json!(true), "{seen}");
    assert!(
        seen["this"]["term"].as_i64().unwrap() > term,
        "a new term: {seen}"
    );
    one_primary_named_by_dns(lab, &store, &op.id, REGION_A, REGION_B, pause).await;
    let before = store.journal(&id).await.unwrap();
    let promote = before.iter().find(|s| s.step == "promote_target").unwrap();
    assert_eq!(
        promote.attempts, 2,
        "the follower re-ran the half-done step: {promote:?}"
    );
    let paused_driver = before[0].driver.clone();
    assert_ne!(promote.driver, paused_driver, "{before:?}");

    // Wake the ex-leader: it goes on where it stopped, finds its leases
    // gone, and writes nothing.
    Command::new("kill")
        .args(["-CONT", &leader.pid().to_string()])
        .status()
        .unwrap();
    wait_for(
        "the ex-leader to notice it lost its lease",
        Duration::from_secs(20),
        || {
            let log = leader.log_text();
            async move { log.contains("lost the lease").then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(LEASE * 2).await;
    let after = store.journal(&id).await.unwrap();
    assert_eq!(before, after, "the woken ex-leader changed the journal");
    assert_eq!(
        store.operation(&id).await.unwrap().unwrap().status,
        drctl_store::states::OpStatus::Succeeded
    );
    let seen = leader.cluster().await.expect("the ex-leader answers again");
    assert_eq!(
        seen["this"]["leading"],
        json!(false),
        "the ex-leader follows: {seen}"
    );
    assert_eq!(
        seen["leader"]["id"],
        follower.cluster().await.unwrap()["this"]["id"],
        "{seen}"
    );
    let (code, body) = start_failover(&leader.api, token, REGION_A).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("not_leader")),
        "{body}"
    );
    let (code, out, err) = drctl(&["status", "--api", &leader.api, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let source = serde_json::from_str::<Value>(&out).unwrap()["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        source.contains(&format!(
            "a follower of {}",
            seen["leader"]["id"].as_str().unwrap()
        )),
        "{source}"
    );
    one_primary_named_by_dns(lab, &store, &op.id, REGION_A, REGION_B, "after the wake-up").await;
    let log = leader.log_text();
    assert!(
        log.contains("continued after promote_target:applied"),
        "{log}"
    );

    // A clean stop hands the lease over at once.
    let follower_id = follower.cluster().await.unwrap()["this"]["id"].clone();
    let stopped_at = Instant::now();
    follower.stop();
    wait_for(
        "the ex-leader to lead after the clean stop",
        Duration::from_secs(10),
        || async { leader.leading().await.then_some(()) },
    )
    .await;
    eprintln!(
        "takeover: after a clean stop (lease given back): {:.2} s",
        stopped_at.elapsed().as_secs_f64()
    );
    let daemons = leader.cluster().await.unwrap()["daemons"].clone();
    assert!(
        daemons
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == follower_id),
        "{daemons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_the_store_steps_down_before_a_follower_takes_over() {
    let h = ha_lab().await;
    let (lab, pg, url) = (&h.lab, &h.pg, &h.url);
    // The first daemon reaches the store through a fault proxy; the second
    // directly.
    let proxy = drctl_lab::FaultProxy::start(format!("127.0.0.1:{}", pg.port).parse().unwrap())
        .await
        .unwrap();
    let proxied_url = url.replace(&format!("127.0.0.1:{}", pg.port), &proxy.addr().to_string());
    assert_ne!(&proxied_url, url);
    let leader_config = ha_config(lab, &proxied_url);
    let leader_config = {
        let path = leader_config.with_file_name("ha-proxied.toml");
        std::fs::rename(&leader_config, &path).unwrap();
        path
    };
    let follower_config = ha_config(lab, url);
    let leader = Serve::start(&leader_config, "cut-off", &[]).await;
    wait_for(
        "the first daemon to lead",
        Duration::from_secs(30),
        || async { leader.leading().await.then_some(()) },
    )
    .await;
    let follower = Serve::start(&follower_config, "follower", &[]).await;
    // A follower serves reads: the live view of orders.
    let figures: Value = reqwest::get(format!("{}/api/v1/rpo-rto", follower.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        figures["services"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{figures}"
    );

    // The store stops answering the leader (connections hang, as in a
    // partition): it must stop leading before the follower starts.
    let cut = Instant::now();
    proxy.set(drctl_lab::Fault::BlackHole);
    let (mut stepped_down, mut took_over) = (None, None);
    while took_over.is_none() || stepped_down.is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "no takeover after the cut"
        );
        let (a, b) = (leader.leading().await, follower.leading().await);
        assert!(
            !(a && b),
            "two daemons led at once, {:?} after the cut",
            cut.elapsed()
        );
        if !a && stepped_down.is_none() {
            stepped_down = Some(cut.elapsed());
        }
        if b && took_over.is_none() {
            took_over = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (stepped_down, took_over) = (stepped_down.unwrap(), took_over.unwrap());
    eprintln!(
        "takeover: store cut off from the leader: it stepped down after {:.2} s, the follower led after {:.2} s (lease {} s)",
        stepped_down.as_secs_f64(),
        took_over.as_secs_f64(),
        LEASE.as_secs()
    );
    assert!(
        stepped_down < took_over,
        "{stepped_down:?} then {took_over:?}"
    );
    assert!(
        stepped_down <= LEASE,
        "the cut-off leader steps down within its lease: {stepped_down:?}"
    );

    // The store answers again: the ex-leader follows the new leader.
    proxy.set(drctl_lab::Fault::Pass);
    let follower_id = follower.cluster().await.unwrap()["this"]["id"].clone();
    let seen = wait_for(
        "the ex-leader to see the new leader",
        Duration::from_secs(30),
        || async {
            leader
                .cluster()
                .await
                .filter(|c| c["leader"]["id"] == follower_id)
        },
    )
    .await;
    assert_eq!(seen["this"]["leading"], json!(false), "{seen}");
}
