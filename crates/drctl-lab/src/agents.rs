//! The lab's node agents: one `drctl agent serve` per region, beside that
//! region's servers (inside the region's namespace in a namespaced lab),
//! with a PKI `lab up` issues into `pki/`. drctl reaches every server's
//! host through them, as in production: the hard fence, rejoin, recovery,
//! drill clones and restore tests run on the region's own host.
//!
//! The agents are separate processes (the drctl binary the lab is given),
//! recorded in `lab.json` so that `lab down` stops them after a crash too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::placement::Placement;
use crate::record::{LabRecord, REGION_A, REGION_B};
use crate::{io_err, LabError, Result};
use drctl_pg::os::{process_alive, signal};

/// The lab's PKI directory, beside the config.
pub const LAB_PKI_DIR: &str = "pki";

/// One running agent of the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabAgentRecord {
    pub region: String,
    pub pid: u32,
    /// `https://HOST:PORT`, as the config names it.
    pub url: String,
    pub log: PathBuf,
}

/// Where `drctl` reads the lab's `[agents]` files, relative to the config.
pub(crate) struct AgentsTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub(crate) fn tls_paths() -> AgentsTls {
    AgentsTls {
        ca: format!("{LAB_PKI_DIR}/ca.pem"),
        cert: format!("{LAB_PKI_DIR}/drctl.pem"),
        key: format!("{LAB_PKI_DIR}/drctl.key"),
    }
}

/// Issues the lab's PKI and plans one agent per region (its address):
/// recorded before anything starts, so the config can name them.
pub(crate) fn plan(
    record: &mut LabRecord,
    place: &Placement,
    port: &impl Fn(u16) -> u16,
) -> Result<()> {
    let mut names = Vec::new();
    for (i, region) in [REGION_A, REGION_B].into_iter().enumerate() {
        let host = place.region_host(region);
        names.push(drctl_agent::AgentName {
            name: region.to_string(),
            hosts: vec![host.to_string()],
        });
        let addr = SocketAddr::new(host, port(42 + i as u16));
        record.agents.push(LabAgentRecord {
            region: region.to_string(),
            pid: 0,
            url: format!("https://{addr}"),
            log: record.dir.join(format!("agent-{region}.log")),
        });
    }
    drctl_agent::issue_pki(&record.dir.join(LAB_PKI_DIR), &names, 30)
        .map_err(|e| LabError::Other(format!("issuing the lab's agent certificates: {e}")))?;
    Ok(())
}

/// Starts the planned agents with `bin` (the drctl binary), each serving
/// its region's data directories, and waits until each answers.
pub(crate) fn start(
    record: &mut LabRecord,
    place: &Placement,
    bin: &Path,
    env: &[(String, String, String)],
) -> Result<()> {
    let pki = record.dir.join(LAB_PKI_DIR);
    for i in 0..record.agents.len() {
        let agent = record.agents[i].clone();
        let listen = agent.url.trim_start_matches("https://").to_string();
        let data_dirs: Vec<PathBuf> = record
            .clusters
            .iter()
            .filter(|c| c.region == agent.region)
            .map(|c| c.data_dir.clone())
            .collect();
        let scratch = record.dir.join(format!("scratch-{}", agent.region));
        let log = std::fs::File::create(&agent.log)
            .map_err(io_err(format!("creating {}", agent.log.display())))?;
        let mut cmd = place.command(&agent.region, bin)?;
        cmd.args(["agent", "serve", "--listen", &listen])
            .arg("--ca")
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join(format!("agent-{}.pem", agent.region)))
            .arg("--key")
            .arg(pki.join(format!("agent-{}.key", agent.region)))
            .arg("--scratch-root")
            .arg(&scratch)
            .arg("--config")
            .arg(&record.config_path);
        for d in &data_dirs {
            cmd.arg("--data-dir").arg(d);
        }
        for (_, name, value) in env.iter().filter(|(r, _, _)| *r == agent.region) {
            cmd.env(name, value);
        }
        let err = log.try_clone().map_err(io_err("the agent's log file"))?;
        let mut child = cmd
            .env("DRCTL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io_err(format!("starting the agent of {}", agent.region)))?;
        record.agents[i].pid = child.id();
        record.write()?;
        wait_listening(&listen, &agent, &mut child)?;
        // Not waited for: `lab down` (or the lab's drop) stops it by pid.
        std::mem::forget(child);
    }
    Ok(())
}

/// Waits until the agent's port takes connections (it prints its ready
/// line just after binding), or fails with its log's end.
fn wait_listening(
    listen: &str,
    agent: &LabAgentRecord,
    child: &mut std::process::Child,
) -> Result<()> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| LabError::Other(format!("bad agent address {listen}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
            return Err(LabError::Other(format!(
                "the agent of {} exited ({status}); its log ({}):\n{}",
                agent.region,
                agent.log.display(),
                log.trim_end()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(10).collect();
    Err(LabError::Other(format!(
        "the agent of {} did not come up on {listen}; its log ({}):\n{}",
        agent.region,
        agent.log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )))
}

/// Stops the lab's agents (SIGTERM, then SIGKILL), then their lease
/// watchdogs (which outlive an agent on purpose); returns what it did.
pub(crate) fn stop(record: &LabRecord) -> Vec<String> {
    let mut done: Vec<String> = record
        .agents
        .iter()
        .filter(|a| stop_process(a.pid, "drctl"))
        .map(|a| format!("stopped the agent of {} (pid {})", a.region, a.pid))
        .collect();
    for cluster in record.all_clusters() {
        let dir = &cluster.data_dir;
        if let Some(pid) = drctl_agent::watchdog::pid(dir) {
            if stop_process(pid, "drctl") {
                done.push(format!(
                    "stopped the lease watchdog of {} (pid {pid})",
                    dir.display()
                ));
            }
        }
    }
    done
}

/// Stops the recorded process `pid` if it still runs as `comm` (SIGTERM,
/// then SIGKILL after 10 s); whether it was running.
pub(crate) fn stop_process(pid: u32, comm: &str) -> bool {
    if pid == 0 || !process_alive(pid, comm) {
        return false;
    }
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid, comm) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if process_alive(pid, comm) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    true
}

/// The agent's address as the config names it.
pub(crate) fn url_of(record: &LabRecord, region: &str) -> Option<String> {
    record
        .agents
        .iter()
        .find(|a| a.region == region)
        .map(|a| a.url.clone())
}
