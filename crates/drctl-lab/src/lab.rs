//! The whole lab: clusters per service, the region link, the workload, the
//! lab's DNS zone and the regional fronts it points at, the control socket,
//! and the record (`lab.json`) that lets a later `lab down` or `lab up`
//! clean up after a crash.
//!
//! Clients reach a replicated service the way they would in production: they
//! resolve `<service>.shop.lab.` through the lab's DNS server and connect to
//! the service's front port at the address it names — `127.0.1.1` in region
//! A, `127.0.2.1` in region B (a regional load balancer, played by the same
//! TCP proxy as the region link). A failover flips the record; a client that
//! resolves again lands on the new primary.
//!
//! With [`LabNetwork::Namespaces`] each region is a host of its own
//! ([`crate::netns`]): its clusters run in the region's namespace and listen
//! on its address, the fronts listen there too, and the DNS server lives in
//! the control-plane site. Each end of the region link sits in the region
//! that *connects* (a standby's region), listening on that site's loopback
//! and forwarding across the router to the other region: replication's
//! packets then cross the router, where partitions drop them, and the
//! servers' own settings (`primary_conninfo` on 127.0.0.1, written by
//! `pg_basebackup -R`) stay what they are on loopback.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::control::serve_control;
use crate::dns_server::ZoneServer;
use crate::netns::{NetnsTopology, Partition, Site, SiteRuntime};
use crate::placement::Placement;
use crate::record::{
    dns_port, host_dsn, lab_config_toml, port_plan, unset_addr, LabClusterRecord, LabFrontRecord,
    LabNetwork, LabRecord, LabService, LabSpec, LAB_DNS_KEY_FILE, LAB_DNS_KEY_NAME, LAB_RECORD_TTL,
    LAB_TOKENS_DIR, LAB_TOKEN_ROLES, LAB_UP_LOG, LAB_ZONE, REGION_A, REGION_B,
};
use crate::{
    io_err, LabError, LinkControl, LinkProxy, Result, ShopWorkload, WorkloadControl, WorkloadTarget,
};
use drctl_config::RecordType;
use drctl_dns::TsigKeyMaterial;
use drctl_pg::os::{ensure_dir, give_to_postgres, process_alive, signal};
use drctl_pg::{find_pg_bin, PgCluster, Role};

/// A running lab. Dropping it stops the clusters (immediately) and the
/// tasks, and removes its namespaces.
pub struct Lab {
    pub record: LabRecord,
    link: LinkControl,
    workload: ShopWorkload,
    // Declared before `place`: proxies and the DNS server stop before the
    // site runtimes they run on.
    _proxies: Vec<LinkProxy>,
    dns: ZoneServer,
    control: JoinHandle<()>,
    place: Placement,
    torn_down: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.control.abort();
        if !self.torn_down {
            crate::agents::stop(&self.record);
            crate::etcd::stop(&self.record);
            for c in self.record.all_clusters() {
                let _ = c.stop("immediate");
            }
            if let Some(net) = &self.record.network {
                let _ = net.remove();
            }
            let _ = std::fs::remove_file(LabRecord::path(&self.record.dir));
        }
    }
}

impl Lab {
    /// Builds and starts the lab described by `spec`, cleaning up any stale
    /// lab recorded in the same directory first. A namespaced lab that
    /// fails half-way is removed again (its servers stopped, its
    /// namespaces deleted): they would hold its network until a `lab down`.
    pub async fn up(spec: LabSpec, progress: impl FnMut(&str)) -> Result<Lab> {
        let (dir, network) = (spec.dir.clone(), spec.network);
        let started = Lab::start(spec, progress).await;
        if started.is_err() && network == LabNetwork::Namespaces {
            let _ = Lab::down(&dir);
        }
        started
    }

