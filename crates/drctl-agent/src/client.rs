//! [`RemoteNode`]: the node actions of a database host, done by its agent
//! over HTTPS with drctl's client certificate. The engine holds it as an
//! `Arc<dyn NodeActions>` beside [`drctl_node::LocalNode`] and cannot tell
//! them apart, except by [`NodeActions::agent`].
//!
//! Failures keep their meaning across the wire: the agent's error JSON
//! becomes the same [`NodeError`] kind and message; anything that stops
//! the request from being answered (refused connection, timeout, a TLS
//! handshake either side refused) is [`NodeErrorKind::Unreachable`]:
//! nothing is known to have been done, and every action is safe to repeat.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drctl_node::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::wire::{AgentHealth, ErrorBody, ErrorCode, NodeAction, NodeRequest, StopRequest};
use crate::AgentError;

/// The files of drctl's side of the mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signed the agents' certificates (`ca.pem`).
    pub ca: PathBuf,
    /// drctl's client certificate (`drctl.pem`).
    pub cert: PathBuf,
    /// Its key (`drctl.key`).
    pub key: PathBuf,
}

/// How long a TCP connection (and its TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Status, stop, start, standby configuration: bounded, they are quick.
const QUICK: Duration = Duration::from_secs(120);
/// A rewind, a clone or a restore copies a database: hours.
const COPY: Duration = Duration::from_secs(24 * 3600);

/// A database host's node actions through its agent.
#[derive(Clone)]
pub struct RemoteNode {
    url: String,
    client: reqwest::Client,
    /// The same TLS settings, for [`RemoteNode::probe_refusal`].
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteNode")
            .field("url", &self.url)
            .finish()
    }
}

impl RemoteNode {
    /// The agent at `url` (`https://HOST:PORT`), trusted by the CA in
    /// `tls`, which drctl proves itself to with its client certificate.
    /// Reads the files now; connects on the first action.
    pub fn new(url: &str, tls: &ClientTls) -> Result<RemoteNode, AgentError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| AgentError::Url {
            url: url.to_string(),
            reason: format!("{e} (expected https://HOST:PORT)"),
        })?;
        if parsed.scheme() != "https" || parsed.host_str().is_none() {
            return Err(AgentError::Url {
                url: url.to_string(),
                reason: "an agent is reached over https only: https://HOST:PORT".into(),
            });
        }
        let config = client_config(tls)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| AgentError::ClientTls {
                reason: e.to_string(),
            })?;
        Ok(RemoteNode {
            url: url.trim_end_matches('/').to_string(),
            client,
            tls: Arc::new(config),
        })
    }

    /// The agent's `GET /v1/health`: its version, host and what it serves.
    pub async fn probe_health(&self) -> Result<AgentHealth, NodeError> {
        let request = self
            .client
            .get(format!("{}/v1/health", self.url))
            .timeout(QUICK);
        self.answer("health", request).await
    }

    async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        action: NodeAction,
        input: &I,
        timeout: Duration,
    ) -> Result<O, NodeError> {
        let request = self
            .client
            .post(format!("{}{}", self.url, action.path()))
            .json(input)
            .timeout(timeout);
        self.answer(action.into(), request).await
    }

    async fn answer<O: DeserializeOwned>(
        &self,
        action: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<O, NodeError> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Err(self.transport_error(action, &e).await),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Err(self.transport_error(action, &e).await),
        };
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                NodeError::failed(format!(
                    "the agent at {} answered {action} with something that is not its output ({e}): is the agent the same version as drctl?",
                    self.url
                ))
            });
        }
        let Ok(error) = serde_json::from_slice::<ErrorBody>(&body) else {
            return Err(NodeError::failed(format!(
                "the agent at {} answered {action} with HTTP {status} and no error JSON: is it a drctl agent?",
                self.url
            )));
        };
        let e = error.error;
        Err(match e.code.node_kind() {
            // The node action's own failure: the same kind and message as
            // on the agent's host.
            Some(kind) => NodeError::new(kind, e.message),
            None => {
                let kind = match e.code {
                    ErrorCode::NotFound => NodeErrorKind::Missing,
                    ErrorCode::Unauthenticated => NodeErrorKind::Refused,
                    _ => NodeErrorKind::Failed,
                };
                NodeError::new(
                    kind,
                    format!("the agent at {} refused {action}: {}", self.url, e.message),
                )
            }
        })
    }

    async fn transport_error(&self, action: &str, e: &reqwest::Error) -> NodeError {
        let url = &self.url;
        let mut alert = tls_error(e).and_then(|t| match t {
            rustls::Error::AlertReceived(a) => Some(*a),
            _ => None,
        });
        if alert.is_none() && tls_error(e).is_none() && !e.is_connect() && !e.is_timeout() {
            // Under TLS 1.3 the agent judges drctl's certificate after the
            // client has finished its handshake; its alert may then close
            // the connection before the request is sent, and the client
            // only learns that the connection went away. A second
            // handshake, reading what the agent says, tells which it was.
            alert = self.probe_refusal().await;
        }
        let message = if let Some(alert) = alert {
            format!(
                "the agent at {url} refused drctl's certificate (TLS alert {alert:?}): drctl's client certificate must be issued by the agent's CA for client authentication (`drctl agent certs`)"
            )
        } else if let Some(rustls::Error::InvalidCertificate(why)) = tls_error(e) {
            format!(
                "drctl does not trust the agent at {url}: its certificate is {why:?} (it must be issued by drctl's agent CA for this host name or address)"
            )
        } else if e.is_timeout() {
            format!(
                "the agent at {url} did not answer {action} in time: is its host up and reachable?"
            )
        } else {
            format!("cannot reach the agent at {url} for {action}: {}", chain(e))
        };
        NodeError::new(NodeErrorKind::Unreachable, message)
    }

    /// A TLS handshake with the agent, then a read: the alert the agent
    /// sends when it refuses drctl's certificate, if it does. `None` when
    /// it cannot tell (no answer, or the agent waits for a request, as it
    /// does for a certificate it accepted).
    async fn probe_refusal(&self) -> Option<rustls::AlertDescription> {
        use tokio::io::AsyncReadExt;
        let url = reqwest::Url::parse(&self.url).ok()?;
        let host = url
            .host_str()?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = url.port_or_known_default()?;
        let name = rustls::pki_types::ServerName::try_from(host.clone()).ok()?;
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .ok()?
        .ok()?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let alert = |e: &std::io::Error| match tls_error(e) {
            Some(rustls::Error::AlertReceived(a)) => Some(*a),
            _ => None,
        };
        let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
            .await
            .ok()?
        {
            Ok(stream) => stream,
            Err(e) => return alert(&e),
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(CONNECT_TIMEOUT, stream.read(&mut byte)).await {
            Ok(Err(e)) => alert(&e),
            _ => None,
        }
    }
}

