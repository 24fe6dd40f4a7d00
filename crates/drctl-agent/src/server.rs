//! The agent's router: the node actions over HTTP for a client that
//! presented a verified certificate, acting only on the agent's own data
//! directories and scratch root, one action at a time per directory.
//!
//! Status codes (the `code` in every error body is a
//! [`crate::wire::ErrorCode`]): 401 `unauthenticated` without a client
//! certificate; 400 `bad_request` for a body that is not the action's JSON;
//! 404 `not_found` for an unknown action; 413 `payload_too_large` over
//! 1 MiB; 403 `node_refused` for a directory the agent does not serve (or
//! a scratch directory outside its root); and a node action's own failure
//! as 409 `node_refused`, 404 `node_missing`, 500 `node_failed`, 502
//! `node_unreachable`. A handler that panics answers 500 `internal`.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use drctl_http::{LocalAddr, PeerIdentity};
use drctl_node::{NodeActions, NodeError, NodeRef};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{
    AgentHealth, ErrorBody, ErrorCode, ErrorDetail, NodeAction, NodeRequest, StopRequest,
};

/// The largest request body: every action's input is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What an agent serves.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// The data directories it acts on (`--data-dir`); a request for any
    /// other is refused.
    pub data_dirs: Vec<PathBuf>,
    /// Where its scratch copies go (`--scratch-root`).
    pub scratch_root: PathBuf,
    /// The host name it reports.
    pub host: String,
    /// It can restore backups (it was given drctl's config, so its node
    /// reads the recorded backups); without, a restore answers
    /// `node_missing`.
    pub restores: bool,
    /// Its own certificate, key and CA (`--cert`, `--key`, `--ca`): the
    /// scratch copies it makes present them to drctl, which reaches them
    /// over TCP with TLS ([`drctl_node::ScratchTls`]). `None`: scratch copies
    /// are reached over their Unix socket only (drctl on the same host).
    pub scratch_tls: Option<ScratchTlsFiles>,
}

/// The agent's TLS files its scratch copies use.
#[derive(Clone, Debug)]
pub struct ScratchTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

struct Agent {
    node: Arc<dyn NodeActions>,
    /// Normalised ([`normalise`]) as requests are.
    data_dirs: Vec<PathBuf>,
    scratch_root: PathBuf,
    shown: AgentHealth,
    restores: bool,
    scratch_tls: Option<ScratchTlsFiles>,
    /// One action at a time per directory (a data directory, or a scratch
    /// copy's directory).
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// Who asked, as the connection says: the name in its verified
/// certificate and the agent's address it reached.
struct Client {
    common_name: Option<String>,
    reached: Option<std::net::IpAddr>,
}

/// An answer that is not the action's output.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    /// The agent does not act there: nothing was done.
    fn not_served(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::FORBIDDEN, ErrorCode::NodeRefused, message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
}

impl From<NodeError> for Refusal {
    fn from(e: NodeError) -> Self {
        use drctl_node::NodeErrorKind::*;
        let status = match e.kind {
            Refused => StatusCode::CONFLICT,
            Missing => StatusCode::NOT_FOUND,
            Failed => StatusCode::INTERNAL_SERVER_ERROR,
            Unreachable => StatusCode::BAD_GATEWAY,
        };
        let body = ErrorBody::from(&e);
        Refusal::new(status, body.error.code, body.error.message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// The agent's router over `node` (the binary passes a `LocalNode`).
/// Serve it with drctl-http and [`crate::agent_acceptor`]: the router
/// reads the client's identity the mutual-TLS acceptor puts in each
/// request.
pub fn router(node: Arc<dyn NodeActions>, settings: AgentSettings) -> Router {
    let data_dirs = settings
        .data_dirs
        .iter()
        .map(|d| normalise(d).unwrap_or_else(|_| d.clone()))
        .collect();
    let scratch_root = normalise(&settings.scratch_root).unwrap_or(settings.scratch_root.clone());
    let agent = Arc::new(Agent {
        node,
        data_dirs,
        scratch_root,
        shown: AgentHealth {
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: settings.host,
            data_dirs: settings.data_dirs,
            scratch_root: settings.scratch_root,
        },
        restores: settings.restores,
        scratch_tls: settings.scratch_tls,
        locks: Default::default(),
    });
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/node/{action}", post(node_action))
        .fallback(|| async {
            Refusal::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such path: the agent serves POST /v1/node/{action} and GET /v1/health",
            )
        })
        .method_not_allowed_fallback(|| async {
            Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "wrong method: node actions are POST, /v1/health is GET",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(authenticate))
        // Outermost: a bug that panics in a handler is a logged JSON 500,
        // never a dropped connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(agent)
}

/// Only a client with a verified certificate gets past: without one
/// nothing is read or done.
async fn authenticate(request: Request, next: Next) -> Response {
    let identified = matches!(
        request.extensions().get::<Option<PeerIdentity>>(),
        Some(Some(_))
    );
    if !identified {
        tracing::warn!(path = %request.uri().path(), "agent request without a client certificate refused");
        return Refusal::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "a client certificate signed by the agent's CA is required (drctl's drctl.pem from `drctl agent certs`)",
        )
        .into_response();
    }
    next.run(request).await
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = %what, "an agent request handler panicked");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "the agent failed inside (its log says why); the action may be repeated",
    )
    .into_response()
}

async fn health(State(agent): State<Arc<Agent>>) -> Json<AgentHealth> {
    Json(agent.shown.clone())
}

async fn node_action(
    State(agent): State<Arc<Agent>>,
    Extension(peer): Extension<Option<PeerIdentity>>,
    local: Option<Extension<LocalAddr>>,
    UrlPath(action): UrlPath<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let client = Client {
        common_name: peer.as_ref().and_then(|p| p.common_name.clone()),
        reached: local.map(|Extension(LocalAddr(a))| a.ip()),
    };
    let peer = peer.map(|p| p.display_name()).unwrap_or_default();
    let Ok(action) = NodeAction::from_str(&action) else {
        return Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no node action {action:?}: the agent knows status, stop, start, rewind_or_reclone, configure_standby, restore_backup, clone_scratch, restore_scratch, teardown_scratch, hard_fence (is it older than drctl?)"),
        )
        .into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("the body is over the agent's limit of {MAX_BODY_BYTES} bytes"),
            )
            .into_response()
        }
        Err(e) => {
            return Refusal::bad_request(format!("cannot read the body: {e}")).into_response()
        }
    };
    let started = Instant::now();
    let mut node_name = String::new();
    let answer = agent.dispatch(action, &body, &client, &mut node_name).await;
    let ms = started.elapsed().as_millis() as u64;
    match answer {
        Ok(response) => {
            tracing::info!(%action, %peer, node = %node_name, result = "ok", ms, "node action");
            response
        }
        Err(refusal) => {
            tracing::warn!(
                %action, %peer, node = %node_name, result = ?refusal.code,
                error = %refusal.message, ms, "node action refused or failed"
            );
            refusal.into_response()
        }
    }
}

