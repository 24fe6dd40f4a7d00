//! What a lab is and was: its spec ([`LabSpec`], the services asked for),
//! its record (`lab.json`: clusters, ports, fronts, pids), the names and
//! ports it uses, and the drctl config it writes ([`lab_config_toml`]).
//! Starting and stopping the processes is `lab.rs`'s; this module holds
//! only data, so the shipped `config/lab.toml` can be previewed without a lab.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drctl_pg::os::free_port;
use drctl_pg::{PgCluster, Role};
use serde::{Deserialize, Serialize};

use crate::netns::{NetnsTopology, Site};
use crate::{io_err, LabError, Result};
pub const REGION_A: &str = "region-a";
pub const REGION_B: &str = "region-b";
/// First PostgreSQL port of `drctl lab up` (the lab config in `config/lab.toml` uses these).
pub const DEFAULT_BASE_PORT: u16 = 55432;
pub const DEFAULT_API_PORT: u16 = 7878;
/// The lab's DNS server (UDP and TCP) of `drctl lab up` with the default
/// base port: below the cluster ports, away from the port plan's offsets
/// (a lab on another base port uses offset 41 of its own plan, so that labs
/// side by side never share it).
pub const DEFAULT_DNS_PORT: u16 = 55353;
/// The zone the lab's DNS server is authoritative for.
pub const LAB_ZONE: &str = "shop.lab.";
/// The name of the TSIG key that signs updates of the lab's zone.
pub const LAB_DNS_KEY_NAME: &str = "drctl-lab.";
/// The key's base64 secret, beside the lab config (mode 0600).
pub const LAB_DNS_KEY_FILE: &str = "lab-dns.key";
/// The lab's API tokens, one file per role (`tokens/operator`…), beside
/// the config: `curl -H "Authorization: Bearer $(cat DIR/tokens/operator)"`.
pub const LAB_TOKENS_DIR: &str = "tokens";
/// The roles the lab makes a token for, and the token's name.
pub const LAB_TOKEN_ROLES: [(&str, &str); 3] = [
    ("admin", "lab-admin"),
    ("operator", "lab-operator"),
    ("viewer", "lab-viewer"),
];
/// TTL of the lab's service records: short, so that clients re-resolve
/// soon after a failover.
pub(crate) const LAB_RECORD_TTL: u32 = 5;
/// The log of a detached `drctl lab up`, kept when the lab directory is cleared.
pub(crate) const LAB_UP_LOG: &str = "lab-up.log";

/// A service of the lab: its own database, table and tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabService {
    pub name: String,
    /// `hot`, `warm` or `cold`; hot and warm get a streaming standby in region B.
    pub tier: String,
    /// The table the workload writes (schema-qualified).
    pub table: String,
}

impl LabService {
    pub fn new(name: &str, tier: &str, table: &str) -> Self {
        LabService {
            name: name.into(),
            tier: tier.into(),
            table: table.into(),
        }
    }

    pub fn replicated(&self) -> bool {
        self.tier != "cold"
    }
}

/// Where the lab's regions live on the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabNetwork {
    /// Every cluster on 127.0.0.1 in this process's namespace; a partition
    /// is a switch in the link proxy (connections reset). Needs no root.
    #[default]
    Loopback,
    /// Each region its own network namespace behind a router
    /// ([`crate::netns`]); a partition loses packets. Needs root.
    Namespaces,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct LabSpec {
    pub dir: PathBuf,
    pub services: Vec<LabService>,
    /// Fixed ports from here on (`lab up`), or `None` for free ports (tests).
    pub base_port: Option<u16>,
    pub api_port: u16,
    pub workload_interval: Duration,
    /// `max_connections` of every cluster (benchmarks with many services
    /// need more than the default).
    pub max_connections: u32,
    /// The fence hook of every replicated service (`drctl lab up`: the
    /// lab's STONITH, `drctl lab stonith`), so automatic failover of a
    /// killed primary can fence it; `None` in tests, which add their own
    /// where they need one.
    pub fence_hook: Option<Vec<String>>,
    /// Loopback (the default, for now) or a namespace per region.
    pub network: LabNetwork,
    /// The drctl binary to run a node agent per region with (`drctl lab
    /// up`: itself); `None`: drctl acts on the servers from its own host.
    pub agents: Option<PathBuf>,
    /// Three etcd members (region-a, region-b, witness) and primary
    /// leases (`[coordination]`); needs the agents.
    pub coordination: bool,
    /// Extra environment of one region's agent (`(region, name, value)`):
    /// tests give an agent its own clock (libfaketime) this way.
    pub agent_env: Vec<(String, String, String)>,
}

