//! The namespaced lab (`LabNetwork::Namespaces`): each region its own
//! network namespace behind the lab's router. A replicated service's
//! standby streams across the router; a partition of the two regions drops
//! replication's packets (the receiver gives up after its timeout, no reset
//! ends it) while the primary still answers this namespace; after heal the
//! standby streams again and catches up. A killed lab's namespaces are
//! removed by `Lab::down`. These tests need root; without it they fail,
//! saying so.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use drctl_lab::netns::available;
use drctl_lab::{Lab, LabNetwork, LabRecord, LabSpec, Partition, Site, REGION_A, REGION_B};
use drctl_tests::*;
use sqlx::Connection as _;
use tokio::net::TcpStream;

/// How long a connect may take before the test calls it silence (across
/// the lab's network a connect answers in well under a millisecond).
const SILENCE: Duration = Duration::from_secs(2);

/// Starts a namespaced lab with `orders` (hot: a primary in region-a, a
/// streaming standby in region-b).
async fn start_namespaced_lab() -> (Lab, tempfile::TempDir) {
    if let Err(why) = available() {
        panic!("tests/lab_netns.rs needs root and iproute2: {why}");
    }
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-netlab-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    let mut spec = LabSpec::for_tests(dir.path().join("lab"), vec![orders()]);
    spec.network = LabNetwork::Namespaces;
    let lab = Lab::up(spec, |m| eprintln!("lab: {m}"))
        .await
        .unwrap_or_else(|e| panic!("the namespaced lab did not start: {e}\n(the tests need PostgreSQL server binaries: `apt-get install postgresql`, or set PG_BIN)"));
    (lab, dir)
}

/// The standby's WAL receiver status (`streaming`, …), `None` when it has
/// no receiver running.
async fn receiver_status(lab: &Lab) -> Option<String> {
    let mut standby = connect(&lab.dsn("orders", REGION_B, "postgres")).await;
    sqlx::query_scalar::<_, String>("SELECT status FROM pg_stat_wal_receiver")
        .fetch_optional(&mut standby)
        .await
        .expect("reading pg_stat_wal_receiver")
}

