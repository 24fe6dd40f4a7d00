//! The region link: a TCP proxy that carries replication from region A to
//! region B and can add latency or cut the link (a region partition).
//!
//! The link's own cut (`link cut`, the loopback lab's partition) closes
//! every connection through the link and refuses new ones until the link is
//! restored, so the standby's WAL receiver loses its primary as
//! it would in a partition that outlasts TCP keepalives; on restore it
//! reconnects (`wal_retrieve_retry_interval`) and catches up. Latency delays
//! every chunk in each direction by the same amount, preserving order.
//!
//! In a namespaced lab each end of the link runs in the region that
//! connects through it, and a partition is the router's (`netns.rs`):
//! packets are lost and the servers' timeouts notice, as on a real WAN.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long the link waits for its upstream to accept a connection.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(3);

/// The state of the region link, shared by every proxy on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    pub cut: bool,
    pub latency_ms: u64,
}

/// A handle to change the link; clones control the same link.
#[derive(Clone, Debug)]
pub struct LinkControl {
    tx: Arc<watch::Sender<LinkState>>,
}

impl Default for LinkControl {
    fn default() -> Self {
        LinkControl {
            tx: Arc::new(watch::channel(LinkState::default()).0),
        }
    }
}

impl LinkControl {
    pub fn cut(&self) {
        self.tx.send_modify(|s| s.cut = true);
    }

    pub fn restore(&self) {
        self.tx.send_modify(|s| s.cut = false);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.tx
            .send_modify(|s| s.latency_ms = latency.as_millis() as u64);
    }

    pub fn state(&self) -> LinkState {
        *self.tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.tx.subscribe()
    }
}

/// One listener of the link, forwarding to one upstream server.
pub struct LinkProxy {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkProxy {
    /// Listens on `listen` and forwards each connection to `upstream` under
    /// the link's state.
    pub async fn spawn(
        listen: SocketAddr,
        upstream: SocketAddr,
        link: LinkControl,
    ) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if link.state().cut {
                    drop(client); // partitioned: the peer sees the connection die
                    continue;
                }
                tokio::spawn(carry(client, upstream, link.subscribe()));
            }
        });
        Ok(LinkProxy {
            listen,
            upstream,
            task,
        })
    }
}

/// Carries one connection until either side closes or the link is cut.
async fn carry(client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<LinkState>) {
    // Bounded: across a partition that drops packets a connect would wait
    // for minutes of SYN retries, and the client (a WAL receiver) with it;
    // closing instead lets it retry on its own schedule and find the
    // healed link within seconds.
    let Ok(Ok(server)) = tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(upstream)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let mut up = tokio::spawn(pipe(cr, sw, state.clone()));
    let mut down = tokio::spawn(pipe(sr, cw, state.clone()));
    loop {
        tokio::select! {
            _ = &mut up => break,
            _ = &mut down => break,
            changed = state.changed() => {
                if changed.is_err() || state.borrow().cut {
                    break;
                }
            }
        }
    }
    up.abort();
    down.abort();
}

/// One direction: a reader stamps each chunk with its delivery time, a writer
/// delivers chunks in order when their time comes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: watch::Receiver<LinkState>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    // Reader and writer are joined, not spawned, so aborting the pipe drops
    // both halves of the sockets at once (that is how a cut closes them).
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let latency = Duration::from_millis(state.borrow().latency_ms);
                    if tx
                        .send((Instant::now() + latency, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}
