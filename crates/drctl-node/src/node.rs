//! The node-action seam: everything that touches a database host's
//! processes or files, behind [`NodeActions`]. Today drctl does it on its
//! own host ([`crate::LocalNode`]); the agent (`drctl agent`, issue 17)
//! will do it beside each database and the orchestrator will reach it over
//! HTTP, which is why every input and output here is a plain serde type.
//!
//! Not here: talking to the database server over its protocol (that is
//! [`crate::Datastore`]), and deciding what to do (the failover engine).

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::CloneSettings;

/// A connection string handed to a node (to copy or rewind from, to stream
/// from). It may hold a password: `Debug` never shows it, and only
/// [`Dsn::expose`] hands it to a client program.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dsn(String);

impl Dsn {
    pub fn new(raw: impl Into<String>) -> Self {
        Dsn(raw.into())
    }

    /// The raw value, password included: for a client program only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dsn(***)")
    }
}

impl From<&drctl_config::Secret> for Dsn {
    fn from(s: &drctl_config::Secret) -> Self {
        Dsn::new(s.expose())
    }
}

/// Which server on the host: its data directory. (An agent serves only the
/// directories it is configured for.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// A name for logs and errors (`cluster@region`).
    pub name: String,
    pub data_dir: PathBuf,
    /// The port it listens on; 0 when its own configuration says (pg_ctl
    /// reads it from there).
    pub port: u16,
}

impl NodeRef {
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>, port: u16) -> Self {
        NodeRef {
            name: name.into(),
            data_dir: data_dir.into(),
            port,
        }
    }

    /// The server of `service` in `region` as its configuration places it
    /// (`[services.postgres.REGION] data_dir`), named `cluster@region`,
    /// its port left to its own configuration. `None` without a data_dir.
    pub fn for_service(service: &drctl_config::Service, region: &str) -> Option<Self> {
        let dir = service.nodes.get(region)?.data_dir.clone()?;
        Some(NodeRef::new(
            format!("{}@{region}", service.cluster),
            dir,
            0,
        ))
    }
}

/// Why a node action failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeErrorKind {
    /// The action would harm what it does not own (a data directory it
    /// did not fill, another database at the path): nothing was done.
    Refused,
    /// The node has no such server or directory, or lacks the engine's
    /// programs.
    Missing,
    /// The action started and failed (a program's error, a full disk); its
    /// message says what is left. Repeating it is safe.
    Failed,
    /// The node (its agent) could not be reached: nothing is known to have
    /// been done, and repeating the action is safe.
    Unreachable,
}

/// A node action's failure: short, naming the thing, suggesting the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct NodeError {
    pub kind: NodeErrorKind,
    pub message: String,
}

impl NodeError {
    pub fn new(kind: NodeErrorKind, message: impl Into<String>) -> Self {
        NodeError {
            kind,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        NodeError::new(NodeErrorKind::Failed, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        NodeError::new(NodeErrorKind::Refused, message)
    }
}

impl From<drctl_pg::ClusterError> for NodeError {
    fn from(e: drctl_pg::ClusterError) -> Self {
        let kind = match e {
            drctl_pg::ClusterError::PgBinMissing(_)
            | drctl_pg::ClusterError::PgClientMissing(_) => NodeErrorKind::Missing,
            _ => NodeErrorKind::Failed,
        };
        NodeError::new(kind, e.to_string())
    }
}

/// What the node finds at a data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The host that answered (a rejoin is bound to the host it planned on).
    pub host: String,
    /// The server runs (its recorded postmaster is alive).
    pub running: bool,
    pub pid: Option<u32>,
    /// The directory holds a database (PostgreSQL: `PG_VERSION`).
    pub initialized: bool,
    /// The directory is missing or empty.
    pub empty: bool,
    /// The data set's identity read from the directory itself
    /// (PostgreSQL: the system identifier in `global/pg_control`); the
    /// same as [`crate::Datastore::dataset_id`] of any physical copy.
    pub dataset_id: Option<String>,
    /// The operation whose restore claims the directory
    /// ([`NodeActions::restore_backup`]), until a start releases it.
    pub restore_claim: Option<String>,
    /// The operation whose hard fence holds the server down
    /// ([`NodeActions::hard_fence`]): a start is refused until a rejoin
    /// or a recovery lifts it ([`StartRequest::unfence`]).
    #[serde(default)]
    pub fenced_by: Option<String>,
}

/// How to stop a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// A clean shutdown (PostgreSQL `-m fast`: sessions ended, a shutdown
    /// checkpoint).
    Fast,
    /// What a crash leaves (no checkpoint); falls back on SIGKILL.
    Immediate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub was_running: bool,
}

