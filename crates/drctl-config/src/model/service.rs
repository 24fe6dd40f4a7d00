//! The validated `[[services]]`: tier, regions, targets, health, PostgreSQL
//! nodes and failover policy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::backup::BackupPolicy;
use super::dns::ServiceDns;
use super::sources::DsnSource;
use crate::secret::Secret;

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

/// A region's PostgreSQL server as `drctl rejoin` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PgNode {
    /// Its data directory, on the host where `drctl rejoin` runs for this
    /// region (rejoin stops it, rewinds or re-clones it, starts it).
    pub data_dir: Option<PathBuf>,
    /// How a standby in another region connects to this server for
    /// replication (`primary_conninfo`); default: the connection string.
    pub replication_dsn: Option<Secret>,
    /// The node agent beside the server (`https://HOST:PORT`), through
    /// which drctl acts on its host; `None`: drctl's own host.
    pub agent: Option<String>,
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
    /// How long the fence hook may run before it counts as failed .
    #[serde(serialize_with = "crate::duration::serialize")]
    pub fence_hook_timeout: Duration,
    /// Failed health probes ([`HealthCheck::failures`] in a row) must also
    /// span at least this long before the primary counts as lost, so a
    /// burst of fast failures is not a disaster.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub min_down: Duration,
    /// No second automatic failover of this service within this long after
    /// one.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub cooldown: Duration,
    /// Whether drctl makes an old primary a standby of the new one by
    /// itself (`rejoin`).
    pub rejoin: RejoinPolicy,
}

/// What happens to an old primary after a switchover or a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejoinPolicy {
    /// drctl rewinds (or re-clones) it as a standby of the new primary by
    /// itself: after a switchover at once, after a failover once its host
    /// answers again. Patroni and CloudNativePG do the same.
    Auto,
    /// It stays fenced until an operator runs `drctl rejoin`.
    Manual,
}
