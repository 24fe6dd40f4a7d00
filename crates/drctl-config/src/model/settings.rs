//! The validated types of the small top-level sections: `[store]`, `[monitor]`,
//! `[[regions]]`, `[scratch]`, `[audit]` and `[failover]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::sources::{DsnError, KeySource};
use crate::secret::Secret;

/// Mutual TLS with the node agents (`[agents]`): the CA that signed them
/// and drctl's client certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentsTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Primary leases through etcd (`[coordination]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoordinationConfig {
    /// The members' client URLs.
    pub etcd: Vec<String>,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub lease_ttl: Duration,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub request_timeout: Duration,
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

/// Where drctl keeps its state (samples, operations, journals).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    /// `sqlite://…` (a relative path already resolved against the config
    /// file's directory) or `postgres://…`.
    pub url: Secret,
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

/// How operations (failovers, switchovers, drills) are driven, and the
/// global brake on automatic failover: `[failover]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailoverSettings {
    /// How long an operation driver's lease in the state store lasts without
    /// renewal (renewed every step); 1s..=10m. A driver that
    /// dies is replaced after at most this long.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub lease: Duration,
    /// At most this many automatic failovers, across all services, within
    /// [`FailoverSettings::automatic_window`]; 0 turns automatic
    /// failover off everywhere. A flapping network must not ping-pong a
    /// whole shop between regions.
    pub automatic_limit: u32,
    /// The sliding window of `automatic_limit`.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub automatic_window: Duration,
}
