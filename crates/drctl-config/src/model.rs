//! The validated configuration: what the rest of drctl reads.
//!
//! Owns the public types and their small conveniences. A value of these types
//! has passed every check in `validate` — inner code never re-checks that a
//! primary is among a service's regions or that a duration is positive. It
//! does not parse anything; construct these through [`crate::load`] or
//! [`crate::parse`] (tests elsewhere may build them by hand).
//!
//! Everything serializes (the API shows services and targets): durations as
//! human strings (`"5s"`), secrets redacted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::secret::Secret;

/// The whole validated configuration of one drctl deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file it was read from (absolute when read by [`crate::load`]).
    pub source: PathBuf,
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub monitor: MonitorConfig,
    /// In file order; never empty, names unique.
    pub regions: Vec<Region>,
    pub tiers: TierTargets,
    /// In file order; names unique. May be empty.
    pub services: Vec<Service>,
    /// Where backups go, in file order; names unique. May be empty.
    pub object_stores: Vec<ObjectStoreConfig>,
    /// How operations are driven, and the global brake on automatic
    /// failover (`[failover]`).
    pub failover: FailoverSettings,
    /// Where service records are published, in file order; names unique.
    /// May be empty.
    pub dns_providers: Vec<DnsProviderConfig>,
    /// Where alerts are sent (`[[webhooks]]`), in file order. May be empty.
    pub webhooks: Vec<WebhookConfig>,
    /// Where restore tests and drills put their scratch clusters
    /// (`[scratch]`).
    pub scratch: ScratchConfig,
    /// The audit chain's key (`[audit]`).
    pub audit: AuditConfig,
}

/// Where the clusters drctl starts that are not production (restore tests,
/// drill clones) live: `[scratch]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScratchConfig {
    /// The scratch root (a relative path resolves against the config
    /// file's directory). `None`: `DRCTL_SCRATCH`, else `drctl-scratch-UID`
    /// in the temporary directory. drctl creates it when missing and
    /// refuses one owned by another user or writable by others.
    pub root: Option<PathBuf>,
}

/// The audit log's chain (`[audit]`): with a key, every row is chained with
/// HMAC-SHA256, so someone who can write to the store cannot edit a row and
/// recompute the chain; without one, plain SHA-256 (edits by someone who
/// does not know to recompute it are still caught).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditConfig {
    /// `key_env` or `key_file`: kept outside the store it protects.
    pub key: Option<KeySource>,
}

impl AuditConfig {
    /// The key's bytes, read from its environment variable or file now;
    /// `None` when no key is configured.
    pub fn resolve_key(&self) -> Result<Option<Secret>, DsnError> {
        self.key.as_ref().map(KeySource::resolve).transpose()
    }
}

/// One alert destination: a URL that takes a POST per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    pub name: String,
    /// The URL (a Slack incoming-webhook URL is itself a secret: shown as
    /// `***`; [`WebhookConfig::host`] is what logs and errors show).
    pub url: WebhookUrl,
    /// `json` (drctl's event as JSON) or `slack` (`{"text": …}`).
    pub format: WebhookFormat,
    /// The kinds of event sent; empty means all.
    pub events: Vec<AlertKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookUrl {
    Inline(Secret),
    Source(KeySource),
}

impl WebhookConfig {
    /// The URL, reading its environment variable or file now.
    pub fn resolve_url(&self) -> Result<Secret, DsnError> {
        match &self.url {
            WebhookUrl::Inline(s) => Ok(s.clone()),
            WebhookUrl::Source(KeySource::Env(var)) => read_env(
                var,
                |var| DsnError::WebhookEnvNotSet { var },
                |var| DsnError::WebhookEnvEmpty { var },
            ),
            WebhookUrl::Source(KeySource::File(path)) => read_file(
                path,
                |path, reason| DsnError::WebhookFileUnreadable { path, reason },
                |path| DsnError::WebhookFileEmpty { path },
            ),
        }
        .map(|s| Secret::opaque(s.expose()))
    }

    /// Whether events of `kind` go to this webhook.
    pub fn wants(&self, kind: AlertKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    Json,
    Slack,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// RPO breach started / ended.
    Breach,
    /// The tier's proof (drill, restore test) became stale / fresh again.
    Evidence,
    /// A backup, verification or restore test failed.
    Backup,
    /// A failover, switchover, drill, rejoin or recover started / ended.
    Operation,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Breach,
        AlertKind::Evidence,
        AlertKind::Backup,
        AlertKind::Operation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Breach => "breach",
            AlertKind::Evidence => "evidence",
            AlertKind::Backup => "backup",
            AlertKind::Operation => "operation",
        }
    }
}