/// How a restored data directory becomes a production server (a cold-tier
/// recovery): the engine's own configuration, never the backup's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveredServer {
    /// The addresses it listens on (PostgreSQL `listen_addresses`): the
    /// connection's IP literal, else `*`.
    pub listen: String,
}

impl RecoveredServer {
    /// Listens where `dsn` points: its host when that is an IP literal,
    /// else on every address.
    pub fn from_dsn(dsn: &Dsn) -> Self {
        RecoveredServer {
            listen: drctl_pg::cluster::listen_address_of(dsn.expose()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    pub node: NodeRef,
    /// Wait until it accepts connections, up to this long (the start
    /// itself already waits up to a minute).
    pub wait_ready_ms: Option<u64>,
    /// Before a first start of a restored directory: configure it as a
    /// recovered production server.
    pub recovered: Option<RecoveredServer>,
    /// Lift a hard fence first. Only the operations that make the server
    /// safe to run again set it (a rejoin, once it is a standby of the
    /// current primary; a recovery); any other start of a fenced server is
    /// refused, so a restarted host or a stray `start` cannot bring an old
    /// primary back writable beside the new one.
    #[serde(default)]
    pub unfence: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub already_running: bool,
    pub took_ms: u64,
}

/// Rewind (or, when rewinding cannot work, re-clone) a stopped old primary
/// onto the history of the current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncRequest {
    pub node: NodeRef,
    /// The current primary, for the rewind (PostgreSQL: pg_rewind's
    /// `--source-server`).
    pub source: Dsn,
    /// The current primary as a copy reads it (PostgreSQL: the
    /// replication connection pg_basebackup uses), for a re-clone.
    pub clone_source: Dsn,
}

/// Which resync was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncMethod {
    /// Only the changes since the histories diverged were replaced.
    Rewind,
    /// The directory was replaced by a fresh copy (the old one moved
    /// aside, never deleted).
    Clone,
}

impl std::fmt::Display for ResyncMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResyncMethod::Rewind => "rewind",
            ResyncMethod::Clone => "clone",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resynced {
    pub method: ResyncMethod,
    /// Why the rewind could not do it, when a clone was made instead.
    pub rewind_error: Option<String>,
    pub took_ms: u64,
}

/// Make a (stopped, resynced) server a standby streaming from `primary`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyRequest {
    pub node: NodeRef,
    /// How it connects to its primary (PostgreSQL `primary_conninfo`).
    pub primary: Dsn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyConfigured {
    /// A leftover soft fence was removed with the old settings.
    pub fence_lifted: bool,
}

/// Restore a verified backup into a data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub node: NodeRef,
    pub backup_id: String,
    /// The operation restoring: it claims the directory, so its own rerun
    /// may wipe its partial work, and nothing else is ever wiped.
    pub operation_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub backup_id: String,
    /// Where the backup ends, in the engine's words (PostgreSQL: its stop
    /// LSN).
    pub stop_position: Option<String>,
    pub data_dir: PathBuf,
    pub took_ms: u64,
}

/// Make an isolated scratch copy of a server (a drill's clone): a standby
/// of nothing, reachable only by drctl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRequest {
    /// The operation's scratch directory (below a checked scratch root;
    /// short: a Unix socket path may not exceed 107 bytes). Whatever an
    /// earlier attempt left there is replaced.
    pub dir: PathBuf,
    /// The server to copy (a standby, for a drill).
    pub source: Dsn,
    /// From [`crate::Datastore::clone_settings`] of the source.
    pub settings: CloneSettings,
    /// The roles drctl will connect to the copy as.
    pub roles: Vec<String>,
    /// Set by the agent that serves the request, never read from one: the
    /// copy then listens on the agent's address with TLS and client
    /// certificates, for a drctl on another host.
    #[serde(skip)]
    pub tls: Option<drctl_pg::ScratchTls>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScratchClone {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub bytes: u64,
    pub took_ms: u64,
    /// Where drctl reaches the copy over TCP with TLS (a copy an agent
    /// made); `None`: over its private Unix socket, on drctl's own host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<std::net::SocketAddr>,
}

