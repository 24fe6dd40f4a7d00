//! A tokio runtime inside a site's network namespace ([`SiteRuntime`]):
//! what the lab's link proxies, fronts and DNS server run on, so that the
//! sockets they open belong to the site.

use std::fmt;
use std::fs::File;
use std::future::Future;

use nix::sched::{setns, CloneFlags};
use tokio::sync::oneshot;

use crate::{LabError, Result};

/// A tokio runtime whose threads are in a site's namespace, so every
/// socket its tasks open belongs to the site. A thread inherits its
/// namespace from the thread that starts it: the runtime is built on a
/// thread that entered the namespace, its workers start from there, and
/// so do the blocking threads its tasks ask for. (Only a `spawn_blocking`
/// through its handle from a thread outside would escape; this type does
/// not offer one.)
pub struct SiteRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    namespace: String,
}

impl fmt::Debug for SiteRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteRuntime")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl SiteRuntime {
    /// `workers`: 0 for a single-threaded runtime (the thread that entered
    /// runs every task), else that many worker threads.
    pub(super) fn start(file: File, namespace: String, workers: usize) -> Result<SiteRuntime> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let ns = namespace.clone();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{namespace}"))
            .spawn(move || {
                let entered = setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering network namespace {ns}: {e}"));
                drop(file);
                let runtime = entered.and_then(|()| {
                    let mut builder = if workers == 0 {
                        tokio::runtime::Builder::new_current_thread()
                    } else {
                        let mut b = tokio::runtime::Builder::new_multi_thread();
                        b.worker_threads(workers);
                        b
                    };
                    builder
                        .enable_all()
                        .build()
                        .map_err(|e| format!("starting a runtime in {ns}: {e}"))
                });
                match runtime {
                    Ok(runtime) => {
                        let _ = ready_tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stop_rx.await;
                        });
                        // Dropping the runtime cancels the site's tasks and
                        // closes their sockets.
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| LabError::Io {
                what: format!("starting a thread for {namespace}"),
                source: e,
            })?;
        let handle = ready_rx
            .recv()
            .map_err(|_| LabError::Other(format!("the thread of {namespace} died at start")))?
            .map_err(LabError::Other)?;
        Ok(SiteRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
            namespace,
        })
    }

    /// Spawns a task in the site.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` in the site and waits for its output (from async code
    /// on any runtime).
    pub async fn run<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(future)
            .await
            .map_err(|e| LabError::Other(format!("a task in {} failed: {e}", self.namespace)))
    }

    /// The runtime's handle (to spawn from elsewhere).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for SiteRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Joining from inside a runtime would block its worker; the
            // thread ends by itself once the stop signal arrives.
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = thread.join();
            }
        }
    }
}
