//! The shop workload: a steady stream of small writes to each service's
//! database, so that replication lag is visible and every row carries its own
//! commit time on the primary's clock — the ground truth tests compare
//! drctl's RPO figures with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One database the workload writes to.
#[derive(Clone, Debug)]
pub struct WorkloadTarget {
    /// The service it belongs to (for logs).
    pub service: String,
    pub dsn: String,
    /// A table with `id bigserial`, `created_at timestamptz DEFAULT
    /// clock_timestamp()` and `amount_cents bigint` (see `Lab`).
    pub table: String,
}

/// Pause and resume the workload, and read its counters.
#[derive(Clone, Debug)]
pub struct WorkloadControl {
    paused: Arc<watch::Sender<bool>>,
    pub written: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl WorkloadControl {
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// The running workload; dropping it stops every writer.
pub struct ShopWorkload {
    pub control: WorkloadControl,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ShopWorkload {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ShopWorkload {
    /// Starts one writer per target, each committing a row every `interval`.
    pub fn start(targets: Vec<WorkloadTarget>, interval: Duration) -> ShopWorkload {
        let control = WorkloadControl {
            paused: Arc::new(watch::channel(false).0),
            written: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
        };
        let tasks = targets
            .into_iter()
            .map(|t| tokio::spawn(write_forever(t, interval, control.clone())))
            .collect();
        ShopWorkload { control, tasks }
    }
}

async fn write_forever(target: WorkloadTarget, interval: Duration, control: WorkloadControl) {
    let insert = format!(
        "INSERT INTO {} (amount_cents) VALUES ((random() * 10000)::bigint)",
        target.table
    );
    let mut conn: Option<PgConnection> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if control.is_paused() {
            continue;
        }
        if conn.is_none() {
            match tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&target.dsn))
                .await
            {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    control.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        match tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::query(&insert).execute(&mut *c),
        )
        .await
        {
            Ok(Ok(_)) => {
                control.written.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                control.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %target.service, "workload write failed; reconnecting");
                conn = None;
            }
        }
    }
}
