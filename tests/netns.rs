//! The lab's network of real namespaces (`drctl_lab::netns`): each region a
//! host of its own, reached through a router, and partitions that lose
//! packets (senders see silence, never a reset).
//!
//! A TCP echo server runs in region-b (a task on a runtime inside the
//! namespace); clients connect from region-a, from the control-plane site
//! and from the root namespace (the test process, an "outside client").
//! These tests need root; without it they fail, saying so.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use drctl_lab::netns::{available, NetnsTopology, Partition, Site, SiteRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a connect or read may take before the test calls it silence.
/// Not a timing assertion: across a whole network a connect answers in
/// well under a millisecond, and a partition never answers.
const SILENCE: Duration = Duration::from_secs(2);
/// How long a healed connection may take to resume (TCP's retransmission
/// backoff after a few seconds of loss stays under this).
const RESUME: Duration = Duration::from_secs(30);

fn require_root() {
    if let Err(why) = available() {
        panic!("tests/netns.rs needs root and iproute2: {why}");
    }
}

/// A prefix of this test process (`dt` + its pid in hex + `tag`), so that
/// two runs of these tests side by side never share names.
fn test_prefix(tag: &str) -> String {
    format!("dt{:04x}{tag}", std::process::id() & 0xffff)
}

/// A fresh topology under a prefix of its own (one per test, so tests run
/// side by side), removed when dropped.
struct Net {
    topology: NetnsTopology,
}

impl Net {
    fn create(name: &str) -> Net {
        require_root();
        let topology = NetnsTopology::with_prefix(&test_prefix(name)).expect("choosing names");
        topology.create().expect("creating the namespaces");
        Net { topology }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.topology.remove();
    }
}

/// Starts an echo server in `site` on its address; returns where it listens.
async fn echo_server(rt: &SiteRuntime, ip: std::net::Ipv4Addr) -> SocketAddr {
    rt.run(async move {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("binding the echo server in the site");
        let addr = listener.local_addr().expect("echo address");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    })
    .await
    .expect("running the echo server")
}

/// What a connect attempt saw.
#[derive(Debug, PartialEq, Eq)]
enum Reach {
    /// Connected and the echo came back.
    Echoed,
    /// Nothing came back in time: the packets were lost.
    Silence,
    /// The connect failed at once (a reset or an ICMP error).
    Refused(String),
}

async fn probe(to: SocketAddr) -> Reach {
    match tokio::time::timeout(SILENCE, TcpStream::connect(to)).await {
        Err(_) => Reach::Silence,
        Ok(Err(e)) => Reach::Refused(e.to_string()),
        Ok(Ok(mut sock)) => {
            let echoed = async {
                sock.write_all(b"ping").await?;
                let mut buf = [0u8; 4];
                sock.read_exact(&mut buf).await?;
                Ok::<_, std::io::Error>(buf == *b"ping")
            };
            match tokio::time::timeout(SILENCE, echoed).await {
                Err(_) => Reach::Silence,
                Ok(Ok(true)) => Reach::Echoed,
                Ok(Ok(false)) => Reach::Refused("wrong echo".into()),
                Ok(Err(e)) => Reach::Refused(e.to_string()),
            }
        }
    }
}

/// Probes `to` from inside `from` (a client in that site).
async fn probe_from(from: &SiteRuntime, to: SocketAddr) -> Reach {
    from.run(probe(to)).await.expect("probing from a site")
}