fn parse<T: DeserializeOwned>(action: NodeAction, body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::bad_request(format!(
            "the body is not the input of {action}: {e} (see drctl-node's {action} request type)"
        ))
    })
}

fn ok<T: Serialize>(output: Result<T, NodeError>) -> Result<Response, Refusal> {
    Ok(Json(output?).into_response())
}

impl Agent {
    async fn dispatch(
        &self,
        action: NodeAction,
        body: &[u8],
        client: &Client,
        node_name: &mut String,
    ) -> Result<Response, Refusal> {
        let node = &self.node;
        match action {
            NodeAction::Status => {
                let req: NodeRequest = parse(action, body)?;
                *node_name = req.node.name.clone();
                let n = self.served(&req.node)?;
                ok(node.status(&n).await)
            }
            NodeAction::Stop => {
                let req: StopRequest = parse(action, body)?;
                *node_name = req.node.name.clone();
                let n = self.served(&req.node)?;
                let _one = self.lock(&n.data_dir).await;
                ok(node.stop(&n, req.mode).await)
            }
            NodeAction::Start => {
                let mut req: drctl_node::StartRequest = parse(action, body)?;
                *node_name = req.node.name.clone();
                req.node = self.served(&req.node)?;
                let _one = self.lock(&req.node.data_dir).await;
                ok(node.start(&req).await)
            }
            NodeAction::RewindOrReclone => {
                let mut req: drctl_node::ResyncRequest = parse(action, body)?;
                *node_name = req.node.name.clone();
                req.node = self.served(&req.node)?;
                let _one = self.lock(&req.node.data_dir).await;
                ok(node.rewind_or_reclone(&req).await)
            }
            NodeAction::ConfigureStandby => {
                let mut req: drctl_node::StandbyRequest = parse(action, body)?;
                *node_name = req.node.name.clone();
                req.node = self.served(&req.node)?;
                let _one = self.lock(&req.node.data_dir).await;
                ok(node.configure_standby(&req).await)
            }
            NodeAction::RestoreBackup => {
                let mut req: drctl_node::RestoreRequest = parse(action, body)?;
                *node_name = req.node.name.clone();
                req.node = self.served(&req.node)?;
                self.can_restore()?;
                let _one = self.lock(&req.node.data_dir).await;
                ok(node.restore_backup(&req).await)
            }
            NodeAction::CloneScratch => {
                let mut req: drctl_node::CloneRequest = parse(action, body)?;
                req.dir = self.scratch_dir(&req.dir)?;
                req.tls = self.scratch_tls(client);
                *node_name = req.dir.display().to_string();
                let _one = self.lock(&req.dir).await;
                ok(node.clone_scratch(&req).await)
            }
            NodeAction::RestoreScratch => {
                let mut req: drctl_node::ScratchRestoreRequest = parse(action, body)?;
                req.dir = self.scratch_dir(&req.dir)?;
                req.tls = self.scratch_tls(client);
                self.can_restore()?;
                *node_name = req.dir.display().to_string();
                let _one = self.lock(&req.dir).await;
                ok(node.restore_scratch(&req).await)
            }
            NodeAction::TeardownScratch => {
                let mut req: drctl_node::TeardownRequest = parse(action, body)?;
                req.dir = self.scratch_teardown_dir(&req.dir)?;
                *node_name = req.dir.display().to_string();
                let _one = self.lock(&req.dir).await;
                ok(node.teardown_scratch(&req).await)
            }
            NodeAction::HardFence => {
                let mut req: drctl_node::HardFenceRequest = parse(action, body)?;
                *node_name = format!("{}@{}", req.service, req.region);
                // The agent never runs a command a request names: the
                // fence hook belongs to the orchestrator's host. Its own
                // hard fence is stopping its server.
                if req.hook.take().is_some() {
                    tracing::info!(service = %req.service, "a fence hook in an agent request is not run by the agent");
                }
                let Some(n) = req.node.take() else {
                    return ok(node.hard_fence(&req).await);
                };
                let n = self.served(&n)?;
                req.node = Some(n.clone());
                let _one = self.lock(&n.data_dir).await;
                ok(node.hard_fence(&req).await)
            }
        }
    }