impl LabSpec {
    /// The lab of `drctl lab up`: orders (hot), inventory (warm), catalog (cold).
    pub fn standard(dir: PathBuf) -> LabSpec {
        LabSpec {
            dir,
            services: vec![
                LabService::new("orders", "hot", "shop.orders"),
                LabService::new("inventory", "warm", "shop.stock_movements"),
                LabService::new("catalog", "cold", "shop.price_changes"),
            ],
            base_port: Some(DEFAULT_BASE_PORT),
            api_port: DEFAULT_API_PORT,
            workload_interval: Duration::from_millis(50),
            max_connections: 200,
            fence_hook: None,
            network: LabNetwork::Loopback,
            agents: None,
            coordination: false,
            agent_env: Vec::new(),
        }
    }

    /// A lab on free ports, for tests running side by side.
    pub fn for_tests(dir: PathBuf, services: Vec<LabService>) -> LabSpec {
        LabSpec {
            dir,
            services,
            base_port: None,
            api_port: free_port(),
            workload_interval: Duration::from_millis(50),
            max_connections: 200,
            fence_hook: None,
            network: LabNetwork::Loopback,
            agents: None,
            coordination: false,
            agent_env: Vec::new(),
        }
    }
}

/// One cluster as recorded in `lab.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabClusterRecord {
    pub service: String,
    pub region: String,
    pub role: Role,
    pub port: u16,
    pub data_dir: PathBuf,
    /// For a standby: the link port it replicates through.
    pub via_link_port: Option<u16>,
    /// The link port through which the other region reaches this cluster
    /// for replication (both directions cross the link, so a rejoined old
    /// primary streams from the new one through it too).
    #[serde(default)]
    pub link_port: Option<u16>,
}

/// The address clients in `region` connect to: each region has its own
/// loopback address (127.0.0.0/8 needs no setup on Linux), so one front
/// port serves both regions.
pub fn front_ip(region: &str) -> IpAddr {
    match region {
        REGION_B => IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)),
        _ => IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)),
    }
}

/// A replicated service's front: the same port in both regions, forwarding
/// to that region's PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabFrontRecord {
    pub service: String,
    /// The record clients resolve (`orders.shop.lab.`).
    pub record: String,
    pub front_port: u16,
}

/// `postgres://postgres@HOST:PORT/DB`.
pub(crate) fn host_dsn(host: IpAddr, port: u16, database: &str) -> String {
    format!("postgres://postgres@{host}:{port}/{database}")
}

pub(crate) fn unset_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `lab.json`: everything a later process needs to find and stop the lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabRecord {
    pub dir: PathBuf,
    /// The `drctl lab up` process that owns the link, workload and daemon.
    pub owner_pid: u32,
    pub control_port: u16,
    pub api_url: String,
    pub config_path: PathBuf,
    pub pg_bin: PathBuf,
    pub services: Vec<LabService>,
    pub clusters: Vec<LabClusterRecord>,
    /// The lab's authoritative DNS server (UDP and TCP). Absent from the
    /// records of older labs, hence the defaults.
    #[serde(default = "unset_addr")]
    pub dns_server: SocketAddr,
    /// Its zone, absolute (`shop.lab.`).
    #[serde(default)]
    pub dns_zone: String,
    /// The file holding the zone's TSIG secret (base64).
    #[serde(default)]
    pub dns_key_file: PathBuf,
    /// One per replicated service.
    #[serde(default)]
    pub fronts: Vec<LabFrontRecord>,
    /// See [`LabSpec::fence_hook`].
    #[serde(default)]
    pub fence_hook: Option<Vec<String>>,
    /// The lab's namespaces and network, when each region is its own
    /// network namespace (`None`: everything on loopback). `lab down`
    /// removes exactly these, also after a crash.
    #[serde(default)]
    pub network: Option<NetnsTopology>,
    /// The node agents, one per region (none: drctl acts on the servers
    /// from its own host).
    #[serde(default)]
    pub agents: Vec<crate::agents::LabAgentRecord>,
    /// The etcd members of `[coordination]` (none: the lab runs without
    /// primary leases).
    #[serde(default)]
    pub etcd: Vec<crate::etcd::LabEtcdRecord>,
    /// `max_connections` of every cluster ([`LabSpec::max_connections`]):
    /// a standby cloned later needs at least its primary's.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    200
}