impl Config {
    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The region with this name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The object store with this name.
    pub fn object_store(&self, name: &str) -> Option<&ObjectStoreConfig> {
        self.object_stores.iter().find(|s| s.name == name)
    }

    /// The DNS provider with this name.
    pub fn dns_provider(&self, name: &str) -> Option<&DnsProviderConfig> {
        self.dns_providers.iter().find(|p| p.name == name)
    }

    /// The services that fail over together as `cluster`, in file order.
    pub fn cluster_members<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a Service> {
        self.services.iter().filter(move |s| s.cluster == cluster)
    }
}

/// Where drctl keeps its state (samples, operations, journals).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    /// `sqlite://…` (a relative path already resolved against the config
    /// file's directory) or `postgres://…`.
    pub url: Secret,
}

/// The HTTP API: where it listens and who may do what (`[api]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The URL other daemons give clients for this one's API
    /// (`advertise = "http://drctl-b.internal:7878"`); default: `http://` and
    /// the listen address. A follower names the leader's in its refusals.
    pub advertise: Option<String>,
    /// The role of a request without a token (`anonymous = "viewer"`);
    /// `None` asks every request but `/healthz` for a token. Default: viewer
    /// while no token is configured (reads only), `None` once one is.
    pub anonymous: Option<Role>,
    /// Bearer tokens (`[[api.tokens]]`), in file order.
    pub tokens: Vec<ApiToken>,
    /// HTTPS instead of plain HTTP (`tls_cert` and `tls_key`, both or
    /// neither); `None` serves plain HTTP.
    pub tls: Option<ApiTls>,
}

/// The API's certificate and key, PEM files read when the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTls {
    /// The certificate chain, leaf first (`tls_cert`, against the config's directory).
    pub cert: std::path::PathBuf,
    /// Its private key (`tls_key`): PKCS#8, PKCS#1 or SEC1. Only its path is ever shown.
    pub key: std::path::PathBuf,
}

/// What an API caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: services, RPO/RTO, lag, backups, operations, reports.
    Viewer,
    /// Starts work: failovers, switchovers, drills, backups, verifications.
    Operator,
    /// Everything, including the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API bearer token: a name (shown in the audit log as who acted), a
/// role, and where its secret lives. The secret is never written in the
/// config; it is read when the daemon starts ([`ApiToken::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub secret: KeySource,
}

impl ApiToken {
    /// The token's secret, reading its environment variable or file now.
    pub fn resolve(&self) -> Result<Secret, DsnError> {
        let secret = match &self.secret {
            KeySource::Env(var) => read_env(
                var,
                |var| DsnError::TokenEnvNotSet { var },
                |var| DsnError::TokenEnvEmpty { var },
            ),
            KeySource::File(path) => read_file(
                path,
                |path, reason| DsnError::TokenFileUnreadable { path, reason },
                |path| DsnError::TokenFileEmpty { path },
            ),
        }?;
        Ok(Secret::opaque(secret.expose()))
    }
}

/// How the lag monitor samples and keeps what it measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorConfig {
    /// How often each service is sampled.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub probe_timeout: Duration,
    /// How long RPO exposure must stay above target before it is a breach,
    /// so one slow sample does not page anyone.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub breach_grace: Duration,
    /// How long raw samples are kept.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub raw_retention: Duration,
    /// How long rolled-up samples are kept.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub rollup_retention: Duration,
}

/// A failure domain: its own database instances and DNS target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// `[a-z0-9-]+`, unique.
    pub name: String,
    pub description: Option<String>,
}

/// How much a service may lose and how long it may be down; decides the
/// recovery action (see DESIGN.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Streaming replication, standby always running, automatic failover.
    Hot,
    /// Replicated with a running standby; an operator triggers failover.
    Warm,
    /// Verified backups in another region; recovery restores one.
    Cold,
}

impl Tier {
    pub fn all() -> [Tier; 3] {
        [Tier::Hot, Tier::Warm, Tier::Cold]
    }

