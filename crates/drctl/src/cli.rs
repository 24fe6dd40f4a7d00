//! Command-line syntax (clap). Handlers live in the `*_cmd` modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "drctl",
    version,
    about = "Multi-region disaster recovery: measured RPO exposure, backups, failover, reports",
    long_about = "drctl measures what each service would lose if its primary region vanished now \
(RPO exposure), and will fail services over between regions with a journaled, crash-safe state \
machine.\n\nStart with the lab: `drctl lab up`, then `drctl status` in another terminal.",
    after_help = "Exit codes: 0 success, 1 the command failed, 2 bad usage or invalid config."
)]
pub struct Cli {
    /// Log level for drctl's own messages (error, warn, info, debug, trace);
    /// DRCTL_LOG takes a full tracing filter instead.
    #[arg(long, global = true, default_value = "info", env = "DRCTL_LOG_LEVEL")]
    pub log_level: String,
    /// Write logs as JSON lines (for log shippers).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: sample replication lag and serve the API.
    Serve(ServeArgs),
    /// Show each service's RPO exposure, status and standby figures.
    Status(StatusArgs),
    /// Work with configuration files.
    Config(ConfigArgs),
    /// The two-region lab: real PostgreSQL clusters on this machine.
    Lab(LabArgs),
    /// Take, list and verify backups in object storage.
    Backup(BackupArgs),
    /// Restore a service to a point in time from its backups and WAL
    /// archive, into a new directory (bad data: a `DELETE` without
    /// `WHERE`, ransomware): drctl picks the base backup; `--dry-run`
    /// names it, the WAL it replays and how long past restores took.
    Restore(RestoreArgs),
    /// Restore the newest verified backup into a scratch cluster, run the
    /// service's validation queries, and record how long it took (RTO evidence).
    RestoreTest(RestoreTestArgs),
    /// Fail a service's cluster over to another region (unplanned: the
    /// primary region is lost). Journaled and resumable; `--dry-run` shows
    /// the plan, the expected data loss and every blocker.
    Failover(FailoverArgs),
    /// Planned switchover with zero data loss: fence the primary, let the
    /// target catch up to its last position, promote it, flip DNS.
    Switchover(FailoverArgs),
    /// Rehearse a failover with no production impact: clone the standby into
    /// a scratch instance, promote it, write to it, announce it under the
    /// drill DNS record, measure, tear it all down (same as `failover
    /// --rehearse`).
    Drill(FailoverArgs),
    /// Cold tier: restore the newest verified backup in another region
    /// (into its `data_dir`, on this host), start it, write to it and flip
    /// DNS. Loses everything written after the backup ended (the plan says
    /// how much).
    Recover(FailoverArgs),
    /// Make an old primary a standby of the new one (pg_rewind, else a
    /// fresh clone), so the pair is protected again and can switch back.
    /// Run it on the host of that region's server: it needs the data
    /// directory (`[services.postgres.REGION] data_dir`).
    Rejoin(RejoinArgs),
    /// Failovers, switchovers and drills: list them, or show one's step
    /// timeline.
    Operations(OperationsArgs),
    /// Compliance over a period, per service, for an auditor: time inside
    /// the RPO target, breaches, operations with measured RPO/RTO, backups,
    /// verifications, restore tests and evidence gaps.
    Report(ReportArgs),
    /// The audit log: who started what, when, from where. Hash-chained:
    /// `verify` proves no stored row was edited or deleted.
    Audit(AuditArgs),
    /// Measure what drctl costs (benchmarks on a real lab).
    Bench(BenchArgs),
    /// The node agent beside each database server: it serves the node
    /// actions (status, stop, start, hard fence, rewind, restore, scratch
    /// copies) to drctl over HTTPS with mutual TLS; and its certificates.
    Agent(AgentArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  drctl failover orders --dry-run          what would happen, and what it would lose, now
  drctl failover orders --to region-b      fail over (refused if the loss exceeds the RPO target)
  drctl failover orders --accept-data-loss fail over even so
  drctl failover orders --accept-unfenced  fail over from a source that is down and has no fence hook
  drctl failover --resume op-1234          take over an operation whose driver died or stopped
  drctl failover orders --rehearse         a drill: a scratch clone is promoted, production untouched
  drctl switchover orders --to region-b    planned, zero loss

A real failover or switchover asks for confirmation on a terminal; scripts
pass --yes. Exit status: 0 done, 1 refused, failed or stopped (resumable:
the message names the operation).")]
pub struct FailoverArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    /// The service (its whole cluster moves).
    #[arg(required_unless_present = "resume")]
    pub service: Option<String>,
    /// Target region [default: the first region that is not primary].
    #[arg(long, value_name = "REGION")]
    pub to: Option<String>,
    /// Print the plan (expected data loss, expected RTO, blockers) and stop.
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    /// Go ahead although the expected data loss exceeds the RPO target (or
    /// is unknown because the primary is gone).
    #[arg(long)]
    pub accept_data_loss: bool,
    /// Go ahead although the source cannot be fenced: it is unreachable and
    /// has no `fence_hook`, so nothing stops it taking writes if it comes
    /// back. Only when you know it is down (automatic failover never does).
    #[arg(long, conflicts_with = "resume")]
    pub accept_unfenced: bool,
    /// Rehearse instead (a drill): production is not touched.
    #[arg(long, conflicts_with_all = ["resume", "accept_data_loss", "accept_unfenced"])]
    pub rehearse: bool,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Why (recorded with the operation).
    #[arg(long)]
    pub reason: Option<String>,
    /// Resume this operation instead of starting one.
    #[arg(long, value_name = "ID", conflicts_with = "service")]
    pub resume: Option<String>,
    /// How long `--resume` waits for a dead driver's lease to expire.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  drctl rejoin orders --region region-a --dry-run   what would happen
  drctl rejoin orders --region region-a --yes       region-a becomes a standby of the primary")]
pub struct RejoinArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    /// The service (its whole cluster's server in REGION rejoins).
    pub service: String,
    /// The region whose server rejoins (the old primary).
    #[arg(long, value_name = "REGION")]
    pub region: String,
    /// Print the plan and blockers and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Why (recorded with the operation).
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short, long)]
    pub yes: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

