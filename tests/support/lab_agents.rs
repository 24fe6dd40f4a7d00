//! A lab whose servers are reached through node agents: one
//! `drctl agent serve` per region, serving that region's data directories,
//! with a PKI issued into the lab directory, and a copy of the lab's config
//! that names them (`[agents]`, `[services.postgres.REGION] agent`). In a
//! namespaced lab each agent runs in its region's namespace and listens on
//! the region's address, as on a host of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drctl_agent::{AgentName, Pki};
use drctl_config::Config;
use drctl_lab::{Lab, NetnsTopology, Site, REGION_A, REGION_B};

use crate::agent::AgentProcess;

/// The lab's agents and the config naming them.
pub struct LabAgents {
    pub pki: Pki,
    pub agents: BTreeMap<String, AgentProcess>,
    pub config_path: PathBuf,
    /// What each region's agent serves: (data dirs, scratch root).
    serves: BTreeMap<String, (Vec<PathBuf>, PathBuf)>,
    /// The lab's namespaces, where the agents run (`None`: loopback).
    network: Option<NetnsTopology>,
}

impl LabAgents {
    /// Starts an agent per region of `lab` and writes `agents.toml` beside
    /// the lab's config, with `[services.failover] rejoin = REJOIN` for
    /// every replicated service.
    pub fn start(lab: &Lab, rejoin: &str) -> LabAgents {
        LabAgents::start_with(lab, rejoin, lab.config_path(), &[])
    }

    /// As [`LabAgents::start`], over the config at `base` (a copy of the
    /// lab's with more servers), each agent also serving the `extra` data
    /// directories of its region and reading the lab's recorded backups
    /// (`--config`), so that it can restore them.
    pub fn start_with(
        lab: &Lab,
        rejoin: &str,
        base: &Path,
        extra: &[(&str, PathBuf)],
    ) -> LabAgents {
        let dir = lab.record.dir.join("pki");
        let regions = [REGION_A, REGION_B];
        let network = lab.network().cloned();
        let names: Vec<AgentName> = regions
            .iter()
            .map(|r| AgentName {
                name: r.to_string(),
                hosts: vec![lab.record.cluster_host(r).to_string()],
            })
            .collect();
        let pki = drctl_agent::issue_pki(&dir, &names, 30).expect("the lab's PKI");
        let mut agents = BTreeMap::new();
        let mut serves = BTreeMap::new();
        for region in regions {
            let files = pki
                .agents
                .iter()
                .find(|a| a.name == region)
                .expect("a certificate per region");
            let data_dirs: Vec<PathBuf> = lab
                .record
                .clusters
                .iter()
                .filter(|c| c.region == region)
                .map(|c| c.data_dir.clone())
                .chain(
                    extra
                        .iter()
                        .filter(|(r, _)| *r == region)
                        .map(|(_, d)| d.clone()),
                )
                .collect();
            let backups = (!extra.is_empty()).then(|| lab.config_path().to_path_buf());
            let scratch = lab.record.dir.join(format!("scratch-{region}"));
            let listen = format!("{}:0", lab.record.cluster_host(region));
            let agent = in_region(network.as_ref(), region, || {
                AgentProcess::start_reading(
                    &pki,
                    files,
                    &data_dirs,
                    &scratch,
                    &listen,
                    backups.as_deref(),
                )
            });
            agents.insert(region.to_string(), agent);
            serves.insert(region.to_string(), (data_dirs, scratch));
        }
        let config_path = lab.config_path().with_file_name("agents.toml");
        let text = std::fs::read_to_string(base).unwrap();
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        let mut tls = toml_edit::Table::new();
        tls["ca"] = toml_edit::value(pki.client.ca.display().to_string());
        tls["cert"] = toml_edit::value(pki.client.cert.display().to_string());
        tls["key"] = toml_edit::value(pki.client.key.display().to_string());
        doc["agents"] = toml_edit::Item::Table(tls);
        let services = doc["services"]
            .as_array_of_tables_mut()
            .expect("the lab's [[services]]");
        for service in services.iter_mut() {
            let Some(nodes) = service
                .get_mut("postgres")
                .and_then(toml_edit::Item::as_table_like_mut)
            else {
                continue;
            };
            let mut replicated = 0;
            for (region, node) in nodes.iter_mut() {
                if let Some(node) = node.as_table_like_mut() {
                    // An agent acts on a data directory: only a server
                    // that names one is reached through it.
                    if node.contains_key("data_dir") {
                        node.insert("agent", toml_edit::value(agents[region.get()].url.clone()));
                    }
                    replicated += 1;
                }
            }
            if replicated >= 2 {
                let failover = service
                    .entry("failover")
                    .or_insert(toml_edit::Item::Table(toml_edit::Table::new()));
                failover["rejoin"] = toml_edit::value(rejoin);
            }
        }
        std::fs::write(&config_path, doc.to_string()).unwrap();
        LabAgents {
            pki,
            agents,
            config_path,
            serves,
            network,
        }
    }

    /// Kills `region`'s agent (SIGKILL) and starts it again on the same
    /// address.
    pub fn kill_and_restart(&mut self, region: &str, down_for: std::time::Duration) {
        let agent = self.agents.get_mut(region).expect("an agent of the region");
        agent.kill();
        std::thread::sleep(down_for);
        let listen = agent.url.trim_start_matches("https://").to_string();
        let files = self
            .pki
            .agents
            .iter()
            .find(|a| a.name == region)
            .expect("a certificate per region");
        let (data_dirs, scratch) = &self.serves[region];
        let restarted = in_region(self.network.as_ref(), region, || {
            AgentProcess::start_on(&self.pki, files, data_dirs, scratch, &listen)
        });
        self.agents.insert(region.to_string(), restarted);
    }

    /// The log lines of `region`'s agent so far.
    pub fn agent_log(&self, region: &str) -> Vec<String> {
        self.agents[region].log()
    }

    /// The config naming the agents.
    pub fn config(&self) -> Arc<Config> {
        Arc::new(
            drctl_config::load(&self.config_path)
                .unwrap_or_else(|e| panic!("the agents' config is invalid:\n{e}")),
        )
    }
}

/// Runs `f` in `region`'s namespace of `network` (here on loopback): an
/// agent it spawns lives in the region.
fn in_region<T: Send>(
    network: Option<&NetnsTopology>,
    region: &str,
    f: impl FnOnce() -> T + Send,
) -> T {
    match (network, Site::of_region(region)) {
        (Some(net), Some(site)) => net
            .run_in(site, f)
            .unwrap_or_else(|e| panic!("entering {region}'s namespace: {e}")),
        _ => f(),
    }
}