impl ScratchClone {
    /// The clone as a node, to start or stop.
    pub fn node(&self) -> NodeRef {
        NodeRef::new("drill clone", self.data_dir.clone(), self.port)
    }

    /// How drctl connects to the copy as `role`: over its private socket
    /// (a copy on drctl's host has no TCP listener), or, for a copy an
    /// agent made, over TCP with TLS both ways: the copy's certificate
    /// checked against the agents' CA and drctl's client certificate
    /// (`tls`, the config's `[agents]`) as the only credential.
    pub fn dsn(
        &self,
        role: &str,
        database: &str,
        tls: Option<&drctl_config::AgentsTls>,
    ) -> Result<Dsn, NodeError> {
        let Some(at) = self.tcp else {
            return Ok(Dsn::new(
                drctl_pg::PgCluster::new(
                    "scratch",
                    self.data_dir.clone(),
                    self.port,
                    PathBuf::new(),
                )
                .scratch_dsn(role, database),
            ));
        };
        let tls = tls.ok_or_else(|| {
            NodeError::new(
                NodeErrorKind::Refused,
                format!(
                    "the scratch copy is on an agent's host ({at}) and is reached with drctl's \
                     agent client certificate, but the config has no [agents] table"
                ),
            )
        })?;
        let mut url = url::Url::parse(&format!("postgres://{at}/"))
            .map_err(|e| NodeError::failed(format!("the scratch copy's address {at}: {e}")))?;
        let _ = url.set_username(role);
        url.set_path(database);
        url.query_pairs_mut()
            .append_pair("sslmode", "verify-full")
            .append_pair("sslrootcert", &tls.ca.display().to_string())
            .append_pair("sslcert", &tls.cert.display().to_string())
            .append_pair("sslkey", &tls.key.display().to_string());
        Ok(Dsn::new(url.to_string()))
    }
}

/// Restore a verified backup into an isolated scratch copy (a restore
/// test): drctl's own configuration only, reachable only by drctl over a
/// private socket, opening read-write at the backup's consistent point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScratchRestoreRequest {
    /// As [`CloneRequest::dir`]: whatever an earlier attempt left is replaced.
    pub dir: PathBuf,
    pub backup_id: String,
    /// As [`CloneRequest::tls`].
    #[serde(skip)]
    pub tls: Option<drctl_pg::ScratchTls>,
}

/// Tear a scratch copy down: stop it, remove its directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeardownRequest {
    pub dir: PathBuf,
    /// 0 when unknown (a clone that died before saying).
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornDown {
    /// Something was there to remove (false: already gone).
    pub removed: bool,
}

/// Cut a server off so it cannot take writes, whatever its own state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardFenceRequest {
    pub service: String,
    pub region: String,
    pub operation_id: String,
    /// The server, when its data directory is on the node: it is stopped
    /// at once (immediate, then SIGKILL).
    pub node: Option<NodeRef>,
    /// The operator's fence hook (`[services.failover] fence_hook`, no
    /// shell; `{service}`, `{region}`, `{operation}` replaced), run when
    /// there is no local server to stop.
    pub hook: Option<Vec<String>>,
    pub hook_timeout_ms: u64,
    /// How the server is stopped: `fast` for a planned switchover (its
    /// standbys receive everything first), `immediate` for a failover.
    #[serde(default = "immediate")]
    pub mode: StopMode,
}

fn immediate() -> StopMode {
    StopMode::Immediate
}

impl HardFenceRequest {
    /// The hard fence of `service`'s server in `region` as its policy
    /// says (`[services.failover] fence_hook` and `fence_hook_timeout`),
    /// stopping it directly when its data directory is configured
    /// ([`NodeRef::for_service`]) and on this node.
    pub fn for_service(
        service: &drctl_config::Service,
        region: &str,
        operation_id: &str,
        stop_local_server: bool,
    ) -> Self {
        HardFenceRequest {
            service: service.name.clone(),
            region: region.to_string(),
            operation_id: operation_id.to_string(),
            node: NodeRef::for_service(service, region).filter(|_| stop_local_server),
            hook: service.failover.fence_hook.clone(),
            hook_timeout_ms: service.failover.fence_hook_timeout.as_millis() as u64,
            mode: StopMode::Immediate,
        }
    }

