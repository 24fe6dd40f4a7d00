//! The lab's etcd cluster: three members, one in region-a, one in region-b
//! and one in the witness site, so that losing any one site leaves a
//! quorum that grants and renews the primaries' leases
//! (`[coordination]`). In a namespaced lab each member runs inside its
//! site's namespace; on loopback all three run here on their own ports.
//!
//! The members are separate processes (Debian's `etcd-server`), recorded
//! in `lab.json` so that `lab down` stops them after a crash too. Their
//! timings are etcd's defaults (heartbeat 100 ms, election 1 s): the lab's
//! sites are one router apart.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::placement::Placement;
use crate::record::{LabRecord, REGION_A, REGION_B};
use crate::{io_err, LabError, Result};
use crate::{NetnsTopology, Site};
use drctl_pg::os::{process_alive, signal};

/// The witness site's name (the etcd quorum's third member).
pub const WITNESS: &str = "witness";

/// How long the lab waits for one member's answer: generous, since a
/// loaded test machine answers slowly and nothing here is on a deadline.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The install hint of a machine without etcd.
pub const ETCD_INSTALL: &str = "apt-get install etcd-server";

/// One etcd member of the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabEtcdRecord {
    /// Its member name: the site it runs in.
    pub name: String,
    pub pid: u32,
    /// `http://HOST:PORT`, as drctl and the agents reach it.
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// The etcd program, or the install command.
pub fn find_etcd() -> Result<PathBuf> {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join("etcd");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(LabError::Other(format!(
        "the lab's coordination needs etcd, which is not installed: {ETCD_INSTALL} (or run `drctl lab up --no-coordination`)"
    )))
}

/// Plans the three members (addresses and ports) into the record.
pub(crate) fn plan(record: &mut LabRecord, place: &Placement, port: &impl Fn(u16) -> u16) {
    for (i, site) in [REGION_A, REGION_B, WITNESS].into_iter().enumerate() {
        let host: IpAddr = place.region_host(site);
        let client = SocketAddr::new(host, port(10 + i as u16));
        let peer = SocketAddr::new(host, port(13 + i as u16));
        record.etcd.push(LabEtcdRecord {
            name: site.to_string(),
            pid: 0,
            client_url: format!("http://{client}"),
            peer_url: format!("http://{peer}"),
            data_dir: record.dir.join(format!("etcd-{site}")),
            log: record.dir.join(format!("etcd-{site}.log")),
        });
    }
}

/// The members' client URLs, as `[coordination] etcd` lists them.
pub fn client_urls(record: &LabRecord) -> Vec<String> {
    record.etcd.iter().map(|m| m.client_url.clone()).collect()
}

/// etcd's `--initial-cluster`: every member's name and peer URL.
fn initial_cluster(record: &LabRecord) -> String {
    record
        .etcd
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts the planned members and waits until they have a leader.
pub(crate) async fn start(record: &mut LabRecord) -> Result<()> {
    let bin = find_etcd()?;
    let initial = initial_cluster(record);
    let token = format!("drctl-lab-{}", std::process::id());
    for i in 0..record.etcd.len() {
        let m = record.etcd[i].clone();
        let pid = spawn(record.network.as_ref(), &bin, &m, &initial, &token, "new")?;
        record.etcd[i].pid = pid;
        record.write()?;
    }
    wait_leader(record, Duration::from_secs(30)).await
}

fn spawn(
    network: Option<&NetnsTopology>,
    bin: &PathBuf,
    m: &LabEtcdRecord,
    initial: &str,
    token: &str,
    state: &str,
) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&m.log)
        .map_err(io_err(format!("creating {}", m.log.display())))?;
    let err = log.try_clone().map_err(io_err("the etcd log file"))?;
    let mut cmd = match (network, Site::of_region(&m.name)) {
        (Some(t), Some(site)) => t.command(site, bin)?,
        _ => std::process::Command::new(bin),
    };
    cmd.arg("--name")
        .arg(&m.name)
        .arg("--data-dir")
        .arg(&m.data_dir)
        .args(["--listen-client-urls", &m.client_url])
        .args(["--advertise-client-urls", &m.client_url])
        .args(["--listen-peer-urls", &m.peer_url])
        .args(["--initial-advertise-peer-urls", &m.peer_url])
        .args(["--initial-cluster", initial])
        .args(["--initial-cluster-state", state])
        .args(["--initial-cluster-token", token])
        // A member that was cut off (its term risen alone) does not force
        // an election when it comes back: without pre-vote, every heal of
        // a partition costs the cluster its leader for seconds.
        .arg("--pre-vote")
        // No metrics or pprof listeners beyond the client port.
        .env_remove("ETCD_LISTEN_METRICS_URLS")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    let child = cmd
        .spawn()
        .map_err(io_err(format!("starting the etcd member of {}", m.name)))?;
    let pid = child.id();
    // Not waited for: `lab down` (or the lab's drop) stops it by pid.
    std::mem::forget(child);
    Ok(pid)
}

