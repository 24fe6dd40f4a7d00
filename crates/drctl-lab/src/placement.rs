//! Where the lab's pieces run ([`Placement`]): everything in this process's
//! namespace on loopback, or each piece in its region's site of a
//! namespaced lab (a runtime per site for sockets, `setns` for processes).
//! `lab.rs` decides what runs; this module only decides where.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::netns::{NetnsTopology, Site, SiteRuntime};
use crate::record::{LabNetwork, LabSpec};
use crate::{io_err, LabError, LinkControl, LinkProxy, PgCluster, Result};

/// Where the lab's pieces run: everything in this namespace on loopback,
/// or each in its site's namespace (a runtime per site for sockets).
pub(crate) struct Placement {
    pub(crate) sites: Option<Sites>,
}

pub(crate) struct Sites {
    topology: NetnsTopology,
    runtimes: Vec<(Site, SiteRuntime)>,
}

impl Placement {
    /// Builds the namespaces of a namespaced lab (removing a killed lab's
    /// first) and a runtime in each site.
    pub(crate) fn build(spec: &LabSpec) -> Result<Placement> {
        if spec.network == LabNetwork::Loopback {
            return Ok(Placement { sites: None });
        }
        crate::netns::available().map_err(LabError::Other)?;
        let topology = NetnsTopology::create_for_lab(&spec.dir)?;
        let mut runtimes = Vec::new();
        for site in Site::ALL {
            match topology.runtime(site) {
                Ok(rt) => runtimes.push((site, rt)),
                Err(e) => {
                    drop(runtimes);
                    let _ = topology.remove();
                    return Err(e);
                }
            }
        }
        Ok(Placement {
            sites: Some(Sites { topology, runtimes }),
        })
    }

    pub(crate) fn topology(&self) -> Option<&NetnsTopology> {
        self.sites.as_ref().map(|s| &s.topology)
    }

    pub(crate) fn runtime(&self, site: Site) -> Option<&SiteRuntime> {
        let sites = self.sites.as_ref()?;
        sites
            .runtimes
            .iter()
            .find(|(s, _)| *s == site)
            .map(|(_, rt)| rt)
    }

    /// Runs `f` (which starts processes) in `region`'s site.
    pub(crate) fn in_region<T: Send>(
        &self,
        region: &str,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T> {
        match (self.topology(), Site::of_region(region)) {
            (Some(topology), Some(site)) => topology.run_in(site, f),
            _ => Ok(f()),
        }
    }

    /// Opens a link proxy in `region`'s site (here on loopback).
    pub(crate) async fn proxy(
        &self,
        region: &str,
        listen: SocketAddr,
        upstream: SocketAddr,
        link: LinkControl,
    ) -> std::io::Result<LinkProxy> {
        match Site::of_region(region).and_then(|s| self.runtime(s)) {
            Some(rt) => rt
                .run(LinkProxy::spawn(listen, upstream, link))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?,
            None => LinkProxy::spawn(listen, upstream, link).await,
        }
    }

    /// What a namespaced cluster needs beyond the lab settings, appended
    /// after `PgCluster` wrote them (it rewrites both files on a clone): it
    /// listens on every address of its site (the namespace holds only
    /// loopback and the site's address), trusts the lab's network, and
    /// notices a silent partition within seconds (with packets lost, only
    /// these timeouts end a replication connection).
    pub(crate) fn prepare_cluster(&self, cluster: &PgCluster) -> Result<()> {
        use std::io::Write as _;
        let Some(topology) = self.topology() else {
            return Ok(());
        };
        let append = |file: &str, text: &str| -> Result<()> {
            let path = cluster.data_dir.join(file);
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(io_err(format!("writing {}", path.display())))
        };
        append(
            "postgresql.conf",
            "\n# --- drctl lab: a region of its own network namespace ---\n\
             listen_addresses = '*'\n\
             wal_sender_timeout = 5s\n\
             wal_receiver_timeout = 5s\n",
        )?;
        let net = topology.network();
        append(
            "pg_hba.conf",
            &format!("host all all {net} trust\nhost replication all {net} trust\n"),
        )
    }

    /// Where drctl's own daemon listens: 127.0.0.1, or the control-plane
    /// site's address.
    pub(crate) fn control_plane_host(&self) -> IpAddr {
        match self.topology() {
            Some(t) => IpAddr::V4(t.addr(Site::Ctl)),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// A command that runs in `region`'s site (here, on a loopback lab).
    pub(crate) fn command(
        &self,
        region: &str,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<std::process::Command> {
        match (self.topology(), Site::of_region(region)) {
            (Some(t), Some(site)) => t.command(site, program),
            _ => Ok(std::process::Command::new(program)),
        }
    }

    /// The address `region`'s servers accept from other sites.
    pub(crate) fn region_host(&self, region: &str) -> IpAddr {
        match (self.topology(), Site::of_region(region)) {
            (Some(t), Some(site)) => IpAddr::V4(t.addr(site)),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}
