//! A fault proxy: a TCP proxy in front of one server (S3 or Route 53 on
//! moto, a PostgreSQL cluster, a DNS server's TCP side) that passes traffic
//! or injects a fault, for the tests that prove what drctl does when its
//! dependencies misbehave.
//!
//! Faults are per connection, as a load balancer or a network would cause
//! them: an HTTP error status answered instead of the server's (S3's error
//! XML, `Connection: close`), a reset (RST, no answer), a black hole (the
//! connection opens and nothing ever comes back: the client's timeout is
//! what ends it), or a slow server (every chunk back delayed). A fault can
//! hold for the next N connections and then pass again ("fails twice, then
//! works": what retries are for), or until changed. Turning a fault on cuts
//! the connections already open, so a pooled keep-alive connection cannot
//! slip past it; changing the fault ends the black-holed connections (with a
//! reset), as TCP would once a healed partition let its timeouts through.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Carries the traffic both ways.
    Pass,
    /// Reads the HTTP request head and answers this status (500, 503, …)
    /// with an S3-style error body, then closes.
    HttpStatus(u16),
    /// Closes the connection at once with a reset.
    Reset,
    /// Keeps the connection open and never answers.
    BlackHole,
    /// Carries the traffic, delaying every chunk back by this much.
    Slow(Duration),
}

#[derive(Debug)]
struct Plan {
    fault: Fault,
    /// The fault holds for this many more connections, then `Pass`;
    /// `None`: until changed.
    remaining: Option<u32>,
}

struct Shared {
    plan: Mutex<Plan>,
    /// Bumped when a fault is turned on: open connections close.
    generation: watch::Sender<u64>,
    connections: AtomicU64,
    faulted: AtomicU64,
}

/// A running fault proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a loopback port the kernel picks, passing to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            plan: Mutex::new(Plan {
                fault: Fault::Pass,
                remaining: None,
            }),
            generation: watch::channel(0).0,
            connections: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        Ok(FaultProxy { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for HTTP clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to every connection until changed.
    pub fn set(&self, fault: Fault) {
        self.plan(fault, None);
    }

    /// Applies `fault` to the next `connections` connections, then passes.
    pub fn set_for(&self, fault: Fault, connections: u32) {
        self.plan(fault, Some(connections));
    }

    fn plan(&self, fault: Fault, remaining: Option<u32>) {
        *self.shared.plan.lock().expect("fault plan") = Plan { fault, remaining };
        // Open connections hear of every change: passing ones end when a
        // fault starts, black-holed ones when it ends (a healed partition
        // leaves the stuck connections to time out; here they reset).
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections that got a fault instead of the server.
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }
}

impl Shared {
    /// The fault for a new connection, counting it down.
    fn next(&self) -> Fault {
        let mut plan = self.plan.lock().expect("fault plan");
        let fault = plan.fault;
        if let Some(n) = plan.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                plan.fault = Fault::Pass;
                plan.remaining = None;
            }
        }
        fault
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let fault = shared.next();
        if !matches!(fault, Fault::Pass | Fault::Slow(_)) {
            shared.faulted.fetch_add(1, Ordering::SeqCst);
        }
        let cut = shared.generation.subscribe();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = serve(client, upstream, fault, cut, &shared).await;
        });
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    mut cut: watch::Receiver<u64>,
    shared: &Shared,
) -> std::io::Result<()> {
    cut.borrow_and_update();
    match fault {
        Fault::Reset => reset(client),
        Fault::BlackHole => {
            let mut sink = [0u8; 16 * 1024];
            loop {
                tokio::select! {
                    n = client.read(&mut sink) => if n? == 0 { return Ok(()) },
                    _ = cut.changed() => return reset(client),
                }
            }
        }
        Fault::HttpStatus(status) => answer_status(client, status).await,
        Fault::Pass | Fault::Slow(_) => {
            let delay = match fault {
                Fault::Slow(d) => d,
                _ => Duration::ZERO,
            };
            let server = match TcpStream::connect(upstream).await {
                Ok(s) => s,
                Err(_) => return reset(client),
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = cr.read(&mut buf).await?;
                    if n == 0 {
                        return sw.shutdown().await;
                    }
                    sw.write_all(&buf[..n]).await?;
                }
            };
            let down = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = sr.read(&mut buf).await?;
                    if n == 0 {
                        return cw.shutdown().await;
                    }
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    cw.write_all(&buf[..n]).await?;
                }
            };
            // A fault turned on ends this connection under the client,
            // mid-request if it was in one.
            let fault_on = async {
                loop {
                    if cut.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if shared.plan.lock().expect("fault plan").fault != Fault::Pass {
                        return;
                    }
                }
            };
            tokio::select! {
                r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
                _ = fault_on => Ok(()),
            }
        }
    }
}

/// Closes with RST instead of FIN: the peer sees "connection reset".
fn reset(stream: TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

/// Reads the request head and answers `status` with an S3-style error.
async fn answer_status(mut client: TcpStream, status: u16) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
    let (code, reason) = match status {
        500 => ("InternalError", "Internal Server Error"),
        502 => ("BadGateway", "Bad Gateway"),
        503 => ("ServiceUnavailable", "Service Unavailable"),
        504 => ("GatewayTimeout", "Gateway Timeout"),
        429 => ("Throttling", "Too Many Requests"),
        _ => ("InjectedFault", "Injected Fault"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the drctl fault proxy</Message><RequestId>drctl-fault</RequestId></Error>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: drctl-fault\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await?;
    // Drain what the client still sends (a request body), so closing does
    // not reset the connection before it has read the answer.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        let mut out = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut out))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        out.truncate(n);
        Ok(out)
    }

    #[tokio::test]
    async fn faults_hold_for_n_connections_then_pass() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        assert!(roundtrip(proxy.addr()).await.unwrap().starts_with(b"GET /"));
        proxy.set_for(Fault::HttpStatus(503), 2);
        for _ in 0..2 {
            let answer = roundtrip(proxy.addr()).await.unwrap();
            assert!(
                answer.starts_with(b"HTTP/1.1 503 "),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        assert!(roundtrip(proxy.addr()).await.unwrap().starts_with(b"GET /"));
        proxy.set(Fault::Reset);
        let r = roundtrip(proxy.addr()).await;
        assert!(r.is_err() || r.unwrap().is_empty());
        proxy.set(Fault::BlackHole);
        let e = roundtrip(proxy.addr()).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        proxy.set(Fault::Pass);
        assert!(roundtrip(proxy.addr()).await.unwrap().starts_with(b"GET /"));
        assert_eq!(proxy.faulted(), 4);
    }

    #[tokio::test]
    async fn turning_a_fault_on_cuts_open_connections() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).await.unwrap(), 4);
        proxy.set(Fault::Reset);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = s.write_all(b"ping").await;
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
}
