//! Leader election among the daemons that share one state store.
//!
//! Every daemon samples and serves reads; exactly one, the leader, does the
//! work that must not run twice: automatic failover (the guard), the backup
//! scheduler, alerts, recording samples, and resuming operations whose
//! driver died. Leadership is the `daemon/leader` row of the store's leases:
//! renewed every tick, its token growing with every new holder. No wall
//! clock decides when it is free: a follower takes it only after seeing the
//! same renewal count for a whole lease time on its own monotonic clock
//! ([`drctl_store::LeaseWatch`]), so neither a daemon whose clock runs ahead
//! nor a clock step on the store host can take it from a live leader.
//!
//! A leader that cannot renew steps down on its own monotonic clock before
//! anybody else could take the lease (paused, partitioned from the store,
//! or the store slow). What it was doing is fenced anyway: an operation's
//! journal writes check that operation's own lease token (see
//! `drctl_failover::Engine`), so an ex-leader that wakes up mid-step cannot
//! journal it.
//!
//! The handle the daemon's parts and the API read, [`Leadership`], is
//! defined in `drctl-api` (which reads it without depending on the daemon);
//! [`run`] here is its only writer.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use drctl_store::{DaemonRecord, Lease, LeaseWatch, Store};
use tokio::sync::watch;
use tokio::time::Instant;

pub use drctl_api::leadership::{LeaderView, Leadership, Standing};

/// The lease every daemon competes for.
pub const LEADER_LEASE: &str = "daemon/leader";

