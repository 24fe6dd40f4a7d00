//! The HTTP server under the API: the accept loop, its limits and optional
//! TLS. It owns how connections are taken and kept (how many at once, how
//! long a client may take to send its headers or sit idle, how long a TLS
//! handshake may take, graceful shutdown); what a request gets is the
//! router's business, not this module's.
//!
//! `axum::serve` has none of these limits: a client that sends its headers
//! a byte at a time (slowloris) held a connection and a task forever, and
//! enough of them exhausted file descriptors. Here hyper's own
//! `header_read_timeout` closes such a connection (it also bounds the idle
//! time between keep-alive requests), a semaphore caps the connections
//! served at once (the rest wait in the kernel's backlog), and TLS
//! (`[api] tls_cert`/`tls_key`) is rustls with the ring provider.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use drctl_config::ApiTls;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How the server treats connections. [`Limits::default`] is what the
/// daemon uses; tests may shorten the timeouts.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog until one
    /// closes (well under the usual 1024-descriptor limit of a process, so
    /// the store and the probes keep theirs).
    pub max_connections: usize,
    /// From the moment the server waits for a request (a new connection, or
    /// an idle keep-alive one) until its whole header has arrived.
    pub header_read_timeout: Duration,
    /// A TLS handshake that takes longer is dropped.
    pub tls_handshake_timeout: Duration,
    /// The largest request head (line and headers) read into memory.
    pub max_header_bytes: usize,
    /// How long shutdown waits for requests in flight before dropping them.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why the API's certificate or key cannot be used. Paths only: the key's
/// content is never shown.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the API's TLS {what} {path}: {source} (check [api] {key})")]
    Read {
        what: &'static str,
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (check [api] tls_cert: a \"-----BEGIN CERTIFICATE-----\" block is expected)")]
    NoCertificate { path: String },
    #[error("{path} holds no usable PEM private key (check [api] tls_key: PKCS#8, PKCS#1 or SEC1, unencrypted)")]
    NoKey { path: String },
    #[error("the API's certificate {cert} does not go with its key {key}: {reason} (check [api] tls_cert and tls_key)")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

/// Reads the certificate chain and key of `[api]` into a TLS acceptor
/// (TLS 1.2 and 1.3, ring's algorithms, HTTP/1.1 over ALPN).
pub fn tls_acceptor(tls: &ApiTls) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path, what, key| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            key,
            path: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read(&tls.cert, "certificate", "tls_cert")?;
    let key_pem = read(&tls.key, "key", "tls_key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: tls.cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: tls.key.display().to_string(),
    })?;
    // The provider is named, not left to rustls' crate features: the AWS SDK
    // brings aws-lc-rs into the tree too, and with two providers compiled
    // in, rustls will not pick one by itself.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        cert: tls.cert.display().to_string(),
        key: tls.key.display().to_string(),
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` (over TLS when `tls` is given) within
/// `limits`, until `shutdown` resolves; then waits up to the shutdown grace
/// for requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the cap, new connections wait in the
        // backlog instead of being accepted and left unserved.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it
                    // was taken: neither ends the server.
                    tracing::warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The client's address is what the audit log records as "from where".
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            },
        ));
        let http = http.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "API TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                // Timeouts and clients that went away: routine, not alarming.
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API requests still in flight at shutdown were dropped");
    }
    Ok(())
}