    /// Hot and warm keep a running standby; cold restores from backup.
    pub fn is_replicated(&self) -> bool {
        matches!(self, Tier::Hot | Tier::Warm)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier name that is not one of hot, warm, cold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not one of hot, warm, cold")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::all()
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTier(s.to_string()))
    }
}

/// Recovery objectives: the most data (in time) a failover may lose, and the
/// longest the service may be down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Targets {
    #[serde(serialize_with = "crate::duration::serialize")]
    pub rpo: Duration,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub rto: Duration,
    /// How often the RTO must be proven again: a drill (hot, warm) or a
    /// restore test (cold) older than this is stale evidence.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub evidence_every: Duration,
}

/// The default targets of each tier, after the config's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierTargets {
    pub hot: Targets,
    pub warm: Targets,
    pub cold: Targets,
}

impl TierTargets {
    pub fn get(&self, tier: Tier) -> Targets {
        match tier {
            Tier::Hot => self.hot,
            Tier::Warm => self.warm,
            Tier::Cold => self.cold,
        }
    }
}

impl Default for TierTargets {
    /// hot 5s/1m, warm 5m/30m, cold 24h/8h: the "typical" column of
    /// DESIGN.md; evidence every 7 days (hot: a drill, cold: a restore
    /// test), every 30 days for warm.
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        const fn t(rpo: u64, rto: u64, every: u64) -> Targets {
            Targets {
                rpo: Duration::from_secs(rpo),
                rto: Duration::from_secs(rto),
                evidence_every: Duration::from_secs(every),
            }
        }
        TierTargets {
            hot: t(5, 60, 7 * DAY),
            warm: t(5 * 60, 30 * 60, 30 * DAY),
            cold: t(24 * 3600, 8 * 3600, 7 * DAY),
        }
    }
}

/// The unit of failover as operators declare it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// `[a-z0-9-]+`, unique.
    pub name: String,
    pub tier: Tier,
    /// Declared regions, no repeats, in the operator's order; at least two
    /// for replicated tiers.
    pub regions: Vec<String>,
    /// One of `regions`.
    pub primary: String,
    /// The PostgreSQL cluster this service lives in (default: its own name).
    /// Services naming the same cluster fail over together and have the same
    /// regions and primary.
    pub cluster: String,
    /// The service's own targets if set, else its tier's.
    pub targets: Targets,
    pub health: HealthCheck,
    /// Connection per region; empty for a stateless service. Keys are among
    /// `regions`; replicated tiers have one for every region, cold ones at
    /// least for the primary.
    pub postgres: BTreeMap<String, DsnSource>,
    /// What drctl knows of each region's server beyond its connection
    /// (`data_dir`, `replication_dsn` in `[services.postgres.REGION]`);
    /// `drctl rejoin` needs them. Same keys as `postgres`.
    pub nodes: BTreeMap<String, PgNode>,
    /// How the service's datastore is backed up; only a service with a
    /// datastore has one.
    pub backup: Option<BackupPolicy>,
    /// The record clients resolve to reach the service, flipped by a
    /// failover; `None`: drctl does not publish the service.
    pub dns: Option<ServiceDns>,
    /// When and how the service fails over (defaults by tier).
    pub failover: FailoverPolicy,
}

impl Service {
    /// The service's regions other than the primary, in declared order.
    pub fn standby_regions(&self) -> impl Iterator<Item = &str> {
        self.regions
            .iter()
            .map(String::as_str)
            .filter(move |r| *r != self.primary)
    }

    /// Whether the service has a PostgreSQL datastore (otherwise it fails
    /// over by health check and DNS only).
    pub fn has_datastore(&self) -> bool {
        !self.postgres.is_empty()
    }
}

/// A place backups are written to and restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStoreConfig {
    /// `[a-z0-9-]+`, unique; what `[services.backup] store` names.
    pub name: String,
    /// Flattened, so the API shows `{"name": …, "kind": "s3", "bucket": …}`
    /// like the config file.
    #[serde(flatten)]
    pub kind: ObjectStoreKind,
}

