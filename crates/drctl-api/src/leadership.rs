//! This daemon's standing in the leader election, as the API reads it:
//! who leads, since when, and whether this daemon may start work. The
//! election itself (`drctl_daemon::leader`) is the only writer; the API
//! only reads, to refuse work on a follower, to answer `/api/v1/cluster`
//! and for `/metrics`. It lives here, below the daemon, so the API needs
//! nothing of the daemon to build.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_store::DaemonRecord;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use utoipa::ToSchema;

/// The leader as the store names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LeaderView {
    pub id: String,
    /// Its API, where a follower sends clients that want to start work.
    pub api_url: Option<String>,
    /// The lease's fencing token: grows with every new leader.
    pub token: i64,
    pub lease_expires_at: DateTime<Utc>,
}

/// Where this daemon stands.
#[derive(Clone, Debug, Default)]
pub struct Standing {
    /// The first election attempt has been made.
    pub decided: bool,
    pub leading: bool,
    /// This daemon's term (its lease token) while it leads.
    pub term: Option<i64>,
    pub leading_since: Option<DateTime<Utc>>,
    pub leader: Option<LeaderView>,
    /// The daemons seen lately (three lease times).
    pub daemons: Vec<DaemonRecord>,
}

/// This daemon's part in the election; cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    api_url: String,
    started_at: DateTime<Utc>,
    ttl: Duration,
    /// `None`: a daemon alone with no election (tests of the router).
    standalone: bool,
    standing: watch::Sender<Standing>,
    /// Until when, on this process's monotonic clock, the lease is surely
    /// still ours: set from the instant *before* the renewal that succeeded.
    valid_until: Mutex<Option<Instant>>,
}

impl Leadership {
    /// A daemon that competes for the lease: `id` names it in the store,
    /// `api_url` is where clients reach its API.
    pub fn new(id: String, api_url: String, ttl: Duration) -> Leadership {
        Leadership::build(id, api_url, ttl, false)
    }

    /// Always leading, never elected: a router without a daemon (tests, the
    /// fuzzer), where nobody else can share the store.
    pub fn standalone() -> Leadership {
        let l = Leadership::build(
            "standalone".into(),
            String::new(),
            Duration::from_secs(15),
            true,
        );
        l.inner.standing.send_modify(|s| {
            s.decided = true;
            s.leading = true;
        });
        l
    }

    fn build(id: String, api_url: String, ttl: Duration, standalone: bool) -> Leadership {
        Leadership {
            inner: Arc::new(Inner {
                id,
                api_url,
                started_at: Utc::now(),
                ttl,
                standalone,
                standing: watch::channel(Standing::default()).0,
                valid_until: Mutex::new(None),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    pub fn lease_time(&self) -> Duration {
        self.inner.ttl
    }

    /// Whether this daemon leads right now. Checked against the monotonic
    /// deadline, not only the last published standing, so a process that
    /// was paused past its lease knows it lost it before its election task
    /// has even run again.
    pub fn is_leader(&self) -> bool {
        if self.inner.standalone {
            return true;
        }
        let until = *self.inner.valid_until.lock().expect("leadership lock");
        self.inner.standing.borrow().leading && until.is_some_and(|u| Instant::now() < u)
    }

    pub fn standing(&self) -> Standing {
        let mut s = self.inner.standing.borrow().clone();
        s.leading = s.leading && self.is_leader();
        s
    }

    pub fn subscribe(&self) -> watch::Receiver<Standing> {
        self.inner.standing.subscribe()
    }

    /// Resolves once the first election attempt is made.
    pub async fn decided(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|s| s.decided).await;
    }

    /// When this daemon started (its row in the store says so).
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// Until when, on this process's monotonic clock, the lease is surely
    /// still ours (`None`: not leading). Written by the election only.
    pub fn valid_until(&self) -> Option<Instant> {
        *self.inner.valid_until.lock().expect("leadership lock")
    }

    /// Sets [`Leadership::valid_until`]; the election's, after each attempt.
    pub fn set_valid_until(&self, until: Option<Instant>) {
        *self.inner.valid_until.lock().expect("leadership lock") = until;
    }

    /// The last published standing, as the election left it (no deadline check).
    pub fn published(&self) -> Standing {
        self.inner.standing.borrow().clone()
    }

    /// Publishes a change of standing to every subscriber; the election's.
    pub fn publish(&self, change: impl FnOnce(&mut Standing)) {
        self.inner.standing.send_modify(change);
    }
}