    fn can_restore(&self) -> Result<(), Refusal> {
        if self.restores {
            return Ok(());
        }
        Err(Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NodeMissing,
            "this agent was started without --config: it cannot read backups (restart it with --config and drctl's config file)",
        ))
    }

    /// The node, its data directory normalised, when the agent serves it:
    /// one of its data directories, or a scratch copy under its root.
    fn served(&self, node: &NodeRef) -> Result<NodeRef, Refusal> {
        let dir = normalise(&node.data_dir).map_err(|why| {
            Refusal::not_served(format!(
                "node {:?}: data_dir {}: {why}",
                node.name,
                node.data_dir.display()
            ))
        })?;
        let in_scratch = dir.starts_with(&self.scratch_root) && dir != self.scratch_root;
        if !self.data_dirs.contains(&dir) && !in_scratch {
            return Err(Refusal::not_served(format!(
                "node {:?}: this agent does not serve {} (it serves {}, and scratch copies under {}; check the region's agent in the config, or the agent's --data-dir)",
                node.name,
                node.data_dir.display(),
                list(&self.data_dirs),
                self.scratch_root.display()
            )));
        }
        Ok(NodeRef {
            data_dir: dir,
            ..node.clone()
        })
    }

    /// How the scratch copy a client asks for is reached: on the address
    /// the client reached this agent at, by the certificate name it showed
    /// here. Without the agent's files, or a name, over its socket only.
    fn scratch_tls(&self, client: &Client) -> Option<drctl_node::ScratchTls> {
        let files = self.scratch_tls.as_ref()?;
        Some(drctl_node::ScratchTls {
            listen: client.reached?,
            client_cn: client.common_name.clone()?,
            cert: files.cert.clone(),
            key: files.key.clone(),
            ca: files.ca.clone(),
        })
    }

    /// Where a scratch copy asked for at `requested` goes: its last
    /// component under the agent's own scratch root.
    fn scratch_dir(&self, requested: &Path) -> Result<PathBuf, Refusal> {
        match requested.components().next_back() {
            Some(Component::Normal(name)) => Ok(self.scratch_root.join(name)),
            _ => Err(Refusal::not_served(format!(
                "scratch directory {:?}: its last component must be a plain name (not empty, '.' or '..'); the agent places it under {}",
                requested.display().to_string(),
                self.scratch_root.display()
            ))),
        }
    }

    /// A teardown acts only on a directory right under the scratch root
    /// (what a clone or restore of this agent answered).
    fn scratch_teardown_dir(&self, requested: &Path) -> Result<PathBuf, Refusal> {
        let outside = || {
            Refusal::not_served(format!(
                "scratch directory {}: not a scratch copy of this agent (those are right under {}); nothing was removed",
                requested.display(),
                self.scratch_root.display()
            ))
        };
        let dir = normalise(requested).map_err(|_| outside())?;
        if dir.parent() != Some(self.scratch_root.as_path()) {
            return Err(outside());
        }
        Ok(dir)
    }

    async fn lock(&self, dir: &Path) -> tokio::sync::OwnedMutexGuard<()> {
        // A scratch copy's actions share its directory's lock (its data
        // directory is below it).
        let key = match dir.strip_prefix(&self.scratch_root) {
            Ok(rest) => match rest.components().next() {
                Some(first) => self.scratch_root.join(first),
                None => dir.to_path_buf(),
            },
            Err(_) => dir.to_path_buf(),
        };
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Locks nobody holds or waits for go (every drill names a new
            // scratch directory): the map stays as small as the work.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(key).or_default().clone()
        };
        lock.lock_owned().await
    }
}

fn list(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no data directory".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An absolute path without `..`, its parent resolved through symlinks
/// when it exists (the directory itself may not exist yet: a restore
/// target).
pub fn normalise(path: &Path) -> Result<PathBuf, &'static str> {
    if !path.is_absolute() {
        return Err("not an absolute path");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("'..' is not allowed in a path");
    }
    let lexical: PathBuf = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    match (lexical.parent(), lexical.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(lexical.clone())),
        _ => Ok(lexical),
    }
}

#[cfg(test)]
mod tests;
