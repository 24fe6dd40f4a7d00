//! Planning a failover, a switchover or a drill: both sides read, the
//! monitor's evidence weighed, blockers named. Never fails: what cannot be
//! read becomes a blocker or an unknown.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_config::{Config, Service};
use drctl_node::{NodeActions, NodeRef, Position, ServerState};
use drctl_store::Store;

use super::report::{self, Blockers, OperationParams, PlanReport};
use crate::node::read_state;
use crate::OperationKind;

/// How long to try reaching a server before calling it unreachable.
pub(crate) const REACH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to try a source the daemon has already seen lost (an automatic
/// failover's detection is the evidence; waiting longer only adds to the
/// outage).
const LOST_SOURCE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long to try reaching the source.
pub(crate) fn source_timeout(p: &OperationParams, normal: Duration) -> Duration {
    if p.detected_at_us.is_some() {
        LOST_SOURCE_TIMEOUT
    } else {
        normal
    }
}

/// Reads both sides and the monitor's evidence; never fails (what cannot be
/// read becomes a blocker or an unknown).
pub(crate) async fn make_plan(
    config: &Config,
    store: &Store,
    source_node: &dyn NodeActions,
    p: &OperationParams,
) -> PlanReport {
    let service = config.service(&p.service);
    let targets = service
        .map(|s| s.targets)
        .unwrap_or_else(|| config.tiers.get(drctl_config::Tier::Hot));
    let mut blockers = Blockers::default();
    blockers.same_region(p);
    let has_datastore = service.is_some_and(Service::has_datastore);
    let read = |region: String| async move {
        let timeout = if region == p.source {
            source_timeout(p, REACH_TIMEOUT)
        } else {
            REACH_TIMEOUT
        };
        read_state(service, &region, timeout).await
    };
    let (source_state, target_state) = if has_datastore {
        tokio::join!(read(p.source.clone()), read(p.target.clone()))
    } else {
        (Err("no datastore".into()), Err("no datastore".into()))
    };
    let mut expected_loss_us = None;
    let mut expected_loss_bytes = None;
    let mut basis = String::from("no datastore: nothing to lose");
    if has_datastore {
        match &target_state {
            Err(e) => blockers.block("target_unreachable", format!("target {}@{} is unreachable: {e}", p.cluster, p.target), false),
            Ok(t) if !t.standby && source_state.as_ref().is_ok_and(|s| s.writable()) => blockers.block(
                "target_not_standby",
                format!("target {}@{} is already a writable primary while the source is too: two writable primaries, investigate before any failover", p.cluster, p.target),
                false,
            ),
            Ok(t) if !t.standby => blockers.block(
                "target_not_standby",
                format!("target {}@{} is not a standby (it is already a primary)", p.cluster, p.target),
                false,
            ),
            Ok(_) => {}
        }
        if p.kind == OperationKind::Switchover {
            if let Err(e) = &source_state {
                blockers.block(
                    "source_unreachable",
                    format!(
                        "a switchover needs the source {}@{} reachable ({e}); use failover",
                        p.cluster, p.source
                    ),
                    false,
                );
            }
            basis = "switchover: the target catches up to the fenced source, zero loss".into();
            expected_loss_us = Some(0);
            expected_loss_bytes = Some(0);
        } else {
            // The monitor's latest reading for the target is the expected loss;
            // live positions give the bytes when both sides answer.
            let sample = store.latest_lag_samples().await.ok().and_then(|v| {
                v.into_iter()
                    .find(|s| s.service == p.service && s.standby_region == p.target)
            });
            if let (Ok(s), Ok(t)) = (&source_state, &target_state) {
                expected_loss_bytes = Some(s.position.distance_after(t.position));
            } else if let Some(s) = &sample {
                expected_loss_bytes = s.byte_lag.map(|b| b.max(0) as u64);
            }
            let known = match (&source_state, &sample) {
                // The primary is gone: its last sighting bounds the loss.
                (Err(_), _) => lost_primary_bound(store, p, target_state.as_ref().ok()).await,
                (Ok(_), Some(s)) => s.rpo_exposure_us.map(|e| {
                    let age = (Utc::now() - s.sampled_at).num_milliseconds().max(0);
                    (
                        e,
                        format!(
                            "the monitor's exposure for {} {:.1} s ago",
                            p.target,
                            age as f64 / 1000.0
                        ),
                    )
                }),
                (Ok(_), None) => None,
            };
            match known {
                Some((e, why)) => {
                    expected_loss_us = Some(e);
                    basis = why;
                    // Only live positions prove "nothing to lose": a lost
                    // source's last byte lag says nothing of what it wrote
                    // after.
                    if expected_loss_bytes == Some(0)
                        && source_state.is_ok()
                        && target_state.is_ok()
                    {
                        expected_loss_us = Some(0);
                        basis = "live positions: the target has every byte the source wrote".into();
                    }
                    if let Some(loss) = expected_loss_us
                        .filter(|l| *l > report::us(targets.rpo))
                        .filter(|_| p.kind == OperationKind::Failover)
                    {
                        blockers.block(
                            "data_loss",
                            format!(
                                "expected data loss {:.1} s exceeds the RPO target {:?}",
                                loss as f64 / 1e6,
                                targets.rpo
                            ),
                            true,
                        );
                    }
                }
                None => {
                    basis = "unknown: the monitor has no exposure figure for the target".into();
                    if source_state.is_err() && p.kind == OperationKind::Failover {
                        blockers.block(
                            "data_loss_unknown",
                            "the source is unreachable and the expected data loss is unknown"
                                .into(),
                            true,
                        );
                    }
                }
            }
        }
    }
    let hook = service.and_then(|s| s.failover.fence_hook.as_ref());
    // The source's agent, when the config names one: it fences the server
    // beside it whether or not drctl reaches the server itself.
    let agent = service
        .and_then(|s| NodeRef::for_service(s, &p.source))
        .zip(source_node.agent());
    // With primary leases ([coordination]) the source's agent fences its
    // server before its lease can expire, and the fence step waits for
    // that expiry in etcd: an unreachable source is fenced by its lease,
    // and its agent (cut off with it, most likely) is not waited for.
    let leased = config.coordination.is_some() && agent.is_some();
    let agent_answer = match (&agent, &source_state) {
        (Some((node, _)), Err(_)) if has_datastore && p.kind != OperationKind::Drill && !leased => {
            Some(source_node.status(node).await.map_err(|e| e.to_string()))
        }
        _ => None,
    };
    if let (Err(e), None, true, false) = (&source_state, hook, has_datastore, leased) {
        let agent_fences = matches!(agent_answer, Some(Ok(_)));
        if p.kind == OperationKind::Failover && !p.accept_unfenced && !agent_fences {
            let why = match &agent_answer {
                Some(Err(agent_error)) => format!("{e}; its agent: {agent_error}"),
                _ => e.clone(),
            };
            blockers.block("unfenced_source", unfenced_message(p, &why), false);
        }
    }
    let past = store.operations(500).await.unwrap_or_default();
    let fence = match (&source_state, hook) {
        _ if p.kind == OperationKind::Drill => {
            "none: a drill leaves production alone (a scratch clone of the target is promoted)"
                .to_string()
        }
        (Ok(_), _) if has_datastore => {
            let soft = service
                .map(drctl_node::Engine::of)
                .map_or("", |e| e.soft_fence_description());
            match &agent {
                Some((_, url)) => format!(
                    "{soft}; then its agent ({url}) stops it ({}) and marks it fenced, so no client can undo the fence",
                    if p.kind == OperationKind::Switchover {
                        "cleanly: its standbys receive everything first"
                    } else {
                        "at once"
                    }
                ),
                None => soft.to_string(),
            }
        }
        _ if matches!(agent_answer, Some(Ok(_))) => format!(
            "source unreachable, its agent ({}) answers: it stops the server and marks it fenced",
            agent.as_ref().map_or("", |(_, url)| *url)
        ),
        _ if leased => format!(
            "source unreachable, its agent too: drctl waits until its primary lease expires in etcd (at most {}s; its agent fences the server before that), then claims the primary key for {}",
            config
                .coordination
                .as_ref()
                .map_or(0, |c| c.lease_ttl.as_secs() * 2 + 2),
            p.target
        ),
        (_, Some(h)) => format!("source unreachable: run the fence hook {}", h.join(" ")),
        _ if has_datastore && p.accept_unfenced => "none: the source is unreachable and has no fence hook; accepted by the operator (--accept-unfenced); drctl fences it if it returns"
            .to_string(),
        _ if has_datastore => "none: the source is unreachable and has no fence hook (only --accept-unfenced goes ahead)"
            .to_string(),
        _ => "none: no datastore to fence (DNS is the service's failover)".to_string(),
    };
    PlanReport {
        source_state: source_state.as_ref().ok().copied(),
        source_error: source_state.err().filter(|_| has_datastore),
        target_state: target_state.as_ref().ok().copied(),
        target_error: target_state.err().filter(|_| has_datastore),
        expected_loss_us,
        expected_loss_bytes,
        expected_loss_basis: basis,
        dns: report::dns_flips(config, &p.members, &p.target, p.kind),
        fence,
        blockers: blockers.into_vec(),
        ..PlanReport::skeleton(
            p,
            targets,
            service.map_or(drctl_node::Engine::Postgres, drctl_node::Engine::of),
            &past,
        )
    }
}

/// How long the monitor may have been blind before a lost primary's last
/// sighting no longer bounds anything useful.
const LAST_SIGHTING_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The expected loss when the primary is gone, as an upper bound: it was
/// last seen by the monitor's newest sample with a figure; whatever it wrote
/// after that, until it failed (the detection time, else now), may be lost,
/// plus what the target still lacked then — unless the target has since
/// received everything the primary had at that sample.
async fn lost_primary_bound(
    store: &Store,
    p: &OperationParams,
    target: Option<&ServerState>,
) -> Option<(i64, String)> {
    let s = store
        .last_known_exposure(&p.service, &p.target)
        .await
        .ok()??;
    let end = p
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    if end - s.sampled_at > LAST_SIGHTING_MAX_AGE {
        return None;
    }
    let blind_us = (end - s.sampled_at)
        .num_microseconds()
        .unwrap_or(i64::MAX)
        .max(0);
    let caught_up = match (target, s.primary_lsn) {
        (Some(t), Some(l)) => t.position >= Position::from_ordinal(l.max(0) as u64),
        _ => false,
    };
    // The sampled exposure places the target's position between two map
    // points by interpolation: an estimate. The strict start of the loss
    // is the last primary position the target holds: every commit up to
    // that sample's primary time is on the target, so the first lost one
    // came after it. Both times are the primary's clock.
    let exposure = s.rpo_exposure_us.unwrap_or(0).max(
        strict_exposure_us(store, p, target, &s)
            .await
            .unwrap_or_default(),
    );
    let bound = if caught_up {
        blind_us
    } else {
        exposure + blind_us
    };
    Some((
        bound,
        format!(
            "at most: the primary was last seen {:.1} s before {} with {}; what it wrote after that is unknown",
            blind_us as f64 / 1e6,
            if p.detected_at_us.is_some() { "it was detected lost" } else { "now" },
            if caught_up {
                "everything up to then now on the target".to_string()
            } else {
                format!("{:.1} s not yet on the target", exposure as f64 / 1e6)
            }
        ),
    ))
}

/// The most the target could lack at the sighting `s`: the primary's time
/// at `s` minus that of the newest sampled primary position the target
/// now holds (`None` when none is known).
async fn strict_exposure_us(
    store: &Store,
    p: &OperationParams,
    target: Option<&ServerState>,
    s: &drctl_store::LagSample,
) -> Option<i64> {
    let at = s.primary_time?.timestamp_micros();
    let held = target?.position;
    let points = store
        .primary_points(&p.service, s.sampled_at - LAST_SIGHTING_MAX_AGE)
        .await
        .ok()?;
    let start = points
        .iter()
        .filter(|(t, lsn)| *t <= at && Position::from_ordinal((*lsn).max(0) as u64) <= held)
        .map(|(t, _)| *t)
        .max()?;
    Some((at - start).max(0))
}

/// The `unfenced_source` blocker: the source cannot be fenced, so it may
/// still take writes when a new primary is announced.
pub(crate) fn unfenced_message(p: &OperationParams, error: &str) -> String {
    format!(
        "the source {}@{} is unreachable ({error}) and nothing answers to fence it (no agent that answers, no fence hook): nothing would stop it taking writes beside the new primary; run an agent beside it ([services.postgres.REGION] agent) or set [services.failover] fence_hook, or pass --accept-unfenced once you know it is down",
        p.cluster, p.source
    )
}