/// How often the lease is renewed (or, by a follower, tried): five times a
/// lease time, between 100 ms and 1 s, so takeover comes at most a tick
/// after the lease expires.
pub fn tick(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Runs the election until `shutdown`; a leader that stops cleanly gives the
/// lease back, so a follower takes over at once instead of after the lease.
pub async fn run(leadership: Leadership, store: Store, mut shutdown: watch::Receiver<bool>) {
    let ttl = leadership.lease_time();
    let tick = tick(ttl);
    let host = drctl_api::auth::host_name();
    let mut lease: Option<Lease> = None;
    let mut sightings = LeaseWatch::default();
    let mut last_error_logged: Option<Instant> = None;
    loop {
        let attempt = Instant::now();
        // A store that hangs must not hold the step-down back: a leader's
        // attempt ends by the time it has to step down.
        let mut give_up = attempt + tick.max(Duration::from_millis(500));
        if let (Some(_), Some(until)) = (&lease, leadership.valid_until()) {
            give_up = give_up.min(until.checked_sub(tick).unwrap_or(attempt).max(attempt));
        }
        let outcome = tokio::time::timeout_at(give_up, async {
            let now = store.clock().await?;
            let held = match lease.clone() {
                Some(mut l) => store.renew_lease(&mut l, ttl, now).await?.then_some(l),
                None => {
                    let seen = store.lease_sighting(LEADER_LEASE).await?;
                    // Counted from after the read: the holder's renewal that
                    // wrote this version began before it, and so did the
                    // holder's own countdown to stepping down.
                    if sightings.may_take(seen.as_ref(), ttl, Instant::now()) {
                        let taken = store
                            .take_lease_seen(LEADER_LEASE, leadership.id(), seen.as_ref(), ttl, now)
                            .await?;
                        sightings.reset();
                        taken
                    } else {
                        None
                    }
                }
            };
            Ok::<_, drctl_store::StoreError>((held, now))
        })
        .await;
        let mut seen_at = None;
        match outcome {
            Ok(Ok((Some(l), now))) => {
                if lease.is_none() {
                    tracing::info!(daemon = %leadership.id(), term = l.token, "this daemon leads now");
                    leadership.publish(|s| s.leading_since = Some(now));
                }
                lease = Some(l);
                // The store wrote `expires = (its now) + ttl` after `attempt`:
                // counted from `attempt`, this deadline comes first.
                leadership.set_valid_until(Some(attempt + ttl));
                seen_at = Some(now);
            }
            Ok(Ok((None, now))) => {
                if let Some(l) = lease.take() {
                    tracing::warn!(daemon = %leadership.id(), term = l.token, "the leader lease was lost (another daemon took it); following now");
                }
                seen_at = Some(now);
            }
            Ok(Err(e)) => {
                if last_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                    tracing::warn!(error = %e, "cannot reach the store for the leader lease");
                    last_error_logged = Some(Instant::now());
                }
            }
            Err(_) => {
                tracing::warn!(after = ?tick, "the store did not answer the leader lease in time")
            }
        }
        // Step down before anybody else could take the lease: one tick of
        // margin for the duties to hear it.
        let deadline = leadership.valid_until();
        if lease.is_some() && deadline.is_none_or(|d| Instant::now() + tick >= d) {
            let l = lease.take().expect("checked");
            tracing::warn!(daemon = %leadership.id(), term = l.token, "could not renew the leader lease in time; stepping down");
        }
        if lease.is_none() {
            leadership.set_valid_until(None);
        }
        let (leader, daemons) = match seen_at {
            Some(now) => observe(&leadership, &store, &host, now).await,
            None => {
                let s = leadership.published();
                (s.leader, s.daemons)
            }
        };
        leadership.publish(|s| {
            s.decided = true;
            s.leading = lease.is_some();
            s.term = lease.as_ref().map(|l| l.token);
            if !s.leading {
                s.leading_since = None;
            }
            s.leader = leader;
            s.daemons = daemons;
        });
        tokio::select! {
            _ = tokio::time::sleep_until(attempt + tick) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if let Some(l) = lease {
        leadership.set_valid_until(None);
        leadership.publish(|s| s.leading = false);
        match store.release_lease(&l).await {
            Ok(()) => {
                tracing::info!(daemon = %leadership.id(), term = l.token, "gave the leader lease back")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not give the leader lease back; it expires by itself")
            }
        }
    }
}

/// The key the daemons compete for in etcd (`[coordination]`).
pub const ETCD_LEADER_KEY: &str = "drctl/daemon/leader";

/// Who holds [`ETCD_LEADER_KEY`].
#[derive(serde::Serialize, serde::Deserialize)]
struct EtcdLeader {
    id: String,
    api_url: String,
}

/// The election through etcd: the leader holds [`ETCD_LEADER_KEY`] under
/// a lease of the daemons' lease time and renews it every tick; its term
/// (the fencing token) is the key's creation revision, which grows with
/// every new holder. A leader steps down a tick before the lease could
/// expire, counted on its monotonic clock from when its last answered
/// renewal was sent, as a primary's agent does: etcd only expires a lease
/// after that. Daemons in two sites keep a leader when any one site of
/// the quorum is lost; the daemons' rows stay in the store.
pub async fn run_etcd(
    leadership: Leadership,
    store: Store,
    etcd: drctl_coord::Etcd,
    mut shutdown: watch::Receiver<bool>,
) {
    let ttl = leadership.lease_time().max(Duration::from_secs(2));
    let tick = tick(ttl);
    let host = drctl_api::auth::host_name();
    let value = serde_json::to_vec(&EtcdLeader {
        id: leadership.id().to_string(),
        api_url: leadership.api_url().to_string(),
    })
    .unwrap_or_default();
    let mut held: Option<(drctl_coord::LeaseId, i64)> = None;
    loop {
        let attempt = Instant::now();
        let give_up = match leadership.valid_until() {
            Some(until) if held.is_some() => {
                (attempt + tick).min(until.checked_sub(tick).unwrap_or(attempt).max(attempt))
            }
            _ => attempt + tick.max(Duration::from_millis(500)),
        };
        let round = tokio::time::timeout_at(give_up, async {
            match held {
                Some((lease, term)) => {
                    let renewal = etcd.keep_alive(lease).await?;
                    Ok::<_, drctl_coord::CoordError>(
                        renewal.ttl.map(|_| (lease, term, renewal.sent)),
                    )
                }
                None => {
                    let sent = std::time::Instant::now();
                    let lease = etcd.grant(ttl).await?;
                    match etcd.create(ETCD_LEADER_KEY, &value, Some(lease)).await? {
                        Ok(()) => {
                            let term = etcd
                                .get(ETCD_LEADER_KEY)
                                .await?
                                .map(|kv| kv.create_revision)
                                .unwrap_or_default();
                            Ok(Some((lease, term, sent)))
                        }
                        Err(_) => {
                            let _ = etcd.revoke(lease).await;
                            Ok(None)
                        }
                    }
                }
            }
        })
        .await;
        match round {
            Ok(Ok(Some((lease, term, sent)))) => {
                if held.is_none() {
                    tracing::info!(daemon = %leadership.id(), term, "this daemon leads now (etcd)");
                    leadership.publish(|s| s.leading_since = Some(Utc::now()));
                }
                held = Some((lease, term));
                leadership.set_valid_until(Some(Instant::from_std(sent) + ttl));
            }
            Ok(Ok(None)) => {
                if let Some((_, term)) = held.take() {
                    tracing::warn!(daemon = %leadership.id(), term, "the leader lease is gone in etcd; following now");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot reach the etcd quorum for the leader lease")
            }
            Err(_) => tracing::warn!(after = ?tick, "etcd did not answer the leader lease in time"),
        }
        let deadline = leadership.valid_until();
        if held.is_some() && deadline.is_none_or(|d| Instant::now() + tick >= d) {
            let (_, term) = held.take().expect("checked");
            tracing::warn!(daemon = %leadership.id(), term, "could not renew the leader lease in time; stepping down");
        }
        if held.is_none() {
            leadership.set_valid_until(None);
        }
        let now = Utc::now();
        let daemons = refresh_daemons(&leadership, &store, &host, now).await;
        let leader = match etcd.get(ETCD_LEADER_KEY).await {
            Ok(Some(kv)) => serde_json::from_slice::<EtcdLeader>(&kv.value)
                .ok()
                .map(|l| LeaderView {
                    id: l.id,
                    api_url: Some(l.api_url),
                    token: kv.create_revision,
                    lease_expires_at: now + TimeDelta::from_std(ttl).unwrap_or_default(),
                }),
            _ => None,
        };
        leadership.publish(|s| {
            s.decided = true;
            s.leading = held.is_some();
            s.term = held.map(|(_, t)| t);
            if !s.leading {
                s.leading_since = None;
            }
            s.leader = leader;
            s.daemons = daemons;
        });
        tokio::select! {
            _ = tokio::time::sleep_until(attempt + tick) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if let Some((lease, term)) = held {
        leadership.set_valid_until(None);
        leadership.publish(|s| s.leading = false);
        match etcd.revoke(lease).await {
            Ok(()) => tracing::info!(daemon = %leadership.id(), term, "gave the leader lease back"),
            Err(e) => {
                tracing::warn!(error = %e, "could not give the leader lease back; it expires by itself")
            }
        }
    }
}

/// Refreshes this daemon's row in the store and reads the daemons seen
/// within three lease times.
async fn refresh_daemons(
    leadership: &Leadership,
    store: &Store,
    host: &str,
    now: DateTime<Utc>,
) -> Vec<DaemonRecord> {
    let me = DaemonRecord {
        id: leadership.id().to_string(),
        host: host.to_string(),
        api_url: leadership.api_url().to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: leadership.started_at(),
        seen_at: now,
    };
    if let Err(e) = store.note_daemon(&me).await {
        tracing::debug!(error = %e, "could not refresh this daemon's row");
    }
    let recent = TimeDelta::from_std(leadership.lease_time() * 3).unwrap_or(TimeDelta::seconds(45));
    store
        .daemons(now - recent, now - TimeDelta::days(7))
        .await
        .unwrap_or_default()
}

/// Refreshes this daemon's row and reads who leads and who is there.
async fn observe(
    leadership: &Leadership,
    store: &Store,
    host: &str,
    now: DateTime<Utc>,
) -> (Option<LeaderView>, Vec<DaemonRecord>) {
    let daemons = refresh_daemons(leadership, store, host, now).await;
    let leader = match store.lease(LEADER_LEASE).await {
        Ok(Some(l)) if l.expires_at > now => Some(LeaderView {
            api_url: daemons
                .iter()
                .find(|d| d.id == l.holder)
                .map(|d| d.api_url.clone()),
            id: l.holder,
            token: l.token,
            lease_expires_at: l.expires_at,
        }),
        _ => None,
    };
    (leader, daemons)
}