/// The rustls error somewhere in `e`'s chain. An `io::Error` hides the
/// error it wraps from `source()` (and the connector nests one in
/// another), so the walk goes into it instead.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(err) = next {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// rustls with the ring provider, named (aws-lc-rs is in the tree too, and
/// with two providers rustls picks neither): only the CA's agents are
/// trusted, and drctl shows its client certificate.
fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, AgentError> {
    let bad = |reason: String| AgentError::ClientTls { reason };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))
    };
    let certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, AgentError> {
        let pem = read(path)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(bad(format!("{} holds no PEM certificate", path.display())));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&tls.ca)? {
        roots
            .add(c)
            .map_err(|e| bad(format!("the CA {}: {e}", tls.ca.display())))?;
    }
    let chain = certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key)?).map_err(|_| {
        bad(format!(
            "{} holds no usable PEM private key",
            tls.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            bad(format!(
                "{} does not go with {}: {e}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn quick_plus(ms: Option<u64>) -> Duration {
    QUICK + Duration::from_millis(ms.unwrap_or(0))
}

#[async_trait]
impl NodeActions for RemoteNode {
    async fn status(&self, node: &NodeRef) -> Result<NodeStatus, NodeError> {
        let req = NodeRequest { node: node.clone() };
        self.call(NodeAction::Status, &req, QUICK).await
    }

    async fn stop(&self, node: &NodeRef, mode: StopMode) -> Result<Stopped, NodeError> {
        let req = StopRequest {
            node: node.clone(),
            mode,
        };
        self.call(NodeAction::Stop, &req, QUICK).await
    }

    async fn start(&self, req: &StartRequest) -> Result<Started, NodeError> {
        self.call(NodeAction::Start, req, quick_plus(req.wait_ready_ms))
            .await
    }

    async fn rewind_or_reclone(&self, req: &ResyncRequest) -> Result<Resynced, NodeError> {
        self.call(NodeAction::RewindOrReclone, req, COPY).await
    }

    async fn configure_standby(
        &self,
        req: &StandbyRequest,
    ) -> Result<StandbyConfigured, NodeError> {
        self.call(NodeAction::ConfigureStandby, req, QUICK).await
    }

    async fn restore_backup(&self, req: &RestoreRequest) -> Result<Restored, NodeError> {
        self.call(NodeAction::RestoreBackup, req, COPY).await
    }

    async fn clone_scratch(&self, req: &CloneRequest) -> Result<ScratchClone, NodeError> {
        self.call(NodeAction::CloneScratch, req, COPY).await
    }

    async fn restore_scratch(
        &self,
        req: &ScratchRestoreRequest,
    ) -> Result<ScratchClone, NodeError> {
        self.call(NodeAction::RestoreScratch, req, COPY).await
    }

    async fn teardown_scratch(&self, req: &TeardownRequest) -> Result<TornDown, NodeError> {
        // Removing a large copy takes a while; far less than making it.
        self.call(NodeAction::TeardownScratch, req, QUICK * 10)
            .await
    }

    async fn hard_fence(&self, req: &HardFenceRequest) -> Result<HardFenced, NodeError> {
        self.call(
            NodeAction::HardFence,
            req,
            quick_plus(Some(req.hook_timeout_ms)),
        )
        .await
    }

    fn agent(&self) -> Option<&str> {
        Some(&self.url)
    }
}