/// The kind of an object store and where exactly it is.
///
/// There are no credentials here: S3 ones come from the standard AWS chain
/// (environment, profile, instance role), never from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ObjectStoreKind {
    /// A directory on this machine (labs, tests, a mounted NFS share).
    Local {
        /// Absolute: a relative path in the config is resolved against the
        /// config file's directory.
        path: PathBuf,
    },
    /// An S3 bucket, on AWS or on a compatible server (MinIO, R2, moto).
    S3 {
        /// A valid S3 bucket name: 3-63 characters of a-z, 0-9, '.', '-'.
        bucket: String,
        /// Key prefix inside the bucket: empty, or ending with `/`.
        prefix: String,
        /// `http://…` or `https://…`; `None` for AWS itself.
        endpoint: Option<String>,
        /// The bucket's region (default `us-east-1`).
        region: String,
        /// Path-style addressing (`endpoint/bucket/key`), which most
        /// S3-compatible servers need.
        path_style: bool,
        /// How long one attempt of one call may take (default 2m) before
        /// it is abandoned and retried: a server that stops answering must
        /// fail a backup, not hang it.
        #[serde(serialize_with = "crate::duration::serialize")]
        timeout: Duration,
    },
}

/// How a service's datastore is backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupPolicy {
    /// The name of one of [`Config::object_stores`].
    pub store: String,
    /// The region whose database is copied (default: the primary); one of
    /// the service's regions, with a connection in [`Service::postgres`].
    pub from_region: String,
    /// zstd level, 1..=19 (default 1: fastest; a backup keeps pace with
    /// pg_basebackup alone).
    pub compression_level: i32,
    /// zstd worker threads; 0 (the default) means one per core of the host
    /// drctl runs on. Compression is a backup's bottleneck, so it uses every
    /// core unless told otherwise.
    pub compression_threads: u32,
    /// SQL run against a restored copy; each must return true for the
    /// backup to count as verified. Never empty strings. Default none.
    pub validation_queries: Vec<String>,
    /// When set, a cold service's RPO exposure counts only backups whose
    /// restore was tested, not every backup that was written (default off).
    pub strict: bool,
    /// When to take a backup: a 5-field cron expression (minute hour
    /// day-of-month month day-of-week), in UTC. `None`: only on demand.
    pub schedule: Option<String>,
    /// When to verify the newest unverified backup (5-field cron, UTC).
    pub verify_schedule: Option<String>,
    /// When to restore-test the newest verified backup (5-field cron, UTC).
    pub restore_test_schedule: Option<String>,
    /// A service whose newest passed restore test is older than this is in
    /// breach: its evidence of being restorable is stale (default 7d).
    #[serde(serialize_with = "crate::duration::serialize")]
    pub restore_test_max_age: Duration,
    /// Which backups are kept when older ones are pruned.
    pub retention: Retention,
    /// A second object store every backup is copied to: one of
    /// [`Config::object_stores`], never [`BackupPolicy::store`] itself.
    pub offsite_store: Option<String>,
    /// Where the key that encrypts backups comes from; `None`: backups are
    /// not encrypted by drctl.
    pub encryption_key: Option<KeySource>,
}

/// Grandfather-father-son retention: a backup is kept while any rule wants
/// it. `keep_last` is at least 1, so pruning never deletes the newest backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// The newest backups, whatever their age; >= 1.
    pub keep_last: u32,
    /// The newest backup of each of the last this many days (UTC).
    pub keep_daily: u32,
    /// The newest backup of each of the last this many ISO weeks.
    pub keep_weekly: u32,
    /// The newest backup of each of the last this many months.
    pub keep_monthly: u32,
}

impl Default for Retention {
    /// 7 last, 7 daily, 4 weekly, 6 monthly: half a year of monthly restore
    /// points without keeping every hourly backup.
    fn default() -> Self {
        Retention {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
        }
    }
}

/// Where a backup encryption key comes from. Like [`DsnSource`], it is read
/// only when needed ([`KeySource::resolve`]); unlike a DSN it can never be
/// written in the config itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The name of an environment variable holding the key.
    Env(String),
    /// A file holding the key (resolved against the config's directory).
    File(PathBuf),
}

impl KeySource {
    /// The key, reading the environment variable or file now. Surrounding
    /// whitespace (a trailing newline in a file) is trimmed; the key is
    /// text (e.g. base64), so a file that is not UTF-8 is unreadable.
    pub fn resolve(&self) -> Result<Secret, DsnError> {
        match self {
            KeySource::Env(var) => read_env(
                var,
                |var| DsnError::KeyEnvNotSet { var },
                |var| DsnError::KeyEnvEmpty { var },
            ),
            KeySource::File(path) => read_file(
                path,
                |path, reason| DsnError::KeyFileUnreadable { path, reason },
                |path| DsnError::KeyFileEmpty { path },
            ),
        }
    }
}

