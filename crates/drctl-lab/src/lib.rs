//! The two-region lab: real PostgreSQL clusters on loopback, or each region
//! in its own network namespace behind a router ([`netns`], as root), a link
//! proxy between the regions, a DNS zone with per-region fronts, and a small
//! shop workload.
//!
//! The DNS zone is served by the lab's own authoritative server
//! ([`dns_server::ZoneServer`]), which the production providers of
//! `drctl-dns` flip like any RFC 2136 server.
//!
//! `drctl lab up` and the integration tests use this same code, so every test
//! talks to real servers. The lab owns processes and directories; it knows
//! nothing of drctl's monitor or API (the binary runs those beside it).
//!
//! Layout under the lab directory:
//! ```text
//! lab.json                  what is running (pids, ports): `lab down` reads it
//! drctl.toml                the generated drctl config for this lab
//! lab-dns.key               the TSIG secret of the lab's DNS zone (0600)
//! <cluster>-<region>/       a PostgreSQL data directory (owned by `postgres`)
//! <cluster>-<region>.log    its server log
//! ```
//!
//! Unit of failover: a PostgreSQL cluster. Each replicated service of the lab
//! has its own primary/standby pair, so failing one over moves nothing else.

mod agents;
mod control;
pub mod corrupt;
pub mod dns_server;
pub mod etcd;
mod fault;
mod lab;
mod link;
pub mod netns;
mod placement;
mod record;
mod workload;

pub use agents::{LabAgentRecord, LAB_PKI_DIR};
pub use control::{send_control, ControlCommand};
pub use drctl_pg::os::{free_port, process_alive};
pub use drctl_pg::{find_pg_bin, PgCluster, Role};
pub use fault::{Fault, FaultProxy};
pub use lab::Lab;
pub use link::{LinkControl, LinkProxy, LinkState};
pub use netns::{NetnsTopology, Partition, Site, SiteRuntime};
pub use record::{
    front_ip, lab_config_toml, LabClusterRecord, LabFrontRecord, LabNetwork, LabRecord, LabService,
    LabSpec, DEFAULT_API_PORT, DEFAULT_BASE_PORT, DEFAULT_DNS_PORT, LAB_DNS_KEY_FILE,
    LAB_DNS_KEY_NAME, LAB_TOKENS_DIR, LAB_TOKEN_ROLES, LAB_ZONE, REGION_A, REGION_B,
};
pub use workload::{ShopWorkload, WorkloadControl, WorkloadTarget};

/// Errors of the lab. Each says what failed and, where a person can fix it, how.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Cluster(#[from] drctl_pg::ClusterError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, LabError>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}
