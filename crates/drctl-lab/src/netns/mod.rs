//! The lab's regions as separate network hosts: one Linux network namespace
//! per site (region-a, region-b, `ctl` for drctl's control plane, and
//! `witness`, the third failure domain of the etcd quorum), all
//! joined through a router namespace, plus one link from the namespace the
//! lab was started in (the "outside client": the test process, the CLI) to
//! the router.
//!
//! ```text
//!   <prefix>-a  eth0 10.N.1.2 ─┐
//!   <prefix>-b  eth0 10.N.2.2 ─┼─ <prefix>-rt (forwards, holds the partitions)
//!   <prefix>-ctl eth0 10.N.3.2 ─┤
//!   <prefix>-w  eth0 10.N.4.2 ─┤
//!   root ns   <prefix> 10.N.254.2 ─┘   route 10.N.0.0/16 via 10.N.254.1
//! ```
//!
//! Why a router: a partition must look like a network failure, so senders
//! see silence (their packets vanish), never a reset. A blackhole on the
//! sender itself fails at once (`EINVAL`), which no real partition does; in
//! the router, a forwarded packet that hits a blackhole rule is dropped with
//! no ICMP answer. The kernel here has no `netem`, so latency stays in the
//! user-space link proxy (`link.rs`).
//!
//! Every lab gets its own names (`drl` + 4 hex digits of a hash of the lab
//! directory) and its own /16 (`10.N.0.0/16`, N in 64..=191, skipping one
//! already routed in the root namespace), so two labs on one machine never
//! share an address. Nothing is routed outside the /16: sites know only
//! the lab's /16, the router only its own links.
//!
//! This module owns namespaces, links, routes and partition rules, and the
//! two ways to run things inside a site: a blocking `Command` (postgres,
//! pg_basebackup, an agent) and a tokio runtime on a thread that has entered
//! the namespace (sockets it creates live there: link proxies, fronts, DNS).
//! It does not know what runs in the sites; `lab.rs` decides that.

use std::fmt;
use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use nix::sched::{setns, CloneFlags};
use serde::{Deserialize, Serialize};

mod runtime;
pub use runtime::SiteRuntime;

use crate::{LabError, Result};

/// A host of the lab's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Site {
    /// The primary region.
    RegionA,
    /// The disaster-recovery region.
    RegionB,
    /// drctl's control plane (a third site, as in production).
    Ctl,
    /// The etcd quorum's third member (with the two regions' members):
    /// any one site can be lost and the other two still grant leases.
    Witness,
}

impl Site {
    pub const ALL: [Site; 4] = [Site::RegionA, Site::RegionB, Site::Ctl, Site::Witness];

