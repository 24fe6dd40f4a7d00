//! The primary lease holder: while a server this agent owns is a writable
//! primary, the agent holds its cluster's primary key in etcd
//! ([`drctl_coord::PrimaryLeases`]) and renews it; when it cannot, it
//! hard-fences that server itself *before* the lease can expire.
//!
//! **The deadline**: `sent + ttl - margin`, where `sent` is when the last
//! renewal that etcd answered was *sent*, on this process's monotonic
//! clock. etcd restarts a lease's time when its leader *receives* a
//! renewal (later than it was sent) and restarts every lease's full time
//! when a new leader is elected, so etcd can only expire the lease after
//! this deadline; the margin covers the fence itself (an immediate stop)
//! and the two clocks' rates. A wall-clock step (NTP, a VM pause resumed)
//! moves neither clock. Until the first renewal of a lease this process
//! holds, the deadline is the holder's start: a restarted agent that
//! cannot reach the quorum fences at once, since it cannot know when its
//! predecessor last renewed.
//!
//! **Fence at once** when etcd says the lease is gone, or when the key
//! names another region (an operation claimed it for a promotion): either
//! way another server may already be the primary.
//!
//! **Release**: a server that is no longer a writable primary (stopped,
//! a standby) gives its key up (the lease is revoked), so the engine and
//! the guard see at once that it holds nothing.
//!
//! What is a writable primary is read from the data directory: the server
//! runs and has no `standby.signal` or `recovery.signal`, which promotion
//! removes. This needs no login to the server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drctl_coord::{Etcd, Holder, LeaseId, PrimaryLeases};
use drctl_node::{HardFenceRequest, NodeActions, NodeRef, StopMode};

/// How soon a round that renewed nothing is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(200);

/// One server whose primary lease this agent holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSpec {
    /// The unit of failover (its services fail over together).
    pub cluster: String,
    pub region: String,
    pub data_dir: PathBuf,
}

/// The servers of `config` that this agent owns (their data directory
/// is one of `data_dirs`), one per cluster.
pub fn leases_for(config: &drctl_config::Config, data_dirs: &[PathBuf]) -> Vec<LeaseSpec> {
    let mut out: Vec<LeaseSpec> = Vec::new();
    for service in &config.services {
        for (region, node) in &service.nodes {
            let Some(dir) = &node.data_dir else { continue };
            if node.agent.is_none() || !data_dirs.iter().any(|d| d == dir) {
                continue;
            }
            let spec = LeaseSpec {
                cluster: service.cluster.clone(),
                region: region.clone(),
                data_dir: dir.clone(),
            };
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
    }
    out
}

/// The holder's timings.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTimings {
    pub ttl: Duration,
    /// How long before the lease could end the server is fenced.
    pub margin: Duration,
    /// How often the lease is renewed.
    pub renew_every: Duration,
}

impl LeaseTimings {
    /// Renewals every quarter of `ttl`; the fence a fifth of it (at least
    /// a second and the request timeout) before it could end.
    pub fn for_ttl(ttl: Duration, request_timeout: Duration) -> LeaseTimings {
        let margin = (ttl / 5).max(Duration::from_secs(1)).max(request_timeout);
        LeaseTimings {
            ttl,
            margin,
            renew_every: ttl / 4,
        }
    }
}

/// Why the holder fenced its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceReason {
    /// No renewal answered within `ttl - margin` of the last one sent.
    Deadline { since_last: Duration },
    /// etcd answered that the lease is gone.
    LeaseGone,
    /// The key names another region.
    Superseded { holder: String },
    /// The holder wrote no renewal before its deadline: it died or hangs
    /// ([`crate::watchdog`]).
    Watchdog { late: Duration },
}