/// How a service's health is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    #[serde(serialize_with = "crate::duration::serialize")]
    pub interval: Duration,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub timeout: Duration,
    /// Consecutive failed checks before the service counts as down; >= 1.
    pub failures: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            failures: 3,
        }
    }
}

/// A region's PostgreSQL server as `drctl rejoin` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PgNode {
    /// Its data directory, on the host where `drctl rejoin` runs for this
    /// region (rejoin stops it, rewinds or re-clones it, starts it).
    pub data_dir: Option<PathBuf>,
    /// How a standby in another region connects to this server for
    /// replication (`primary_conninfo`); default: the connection string.
    pub replication_dsn: Option<Secret>,
}

/// Where a PostgreSQL connection string comes from. Env and file sources are
/// read only when needed ([`DsnSource::resolve`]), so validating a config
/// does not require the production secrets to be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DsnSource {
    /// Written in the config (shown redacted).
    Inline(Secret),
    /// The name of an environment variable holding the DSN.
    Env(String),
    /// A file holding the DSN (resolved against the config's directory).
    File(PathBuf),
}

/// Why a DSN ([`DsnSource::resolve`]), a backup encryption key
/// ([`KeySource::resolve`]) or a TSIG secret ([`TsigSecret::resolve_base64`])
/// could not be read. Names the variable or file,
/// never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("environment variable {var} is not set (export it with the connection string)")]
    EnvNotSet { var: String },
    /// For a DSN or a key alike.
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode { var: String },
    #[error("environment variable {var} is empty (set it to the connection string)")]
    EnvEmpty { var: String },
    #[error("cannot read DSN file {}: {reason}", path.display())]
    FileUnreadable { path: PathBuf, reason: String },
    #[error("DSN file {} is empty (write the connection string into it)", path.display())]
    FileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the backup encryption key)")]
    KeyEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the backup encryption key)")]
    KeyEnvEmpty { var: String },
    #[error("cannot read key file {}: {reason}", path.display())]
    KeyFileUnreadable { path: PathBuf, reason: String },
    #[error("key file {} is empty (write the backup encryption key into it)", path.display())]
    KeyFileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the webhook URL)")]
    WebhookEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the webhook URL)")]
    WebhookEnvEmpty { var: String },
    #[error("cannot read webhook URL file {}: {reason}", path.display())]
    WebhookFileUnreadable { path: PathBuf, reason: String },
    #[error("webhook URL file {} is empty (write the URL into it)", path.display())]
    WebhookFileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the API token)")]
    TokenEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the API token)")]
    TokenEnvEmpty { var: String },
    #[error("cannot read API token file {}: {reason}", path.display())]
    TokenFileUnreadable { path: PathBuf, reason: String },
    #[error("API token file {} is empty (write the token into it)", path.display())]
    TokenFileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the base64 TSIG secret)")]
    TsigEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the base64 TSIG secret)")]
    TsigEnvEmpty { var: String },
    #[error("cannot read TSIG secret file {}: {reason}", path.display())]
    TsigFileUnreadable { path: PathBuf, reason: String },
    #[error("TSIG secret file {} is empty (write the base64 secret into it)", path.display())]
    TsigFileEmpty { path: PathBuf },
    /// `origin` is "environment variable X", "file Y" or "the config".
    #[error("the TSIG secret in {origin} is not base64 (copy the secret of the server's key, e.g. from `keymgr -t NAME hmac-sha256`)")]
    TsigNotBase64 { origin: String },
}

impl DsnSource {
    /// The connection string, reading the environment variable or file now.
    /// Surrounding whitespace (a trailing newline in a file) is trimmed.
    pub fn resolve(&self) -> Result<Secret, DsnError> {
        match self {
            DsnSource::Inline(secret) => Ok(secret.clone()),
            DsnSource::Env(var) => read_env(
                var,
                |var| DsnError::EnvNotSet { var },
                |var| DsnError::EnvEmpty { var },
            ),
            DsnSource::File(path) => read_file(
                path,
                |path, reason| DsnError::FileUnreadable { path, reason },
                |path| DsnError::FileEmpty { path },
            ),
        }
    }
}

