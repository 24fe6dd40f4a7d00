//! The node agent (`drctl agent serve`): one process beside each database
//! server that owns that server's process and data directory, and serves
//! the node actions of [`drctl_node::NodeActions`] to the orchestrator over
//! HTTPS with mutual TLS; and [`RemoteNode`], the orchestrator's client of
//! it, which implements the same trait, so the engine holds an
//! `Arc<dyn NodeActions>` per region ([`drctl_node::Nodes`]) without
//! knowing which is remote.
//!
//! **Wire protocol** ([`wire`]): `POST /v1/node/{action}` for every action
//! (`status`, `stop`, `start`, `rewind_or_reclone`, `configure_standby`,
//! `restore_backup`, `clone_scratch`, `restore_scratch`,
//! `teardown_scratch`, `hard_fence`), the body the action's serde input
//! (`status` and `stop` take [`wire::NodeRequest`] and
//! [`wire::StopRequest`]), the answer its serde output; `GET /v1/health`
//! says the agent's version, host and what it serves. Every error is JSON
//! `{"error":{"code","message"}}` ([`wire::ErrorCode`] lists the codes and
//! their statuses); a node action's own failure keeps its
//! [`drctl_node::NodeErrorKind`] and message across the wire.
//!
//! **Authentication** (mutual TLS, [`certs`]): one CA; each agent has a
//! server certificate (its host names and addresses) and the orchestrator a
//! client certificate (CN `drctl`, clientAuth). A request without a client
//! certificate gets a JSON 401 and changes nothing; a certificate of
//! another CA, or one not made for client authentication (another agent's
//! server certificate), ends the TLS handshake. (webpki demands clientAuth
//! of a certificate that lists its extended key usages; [`issue_pki`]
//! lists them on every certificate.) No secret crosses the network.
//!
//! **What an agent acts on** ([`server`]): only its configured data
//! directories (403 for any other), and scratch copies only under its own
//! scratch root (a requested scratch directory keeps only its last
//! component; the answer names the real paths). One action at a time per
//! directory, so a retry racing its original never runs two actions on
//! the same directory. It never runs a command named by a request: a hard
//! fence stops its own server; a fence hook is the orchestrator's.
//!
//! [`nodes_for`] builds the orchestrator's map of node actions from its
//! config (drctl's own host, or the agent a region names).
//!
//! Dependencies: drctl-config (only to read `[agents]` and the agents'
//! addresses), drctl-node (the seam and its types) and drctl-http (the
//! server); never the engine or the store, which the binary wires in (the
//! backing node's backups, for a restore).

pub mod certs;
mod client;
pub mod lease;
mod nodes;
pub mod server;
pub mod watchdog;
pub mod wire;

pub use certs::{issue_pki, AgentFiles, AgentName, Pki};
pub use client::{ClientTls, RemoteNode};
pub use nodes::nodes_for;
pub use server::{router, AgentSettings, ScratchTlsFiles};
pub use wire::AgentHealth;

/// What the agent's TLS errors name: its command-line flags.
pub const AGENT_TLS: drctl_http::TlsNames = drctl_http::TlsNames {
    owner: "the agent's",
    cert: "--cert",
    key: "--key",
    both: "--cert and --key",
    client_ca: "--ca",
};

/// The agent's server TLS: its certificate and key, clients verified
/// against the CA at `ca`.
pub fn agent_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) -> Result<drctl_http::TlsAcceptor, AgentError> {
    Ok(drctl_http::mtls_acceptor(cert, key, ca, &AGENT_TLS)?)
}

/// Why the agent's PKI, server or client cannot be set up. (A node
/// action's failure is a [`drctl_node::NodeError`], not this.)
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent PKI in {dir}: {reason}")]
    Pki { dir: String, reason: String },
    #[error("--agent {spec:?}: {reason}")]
    BadAgentSpec { spec: String, reason: String },
    #[error(transparent)]
    Tls(#[from] drctl_http::TlsError),
    #[error("drctl's client certificate for agents: {reason} (check the ca, cert and key files; `drctl agent certs` issues them)")]
    ClientTls { reason: String },
    #[error("the agent URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("the agent's {what} {path:?}: {reason}")]
    Setting {
        what: &'static str,
        path: String,
        reason: String,
    },
}