impl std::fmt::Display for FenceReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FenceReason::Deadline { since_last } => write!(
                f,
                "no lease renewal answered for {:.1}s (the quorum is out of reach)",
                since_last.as_secs_f64()
            ),
            FenceReason::LeaseGone => f.write_str("etcd says the primary lease is gone"),
            FenceReason::Superseded { holder } => {
                write!(f, "the primary key names {holder}, not this region")
            }
            FenceReason::Watchdog { late } => write!(
                f,
                "the lease holder wrote no renewal by its deadline ({:.1}s ago): it died or hangs",
                late.as_secs_f64()
            ),
        }
    }
}

/// Holds `spec`'s primary lease until the process ends.
pub async fn hold(
    etcd: Etcd,
    spec: LeaseSpec,
    node: Arc<dyn NodeActions>,
    timings: LeaseTimings,
    host: String,
    watchdog: Option<crate::watchdog::Launcher>,
) {
    let leases = PrimaryLeases::new(etcd.clone());
    let key = PrimaryLeases::key(&spec.cluster);
    let node_ref = NodeRef::new(
        format!("{}@{}", spec.cluster, spec.region),
        &spec.data_dir,
        0,
    );
    let mut held: Option<LeaseId> = None;
    // Until a renewal of a lease this process holds is answered, the
    // deadline is now (see the module doc).
    let mut last_ok = Instant::now()
        .checked_sub(timings.ttl.saturating_sub(timings.margin))
        .unwrap_or_else(Instant::now);
    let mut ever_renewed = false;
    tracing::info!(cluster = %spec.cluster, region = %spec.region, ttl_s = timings.ttl.as_secs(), "primary lease holder started");
    // What the deadline file says as far as this process knows (`None`:
    // not written yet, so a predecessor's deadline stands).
    let mut written: Option<bool> = None;
    loop {
        if let Some(launcher) = &watchdog {
            launcher.ensure(&spec.data_dir);
        }
        let primary = is_writable_primary(node.as_ref(), &node_ref).await;
        if !primary {
            if let Some(lease) = held.take() {
                tracing::info!(cluster = %spec.cluster, lease = %lease, "server is no longer a writable primary: releasing its lease");
                let _ = etcd.revoke(lease).await;
            }
            if watchdog.is_some() && written != Some(false) {
                written = write_deadline(&spec, &crate::watchdog::Deadline::Released)
                    .then_some(false)
                    .or(written);
            }
            // Re-armed for when it is a primary again (promoted): its
            // first round decides, as at the holder's start.
            ever_renewed = false;
            last_ok = Instant::now()
                .checked_sub(timings.ttl.saturating_sub(timings.margin))
                .unwrap_or_else(Instant::now);
            tokio::time::sleep(timings.renew_every).await;
            continue;
        }
        let deadline = last_ok + timings.ttl.saturating_sub(timings.margin);
        let round = renew_or_acquire(&etcd, &leases, &key, &spec, &host, timings.ttl, &mut held);
        // The first round is awaited whole (it is bounded by the request
        // timeout per member): its failure alone fences, as the deadline
        // is already the holder's start.
        let outcome = if ever_renewed {
            tokio::select! {
                r = round => Some(r),
                _ = tokio::time::sleep_until(deadline.into()) => None,
            }
        } else {
            Some(round.await)
        };
        let renewed = matches!(outcome, Some(Ok(Round::Held { .. })));
        let fence = match outcome {
            Some(Ok(Round::Held { sent })) => {
                ever_renewed = true;
                last_ok = last_ok.max(sent);
                if watchdog.is_some() {
                    // The watchdog's deadline is this one: from here on a
                    // dead holder is fenced in time too.
                    let left = (last_ok + timings.ttl.saturating_sub(timings.margin))
                        .saturating_duration_since(Instant::now());
                    let armed = crate::watchdog::Deadline::armed_in(left);
                    written = write_deadline(&spec, &armed).then_some(true).or(written);
                }
                None
            }
            Some(Ok(Round::Fence(reason))) => Some(reason),
            Some(Err(e)) => {
                tracing::warn!(cluster = %spec.cluster, error = %e, "primary lease not renewed");
                None
            }
            None => None,
        };
        let fence = fence.or_else(|| {
            let since = last_ok.elapsed();
            (Instant::now() >= last_ok + timings.ttl.saturating_sub(timings.margin))
                .then_some(FenceReason::Deadline { since_last: since })
        });
        if let Some(reason) = fence {
            fence_now(node.as_ref(), &node_ref, "self-fence", &reason).await;
            held = None;
            continue;
        }
        // A failed round is retried at once, not a renewal period later:
        // the quorum may be back (an etcd election after a heal takes a few
        // seconds) with only moments left before the deadline.
        let next = Instant::now()
            + if renewed {
                timings.renew_every
            } else {
                RETRY_AFTER_FAILURE
            };
        let deadline = last_ok + timings.ttl.saturating_sub(timings.margin);
        tokio::time::sleep_until(next.min(deadline).into()).await;
    }
}