impl LabRecord {
    /// Where a client in `region` connects to reach `service`, if the
    /// service has a front.
    pub fn front(&self, service: &str, region: &str) -> Option<SocketAddr> {
        self.fronts
            .iter()
            .find(|f| f.service == service)
            .map(|f| SocketAddr::new(self.front_ip(region), f.front_port))
    }

    /// The address a region's front listens on: the region's own loopback
    /// address ([`front_ip`]), or, in a namespaced lab, the site's address.
    pub fn front_ip(&self, region: &str) -> IpAddr {
        self.site_addr(region).unwrap_or_else(|| front_ip(region))
    }

    /// Where a cluster of `region` accepts connections from this namespace:
    /// 127.0.0.1, or in a namespaced lab the address of the region's site
    /// (reached through the lab's router).
    pub fn cluster_host(&self, region: &str) -> IpAddr {
        self.site_addr(region)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn site_addr(&self, region: &str) -> Option<IpAddr> {
        let net = self.network.as_ref()?;
        Some(IpAddr::V4(net.addr(Site::of_region(region)?)))
    }

    /// The DSN of `service`'s cluster in `region`, as a client in this
    /// namespace reaches it (trust authentication inside the lab).
    pub fn dsn(&self, service: &str, region: &str, database: &str) -> Option<String> {
        let c = self
            .clusters
            .iter()
            .find(|c| c.service == service && c.region == region)?;
        Some(host_dsn(self.cluster_host(region), c.port, database))
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn read(dir: &Path) -> Result<LabRecord> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LabError::Other(format!(
                "no lab at {} ({e}); start one with `drctl lab up`",
                dir.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::Other(format!("{} is damaged: {e}", path.display())))
    }

    pub(crate) fn write(&self) -> Result<()> {
        let path = Self::path(&self.dir);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("lab record serializes");
        std::fs::write(&tmp, text).map_err(io_err(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io_err(format!("writing {}", path.display())))
    }

    pub fn cluster(&self, service: &str, region: &str) -> Option<PgCluster> {
        self.clusters
            .iter()
            .find(|c| c.service == service && c.region == region)
            .map(|c| {
                PgCluster::new(
                    format!("{}-{}", c.service, c.region),
                    c.data_dir.clone(),
                    c.port,
                    self.pg_bin.clone(),
                )
                .on_host(self.cluster_host(&c.region))
            })
    }

    pub fn all_clusters(&self) -> Vec<PgCluster> {
        self.clusters
            .iter()
            .filter_map(|c| self.cluster(&c.service, &c.region))
            .collect()
    }
}

/// The DNS server's port: [`DEFAULT_DNS_PORT`] for the standard base, offset
/// 41 of any other, 0 (any free one) for a lab on free ports.
pub(crate) fn dns_port(base: Option<u16>) -> u16 {
    match base {
        Some(DEFAULT_BASE_PORT) => DEFAULT_DNS_PORT,
        Some(base) => base + 41,
        None => 0,
    }
}

/// Ports from a fixed base (offsets: clusters 0.., link 20.. (to region-a)
/// and 25.. (to region-b), fronts 30..,
/// control 40, DNS 41 unless the base is the default, agents 42 and 43),
/// or free ones.
pub(crate) fn port_plan(base: Option<u16>) -> impl Fn(u16) -> u16 {
    move |offset| match base {
        Some(b) => b + offset,
        None => free_port(),
    }
}

/// The drctl config of a lab: two regions, one service per lab service, the
/// state store beside the config, the API on the lab's port.
pub fn lab_config_toml(record: &LabRecord) -> String {
    let api = record.api_url.trim_start_matches("http://");
    let mut out = format!(
        "# drctl configuration of the two-region lab (`drctl lab up` writes it).\n\
         # Each replicated service has its own PostgreSQL primary in {REGION_A} and a\n\
         # streaming standby in {REGION_B}: the unit of failover is a cluster.\n\n\
         [store]\nurl = \"sqlite://drctl-state.db\"\n\n\
         [api]\nlisten = \"{api}\"\n\
         # Anyone on this machine may read the API and the dashboard; starting\n\
         # work takes a token: `lab up` writes one per role into {LAB_TOKENS_DIR}/.\n\
         anonymous = \"viewer\"\n\n\
         [monitor]\ninterval = \"1s\"\nbreach_grace = \"10s\"\n\n\
         # A lab is for watching failovers happen, again and again: no daily\n\
         # brake on automatic failover (production keeps the default 3 a day).\n\
         [failover]\nautomatic_limit = 1000\nautomatic_window = \"1h\"\n\n\
         [[regions]]\nname = \"{REGION_A}\"\ndescription = \"lab region A (primary)\"\n\n\
         [[regions]]\nname = \"{REGION_B}\"\ndescription = \"lab region B (disaster recovery)\"\n\n\
         # Backups go to a directory beside this file (an S3 bucket in production).\n\
         [[object_stores]]\nname = \"lab-objects\"\nkind = \"local\"\npath = \"objects\"\n\n\
         # The lab's own DNS server, authoritative for {zone}; updates are signed with\n\
         # the key `lab up` generates into {LAB_DNS_KEY_FILE} beside this file.\n\
         [[dns_providers]]\nname = \"lab-dns\"\nkind = \"rfc2136\"\nserver = \"{dns}\"\n\
         zone = \"{zone}\"\ntsig_key = \"{LAB_DNS_KEY_NAME}\"\ntsig_secret_file = \"{LAB_DNS_KEY_FILE}\"\n",
        dns = record.dns_server,
        zone = record.dns_zone,
    );
    if !record.etcd.is_empty() {
        let urls: Vec<String> = crate::etcd::client_urls(record)
            .into_iter()
            .map(|u| format!("\"{u}\""))
            .collect();
        out.push_str(&format!(
            "\n# Primary leases through the lab's three etcd members (region-a, region-b\n\
             # and the witness site): a primary's agent fences its server when it cannot\n\
             # renew its lease, and drctl promotes only once that lease has expired.\n\
             [coordination]\netcd = [{}]\nlease_ttl = \"10s\"\n",
            urls.join(", ")
        ));
    }
    if !record.agents.is_empty() {
        let tls = crate::agents::tls_paths();
        out.push_str(&format!(
            "\n# The node agents beside each region's servers (`drctl agent serve`), reached\n\
             # with mutual TLS; `lab up` issued these certificates into {}/.\n\
             [agents]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            crate::agents::LAB_PKI_DIR,
            tls.ca,
            tls.cert,
            tls.key
        ));
    }
    for (role, name) in LAB_TOKEN_ROLES {
        out.push_str(&format!(
            "\n[[api.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsecret_file = \"{LAB_TOKENS_DIR}/{role}\"\n"
        ));
    }
    for svc in &record.services {
        out.push_str(&format!(
            "\n[[services]]\nname = \"{}\"\ntier = \"{}\"\nregions = [\"{REGION_A}\", \"{REGION_B}\"]\nprimary = \"{REGION_A}\"\n",
            svc.name, svc.tier
        ));
        for c in record.clusters.iter().filter(|c| c.service == svc.name) {
            out.push_str(&format!(
                "[services.postgres.{}]\ndsn = \"{}\"\n",
                c.region,
                host_dsn(record.cluster_host(&c.region), c.port, &svc.name)
            ));
            if let Some(link) = c.link_port {
                // An agent acts on a data directory: only where one is named.
                if let Some(url) = crate::agents::url_of(record, &c.region) {
                    out.push_str(&format!("agent = \"{url}\"\n"));
                }
                // What `drctl rejoin` needs: the directory (beside this
                // file), and how the other region streams from this server
                // (across the link). In a namespaced lab the link's end
                // listens on 127.0.0.1 inside the *other* region's site, so
                // this DSN is meant for a server (or agent) there.
                out.push_str(&format!(
                    "data_dir = \"{}\"\nreplication_dsn = \"postgres://postgres@127.0.0.1:{link}/{}\"\n",
                    c.data_dir
                        .file_name()
                        .map_or_else(|| c.data_dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
                    svc.name
                ));
            }
        }
        if svc.replicated() {
            out.push_str(
                "# Automatic failover (on by default for hot services) acts after 3 s of\n\
                 # lost probes with the standby disconnected; the lab shortens the cooldown.\n\
                 [services.failover]\ncooldown = \"10s\"\n",
            );
            if let Some(hook) = &record.fence_hook {
                // JSON strings are TOML basic strings.
                let argv = serde_json::to_string(hook).unwrap_or_default();
                out.push_str(&format!(
                    "# A primary drctl cannot reach is fenced by the lab's STONITH before\n\
                     # anything is promoted (without a fence, automatic failover holds).\n\
                     fence_hook = {argv}\n"
                ));
            }
        }
        out.push_str(&format!(
            "[services.backup]\nstore = \"lab-objects\"\n\
             validation_queries = [\"SELECT count(*) > 0 FROM {}\"]\n",
            svc.table
        ));
        if let Some(front) = record.fronts.iter().find(|f| f.service == svc.name) {
            out.push_str(&format!(
                "# Clients resolve {record} and connect to port {port} of the address it names.\n\
                 [services.dns]\nprovider = \"lab-dns\"\nrecord = \"{record}\"\nttl = \"{LAB_RECORD_TTL}s\"\n\
                 [services.dns.targets]\n{REGION_A} = \"{a}\"\n{REGION_B} = \"{b}\"\n",
                record = front.record,
                port = front.front_port,
                a = record.front_ip(REGION_A),
                b = record.front_ip(REGION_B),
            ));
        }
    }
    out
}

impl LabRecord {
    /// The record `drctl lab up` would write with its default ports, for the
    /// shipped `config/lab.toml` (a test keeps the two identical).
    pub fn standard_preview(dir: PathBuf) -> LabRecord {
        let spec = LabSpec::standard(dir.clone());
        let port = port_plan(spec.base_port);
        let mut clusters = Vec::new();
        let mut fronts = Vec::new();
        for (i, svc) in spec.services.iter().enumerate() {
            let i = i as u16;
            if svc.replicated() {
                fronts.push(LabFrontRecord {
                    service: svc.name.clone(),
                    record: format!("{}.{LAB_ZONE}", svc.name),
                    front_port: port(30 + i),
                });
            }
            clusters.push(LabClusterRecord {
                service: svc.name.clone(),
                region: REGION_A.into(),
                role: Role::Primary,
                port: port(2 * i),
                data_dir: dir.join(format!("{}-{REGION_A}", svc.name)),
                via_link_port: None,
                link_port: svc.replicated().then(|| port(20 + i)),
            });
            if svc.replicated() {
                clusters.push(LabClusterRecord {
                    service: svc.name.clone(),
                    region: REGION_B.into(),
                    role: Role::Standby,
                    port: port(2 * i + 1),
                    data_dir: dir.join(format!("{}-{REGION_B}", svc.name)),
                    via_link_port: Some(port(20 + i)),
                    link_port: Some(port(25 + i)),
                });
            }
        }
        LabRecord {
            dir: dir.clone(),
            owner_pid: 0,
            control_port: port(40),
            api_url: format!("http://127.0.0.1:{}", spec.api_port),
            config_path: dir.join("drctl.toml"),
            pg_bin: PathBuf::new(),
            services: spec.services,
            clusters,
            dns_server: SocketAddr::from(([127, 0, 0, 1], dns_port(spec.base_port))),
            dns_zone: LAB_ZONE.to_string(),
            dns_key_file: dir.join(LAB_DNS_KEY_FILE),
            fronts,
            fence_hook: spec.fence_hook,
            network: None,
            max_connections: spec.max_connections,
            // `lab up` runs an agent per region.
            agents: [REGION_A, REGION_B]
                .into_iter()
                .enumerate()
                .map(|(i, region)| crate::agents::LabAgentRecord {
                    region: region.to_string(),
                    pid: 0,
                    url: format!("https://127.0.0.1:{}", port(42 + i as u16)),
                    log: dir.join(format!("agent-{region}.log")),
                })
                .collect(),
            etcd: Vec::new(),
        }
    }
}