fn our_namespaces(prefix: &str) -> Vec<String> {
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

fn root_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn every_site_reaches_region_b_through_the_router_until_a_partition_drops_its_packets() {
    let net = Net::create("p1");
    let t = &net.topology;
    let rt_a = t.runtime(Site::RegionA).expect("runtime in region-a");
    let rt_b = t.runtime(Site::RegionB).expect("runtime in region-b");
    let rt_ctl = t.runtime(Site::Ctl).expect("runtime in ctl");
    let echo_b = echo_server(&rt_b, t.addr(Site::RegionB)).await;

    // The site's address exists only in its namespace: the root namespace
    // reaches it through the router, as an outside client would.
    assert_eq!(probe_from(&rt_a, echo_b).await, Reach::Echoed, "a → b");
    assert_eq!(probe_from(&rt_ctl, echo_b).await, Reach::Echoed, "ctl → b");
    assert_eq!(probe(echo_b).await, Reach::Echoed, "root → b");

    // Only the two regions cut off from each other.
    t.partition(Partition::Cut(Site::RegionA, Site::RegionB))
        .expect("cutting a-b");
    t.partition(Partition::Cut(Site::RegionA, Site::RegionB))
        .expect("cutting a-b twice is harmless");
    assert_eq!(
        probe_from(&rt_a, echo_b).await,
        Reach::Silence,
        "a → b under a-b: silence, no reset"
    );
    assert_eq!(
        probe_from(&rt_ctl, echo_b).await,
        Reach::Echoed,
        "ctl → b under a-b"
    );
    assert_eq!(probe(echo_b).await, Reach::Echoed, "root → b under a-b");
    t.heal().expect("healing");
    assert!(t.partition_rules().expect("rules").is_empty());
    assert_eq!(
        probe_from(&rt_a, echo_b).await,
        Reach::Echoed,
        "a → b healed"
    );

    // region-a cut off from everyone: nothing reaches it, the rest still talk.
    let echo_a = echo_server(&rt_a, t.addr(Site::RegionA)).await;
    t.partition(Partition::Isolate(Site::RegionA))
        .expect("isolating region-a");
    assert_eq!(probe(echo_a).await, Reach::Silence, "root → a isolated");
    assert_eq!(
        probe_from(&rt_ctl, echo_a).await,
        Reach::Silence,
        "ctl → a isolated"
    );
    assert_eq!(
        probe_from(&rt_b, echo_a).await,
        Reach::Silence,
        "b → a isolated"
    );
    assert_eq!(
        probe_from(&rt_a, echo_b).await,
        Reach::Silence,
        "a → b isolated"
    );
    assert_eq!(probe_from(&rt_ctl, echo_b).await, Reach::Echoed, "ctl → b");
    assert_eq!(probe(echo_b).await, Reach::Echoed, "root → b");

    // Two partitions at once, and lifting one leaves the other.
    t.partition(Partition::Cut(Site::Ctl, Site::RegionB))
        .expect("cutting ctl-b");
    assert_eq!(
        probe_from(&rt_ctl, echo_b).await,
        Reach::Silence,
        "ctl → b under ctl-b"
    );
    assert_eq!(probe(echo_b).await, Reach::Echoed, "root → b under ctl-b");
    t.lift(Partition::Isolate(Site::RegionA))
        .expect("lifting the isolation");
    assert_eq!(probe(echo_a).await, Reach::Echoed, "root → a once lifted");
    assert_eq!(
        probe_from(&rt_ctl, echo_b).await,
        Reach::Silence,
        "ctl-b still holds"
    );
    t.heal().expect("healing");
    assert_eq!(
        probe_from(&rt_ctl, echo_b).await,
        Reach::Echoed,
        "ctl → b healed"
    );
    assert_eq!(
        probe_from(&rt_b, echo_a).await,
        Reach::Echoed,
        "b → a healed"
    );
}

#[tokio::test]
async fn an_established_connection_across_a_cut_hears_silence_and_resumes_after_heal() {
    let net = Net::create("p2");
    let t = &net.topology;
    let rt_a = t.runtime(Site::RegionA).expect("runtime in region-a");
    let rt_b = t.runtime(Site::RegionB).expect("runtime in region-b");
    let echo_b = echo_server(&rt_b, t.addr(Site::RegionB)).await;

    // The whole conversation runs in region-a; the test steps it through
    // the partition with a channel.
    let (step_tx, mut step_rx) = tokio::sync::mpsc::channel::<&'static str>(1);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<String>(1);
    rt_a.spawn(async move {
        let mut sock = TcpStream::connect(echo_b).await.expect("connecting a → b");
        let mut buf = [0u8; 5];
        while let Some(word) = step_rx.recv().await {
            let seen = async {
                sock.write_all(word.as_bytes()).await?;
                sock.read_exact(&mut buf[..word.len()]).await?;
                Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..word.len()]).into_owned())
            };
            let wait = if word == "after" { RESUME } else { SILENCE };
            let seen = match tokio::time::timeout(wait, seen).await {
                Err(_) => "silence".to_string(),
                Ok(Ok(echo)) => echo,
                Ok(Err(e)) => format!("error: {e}"),
            };
            if seen_tx.send(seen).await.is_err() {
                return;
            }
        }
    });
    step_tx.send("hello").await.expect("step");
    assert_eq!(seen_rx.recv().await.as_deref(), Some("hello"));

    t.partition(Partition::Cut(Site::RegionA, Site::RegionB))
        .expect("cutting a-b");
    step_tx.send("cut").await.expect("step");
    assert_eq!(
        seen_rx.recv().await.as_deref(),
        Some("silence"),
        "an open connection across the cut sees neither an answer nor a reset"
    );

    t.heal().expect("healing");
    // The word sent during the cut is retransmitted and echoed first.
    step_tx.send("after").await.expect("step");
    let resumed = seen_rx.recv().await.expect("an answer after heal");
    assert!(
        resumed == "cutaf" || resumed == "after",
        "the same connection resumes after heal, saw {resumed:?}"
    );
}