/// The trimmed value of environment variable `var`; the error constructors
/// say what it should have held.
fn read_env(
    var: &str,
    not_set: fn(String) -> DsnError,
    empty: fn(String) -> DsnError,
) -> Result<Secret, DsnError> {
    match std::env::var(var) {
        Ok(value) if value.trim().is_empty() => Err(empty(var.to_string())),
        Ok(value) => Ok(Secret::new(value.trim())),
        Err(std::env::VarError::NotPresent) => Err(not_set(var.to_string())),
        Err(std::env::VarError::NotUnicode(_)) => Err(DsnError::EnvNotUnicode {
            var: var.to_string(),
        }),
    }
}

/// The trimmed contents of the file at `path`; the error constructors say
/// what it should have held.
fn read_file(
    path: &Path,
    unreadable: fn(PathBuf, String) -> DsnError,
    empty: fn(PathBuf) -> DsnError,
) -> Result<Secret, DsnError> {
    match std::fs::read_to_string(path) {
        Ok(value) if value.trim().is_empty() => Err(empty(path.to_path_buf())),
        Ok(value) => Ok(Secret::new(value.trim())),
        // io::Error's text names the cause ("No such file or directory"),
        // never the content.
        Err(e) => Err(unreadable(
            path.to_path_buf(),
            crate::error::lower_first(&e.to_string()),
        )),
    }
}

/// How operations (failovers, switchovers, drills) are driven, and the
/// global brake on automatic failover: `[failover]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailoverSettings {
    /// How long an operation driver's lease in the state store lasts without
    /// renewal (renewed every step); 1s..=10m, default 15s. A driver that
    /// dies is replaced after at most this long.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub lease: Duration,
    /// At most this many automatic failovers, across all services, within
    /// [`FailoverSettings::automatic_window`] (default 3); 0 turns automatic
    /// failover off everywhere. A flapping network must not ping-pong a
    /// whole shop between regions.
    pub automatic_limit: u32,
    /// The sliding window of `automatic_limit` (default 24h).
    #[serde(serialize_with = "crate::duration::serialize")]
    pub automatic_window: Duration,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            lease: Duration::from_secs(15),
            automatic_limit: 3,
            automatic_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// When and how one service fails over: `[services.failover]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverPolicy {
    /// Whether drctl fails over by itself when the primary is lost (default:
    /// true for hot, false for warm and cold, as DESIGN.md's table says).
    pub automatic: bool,
    /// A command run to fence an unreachable primary (power it off, cut its
    /// security group): argv, no shell, never empty. `{service}`, `{region}`
    /// (the region being fenced) and `{operation}` (the operation id) are
    /// replaced in every argument.
    pub fence_hook: Option<Vec<String>>,
    /// How long the fence hook may run before it counts as failed (default 30s).
    #[serde(serialize_with = "crate::duration::serialize")]
    pub fence_hook_timeout: Duration,
    /// Failed health probes ([`HealthCheck::failures`] in a row) must also
    /// span at least this long before the primary counts as lost (default
    /// 3s), so a burst of fast failures is not a disaster.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub min_down: Duration,
    /// No second automatic failover of this service within this long after
    /// one (default 15m).
    #[serde(serialize_with = "crate::duration::serialize")]
    pub cooldown: Duration,
}

impl FailoverPolicy {
    /// What a service of `tier` gets when it writes nothing.
    pub fn for_tier(tier: Tier) -> Self {
        FailoverPolicy {
            automatic: tier == Tier::Hot,
            fence_hook: None,
            fence_hook_timeout: Duration::from_secs(30),
            min_down: Duration::from_secs(3),
            cooldown: Duration::from_secs(15 * 60),
        }
    }
}

/// Where service records are published and flipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsProviderConfig {
    /// `[a-z0-9-]+`, unique; what `[services.dns] provider` names.
    pub name: String,
    /// Flattened, like object stores: `{"name": …, "kind": "rfc2136", …}`.
    #[serde(flatten)]
    pub kind: DnsProviderKind,
}

impl DnsProviderConfig {
    /// The zone records must be inside, when the config says (always for
    /// RFC 2136; optional for Route 53, whose hosted zone id decides).
    pub fn zone(&self) -> Option<&str> {
        match &self.kind {
            DnsProviderKind::Route53 { zone, .. } => zone.as_deref(),
            DnsProviderKind::Rfc2136 { zone, .. } => Some(zone),
        }
    }
}