async fn streaming_senders(lab: &Lab) -> i64 {
    let mut primary = connect(&lab.dsn("orders", REGION_A, "postgres")).await;
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        .fetch_one(&mut primary)
        .await
        .expect("reading pg_stat_replication")
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn a_partition_of_the_regions_stops_streaming_silently_and_heal_resumes_it() {
    let (lab, dir) = start_namespaced_lab().await;
    let net = lab
        .network()
        .expect("a namespaced lab has a network")
        .clone();
    assert_eq!(namespaces_with(&net.prefix).len(), 4);
    // The servers live on their sites' addresses, not on this namespace's
    // loopback.
    let dsn_a = lab.dsn("orders", REGION_A, "orders");
    assert!(
        dsn_a.contains(&net.addr(Site::RegionA).to_string()),
        "{dsn_a}"
    );
    let record = LabRecord::read(&lab.record.dir).expect("lab.json");
    assert_eq!(
        record.network.as_ref(),
        Some(&net),
        "lab.json names the namespaces"
    );

    wait_for("the standby to stream", Duration::from_secs(60), || async {
        (receiver_status(&lab).await.as_deref() == Some("streaming")).then_some(())
    })
    .await;

    lab.partition(Partition::Cut(Site::RegionA, Site::RegionB))
        .expect("partitioning a-b");
    // Nothing resets the replication connection: the receiver and the
    // sender give up after their timeouts (5 s in a namespaced lab).
    wait_for(
        "the standby's receiver to lose its primary",
        Duration::from_secs(60),
        || async { (receiver_status(&lab).await.as_deref() != Some("streaming")).then_some(()) },
    )
    .await;
    wait_for(
        "the primary's sender to go",
        Duration::from_secs(60),
        || async { (streaming_senders(&lab).await == 0).then_some(()) },
    )
    .await;
    // The primary still answers this namespace, and takes writes the
    // standby cannot see yet.
    let mut primary = connect(&dsn_a).await;
    let id: i64 =
        sqlx::query_scalar("INSERT INTO shop.orders (amount_cents) VALUES (4242) RETURNING id")
            .fetch_one(&mut primary)
            .await
            .expect("writing on the primary during the partition");
    primary.close().await.ok();

    lab.heal().expect("healing");
    assert!(net.partition_rules().expect("rules").is_empty());
    wait_for(
        "the standby to stream again",
        Duration::from_secs(90),
        || async { (receiver_status(&lab).await.as_deref() == Some("streaming")).then_some(()) },
    )
    .await;
    wait_for(
        "the row written during the partition on the standby",
        Duration::from_secs(60),
        || async {
            let mut standby = connect(&lab.dsn("orders", REGION_B, "orders")).await;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.orders WHERE id = $1")
                .bind(id)
                .fetch_one(&mut standby)
                .await
                .expect("reading the standby");
            (n == 1).then_some(())
        },
    )
    .await;

    // region-a cut off from everyone, this namespace included: a connect
    // to its primary hears nothing, while region-b still answers.
    lab.partition(Partition::Isolate(Site::RegionA))
        .expect("isolating region-a");
    let primary_addr = SocketAddr::new(
        net.addr(Site::RegionA).into(),
        lab.cluster("orders", REGION_A).port,
    );
    let standby_addr = SocketAddr::new(
        net.addr(Site::RegionB).into(),
        lab.cluster("orders", REGION_B).port,
    );
    assert!(
        tokio::time::timeout(SILENCE, TcpStream::connect(primary_addr))
            .await
            .is_err(),
        "a connect to an isolated region times out (no reset, no error)"
    );
    assert!(
        tokio::time::timeout(SILENCE, TcpStream::connect(standby_addr))
            .await
            .is_ok_and(|c| c.is_ok()),
        "region-b still answers"
    );
    lab.heal().expect("healing");

    lab.teardown().expect("tearing the lab down");
    assert!(
        namespaces_with(&net.prefix).is_empty(),
        "teardown leaves no namespace"
    );
    drop(dir);
}

#[tokio::test]
async fn lab_down_removes_the_namespaces_of_a_killed_lab() {
    let (lab, dir) = start_namespaced_lab().await;
    let net = lab.network().expect("namespaced").clone();
    let lab_dir = lab.record.dir.clone();
    // A lab process that dies cleans nothing up.
    std::mem::forget(lab);
    assert_eq!(namespaces_with(&net.prefix).len(), 4);

    let done = tokio::task::spawn_blocking(move || Lab::down(&lab_dir))
        .await
        .expect("joining")
        .expect("lab down");
    assert!(
        done.iter().any(|l| l.contains("namespace")),
        "lab down says what it removed: {done:?}"
    );
    assert!(namespaces_with(&net.prefix).is_empty(), "{done:?}");
    let route = Command::new("ip")
        .args(["-4", "-o", "route", "show"])
        .output()
        .expect("ip route");
    assert!(
        !String::from_utf8_lossy(&route.stdout).contains(&net.network()),
        "the root namespace's route to the lab is gone"
    );
    drop(dir);
}

#[test]
fn lab_partition_through_the_cli_holds_in_the_router_until_heal() {
    if let Err(why) = available() {
        panic!("tests/lab_netns.rs needs root and iproute2: {why}");
    }
    let tmp = tempfile::Builder::new()
        .prefix("drctl-test-netcli-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    let dir = tmp.path().join("lab").display().to_string();
    // Fixed ports below the kernel's ephemeral range and away from
    // tests/cli.rs's (20000 and up).
    let base = (10000 + (std::process::id() % 100) * 60).to_string();
    let api_port = drctl_lab::free_port().to_string();
    let (code, out, err) = drctl(&[
        "lab",
        "--dir",
        &dir,
        "up",
        "--detach",
        "--network",
        "namespaces",
        "--base-port",
        &base,
        "--api-port",
        &api_port,
    ]);
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = drctl(&["lab", "--dir", &self.0, "down"]);
        }
    }
    let _down = Down(dir.clone());
    assert_eq!(code, 0, "lab up --network namespaces failed:\n{out}\n{err}");
    let status = |what: &str| -> serde_json::Value {
        let (code, out, err) = drctl(&["lab", "--dir", &dir, "status", "-o", "json"]);
        assert_eq!(code, 0, "{what}: {out}{err}");
        serde_json::from_str(&out).expect("lab status -o json")
    };
    let before = status("before");
    assert_eq!(before["network"]["kind"], "namespaces", "{before}");
    let prefix = before["network"]["prefix"]
        .as_str()
        .expect("a prefix")
        .to_string();
    assert_eq!(namespaces_with(&prefix).len(), 4);
    assert_eq!(before["network"]["partition_rules"], serde_json::json!([]));

    for mode in ["ctl-a", "a-b", "a-b"] {
        let (code, out, err) = drctl(&["lab", "--dir", &dir, "partition", mode]);
        assert_eq!(code, 0, "partition {mode}: {out}{err}");
    }
    let cut = status("partitioned");
    let rules = cut["network"]["partition_rules"].as_array().expect("rules");
    assert_eq!(
        rules.len(),
        4,
        "two pairs, each both ways, once each: {rules:?}"
    );
    let (code, out, err) = drctl(&["lab", "--dir", &dir, "partition", "ctl-a", "--lift"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        status("lifted")["network"]["partition_rules"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let (code, out, err) = drctl(&["lab", "--dir", &dir, "partition", "heal"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        status("healed")["network"]["partition_rules"],
        serde_json::json!([])
    );

    let (code, out, err) = drctl(&["lab", "--dir", &dir, "down"]);
    assert_eq!(code, 0, "{out}{err}");
    // The lab process removes its namespaces as it stops (or `down` does,
    // when it had to be killed).
    assert!(namespaces_with(&prefix).is_empty(), "{out}");
}
