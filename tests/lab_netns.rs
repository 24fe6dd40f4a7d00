//! The namespaced lab (`LabNetwork::Namespaces`): each region its own
//! network namespace behind the lab's router. A replicated service's
//! standby streams across the router; a partition of the two regions drops
//! replication's packets (the receiver gives up after its timeout, no reset
//! ends it) while the primary still answers this namespace; after heal the
//! standby streams again and catches up. drctl's daemon in the
//! control-plane site holds when only its own path to region-a is cut, and
//! fails over when region-a is lost to everyone. A killed lab's namespaces are
//! removed by `Lab::down`. These tests need root; without it they fail,
//! saying so.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use drctl_lab::netns::available;
use drctl_lab::{Lab, LabNetwork, LabRecord, LabSpec, Partition, Site, REGION_A, REGION_B};
use drctl_store::states::GuardDecision;
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
    assert_eq!(namespaces_with(&net.prefix).len(), 5);
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
    assert_eq!(namespaces_with(&net.prefix).len(), 5);

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
    assert_eq!(namespaces_with(&prefix).len(), 5);
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

/// `(in recovery, read-only)` of orders in `region`, seen from this
/// namespace through the router; `None` when it does not answer.
async fn role_of(lab: &Lab, region: &str) -> Option<(bool, bool)> {
    let connecting = sqlx::PgConnection::connect(&lab.dsn("orders", region, "orders"));
    let mut c = tokio::time::timeout(SILENCE, connecting).await.ok()?.ok()?;
    sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'",
    )
    .fetch_one(&mut c)
    .await
    .ok()
}

async fn decisions(store: &drctl_store::Store) -> Vec<drctl_store::DecisionRecord> {
    store
        .decisions(Some("orders"), 100)
        .await
        .expect("reading decisions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drctl_in_the_control_plane_site_holds_when_only_its_path_is_cut_and_fails_over_a_lost_region(
) {
    let (lab, _dir) = start_namespaced_lab().await;
    lab.workload().pause();
    let net = lab.network().expect("namespaced").clone();
    // The lab's STONITH as orders' fence hook, as `drctl lab up` sets it:
    // automatic failover never goes ahead without a way to fence.
    let lab_dir = lab.record.dir.display().to_string();
    let hook = format!(
        "fence_hook = [\"{}\", \"lab\", \"stonith\", \"{{service}}\", \"--region\", \"{{region}}\", \"--dir\", \"{lab_dir}\"]\n",
        drctl_bin().display()
    );
    let text = std::fs::read_to_string(lab.config_path()).expect("the lab config");
    let marker = "[services.failover]\ncooldown = \"10s\"\n";
    assert!(text.contains(marker), "{text}");
    let path = lab.config_path().with_file_name("stonith.toml");
    std::fs::write(&path, text.replacen(marker, &format!("{marker}{hook}"), 1)).expect("config");
    let config = std::sync::Arc::new(drctl_config::load(&path).expect("a valid config"));
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .expect("the state store");

    // drctl's daemon in the control-plane site: its probes cross the router.
    let ctl = net
        .runtime_with_workers(Site::Ctl, 2)
        .expect("a runtime in ctl");
    let daemon = ctl
        .run(start_daemon_automatic(config))
        .await
        .expect("starting the daemon in ctl");
    assert!(
        daemon.api_url().contains(&net.addr(Site::Ctl).to_string()),
        "the API listens in the control-plane site: {}",
        daemon.api_url()
    );

    // Only drctl cut off from region-a: the standby still hears its
    // primary, so the guard holds, and nothing fails over.
    lab.partition(Partition::Cut(Site::Ctl, Site::RegionA))
        .expect("cutting ctl-a");
    let hold = wait_for(
        "the guard to hold (the standby still hears the primary)",
        Duration::from_secs(60),
        || async {
            decisions(&store)
                .await
                .into_iter()
                .find(|d| d.action == GuardDecision::Hold)
        },
    )
    .await;
    assert_eq!(
        hold.code.as_deref(),
        Some("standby_sees_primary"),
        "{hold:?}"
    );
    assert!(store.operations(10).await.expect("operations").is_empty());
    assert_eq!(
        role_of(&lab, REGION_A).await,
        Some((false, false)),
        "region-a's primary still writable (this namespace still reaches it)"
    );
    assert_eq!(role_of(&lab, REGION_B).await, Some((true, false)));
    lab.heal().expect("healing");
    // The monitor sees region-a again: a fresh exposure figure is what lets
    // a failover bound its loss once region-a is lost.
    let healed_at = chrono::Utc::now();
    wait_for(
        "a fresh exposure sample after heal",
        Duration::from_secs(60),
        || async {
            store
                .last_known_exposure("orders", REGION_B)
                .await
                .expect("lag samples")
                .filter(|s| s.sampled_at > healed_at)
        },
    )
    .await;

    // region-a lost to everyone: failed over to region-b, the old primary
    // fenced by STONITH, DNS naming region-b.
    lab.partition(Partition::Isolate(Site::RegionA))
        .expect("isolating region-a");
    let lost_at = std::time::Instant::now();
    loop {
        let ops = store.operations(10).await.expect("operations");
        if ops.iter().any(|o| {
            o.kind == drctl_store::states::OperationKind::Failover
                && o.status == drctl_store::states::OpStatus::Succeeded
        }) {
            break;
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(90),
            "no automatic failover within 90 s; operations {ops:#?}; decisions {:#?}",
            decisions(&store).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        role_of(&lab, REGION_B).await,
        Some((false, false)),
        "region-b is the writable primary"
    );
    assert!(
        !lab.cluster("orders", REGION_A).is_running(),
        "the lost primary was fenced (killed) before the promotion"
    );
    let named = drctl_dns::query(
        lab.dns().addr(),
        "orders.shop.lab.",
        drctl_config::RecordType::A,
    )
    .await
    .expect("asking the lab's DNS in the control-plane site");
    assert_eq!(
        named,
        Some(vec![net.addr(Site::RegionB).to_string()]),
        "DNS names region-b's front"
    );
    lab.heal().expect("healing");

    daemon.stop().await;
    drop(ctl);
    lab.teardown().expect("teardown");
}