    async fn start(spec: LabSpec, mut progress: impl FnMut(&str)) -> Result<Lab> {
        if LabRecord::path(&spec.dir).exists() {
            progress("stopping a stale lab recorded in this directory");
            Lab::down(&spec.dir)?;
        } else if spec.network == LabNetwork::Loopback && spec.dir.exists() {
            // A namespaced lab killed here before it wrote its record left
            // namespaces that nothing else would remove (a namespaced `up`
            // removes them as it builds its own).
            for line in Lab::remove_stale_network(&spec.dir)? {
                progress(&line);
            }
        }
        let bin = find_pg_bin()?;
        ensure_dir(&spec.dir)?;
        clear_lab_dir(&spec.dir)?;
        give_to_postgres(&spec.dir)?;
        let place = Placement::build(&spec)?;
        if let Some(t) = place.topology() {
            progress(&format!(
                "network: region-a {}, region-b {}, ctl {} in namespaces {}-*, through the router {}",
                t.addr(Site::RegionA),
                t.addr(Site::RegionB),
                t.addr(Site::Ctl),
                t.prefix,
                t.router_namespace()
            ));
        }

        let port = port_plan(spec.base_port);
        let link = LinkControl::default();
        let mut proxies = Vec::new();
        let mut clusters = Vec::new();
        let mut targets = Vec::new();
        // Record the lab before anything starts, so that a crash half-way is
        // cleaned up by the next `lab up` or `lab down`.
        let mut record = LabRecord {
            dir: spec.dir.clone(),
            owner_pid: std::process::id(),
            control_port: port(40),
            // drctl's daemon belongs in the control-plane site of a
            // namespaced lab (`drctl lab up` runs it there), so that
            // cutting the control plane off a region cuts drctl off.
            api_url: format!("http://{}:{}", place.control_plane_host(), spec.api_port),
            config_path: spec.dir.join("drctl.toml"),
            pg_bin: bin.clone(),
            services: spec.services.clone(),
            clusters: Vec::new(),
            dns_server: unset_addr(),
            dns_zone: LAB_ZONE.to_string(),
            dns_key_file: spec.dir.join(LAB_DNS_KEY_FILE),
            fronts: Vec::new(),
            fence_hook: spec.fence_hook.clone(),
            network: place.topology().cloned(),
            max_connections: spec.max_connections,
            agents: Vec::new(),
            etcd: Vec::new(),
        };
        if record.network.is_some() {
            // Before any server starts: a crash from here on leaves a
            // record naming the namespaces to remove.
            record.write()?;
        }
        for (i, svc) in spec.services.iter().enumerate() {
            let i = i as u16;
            let primary_port = port(2 * i);
            let primary = PgCluster::new(
                format!("{}-{REGION_A}", svc.name),
                spec.dir.join(format!("{}-{REGION_A}", svc.name)),
                primary_port,
                bin.clone(),
            );
            record.clusters.push(LabClusterRecord {
                service: svc.name.clone(),
                region: REGION_A.into(),
                role: Role::Primary,
                port: primary_port,
                data_dir: primary.data_dir.clone(),
                via_link_port: None,
                link_port: None,
            });
            record.write()?;
            progress(&format!(
                "{}: creating the primary in {REGION_A} on port {primary_port}",
                svc.name
            ));
            primary.init_primary(spec.max_connections)?;
            place.prepare_cluster(&primary)?;
            place.in_region(REGION_A, || primary.start())??;
            let host_a = place.region_host(REGION_A);
            create_shop_schema(host_a, &primary, svc).await?;
            targets.push(WorkloadTarget {
                service: svc.name.clone(),
                dsn: host_dsn(host_a, primary_port, &svc.name),
                table: svc.table.clone(),
            });
            if svc.replicated() {
                let link_port = port(20 + i);
                // The link's end sits in the region that connects through
                // it (see the module doc).
                let proxy = place
                    .proxy(
                        REGION_B,
                        SocketAddr::from(([127, 0, 0, 1], link_port)),
                        SocketAddr::new(host_a, primary_port),
                        link.clone(),
                    )
                    .await
                    .map_err(io_err(format!(
                        "opening the region link on port {link_port}"
                    )))?;
                let link_port = proxy.listen.port();
                proxies.push(proxy);
                if let Some(c) = record.clusters.last_mut() {
                    c.link_port = Some(link_port);
                }
                let standby_port = port(2 * i + 1);
                // The link's other direction, to the standby's server: what
                // region-a streams through once region-b is the primary.
                let back = place
                    .proxy(
                        REGION_A,
                        SocketAddr::from(([127, 0, 0, 1], port(25 + i))),
                        SocketAddr::new(place.region_host(REGION_B), standby_port),
                        link.clone(),
                    )
                    .await
                    .map_err(io_err(format!(
                        "opening the region link's other direction on port {}",
                        port(25 + i)
                    )))?;
                let back_port = back.listen.port();
                proxies.push(back);
                let standby = PgCluster::new(
                    format!("{}-{REGION_B}", svc.name),
                    spec.dir.join(format!("{}-{REGION_B}", svc.name)),
                    standby_port,
                    bin.clone(),
                );
                record.clusters.push(LabClusterRecord {
                    service: svc.name.clone(),
                    region: REGION_B.into(),
                    role: Role::Standby,
                    port: standby_port,
                    data_dir: standby.data_dir.clone(),
                    via_link_port: Some(link_port),
                    link_port: Some(back_port),
                });
                record.write()?;
                progress(&format!("{}: cloning the standby in {REGION_B} on port {standby_port} through the region link", svc.name));
                place.in_region(REGION_B, || {
                    standby.clone_standby(link_port, REGION_B, spec.max_connections)
                })??;
                place.prepare_cluster(&standby)?;
                place.in_region(REGION_B, || standby.start())??;
                wait_streaming(
                    &primary,
                    &host_dsn(host_a, primary_port, "postgres"),
                    Duration::from_secs(60),
                )
                .await?;
            }
            clusters.push(primary);
        }
        let (dns, fronts) = start_dns_and_fronts(&spec, &mut record, &port, &place).await?;
        proxies.extend(fronts);
        progress(&format!(
            "DNS: zone {LAB_ZONE} on {} (key {})",
            record.dns_server,
            record.dns_key_file.display()
        ));
        write_lab_tokens(&spec.dir)?;
        if spec.agents.is_some() {
            crate::agents::plan(&mut record, &place, &port)?;
        }
        if spec.coordination {
            if spec.agents.is_none() {
                return Err(LabError::Other(
                    "the lab's primary leases are held by the agents: start it with agents".into(),
                ));
            }
            crate::etcd::plan(&mut record, &place, &port);
            progress("etcd: starting three members (region-a, region-b, witness)");
            crate::etcd::start(&mut record).await?;
            for m in &record.etcd {
                progress(&format!(
                    "etcd member of {}: {} (log {})",
                    m.name,
                    m.client_url,
                    m.log.display()
                ));
            }
        }
        let config = lab_config_toml(&record);
        std::fs::write(&record.config_path, config).map_err(io_err("writing the lab config"))?;
        if let Some(bin) = &spec.agents {
            progress("agents: starting one per region (mutual TLS, certificates in pki/)");
            crate::agents::start(&mut record, &place, bin, &spec.agent_env)?;
            for a in &record.agents {
                progress(&format!(
                    "agent of {}: {} (log {})",
                    a.region,
                    a.url,
                    a.log.display()
                ));
            }
        }

        let workload = ShopWorkload::start(targets, spec.workload_interval);
        let listener = TcpListener::bind(("127.0.0.1", record.control_port))
            .await
            .map_err(io_err(format!(
                "opening the lab control socket on port {}",
                record.control_port
            )))?;
        record.control_port = listener
            .local_addr()
            .map_err(io_err("control socket"))?
            .port();
        let control = tokio::spawn(serve_control(
            listener,
            link.clone(),
            workload.control.clone(),
        ));
        record.write()?;
        Ok(Lab {
            record,
            link,
            workload,
            _proxies: proxies,
            dns,
            control,
            place,
            torn_down: false,
        })
    }