/// Waits until every running member names the same leader.
pub(crate) async fn wait_leader(record: &LabRecord, timeout: Duration) -> Result<()> {
    let etcd = drctl_coord::Etcd::new(&client_urls(record), ASK_TIMEOUT)
        .map_err(|e| LabError::Other(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let want = record
        .etcd
        .iter()
        .filter(|m| m.pid != 0 && process_alive(m.pid, "etcd"))
        .count();
    loop {
        let members = etcd.members().await;
        let leader = members.first().map(|m| m.leader_id).unwrap_or(0);
        if members.len() >= want.max(2)
            && leader != 0
            && members.iter().all(|m| m.leader_id == leader)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = record
                .etcd
                .iter()
                .map(|m| {
                    let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    format!(
                        "{} ({}):\n{}",
                        m.name,
                        m.log.display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            return Err(LabError::Other(format!(
                "the lab's etcd members did not elect a leader within {}s; their logs:\n{}",
                timeout.as_secs(),
                tails.join("\n")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills (SIGKILL) the member that leads now; returns its name.
pub async fn kill_leader(record: &LabRecord) -> Result<String> {
    let etcd = drctl_coord::Etcd::new(&client_urls(record), ASK_TIMEOUT)
        .map_err(|e| LabError::Other(e.to_string()))?;
    // Right after a partition heals or a member restarts, the members may
    // still be electing, or too slow to answer: ask again for a while.
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        let members = etcd.members().await;
        if let Some(l) = members.into_iter().find(|m| m.is_leader()) {
            break l;
        }
        if Instant::now() > deadline {
            return Err(LabError::Other(
                "no etcd member says it leads (asked for 15 s)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let m = record
        .etcd
        .iter()
        .find(|r| r.client_url == leader.endpoint)
        .ok_or_else(|| LabError::Other(format!("no lab member at {}", leader.endpoint)))?;
    signal(m.pid, nix::sys::signal::Signal::SIGKILL);
    Ok(m.name.clone())
}

/// Starts a stopped member again on its data directory (it rejoins the
/// cluster it was part of).
pub fn restart(record: &mut LabRecord, name: &str) -> Result<()> {
    let bin = find_etcd()?;
    let initial = initial_cluster(record);
    let i = record
        .etcd
        .iter()
        .position(|m| m.name == name)
        .ok_or_else(|| LabError::Other(format!("no etcd member {name}")))?;
    let m = record.etcd[i].clone();
    if m.pid != 0 && process_alive(m.pid, "etcd") {
        return Ok(());
    }
    let pid = spawn(
        record.network.as_ref(),
        &bin,
        &m,
        &initial,
        "unused",
        "existing",
    )?;
    record.etcd[i].pid = pid;
    record.write()
}

/// Stops the lab's members (SIGTERM, then SIGKILL); returns what it did.
pub(crate) fn stop(record: &LabRecord) -> Vec<String> {
    record
        .etcd
        .iter()
        .filter(|m| crate::agents::stop_process(m.pid, "etcd"))
        .map(|m| format!("stopped the etcd member of {} (pid {})", m.name, m.pid))
        .collect()
}

/// What `lab status` shows of a member: its record, whether it runs, and
/// whether it leads (asked of the members themselves).
pub async fn member_status(record: &LabRecord) -> Vec<serde_json::Value> {
    let statuses = match drctl_coord::Etcd::new(&client_urls(record), ASK_TIMEOUT) {
        Ok(etcd) => etcd.members().await,
        Err(_) => Vec::new(),
    };
    record
        .etcd
        .iter()
        .map(|m| {
            let st = statuses.iter().find(|s| s.endpoint == m.client_url);
            serde_json::json!({
                "name": m.name,
                "client_url": m.client_url,
                "pid": m.pid,
                "running": m.pid != 0 && process_alive(m.pid, "etcd"),
                "leader": st.is_some_and(|s| s.is_leader()),
                "answers": st.is_some(),
                "log": m.log,
            })
        })
        .collect()
}