    /// The lab's name of the site (`region-a`, `region-b`, `ctl`).
    pub fn name(self) -> &'static str {
        match self {
            Site::RegionA => "region-a",
            Site::RegionB => "region-b",
            Site::Ctl => "ctl",
            Site::Witness => "witness",
        }
    }

    /// The site of a lab region name, if it is one.
    pub fn of_region(region: &str) -> Option<Site> {
        match region {
            "region-a" => Some(Site::RegionA),
            "region-b" => Some(Site::RegionB),
            "ctl" => Some(Site::Ctl),
            "witness" => Some(Site::Witness),
            _ => None,
        }
    }

    /// The namespace suffix (short: interface and namespace names stay small).
    fn suffix(self) -> &'static str {
        match self {
            Site::RegionA => "a",
            Site::RegionB => "b",
            Site::Ctl => "ctl",
            Site::Witness => "w",
        }
    }

    /// The third octet of the site's /24.
    fn subnet_octet(self) -> u8 {
        match self {
            Site::RegionA => 1,
            Site::RegionB => 2,
            Site::Ctl => 3,
            Site::Witness => 4,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A partition of the lab's network, held in the router: packets are
/// dropped silently (no ICMP, no reset), so senders see nothing come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Partition {
    /// The site is cut off from everyone, the root namespace included.
    Isolate(Site),
    /// Only these two sites are cut off from each other.
    Cut(Site, Site),
}

impl Partition {
    /// The modes of `drctl lab partition`, with what each does.
    pub const MODES: [(&'static str, &'static str); 6] = [
        ("region-a", "region-a cut off from everyone"),
        ("region-b", "region-b cut off from everyone"),
        (
            "witness",
            "the witness site (the etcd quorum's third member) cut off from everyone",
        ),
        ("ctl-a", "only drctl's control plane cut off from region-a"),
        ("ctl-b", "only drctl's control plane cut off from region-b"),
        ("a-b", "only the two regions cut off from each other"),
    ];

    /// The mode name of `drctl lab partition` (see [`Partition::MODES`]).
    pub fn mode(self) -> String {
        match self {
            Partition::Isolate(site) => site.name().to_string(),
            Partition::Cut(x, y) => {
                let mut ends = [x, y];
                ends.sort_by_key(|s| s.subnet_octet());
                let short = |s: Site| match s {
                    Site::RegionA => "a",
                    Site::RegionB => "b",
                    Site::Ctl => "ctl",
                    Site::Witness => "w",
                };
                // `ctl-a` reads better than `a-ctl`: the control plane first.
                if ends[1] == Site::Ctl {
                    format!("ctl-{}", short(ends[0]))
                } else {
                    format!("{}-{}", short(ends[0]), short(ends[1]))
                }
            }
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.mode())
    }
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Partition, String> {
        Ok(match s {
            "region-a" => Partition::Isolate(Site::RegionA),
            "region-b" => Partition::Isolate(Site::RegionB),
            "ctl" => Partition::Isolate(Site::Ctl),
            "witness" => Partition::Isolate(Site::Witness),
            "ctl-a" | "a-ctl" => Partition::Cut(Site::Ctl, Site::RegionA),
            "ctl-b" | "b-ctl" => Partition::Cut(Site::Ctl, Site::RegionB),
            "a-b" | "b-a" => Partition::Cut(Site::RegionA, Site::RegionB),
            _ => {
                let modes: Vec<&str> = Partition::MODES.iter().map(|(m, _)| *m).collect();
                return Err(format!(
                    "partition mode {s:?} is not one of {}",
                    modes.join(", ")
                ));
            }
        })
    }
}

/// The policy-rule priority of every partition rule in the router: one
/// value, so that healing is "delete every rule of this priority".
const PARTITION_PREF: &str = "100";
/// The third octet of the link between the root namespace and the router.
const HOST_SUBNET: u8 = 254;
/// The range of second octets the lab's /16 is chosen from.
const NET_RANGE: std::ops::RangeInclusive<u8> = 64..=191;

/// Whether this process can build a namespaced lab; `Err` says why not.
pub fn available() -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "the namespaced lab needs root; without it the lab runs on loopback \
                    and cannot show real packet loss in a partition"
                .into(),
        );
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("the namespaced lab needs `ip` (iproute2): apt-get install iproute2".into()),
    }
}

/// The names of a lab's namespaces start with this prefix, derived from
/// its directory (`drl` + 4 hex digits).
pub fn prefix_for(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    // FNV-1a: stable across builds and Rust versions (std's hasher is not
    // promised to be), so a later process finds the same names.
    let mut hash: u32 = 0x811c_9dc5;
    for b in dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("drl{:04x}", (hash ^ (hash >> 16)) & 0xffff)
}

/// One lab's network: its names and its /16. Serializable: the lab record
/// keeps it, so `lab down` after a crash removes exactly this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsTopology {
    /// `drl1a2b`: namespaces are `<prefix>-a`, `-b`, `-ctl`, `-rt`, and the
    /// root namespace's link to the router is the interface `<prefix>`.
    pub prefix: String,
    /// The lab's network is `10.<net>.0.0/16`.
    pub net: u8,
}

impl NetnsTopology {
    /// Chooses the names and network of a lab in `dir`: the prefix from the
    /// directory, the /16 from the prefix, moving on past any /16 the root
    /// namespace already routes or addresses (another lab's, or the host's).
    pub fn for_lab(dir: &Path) -> Result<NetnsTopology> {
        let prefix = prefix_for(dir);
        NetnsTopology::with_prefix(&prefix)
    }

    /// Chooses the names of a lab in `dir` ([`NetnsTopology::for_lab`])
    /// and builds them; when another lab took the chosen /16 between the
    /// choice and the build (its route is then in the way), chooses again.
    pub fn create_for_lab(dir: &Path) -> Result<NetnsTopology> {
        let mut attempts = 3;
        loop {
            let topology = NetnsTopology::for_lab(dir)?;
            match topology.create() {
                Ok(()) => return Ok(topology),
                Err(e) if attempts <= 1 => return Err(e),
                Err(_) => attempts -= 1,
            }
        }
    }

