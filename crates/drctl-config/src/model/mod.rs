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
//!
//! One module per group of sections. Defaults are not repeated here: the
//! keys, their defaults and the checks that produce these types live in
//! `crate::section`, and `docs/config.md` (generated from them) lists every
//! default.

mod alerts;
mod api;
mod backup;
mod dns;
mod service;
mod settings;
mod sources;

pub use self::alerts::*;
pub use self::api::*;
pub use self::backup::*;
pub use self::dns::*;
pub use self::service::*;
pub use self::settings::*;
pub use self::sources::*;

use std::path::PathBuf;

use serde::Serialize;

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
    /// Mutual TLS with the node agents (`[agents]`); set whenever a node
    /// names an agent.
    pub agents: Option<AgentsTls>,
    /// Primary leases through etcd (`[coordination]`); `None`: the
    /// single-site default, which cannot tell a lost region from a
    /// cut-off one, so no primary fences itself.
    pub coordination: Option<CoordinationConfig>,
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
