//! The accept loop and its limits: how many connections at once, how long
//! a client may take to send its headers or sit idle, how long a TLS
//! handshake may take, graceful shutdown.
//!
//! `axum::serve` has none of these limits: a client that sends its headers
//! a byte at a time (slowloris) held a connection and a task forever, and
//! enough of them exhausted file descriptors. Here hyper's own
//! `header_read_timeout` closes such a connection (it also bounds the idle
//! time between keep-alive requests), and a semaphore caps the connections
//! served at once (the rest wait in the kernel's backlog).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::PeerIdentity;

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

/// Serves `router` on `listener` (over TLS when `tls` is given) within
/// `limits`, until `shutdown` resolves; then waits up to the shutdown grace
/// for requests in flight.
///
/// Each request carries in its extensions the client's address
/// (`ConnectInfo<SocketAddr>`), the address it reached ([`LocalAddr`]) and,
/// with mutual TLS, the client's verified identity (`Option<PeerIdentity>`).
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
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let local = LocalAddr(stream.local_addr().unwrap_or(peer));
        let http = http.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let router = router.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // The client's address is what the audit log records as "from
            // where"; its verified certificate (mutual TLS) says who.
            let service = |peer_identity: Option<PeerIdentity>| {
                TowerToHyperService::new(router.map_request(
                    move |mut request: hyper::Request<Incoming>| {
                        request
                            .extensions_mut()
                            .insert(ConnectInfo::<SocketAddr>(peer));
                        request.extensions_mut().insert(local);
                        request.extensions_mut().insert(peer_identity.clone());
                        request
                    },
                ))
            };
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service(None)))
                        .await
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let identity = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| PeerIdentity::of(cert));
                            watcher
                                .watch(
                                    http.serve_connection(TokioIo::new(stream), service(identity)),
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                // Timeouts and clients that went away: routine, not alarming.
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight at shutdown were dropped");
    }
    Ok(())
}

/// The address of this server a connection reached: where a service that
/// answers the same client on another port (an agent's scratch copy) can
/// be found by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);