enum Round {
    Held { sent: Instant },
    Fence(FenceReason),
}

async fn renew_or_acquire(
    etcd: &Etcd,
    leases: &PrimaryLeases,
    key: &str,
    spec: &LeaseSpec,
    host: &str,
    ttl: Duration,
    held: &mut Option<LeaseId>,
) -> drctl_coord::Result<Round> {
    if let Some(lease) = *held {
        let renewal = etcd.keep_alive(lease).await?;
        if renewal.ttl.is_none() {
            *held = None;
            return Ok(Round::Fence(FenceReason::LeaseGone));
        }
        // The key must still be ours: an operation may have claimed it
        // for another region after a confirmed fence of this one.
        match leases.current(&spec.cluster).await? {
            Some(c) if c.region() == Some(spec.region.as_str()) => {
                if c.lease != Some(lease) {
                    // Ours by region but held by a claim: take it over.
                    let value = Holder::agent(&spec.region, host).encode();
                    let _ = etcd
                        .replace(key, &value, Some(lease), c.mod_revision)
                        .await?;
                }
                Ok(Round::Held { sent: renewal.sent })
            }
            Some(c) => {
                *held = None;
                Ok(Round::Fence(FenceReason::Superseded {
                    holder: c.region().unwrap_or("an unknown holder").to_string(),
                }))
            }
            None => {
                // Deleted by hand or expired between the calls: take it
                // again with the lease just renewed.
                let value = Holder::agent(&spec.region, host).encode();
                match etcd.create(key, &value, Some(lease)).await? {
                    Ok(()) => Ok(Round::Held { sent: renewal.sent }),
                    Err(kv) => Ok(Round::Fence(FenceReason::Superseded {
                        holder: String::from_utf8_lossy(&kv.value).into_owned(),
                    })),
                }
            }
        }
    } else {
        let sent = Instant::now();
        match leases.current(&spec.cluster).await? {
            Some(c) if c.region() == Some(spec.region.as_str()) => {
                // Ours by region: adopt its lease (a restarted agent, or a
                // claim made for this region's promotion) when it lives.
                if let Some(lease) = c.lease {
                    let renewal = etcd.keep_alive(lease).await?;
                    if renewal.ttl.is_some() {
                        if matches!(
                            c.holder.as_ref().map(|h| &h.by),
                            Some(drctl_coord::HolderKind::Operation { .. })
                        ) {
                            // A claim's lease is the operation's: hold one
                            // of our own instead.
                            let own = etcd.grant(ttl).await?;
                            let value = Holder::agent(&spec.region, host).encode();
                            if etcd
                                .replace(key, &value, Some(own), c.mod_revision)
                                .await?
                                .is_ok()
                            {
                                *held = Some(own);
                                return Ok(Round::Held { sent: renewal.sent });
                            }
                            let _ = etcd.revoke(own).await;
                            return Ok(Round::Held { sent: renewal.sent });
                        }
                        *held = Some(lease);
                        return Ok(Round::Held { sent: renewal.sent });
                    }
                }
                let own = etcd.grant(ttl).await?;
                let value = Holder::agent(&spec.region, host).encode();
                if etcd
                    .replace(key, &value, Some(own), c.mod_revision)
                    .await?
                    .is_ok()
                {
                    *held = Some(own);
                    Ok(Round::Held { sent })
                } else {
                    let _ = etcd.revoke(own).await;
                    Err(drctl_coord::CoordError::Refused {
                        call: "take over",
                        message: "the primary key changed under the take-over".into(),
                    })
                }
            }
            Some(c) => Ok(Round::Fence(FenceReason::Superseded {
                holder: c.region().unwrap_or("an unknown holder").to_string(),
            })),
            None => {
                let own = etcd.grant(ttl).await?;
                let value = Holder::agent(&spec.region, host).encode();
                match etcd.create(key, &value, Some(own)).await? {
                    Ok(()) => {
                        tracing::info!(cluster = %spec.cluster, region = %spec.region, lease = %own, "primary lease acquired");
                        *held = Some(own);
                        Ok(Round::Held { sent })
                    }
                    Err(kv) => {
                        let _ = etcd.revoke(own).await;
                        let other: Option<Holder> = serde_json::from_slice(&kv.value).ok();
                        match other {
                            Some(h) if h.region == spec.region => {
                                Err(drctl_coord::CoordError::Refused {
                                    call: "acquire",
                                    message: "taken by this region meanwhile; adopting next round"
                                        .into(),
                                })
                            }
                            _ => Ok(Round::Fence(FenceReason::Superseded {
                                holder: other
                                    .map(|h| h.region)
                                    .unwrap_or_else(|| "an unknown holder".into()),
                            })),
                        }
                    }
                }
            }
        }
    }
}