    /// The same fence, stopping the server with `mode`.
    pub fn with_mode(mut self, mode: StopMode) -> Self {
        self.mode = mode;
        self
    }
}

/// How a hard fence was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HardFenceMethod {
    /// The local server was stopped (or was not running).
    Stopped,
    /// The fence hook ran and succeeded.
    Hook,
    /// Nothing could be done: no local server and no hook.
    None,
}

/// What the fence hook did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    /// The last 2 KiB of its stdout and stderr.
    pub output: String,
    pub took_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardFenced {
    pub method: HardFenceMethod,
    pub was_running: Option<bool>,
    pub hook: Option<HookRun>,
    /// The host that stopped the server (the evidence of where the fence
    /// was applied); absent for a hook or in journals before the agent.
    #[serde(default)]
    pub host: Option<String>,
}

/// Everything drctl does to a database host's processes and files.
///
/// **Every action is idempotent and safe to repeat after a crash**: it
/// looks at what is there before acting, does nothing twice, and reports
/// what it found (`was_running`, `already_running`, `removed`). A step
/// that started and never journaled its end simply runs the action
/// again. Where an action must replace files, it replaces only what it
/// owns: a restore wipes only a directory its own operation claimed, a
/// re-clone moves the old directory aside, a scratch teardown removes
/// only the scratch directory.
///
/// Object-safe, so the engine holds an `Arc<dyn NodeActions>`; inputs and
/// outputs are serde types, so a remote agent carries them over HTTP.
#[async_trait]
pub trait NodeActions: Send + Sync {
    /// What is at the node's data directory, and whether it runs.
    async fn status(&self, node: &NodeRef) -> Result<NodeStatus, NodeError>;

    /// Stops the server; stopped already is success.
    async fn stop(&self, node: &NodeRef, mode: StopMode) -> Result<Stopped, NodeError>;

    /// Starts the server (running already is success), preparing a
    /// restored directory first when asked; releases any restore claim
    /// on the directory (the server owns it now).
    async fn start(&self, req: &StartRequest) -> Result<Started, NodeError>;

    /// Rewinds the stopped server onto the current primary's history,
    /// re-cloning only when the engine reports a divergence a rewind cannot
    /// mend (or a clone that stopped half-way); says which was done. The
    /// server's own configuration files survive either.
    async fn rewind_or_reclone(&self, req: &ResyncRequest) -> Result<Resynced, NodeError>;

    /// Configures the stopped server as a standby of a primary, without
    /// a leftover soft fence (a later promotion must not inherit it).
    async fn configure_standby(&self, req: &StandbyRequest)
        -> Result<StandbyConfigured, NodeError>;

    /// Restores a verified backup into the node's (missing or empty) data
    /// directory. A rerun by the same operation wipes its own partial
    /// restore and starts over; a directory anyone else filled is refused.
    async fn restore_backup(&self, req: &RestoreRequest) -> Result<Restored, NodeError>;

    /// Makes an isolated scratch copy of a server (a drill's clone; stopped:
    /// [`NodeActions::start`] it).
    async fn clone_scratch(&self, req: &CloneRequest) -> Result<ScratchClone, NodeError>;

    /// Restores a verified backup into an isolated scratch copy (a restore
    /// test; stopped: [`NodeActions::start`] it, connect as `postgres`).
    async fn restore_scratch(&self, req: &ScratchRestoreRequest)
        -> Result<ScratchClone, NodeError>;

    /// Stops a scratch copy and removes its directory; gone already is
    /// success.
    async fn teardown_scratch(&self, req: &TeardownRequest) -> Result<TornDown, NodeError>;

    /// The hard fence: the server cannot take writes afterwards, however
    /// it was configured. Locally that is what drctl has today: stopping a
    /// server whose data directory is on this host, else the operator's
    /// fence hook. The hard fence proper (the agent beside the database
    /// stops it and cuts its network, and a primary that loses its lease
    /// fences itself) comes with the agent.
    async fn hard_fence(&self, req: &HardFenceRequest) -> Result<HardFenced, NodeError>;

    /// Where the actions run: `None` on drctl's own host, else the agent's
    /// address (plans and evidence name it; a rejoin planned through an
    /// agent is bound to that agent, not to drctl's host).
    fn agent(&self) -> Option<&str> {
        None
    }
}