/// The kind of a DNS provider and how to reach it. Domain names here are
/// lower case and absolute (`shop.example.com.`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DnsProviderKind {
    /// Amazon Route 53 (or a compatible API: moto, LocalStack). Credentials
    /// come from the standard AWS chain, never from the config.
    Route53 {
        /// `Z…`, without any `/hostedzone/` prefix.
        hosted_zone_id: String,
        /// `http://…` or `https://…`; `None` for AWS itself.
        endpoint: Option<String>,
        /// The API's signing region; `None`: the AWS chain's, else us-east-1.
        region: Option<String>,
        /// The hosted zone's name, when written: records are then checked to
        /// be inside it at load time.
        zone: Option<String>,
    },
    /// RFC 2136 dynamic update to an authoritative server (BIND, Knot,
    /// PowerDNS, the lab's own).
    Rfc2136 {
        /// The primary authoritative server, which takes updates.
        server: SocketAddr,
        zone: String,
        /// How updates are signed; `None`: unsigned (the server must allow
        /// updates by address, which is only sane in a lab).
        tsig: Option<TsigKey>,
    },
}

/// A TSIG key (RFC 8945) signing dynamic updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TsigKey {
    /// The key's name as the server knows it, absolute (`drctl-lab.`).
    pub name: String,
    pub algorithm: TsigAlgorithm,
    /// Where the base64 secret comes from; read only when needed.
    pub secret: TsigSecret,
}

/// The HMAC a TSIG key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn all() -> [TsigAlgorithm; 3] {
        [
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ]
    }

    /// As BIND and Knot write it: `hmac-sha256`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a TSIG secret comes from: the base64 text of BIND's and Knot's key
/// files (`secret "…"`). Unlike [`KeySource`] it may be written inline (a
/// lab's throwaway key), and it is base64, checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TsigSecret {
    /// Written in the config; always shown as `***`.
    Inline(Secret),
    /// The name of an environment variable holding the base64 secret.
    Env(String),
    /// A file holding the base64 secret (resolved against the config's
    /// directory); surrounding whitespace is trimmed.
    File(PathBuf),
}

impl TsigSecret {
    /// The key bytes, reading the environment variable or file now and
    /// decoding the base64. Errors name the variable or file, never the value.
    pub fn resolve_base64(&self) -> Result<Vec<u8>, DsnError> {
        let (text, origin) = match self {
            TsigSecret::Inline(secret) => (secret.clone(), "the config".to_string()),
            TsigSecret::Env(var) => (
                read_env(
                    var,
                    |var| DsnError::TsigEnvNotSet { var },
                    |var| DsnError::TsigEnvEmpty { var },
                )?,
                format!("environment variable {var}"),
            ),
            TsigSecret::File(path) => (
                read_file(
                    path,
                    |path, reason| DsnError::TsigFileUnreadable { path, reason },
                    |path| DsnError::TsigFileEmpty { path },
                )?,
                format!("file {}", path.display()),
            ),
        };
        decode_base64(text.expose()).ok_or(DsnError::TsigNotBase64 { origin })
    }
}

/// Standard base64 (padding optional), as `tsig-keygen`, `keymgr` and
/// `dnssec-keygen` write it. `None` when it is not, or decodes to nothing.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text.trim()).ok().filter(|b| !b.is_empty())
}

/// How a service is published in DNS: `[services.dns]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDns {
    /// The name of one of [`Config::dns_providers`].
    pub provider: String,
    /// Absolute, lower case, inside the provider's zone when that is known.
    pub record: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// Whole seconds, 1s..=1d (default 30s): the longest a resolver keeps
    /// the old answer after a flip, so it bounds the measured RTO.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub ttl: Duration,
    /// What drills flip instead of `record` (default: the first label with
    /// `-drill`, `orders-drill.shop.example.com.`); never `record` itself.
    pub drill_record: String,
    /// The record's value per region: one for every region of the service.
    /// A → IPv4 address, AAAA → IPv6 address, CNAME → an absolute host name.
    pub targets: BTreeMap<String, String>,
}

impl ServiceDns {
    /// What the record holds while `region` is primary.
    pub fn target(&self, region: &str) -> Option<&str> {
        self.targets.get(region).map(String::as_str)
    }
}

/// The record types a service can be published as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
}

impl RecordType {
    pub fn all() -> [RecordType; 3] {
        [RecordType::A, RecordType::Aaaa, RecordType::Cname]
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = String;
    /// Case-insensitive, as DNS tools accept it (`a`, `Aaaa`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordType::all()
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not one of A, AAAA, CNAME"))
    }
}