impl From<RejoinArgs> for FailoverArgs {
    fn from(a: RejoinArgs) -> FailoverArgs {
        FailoverArgs {
            config: a.config,
            service: Some(a.service),
            to: Some(a.region),
            dry_run: a.dry_run,
            accept_data_loss: false,
            accept_unfenced: false,
            rehearse: false,
            yes: a.yes,
            reason: a.reason,
            resume: None,
            wait: std::time::Duration::from_secs(60),
            output: a.output,
        }
    }
}

#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  drctl operations                      recent operations (= drctl operations list)
  drctl operations op-0123456789abcdef  one with its step timeline (= drctl operations show ID)"
)]
pub struct OperationsArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    #[command(subcommand)]
    pub command: Option<OperationsCommand>,
    /// An operation to show (without a subcommand).
    pub id: Option<String>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Subcommand, Debug)]
pub enum OperationsCommand {
    /// Recent operations, newest first.
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// One operation with its step timeline.
    Show {
        id: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up a service now (per its [services.backup] policy).
    Run {
        service: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List recorded backups, newest first.
    List {
        service: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Verify a backup and restore it into a new directory, and leave it
    /// there (recovery when every replica carries the damage). With
    /// --to-time, --to-lsn or --latest, the service's archived WAL is
    /// staged beside it (TARGET-wal) and the directory set to replay it to
    /// that point and promote itself when started (wal_archive = true).
    Restore {
        /// The backup id (see `drctl backup list`).
        id: String,
        /// A directory that does not exist yet (or is empty).
        #[arg(long)]
        target: std::path::PathBuf,
        /// Replay the archived WAL to this time on the primary's clock:
        /// every transaction committed at or before it, none after. A date,
        /// a time (seconds and a fraction optional) and a zone, e.g.
        /// 2026-12-07T14:03:11Z or "2026-12-07 14:03:11.25+01:00".
        #[arg(long, value_name = "TIME", conflicts_with_all = ["to_lsn", "latest"])]
        to_time: Option<String>,
        /// Replay the archived WAL to this position (X/Y).
        #[arg(long, value_name = "LSN", conflicts_with = "latest")]
        to_lsn: Option<String>,
        /// Replay all of the archived WAL.
        #[arg(long)]
        latest: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Read the service's WAL archive back as a restore would: unbroken
    /// from the oldest retained backup's start, every object intact, and
    /// the newest commit it holds. Exit 1 when a segment is missing or
    /// damaged (named).
    Wal {
        service: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Re-read a backup's objects and check them against its manifest.
    /// Exit 1 when verification fails.
    Verify {
        /// The backup id (see `drctl backup list`).
        #[arg(conflicts_with = "latest", required_unless_present = "latest")]
        id: Option<String>,
        /// Verify the newest complete backup of this service.
        #[arg(long, value_name = "SERVICE")]
        latest: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  drctl restore orders --to-time 2026-12-07T14:03:11Z --dry-run         the base backup, the WAL range, the window
  drctl restore orders --to-time \"2026-12-07 15:03:11+01:00\" --target /srv/orders-1403
  drctl restore orders --latest --target /srv/orders-latest

The directory replays the archived WAL (staged in TARGET-wal) to the point
and promotes itself when started; production is not touched. A time needs
its zone; a point outside the restorable window is refused with the window.")]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    pub service: String,
    /// Every transaction committed at or before this time on the primary's
    /// clock, none after. A date, a time (seconds and a fraction optional)
    /// and a zone, e.g. 2026-12-07T14:03:11Z or "2026-12-07 14:03:11.25+01:00".
    #[arg(long, value_name = "TIME", conflicts_with_all = ["to_lsn", "latest"], required_unless_present_any = ["to_lsn", "latest"])]
    pub to_time: Option<String>,
    /// Replay the archived WAL to this position (X/Y).
    #[arg(long, value_name = "LSN", conflicts_with = "latest")]
    pub to_lsn: Option<String>,
    /// Replay all of the archived WAL.
    #[arg(long)]
    pub latest: bool,
    /// A directory that does not exist yet (or is empty).
    #[arg(long, required_unless_present = "dry_run")]
    pub target: Option<std::path::PathBuf>,
    /// Name the base backup, the WAL range and the expected time; restore
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct RestoreTestArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    pub service: String,
    /// Test this backup instead of the newest verified one.
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Scratch root for the restored copy (removed afterwards): owned by
    /// drctl's user, writable by no one else, reachable by the postgres
    /// user. Default: DRCTL_SCRATCH, else drctl-scratch-UID in the
    /// temporary directory (created when missing).
    #[arg(long)]
    pub scratch: Option<std::path::PathBuf>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The lag monitor's CPU, probe latency and store growth for N services.
    Monitor(BenchMonitorArgs),
    /// The daemon over N services for a long while with the region link
    /// flapping: memory flat, no missed samples, no unexplained warnings.
    Soak(SoakArgs),
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// Where the config comes from: `--config`, `DRCTL_CONFIG`, `./drctl.toml`,
/// or the running lab's.
#[derive(Args, Debug, Clone)]
pub struct ConfigPath {
    /// The drctl config file [default: ./drctl.toml, else the running lab's].
    #[arg(short, long, env = "DRCTL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  drctl report                                   the last 30 days, as Markdown
  drctl report --from 90d --format html --out q3.html
  drctl report --from 2026-07-01T00:00:00Z --to 2026-10-01T00:00:00Z --format csv

Read from the state store: works while the daemon is down.")]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    /// Start: RFC 3339 or a duration ago (90d) [default: 30 days before --to].
    #[arg(long)]
    pub from: Option<String>,
    /// End: RFC 3339 or a duration ago [default: now].
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Md,
    Html,
    Json,
    Csv,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  drctl audit list --since 24h              the last day's mutations
  drctl audit verify                        recompute the hash chain; exit 1 names the first bad row
  drctl audit verify --expect-head 42:9f3c… also prove row 42 (recorded earlier) is still the same

Exit status of verify: 0 intact, 1 broken (the message names the row).")]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// The newest audit rows first.
    List {
        /// Only rows at or after this time: RFC 3339 or a duration ago (24h).
        #[arg(long)]
        since: Option<String>,
        /// Only rows before this time: RFC 3339 or a duration ago.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Recompute the hash chain from the first row; print the head to
    /// record elsewhere (cutting rows off the end is only detectable
    /// against a head recorded earlier).
    Verify {
        /// A head recorded earlier, as SEQ:HASH.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigPath,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigPath,
    /// The daemon's API [default: the config's api.listen].
    #[arg(long, env = "DRCTL_API")]
    pub api: Option<String>,
    /// A viewer (or higher) API token, when the API does not allow
    /// anonymous reads.
    #[arg(long, env = "DRCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a config file; print every error with file:line:column.
    Validate {
        file: PathBuf,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

#[derive(Args, Debug)]
pub struct LabArgs {
    /// The lab's directory (must be reachable by the postgres user).
    #[arg(
        long,
        global = true,
        env = "DRCTL_LAB_DIR",
        default_value = "/tmp/drctl-lab"
    )]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build and start the lab: clusters, region link, shop workload, daemon.
    /// Runs until Ctrl-C (then tears everything down) unless --detach.
    Up {
        /// Start in the background and return once the API answers.
        #[arg(long)]
        detach: bool,
        /// The API port of the lab's daemon.
        #[arg(long, default_value_t = drctl_lab::DEFAULT_API_PORT)]
        api_port: u16,
        /// First PostgreSQL port; the lab uses about 45 ports from here.
        #[arg(long, default_value_t = drctl_lab::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Where the regions live: `namespaces` gives each region its own
        /// network host [default: namespaces as root with iproute2, else
        /// loopback].
        #[arg(long, value_enum, env = "DRCTL_LAB_NETWORK")]
        network: Option<LabNetworkArg>,
        /// Run without the three etcd members and primary leases
        /// (`[coordination]`): no primary then fences itself when cut off.
        #[arg(long)]
        no_coordination: bool,
    },
    /// Stop everything the lab started (also after a crash of `lab up`).
    Down,
    /// Show the lab's clusters, link and workload.
    Status {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Cut, restore or slow down the link between region A and region B.
    Link {
        #[command(subcommand)]
        action: LinkAction,
    },
    /// Pause or resume the shop workload.
    Workload {
        #[command(subcommand)]
        action: WorkloadAction,
    },
    /// The lab's etcd members (the primary leases' quorum): kill the one
    /// that leads, or start a killed one again.
    Etcd {
        #[command(subcommand)]
        action: LabEtcdAction,
    },
    /// The "bad data" drill: delete the newest orders of a service and
    /// rewrite the ones before them on its primary (a bad `DELETE`,
    /// ransomware), and print the last moment the data was whole: the
    /// point to restore to (`drctl restore SERVICE --to-time …`).
    Corrupt {
        service: String,
        /// How many rows to delete, and how many before them to rewrite.
        #[arg(long, default_value_t = 20)]
        rows: u32,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Crash a service's primary (immediate shutdown, as a lost region).
    KillPrimary {
        /// The service [default: every replicated service's primary].
        service: Option<String>,
    },
    /// Cut one server off from everyone (SIGSTOP of all its processes: no
    /// connection is reset, clients and replication just stop hearing it).
    Isolate {
        service: String,
        #[arg(long)]
        region: String,
    },
    /// End an isolation (SIGCONT).
    Heal {
        service: String,
        #[arg(long)]
        region: String,
    },
    /// Kill one server outright, isolated or not (SIGKILL of all its
    /// processes): the lab's fence hook, as STONITH would be in production.
    Stonith {
        service: String,
        #[arg(long)]
        region: String,
    },
    /// Partition the lab's network: packets between the sites named are
    /// dropped in the lab's router, so senders hear nothing (no reset).
    /// Several partitions may hold at once; `heal` lifts them all. Needs a
    /// namespaced lab, except `a-b` and `heal`, which on a loopback lab cut
    /// and restore the region link instead.
    Partition {
        #[arg(value_enum)]
        mode: LabPartitionArg,
        /// Lift only this partition, leaving the others.
        #[arg(long)]
        lift: bool,
    },
}

/// `drctl lab up --network`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LabNetworkArg {
    /// Every server on 127.0.0.1 in one network namespace; a partition
    /// resets connections (the link proxy's switch). Needs no root.
    Loopback,
    /// Each region (and drctl's control plane) its own network namespace
    /// behind a router; a partition loses packets. Needs root.
    Namespaces,
}

/// `drctl lab etcd …`.
#[derive(Subcommand, Debug)]
pub enum LabEtcdAction {
    /// Kill (SIGKILL) the member that leads now; prints its name.
    KillLeader,
    /// Start a killed member again (region-a, region-b or witness).
    Start { member: String },
}

/// `drctl lab partition MODE`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LabPartitionArg {
    /// region-a cut off from everyone (this host included).
    #[value(name = "region-a")]
    RegionA,
    /// region-b cut off from everyone (this host included).
    #[value(name = "region-b")]
    RegionB,
    /// The witness site (the etcd quorum's third member) cut off from
    /// everyone.
    Witness,
    /// Only drctl's control plane cut off from region-a.
    #[value(name = "ctl-a")]
    CtlA,
    /// Only drctl's control plane cut off from region-b.
    #[value(name = "ctl-b")]
    CtlB,
    /// Only the two regions cut off from each other.
    #[value(name = "a-b")]
    AB,
    /// Lift every partition.
    Heal,
}

#[derive(Subcommand, Debug)]
pub enum LinkAction {
    /// Partition the regions: replication connections drop and are refused.
    Cut,
    /// Heal the partition.
    Restore,
    /// Delay every packet across the link (e.g. `200ms`; `0s` to clear).
    Latency { delay: humantime::Duration },
}

#[derive(Subcommand, Debug)]
pub enum WorkloadAction {
    Pause,
    Resume,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Layout {
    /// Every service in one shared cluster (one sampler).
    Shared,
    /// Every service its own cluster (one sampler and connection pair each).
    Separate,
}

#[derive(Args, Debug)]
pub struct BenchMonitorArgs {
    /// How many services to declare.
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    #[arg(long, value_enum, default_value_t = Layout::Separate)]
    pub layout: Layout,
    /// The measured window (after a 15 s warm-up).
    #[arg(long, default_value = "60s")]
    pub duration: humantime::Duration,
    /// Where the bench lab lives.
    #[arg(long, default_value = "/tmp/drctl-bench")]
    pub dir: std::path::PathBuf,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How many services to declare (each its own cluster: a sampler and a
    /// guard apiece, all on the lab's one primary/standby pair).
    #[arg(long, default_value_t = 200)]
    pub services: usize,
    /// The measured window (after a 30 s warm-up).
    #[arg(long, default_value = "10m")]
    pub duration: humantime::Duration,
    /// How often the region link is cut.
    #[arg(long, default_value = "60s")]
    pub flap_every: humantime::Duration,
    /// How long each cut lasts.
    #[arg(long, default_value = "10s")]
    pub flap_for: humantime::Duration,
    /// Where the soak lab lives.
    #[arg(long, default_value = "/tmp/drctl-soak")]
    pub dir: std::path::PathBuf,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Serve this host's database servers to drctl until SIGTERM; prints
    /// one line with the listen address when ready.
    Serve(AgentServeArgs),
    /// Issue the certificates: a CA (kept when DIR has one), a server
    /// certificate per agent, and drctl's client certificate.
    Certs(AgentCertsArgs),
    /// The primary lease's watchdog for one data directory: fences the
    /// server at the lease deadline the agent last wrote, should the agent
    /// die or hang. `agent serve` starts it (with `--config` naming
    /// `[coordination]`); there is no need to run it by hand.
    Watchdog(AgentWatchdogArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "`drctl agent serve` starts one per data directory whose server holds a
primary lease, and again whenever it is gone. It reads
<data_dir>.drctl-lease-deadline, which the agent rewrites after every
renewal; once that deadline has passed and the server is still a writable
primary, it stops the server at once and leaves the hard-fence mark. It
exits when the agent that started it is gone and nothing is left to guard."
)]
pub struct AgentWatchdogArgs {
    /// The data directory to guard (one of the agent's --data-dir).
    #[arg(long = "data-dir")]
    pub data_dir: PathBuf,
    /// The agent that started it: once that process is gone and nothing
    /// is left to guard, the watchdog exits.
    #[arg(long)]
    pub parent: u32,
    /// The PostgreSQL server programs [default: as `agent serve`].
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "Example:
  drctl agent serve --listen 0.0.0.0:7450 --ca /etc/drctl/pki/ca.pem \\
      --cert /etc/drctl/pki/agent-db1.pem --key /etc/drctl/pki/agent-db1.key \\
      --data-dir /var/lib/postgresql/15/main --scratch-root /var/lib/drctl/scratch

Only clients with a certificate signed by --ca for client authentication
(drctl's drctl.pem) are served; a request without one gets a 401.")]
pub struct AgentServeArgs {
    /// Address and port to listen on (HTTPS).
    #[arg(long, env = "DRCTL_AGENT_LISTEN", default_value = "0.0.0.0:7450")]
    pub listen: std::net::SocketAddr,
    /// The CA certificate that signed drctl's client certificate (ca.pem
    /// from `drctl agent certs`).
    #[arg(long, env = "DRCTL_AGENT_CA")]
    pub ca: PathBuf,
    /// This agent's server certificate (agent-NAME.pem).
    #[arg(long, env = "DRCTL_AGENT_CERT")]
    pub cert: PathBuf,
    /// Its private key (agent-NAME.key, mode 0600).
    #[arg(long, env = "DRCTL_AGENT_KEY")]
    pub key: PathBuf,
    /// A data directory this agent acts on (repeat for several; the
    /// variable takes a comma-separated list). Requests for any other
    /// directory are refused.
    #[arg(
        long = "data-dir",
        env = "DRCTL_AGENT_DATA_DIR",
        value_delimiter = ',',
        required = true
    )]
    pub data_dirs: Vec<PathBuf>,
    /// Where drill clones and restore tests are made on this host (created
    /// 0711 if missing; its parent must exist).
    #[arg(long, env = "DRCTL_AGENT_SCRATCH_ROOT")]
    pub scratch_root: PathBuf,
    /// The PostgreSQL server programs [default: PG_BIN, pg_config, or
    /// /usr/lib/postgresql/*/bin].
    #[arg(long, env = "DRCTL_AGENT_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// drctl's config file, so this agent can restore verified backups
    /// (it reads the state store and object storage the config names).
    /// Without it, restores are answered "missing".
    #[arg(long, env = "DRCTL_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "Example:
  drctl agent certs --out /etc/drctl/pki --agent db1=10.0.1.5,db1.internal --agent db2=10.0.2.5

Writes ca.pem, ca.key (keep it off the agents' hosts), agent-NAME.pem/.key
for each agent, and drctl.pem/.key for drctl. Keys are mode 0600.")]
pub struct AgentCertsArgs {
    /// The directory to write to (created if missing; a CA already there is
    /// kept, so the other agents' certificates stay valid).
    #[arg(long, env = "DRCTL_AGENT_CERTS_OUT")]
    pub out: PathBuf,
    /// An agent: NAME=HOST[,HOST…], its host names and IP addresses as
    /// drctl reaches it (repeat for several; the variable takes a
    /// ';'-separated list).
    #[arg(
        long = "agent",
        env = "DRCTL_AGENT_CERTS_AGENTS",
        value_delimiter = ';'
    )]
    pub agents: Vec<String>,
    /// How long the certificates are valid, in days (the CA four times as
    /// long).
    #[arg(long, env = "DRCTL_AGENT_CERTS_DAYS", default_value_t = 825)]
    pub days: u32,
}