    /// The lab's namespaces and addresses, when each region is its own
    /// network namespace.
    pub fn network(&self) -> Option<&NetnsTopology> {
        self.place.topology()
    }

    /// The DSN of `service`'s cluster in `region` from this process's
    /// namespace (127.0.0.1, or the region's site address).
    pub fn dsn(&self, service: &str, region: &str, database: &str) -> String {
        self.record
            .dsn(service, region, database)
            .unwrap_or_else(|| panic!("the lab has no cluster for {service} in {region}"))
    }

    /// Runs `f` in `region`'s network namespace (here, on a loopback lab):
    /// the processes it starts (a server, an agent) live in the region.
    pub fn in_region<T: Send>(&self, region: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.place.in_region(region, f)
    }

    /// The runtime of a site of a namespaced lab: tasks spawned on it open
    /// their sockets in the site.
    pub fn site_runtime(&self, site: Site) -> Option<&SiteRuntime> {
        self.place.runtime(site)
    }

    /// Applies a partition of the namespaced lab (packets dropped in its
    /// router). A loopback lab has no router: an error says so.
    pub fn partition(&self, partition: Partition) -> Result<()> {
        self.require_network()?.partition(partition)
    }

    /// Lifts every partition of the namespaced lab.
    pub fn heal(&self) -> Result<()> {
        self.require_network()?.heal()
    }