#[test]
fn remove_leaves_nothing_and_remove_stale_cleans_up_after_a_killed_lab() {
    require_root();
    let forwarding =
        || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward");
    let root_forwarding = forwarding();
    let prefix = test_prefix("p3");
    let prefix = prefix.as_str();
    let t = NetnsTopology::with_prefix(prefix).expect("choosing names");
    t.create().expect("creating");
    assert_eq!(
        forwarding(),
        root_forwarding,
        "forwarding is the router's alone"
    );
    assert_eq!(
        our_namespaces(prefix).len(),
        5,
        "a, b, ctl, witness and the router"
    );
    assert!(root_link_exists(prefix));
    // A blocking command runs in a site and sees its address.
    let out = t
        .command(Site::RegionA, "ip")
        .expect("a command in region-a")
        .args(["-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .expect("running ip in region-a");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&t.addr(Site::RegionA).to_string()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    t.remove().expect("removing");
    assert!(
        our_namespaces(prefix).is_empty(),
        "ip netns list shows none of ours"
    );
    assert!(!root_link_exists(prefix));
    t.remove().expect("removing twice is harmless");

    // A lab killed without cleaning up: only its prefix is known.
    let killed = NetnsTopology::with_prefix(prefix).expect("choosing names");
    killed.create().expect("creating");
    std::mem::forget(killed);
    let removed = NetnsTopology::remove_stale(prefix).expect("removing the stale lab");
    // The root link and five namespaces (a, b, ctl, witness, router).
    assert_eq!(removed.len(), 6, "{removed:?}");
    assert!(our_namespaces(prefix).is_empty());
    assert!(!root_link_exists(prefix));
    let route = Command::new("ip")
        .args(["-4", "-o", "route", "show"])
        .output()
        .expect("ip route");
    assert!(
        !String::from_utf8_lossy(&route.stdout).contains(&format!("dev {prefix}")),
        "the root route went with the link"
    );
    assert!(NetnsTopology::remove_stale(prefix)
        .expect("again")
        .is_empty());
}

#[test]
fn two_labs_get_different_networks() {
    require_root();
    // Both prefixes end in the same hex digits, so both start their search
    // at the same /16.
    let first = NetnsTopology::with_prefix(&test_prefix("x41")).expect("names");
    first.create().expect("creating the first");
    let second = NetnsTopology::with_prefix(&test_prefix("y41")).expect("names");
    let guard = scopeguard(&first);
    assert_ne!(
        first.net, second.net,
        "the second lab skips the first's /16"
    );
    drop(guard);
}

/// Removes a topology at the end of a scope, even when an assert fails.
fn scopeguard(t: &NetnsTopology) -> impl Drop + '_ {
    struct Guard<'a>(&'a NetnsTopology);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }
    Guard(t)
}