    /// As [`NetnsTopology::for_lab`], with a given prefix (at most 11 bytes,
    /// so that `<prefix>-ctl` fits an interface name).
    pub fn with_prefix(prefix: &str) -> Result<NetnsTopology> {
        if prefix.is_empty()
            || prefix.len() > 11
            || !prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(LabError::Other(format!(
                "network prefix {prefix:?} must be 1 to 11 letters or digits"
            )));
        }
        // A stale lab of the same prefix is about to be removed: its /16 is
        // free for us.
        let own_iface = format!(" {prefix} ");
        let in_use: String = [
            ip(&["-4", "-o", "route", "show"])?,
            ip(&["-4", "-o", "addr", "show"])?,
        ]
        .into_iter()
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.contains(&own_iface) && !l.ends_with(&format!(" {prefix}")))
                .map(|l| format!(" {l}\n"))
                .collect::<Vec<_>>()
        })
        .collect();
        let span = NET_RANGE.end() - NET_RANGE.start() + 1;
        let start = u8::from_str_radix(&prefix[prefix.len().saturating_sub(2)..], 16)
            .unwrap_or_else(|_| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                prefix.hash(&mut h);
                h.finish() as u8
            });
        for i in 0..span {
            let net = NET_RANGE.start() + (start.wrapping_add(i)) % span;
            let taken = in_use.contains(&format!(" 10.{net}."));
            if !taken {
                return Ok(NetnsTopology {
                    prefix: prefix.to_string(),
                    net,
                });
            }
        }
        Err(LabError::Other(format!(
            "every 10.N.0.0/16 with N in {}..={} is in use on this host; remove a lab with `drctl lab down`",
            NET_RANGE.start(),
            NET_RANGE.end()
        )))
    }

    /// The namespace of `site` (`<prefix>-a` …).
    pub fn namespace(&self, site: Site) -> String {
        format!("{}-{}", self.prefix, site.suffix())
    }

    /// The router's namespace.
    pub fn router_namespace(&self) -> String {
        format!("{}-rt", self.prefix)
    }

    /// The interface in the root namespace that leads to the router.
    pub fn host_interface(&self) -> String {
        self.prefix.clone()
    }

    /// The address of `site` (its `eth0`): `10.N.1.2`, `10.N.2.2`, `10.N.3.2`.
    pub fn addr(&self, site: Site) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, site.subnet_octet(), 2)
    }

    /// The root namespace's address on the lab's network (`10.N.254.2`):
    /// where the sites see the test process and the CLI come from.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, HOST_SUBNET, 2)
    }

    /// The lab's network, `10.N.0.0/16`.
    pub fn network(&self) -> String {
        format!("10.{}.0.0/16", self.net)
    }

    fn site_subnet(&self, site: Site) -> String {
        format!("10.{}.{}.0/24", self.net, site.subnet_octet())
    }

    fn router_addr(&self, third: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, third, 1)
    }

    /// Builds the namespaces, links and routes, first removing whatever a
    /// killed lab of the same prefix left behind.
    pub fn create(&self) -> Result<()> {
        available().map_err(LabError::Other)?;
        NetnsTopology::remove_stale(&self.prefix)?;
        let result = self.build();
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn build(&self) -> Result<()> {
        let rt = self.router_namespace();
        for ns in Site::ALL
            .iter()
            .map(|s| self.namespace(*s))
            .chain([rt.clone()])
        {
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        for site in Site::ALL {
            let ns = self.namespace(site);
            let to_site = format!("to-{}", site.suffix());
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &to_site,
                "netns", &rt,
            ])?;
            let third = site.subnet_octet();
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addr(site)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                &rt,
                "addr",
                "add",
                &format!("{}/24", self.router_addr(third)),
                "dev",
                &to_site,
            ])?;
            ip(&["-n", &rt, "link", "set", &to_site, "up"])?;
            // Only the lab's /16, never a default route: nothing a site
            // sends can leave the lab.
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                &self.network(),
                "via",
                &self.router_addr(third).to_string(),
            ])?;
        }
        let host = self.host_interface();
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "to-host", "netns", &rt,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.host_addr()),
            "dev",
            &host,
        ])?;
        ip(&["link", "set", &host, "up"])?;
        ip(&[
            "-n",
            &rt,
            "addr",
            "add",
            &format!("{}/24", self.router_addr(HOST_SUBNET)),
            "dev",
            "to-host",
        ])?;
        ip(&["-n", &rt, "link", "set", "to-host", "up"])?;
        ip(&[
            "route",
            "add",
            &self.network(),
            "via",
            &self.router_addr(HOST_SUBNET).to_string(),
            "dev",
            &host,
        ])?;
        // Forwarding only in the router's own namespace (a fresh namespace
        // starts with it off; the root namespace's setting is not touched).
        // /proc/sys/net belongs to the namespace of whoever opens it.
        in_namespace(&rt, || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))?
            .map_err(|e| LabError::Other(format!("turning on forwarding in {rt}: {e}")))?;
        Ok(())
    }

    /// Removes this lab's namespaces, links and root route. Safe to run twice.
    pub fn remove(&self) -> Result<Vec<String>> {
        NetnsTopology::remove_stale(&self.prefix)
    }

    /// Removes whatever a lab of `prefix` left: its namespaces (`ip netns
    /// list`), the root namespace's link to its router and, with it, the
    /// route through it. Returns what it removed; safe to run twice.
    pub fn remove_stale(prefix: &str) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        // The root link first: deleting it takes its route with it.
        if ip(&["link", "show", "dev", prefix]).is_ok() {
            ip(&["link", "del", "dev", prefix])?;
            removed.push(format!("link {prefix}"));
        }
        for ns in namespaces_of(prefix)? {
            ip(&["netns", "del", &ns])?;
            removed.push(format!("namespace {ns}"));
        }
        Ok(removed)
    }

    /// Every namespace of this lab that exists now.
    pub fn existing_namespaces(&self) -> Result<Vec<String>> {
        namespaces_of(&self.prefix)
    }

    /// The router rules of `partition`: each `(from, to)` pair of subnets
    /// whose packets are dropped (`None`: any).
    fn rules(&self, partition: Partition) -> Vec<(Option<String>, Option<String>)> {
        match partition {
            Partition::Isolate(site) => vec![
                (Some(self.site_subnet(site)), None),
                (None, Some(self.site_subnet(site))),
            ],
            Partition::Cut(x, y) => {
                if x == y {
                    return Vec::new();
                }
                let (x, y) = (self.site_subnet(x), self.site_subnet(y));
                vec![(Some(x.clone()), Some(y.clone())), (Some(y), Some(x))]
            }
        }
    }

    fn rule_args(from: &Option<String>, to: &Option<String>) -> Vec<String> {
        let mut args = vec!["pref".to_string(), PARTITION_PREF.to_string()];
        if let Some(from) = from {
            args.extend(["from".to_string(), from.clone()]);
        }
        if let Some(to) = to {
            args.extend(["to".to_string(), to.clone()]);
        }
        args.push("blackhole".into());
        args
    }

    /// Applies `partition` in the router. Several may hold at once;
    /// applying one twice is harmless.
    pub fn partition(&self, partition: Partition) -> Result<()> {
        let rt = self.router_namespace();
        for (from, to) in self.rules(partition) {
            let args = Self::rule_args(&from, &to);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Delete, then add: `ip rule add` would happily add a duplicate.
            let _ = ip(&[&["-n", &rt, "rule", "del"], args.as_slice()].concat());
            ip(&[&["-n", &rt, "rule", "add"], args.as_slice()].concat())?;
        }
        Ok(())
    }

    /// Lifts one partition, leaving the others in place.
    pub fn lift(&self, partition: Partition) -> Result<()> {
        let rt = self.router_namespace();
        for (from, to) in self.rules(partition) {
            let args = Self::rule_args(&from, &to);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            while ip(&[&["-n", &rt, "rule", "del"], args.as_slice()].concat()).is_ok() {}
        }
        Ok(())
    }

    /// Lifts every partition.
    pub fn heal(&self) -> Result<()> {
        let rt = self.router_namespace();
        // Each `del pref` removes one rule; stop when none is left (bounded,
        // in case `ip` misbehaves).
        for _ in 0..64 {
            if ip(&["-n", &rt, "rule", "del", "pref", PARTITION_PREF]).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The partition rules held in the router now, as `ip rule` prints them
    /// (empty when the network is whole).
    pub fn partition_rules(&self) -> Result<Vec<String>> {
        let text = ip(&[
            "-n",
            &self.router_namespace(),
            "rule",
            "show",
            "pref",
            PARTITION_PREF,
        ])?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    fn namespace_file(&self, site: Site) -> Result<File> {
        namespace_file(&self.namespace(site))
    }

    /// A command that runs `program` inside `site` (the child enters the
    /// namespace between fork and exec). Everything it starts stays there.
    pub fn command(&self, site: Site, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let mut cmd = Command::new(program);
        self.enter_on_spawn(site, &mut cmd)?;
        Ok(cmd)
    }

    /// Makes an existing command (built by someone else, e.g. `drctl-pg`'s
    /// `pg_command`) run inside `site`.
    pub fn enter_on_spawn(&self, site: Site, cmd: &mut Command) -> Result<()> {
        let file = self.namespace_file(site)?;
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; `setns` is a single system call on an open descriptor.
        unsafe {
            cmd.pre_exec(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        Ok(())
    }

    /// Runs `f` on a fresh thread inside `site` and waits for it: whatever
    /// `f` starts (processes through `std::process::Command`, blocking
    /// sockets) lives in the site. For calls such as `PgCluster::start`
    /// that build their own commands.
    pub fn run_in<T: Send>(&self, site: Site, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_namespace(&self.namespace(site), f)
    }

    /// A tokio runtime whose thread lives in `site`: sockets its tasks
    /// create are in the site's namespace. Stops when dropped.
    pub fn runtime(&self, site: Site) -> Result<SiteRuntime> {
        SiteRuntime::start(self.namespace_file(site)?, self.namespace(site), 0)
    }

    /// As [`NetnsTopology::runtime`], with `workers` worker threads, for
    /// busier work in a site (drctl's daemon in the control plane).
    pub fn runtime_with_workers(&self, site: Site, workers: usize) -> Result<SiteRuntime> {
        let workers = workers.max(1);
        SiteRuntime::start(self.namespace_file(site)?, self.namespace(site), workers)
    }
}

pub(crate) fn namespace_file(ns: &str) -> Result<File> {
    let path = format!("/run/netns/{ns}");
    File::open(&path).map_err(|e| {
        LabError::Other(format!(
            "network namespace {ns} is missing ({path}: {e}); is the namespaced lab up?"
        ))
    })
}

/// Runs `f` on a fresh thread inside the namespace `ns` and waits for it.
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = namespace_file(ns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    LabError::Other(format!("entering network namespace {ns}: {e}"))
                })?;
                Ok(f())
            })
            .join()
            .map_err(|_| LabError::Other(format!("a task in namespace {ns} panicked")))?
    })
}