    fn require_network(&self) -> Result<&NetnsTopology> {
        self.place.topology().ok_or_else(|| {
            LabError::Other(
                "this lab runs on loopback and has no partitions that drop packets; \
                 start it with network namespaces (as root)"
                    .into(),
            )
        })
    }

    pub fn link(&self) -> &LinkControl {
        &self.link
    }

    /// The lab's DNS server, to read or seed its zone directly.
    pub fn dns(&self) -> &ZoneServer {
        &self.dns
    }

    pub fn workload(&self) -> &WorkloadControl {
        &self.workload.control
    }

    pub fn config_path(&self) -> &Path {
        &self.record.config_path
    }

    /// The cluster of `service` in `region`.
    pub fn cluster(&self, service: &str, region: &str) -> PgCluster {
        self.record
            .cluster(service, region)
            .unwrap_or_else(|| panic!("the lab has no cluster for {service} in {region}"))
    }

    /// Rebuilds `service`'s server in `region` as a streaming standby of the
    /// one in `primary` (what a re-clone does), wired as `lab up` wires its
    /// standby: run in `region`'s site and, on a namespaced lab, copied and
    /// streaming through the region link's end there (127.0.0.1 of that
    /// site), so the link's latency and partitions apply to it too.
    pub fn reclone_standby(&self, service: &str, region: &str, primary: &str) -> Result<()> {
        let standby = self.cluster(service, region);
        self.place.in_region(region, || standby.stop("fast"))??;
        std::fs::remove_dir_all(&standby.data_dir).map_err(io_err(format!(
            "removing {} before the re-clone",
            standby.data_dir.display()
        )))?;
        let source_port = match self.network() {
            None => self.cluster(service, primary).port,
            Some(_) => self
                .record
                .clusters
                .iter()
                .find(|c| c.service == service && c.region == primary)
                .and_then(|c| c.link_port)
                .ok_or_else(|| {
                    LabError::Other(format!(
                        "{service} in {primary} has no region link to stream from"
                    ))
                })?,
        };
        let max_connections = self.record.max_connections;
        self.place.in_region(region, || {
            standby.clone_standby(source_port, region, max_connections)
        })??;
        self.place.prepare_cluster(&standby)?;
        self.place.in_region(region, || standby.start())??;
        Ok(())
    }

    /// Crashes the primary of `service` (immediate shutdown, as a lost region would).
    /// Kills (SIGKILL) the etcd member that leads now; returns its site.
    pub async fn kill_etcd_leader(&self) -> Result<String> {
        crate::etcd::kill_leader(&self.record).await
    }

    /// Starts a killed etcd member again.
    pub fn restart_etcd_member(&mut self, name: &str) -> Result<()> {
        crate::etcd::restart(&mut self.record, name)
    }

    pub fn kill_primary(&self, service: &str) -> Result<()> {
        Ok(self.cluster(service, REGION_A).crash()?)
    }

    /// Stops everything and removes the record (data directories stay for
    /// inspection until the next `lab up`).
    pub fn teardown(mut self) -> Result<()> {
        self.control.abort();
        crate::agents::stop(&self.record);
        crate::etcd::stop(&self.record);
        for c in self.record.all_clusters() {
            c.stop("fast")?;
        }
        // The site runtimes end before their namespaces go.
        if let Some(sites) = self.place.sites.take() {
            drop(sites);
        }
        if let Some(net) = &self.record.network {
            net.remove()?;
        }
        let _ = std::fs::remove_file(LabRecord::path(&self.record.dir));
        self.torn_down = true;
        Ok(())
    }