/// The server runs and is not in recovery (see the module doc).
pub(crate) async fn is_writable_primary(node: &dyn NodeActions, node_ref: &NodeRef) -> bool {
    match node.status(node_ref).await {
        Ok(s) if s.running && s.fenced_by.is_none() => {
            !node_ref.data_dir.join("standby.signal").exists()
                && !node_ref.data_dir.join("recovery.signal").exists()
        }
        _ => false,
    }
}

/// Writes the watchdog's deadline file; whether it was written (a failure
/// is logged: the watchdog then keeps the last deadline it read, which can
/// only make it fence earlier).
fn write_deadline(spec: &LeaseSpec, deadline: &crate::watchdog::Deadline) -> bool {
    match crate::watchdog::write_deadline(&spec.data_dir, deadline) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(cluster = %spec.cluster, error = %e, "cannot write the lease watchdog's deadline");
            false
        }
    }
}

/// Stops the server at once and marks it fenced (the mark names `by`), as
/// the engine's hard fence does; a rejoin or a recovery lifts the mark.
pub(crate) async fn fence_now(
    node: &dyn NodeActions,
    node_ref: &NodeRef,
    by: &str,
    reason: &FenceReason,
) {
    tracing::warn!(server = %node_ref.name, %reason, "fencing this primary: it may no longer hold its lease");
    let req = HardFenceRequest {
        service: node_ref.name.clone(),
        region: String::new(),
        operation_id: format!("{by} {}", chrono_now()),
        node: Some(node_ref.clone()),
        hook: None,
        hook_timeout_ms: 0,
        mode: StopMode::Immediate,
    };
    match node.hard_fence(&req).await {
        Ok(f) => {
            tracing::warn!(server = %node_ref.name, by, was_running = ?f.was_running, "primary fenced itself")
        }
        Err(e) => {
            tracing::error!(server = %node_ref.name, by, error = %e, "the self-fence failed; retrying")
        }
    }
}

fn chrono_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_comes_a_margin_before_the_lease_could_end() {
        let t = LeaseTimings::for_ttl(Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(t.margin, Duration::from_secs(2));
        assert_eq!(t.renew_every, Duration::from_millis(2500));
        let t = LeaseTimings::for_ttl(Duration::from_secs(3), Duration::from_secs(1));
        assert_eq!(t.margin, Duration::from_secs(1));
    }
}