/// The namespaces of `prefix` that `ip netns list` shows.
fn namespaces_of(prefix: &str) -> Result<Vec<String>> {
    let list = ip(&["netns", "list"])?;
    let own = format!("{prefix}-");
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(&own))
        .map(String::from)
        .collect())
}

/// Runs `ip ARGS`; a failure names the command and carries its message.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| LabError::Other(format!("cannot run `ip` ({e}); install iproute2")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_modes_read_back_as_themselves() {
        for (mode, _) in Partition::MODES {
            let p: Partition = mode.parse().expect("a documented mode parses");
            assert_eq!(p.mode(), mode);
        }
        assert_eq!(
            "b-a".parse::<Partition>().map(|p| p.mode()),
            Ok("a-b".to_string())
        );
        let err = "a-c".parse::<Partition>().unwrap_err();
        assert!(
            err.contains("region-a, region-b, witness, ctl-a, ctl-b, a-b"),
            "{err}"
        );
    }

    #[test]
    fn names_fit_in_interface_names_and_are_stable() {
        let p = prefix_for(Path::new("/tmp/some-lab"));
        assert_eq!(p, prefix_for(Path::new("/tmp/some-lab")));
        assert_eq!(p.len(), 7);
        let t = NetnsTopology { prefix: p, net: 70 };
        assert!(t.namespace(Site::Ctl).len() <= 15);
        assert!(t.host_interface().len() <= 15);
        assert_eq!(t.addr(Site::RegionB), Ipv4Addr::new(10, 70, 2, 2));
        assert_eq!(t.network(), "10.70.0.0/16");
    }
}