    /// Stops the lab recorded in `dir`, whoever started it: signals the
    /// owner process if it still runs, stops every cluster, removes the
    /// record. Safe to run twice and after a crash. Returns what it did.
    /// A namespaced lab's namespaces go too, and so do those of a lab in
    /// `dir` that died before writing its record.
    pub fn down(dir: &Path) -> Result<Vec<String>> {
        let record = match LabRecord::read(dir) {
            Ok(record) => record,
            Err(e) => {
                let removed = Lab::remove_stale_network(dir)?;
                if removed.is_empty() {
                    return Err(e);
                }
                return Ok(removed);
            }
        };
        let mut done = Vec::new();
        if record.owner_pid != std::process::id() && process_alive(record.owner_pid, "drctl") {
            signal(record.owner_pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while process_alive(record.owner_pid, "drctl") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if process_alive(record.owner_pid, "drctl") {
                signal(record.owner_pid, nix::sys::signal::Signal::SIGKILL);
            }
            done.push(format!("stopped lab process {}", record.owner_pid));
        }
        done.extend(crate::agents::stop(&record));
        done.extend(crate::etcd::stop(&record));
        for c in record.all_clusters() {
            if c.is_running() {
                c.stop("fast")?;
                done.push(format!("stopped PostgreSQL {} (port {})", c.name, c.port));
            }
        }
        if let Some(net) = &record.network {
            done.extend(net.remove()?.into_iter().map(|r| format!("removed {r}")));
        }
        let _ = std::fs::remove_file(LabRecord::path(dir));
        Ok(done)
    }

    /// Removes the namespaces a killed lab in `dir` left behind (found by
    /// the prefix derived from `dir`). Without root there are none to find.
    pub fn remove_stale_network(dir: &Path) -> Result<Vec<String>> {
        if crate::netns::available().is_err() {
            return Ok(Vec::new());
        }
        let prefix = crate::netns::prefix_for(dir);
        Ok(NetnsTopology::remove_stale(&prefix)?
            .into_iter()
            .map(|r| format!("removed {r} of a stale lab"))
            .collect())
    }
}

/// Starts each replicated service's fronts (one port, both regions' addresses,
/// forwarding to that region's cluster) and the lab's DNS server with a
/// fresh key, the zone pointing each service at its primary region. Records
/// what it started in `record` and writes the key file.
async fn start_dns_and_fronts(
    spec: &LabSpec,
    record: &mut LabRecord,
    port: &impl Fn(u16) -> u16,
    place: &Placement,
) -> Result<(ZoneServer, Vec<LinkProxy>)> {
    // Fronts are inside a region: the region link's cuts and latency do not
    // apply to them, so they get a link of their own that is never cut.
    let local = LinkControl::default();
    let mut proxies = Vec::new();
    for (i, svc) in spec.services.iter().enumerate() {
        if !svc.replicated() {
            continue;
        }
        let wanted = spec.base_port.map(|_| port(30 + i as u16));
        let (front_port, pair) = front_pair(svc, record, wanted, &local, place).await?;
        proxies.extend(pair);
        record.fronts.push(LabFrontRecord {
            service: svc.name.clone(),
            record: format!("{}.{LAB_ZONE}", svc.name),
            front_port,
        });
    }

    let key = TsigKeyMaterial::generate(LAB_DNS_KEY_NAME)
        .map_err(io_err("generating the lab's DNS key"))?;
    write_secret_file(&record.dns_key_file, &key.secret_base64())?;
    let dns_port = dns_port(spec.base_port);
    // In a namespaced lab the zone is served from the control-plane site,
    // as a DNS provider outside both regions would be.
    let dns = match (place.topology(), place.runtime(Site::Ctl)) {
        (Some(t), Some(rt)) => {
            let at = SocketAddr::from((t.addr(Site::Ctl), dns_port));
            rt.run(async move { ZoneServer::start(at, LAB_ZONE, Some(&key)).await })
                .await?
        }
        _ => {
            ZoneServer::start(
                SocketAddr::from(([127, 0, 0, 1], dns_port)),
                LAB_ZONE,
                Some(&key),
            )
            .await
        }
    }
    .map_err(io_err(format!(
        "starting the lab's DNS server on port {dns_port}"
    )))?;
    record.dns_server = dns.addr();
    for front in &record.fronts {
        dns.set(
            &front.record,
            RecordType::A,
            LAB_RECORD_TTL,
            &[record.front_ip(REGION_A).to_string()],
        )
        .map_err(LabError::Other)?;
    }
    Ok((dns, proxies))
}

/// The two proxies of one front: `127.0.1.1:PORT` → the region-a cluster,
/// `127.0.2.1:PORT` → the region-b cluster (in a namespaced lab: each in
/// its region's site, on the site's address, to the cluster beside it).
/// With no `wanted` port, a port free on both addresses is found by trying.
async fn front_pair(
    svc: &LabService,
    record: &LabRecord,
    wanted: Option<u16>,
    link: &LinkControl,
    place: &Placement,
) -> Result<(u16, Vec<LinkProxy>)> {
    let upstream = |region: &str| {
        record
            .clusters
            .iter()
            .find(|c| c.service == svc.name && c.region == region)
            .map(|c| SocketAddr::from(([127, 0, 0, 1], c.port)))
            .ok_or_else(|| LabError::Other(format!("{} has no cluster in {region}", svc.name)))
    };
    let (a, b) = (upstream(REGION_A)?, upstream(REGION_B)?);
    let mut attempts = if wanted.is_some() { 1 } else { 10 };
    loop {
        let first = place
            .proxy(
                REGION_A,
                SocketAddr::new(record.front_ip(REGION_A), wanted.unwrap_or(0)),
                a,
                link.clone(),
            )
            .await;
        let pair = match first {
            Ok(first) => {
                let port = first.listen.port();
                place
                    .proxy(
                        REGION_B,
                        SocketAddr::new(record.front_ip(REGION_B), port),
                        b,
                        link.clone(),
                    )
                    .await
                    .map(|second| (port, vec![first, second]))
            }
            Err(e) => Err(e),
        };
        match pair {
            Ok(pair) => return Ok(pair),
            Err(e) if attempts <= 1 => {
                return Err(io_err(format!("opening the front of {}", svc.name))(e));
            }
            Err(_) => attempts -= 1,
        }
    }
}

/// Writes a secret readable by its owner only (created 0600, never wider).
/// A fresh random token per role in `DIR/tokens/ROLE` (mode 0600).
fn write_lab_tokens(dir: &Path) -> Result<()> {
    use std::io::Read as _;
    let tokens = dir.join(LAB_TOKENS_DIR);
    std::fs::create_dir_all(&tokens).map_err(io_err(format!("creating {}", tokens.display())))?;
    for (role, _) in LAB_TOKEN_ROLES {
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io_err("reading /dev/urandom for the lab's API tokens"))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_secret_file(&tokens.join(role), &format!("drctl_{token}"))?;
    }
    Ok(())
}

fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let what = format!("writing {}", path.display());
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(what.clone()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .map_err(io_err(what))
}

/// Empties a lab directory of an earlier lab's clusters, refusing to touch a
/// directory that does not look like a lab (so a typo in `--dir` never wipes
/// someone's files).
fn clear_lab_dir(dir: &Path) -> Result<()> {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(format!("reading {}", dir.display())))?
        .flatten()
        .collect();
    let looks_like_lab = entries.is_empty()
        || entries.iter().any(|e| {
            let n = e.file_name();
            n == "drctl.toml" || n == "lab.json" || n == LAB_UP_LOG
        });
    if !looks_like_lab {
        return Err(LabError::Other(format!(
            "{} is not empty and holds no lab; choose another --dir",
            dir.display()
        )));
    }
    for e in entries {
        if e.file_name() == LAB_UP_LOG {
            continue; // the detached `lab up` is writing it right now
        }
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
    Ok(())
}

async fn connect(dsn: &str) -> Result<PgConnection> {
    PgConnection::connect(dsn)
        .await
        .map_err(|source| LabError::Sql {
            what: format!("connecting to {dsn}"),
            source,
        })
}

async fn create_shop_schema(host: IpAddr, primary: &PgCluster, svc: &LabService) -> Result<()> {
    let sql_err = |what: &str| {
        let what = what.to_string();
        move |source| LabError::Sql { what, source }
    };
    let mut admin = connect(&host_dsn(host, primary.port, "postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE \"{}\"", svc.name))
        .execute(&mut admin)
        .await
        .map_err(sql_err("creating the service database"))?;
    let mut db = connect(&host_dsn(host, primary.port, &svc.name)).await?;
    let schema = svc.table.split('.').next().unwrap_or("public");
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut db)
        .await
        .map_err(sql_err("creating the shop schema"))?;
    sqlx::query(&format!(
        "CREATE TABLE {} (id bigserial PRIMARY KEY, \
         created_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
         amount_cents bigint NOT NULL)",
        svc.table
    ))
    .execute(&mut db)
    .await
    .map_err(sql_err("creating the workload table"))?;
    Ok(())
}

async fn wait_streaming(primary: &PgCluster, dsn: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut conn = connect(dsn).await?;
    loop {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .fetch_one(&mut conn)
                .await
                .map_err(|source| LabError::Sql {
                    what: "reading pg_stat_replication".into(),
                    source,
                })?;
        if n > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Other(format!(
                "the standby of {} did not start streaming within {timeout:?}",
                primary.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
