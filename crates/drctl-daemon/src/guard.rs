//! The daemon's guard over each replicated cluster, once per health
//! interval (`[services.health]`): it probes the primary (each probe
//! bounded by the health timeout) and, when drctl loses it — `failures`
//! probes in a row — asks the standby for a second opinion, then feeds the automatic-failover detector
//! (`drctl_failover::auto`) and starts the failover it decides. It is also
//! the watchdog: a server other than the recorded primary that answers
//! writable (an old primary restarted, or unfenced by hand) is fenced at
//! once. And it rejoins old primaries whose agent answers again
//! ([`crate::rejoin`]). Every change of verdict, every fence and every
//! automatic rejoin is recorded with its evidence (`failover_decisions`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use drctl_config::{Config, HealthCheck, Service};
use drctl_failover::auto::{
    Brakes, Detector, DetectorSettings, LeaseView, Observation, ReceiverView, Verdict,
};
use drctl_failover::{Engine, OperationKind, Request};
use drctl_node::{Datastore, ReceiverStatus};
use drctl_store::states::GuardDecision;
use drctl_store::{DecisionRecord, Store};
use tokio::sync::watch;

use crate::rejoin::{AutoRejoin, Cluster};

/// Starts one guard per cluster that has a standby; returns when shut down.
pub(crate) async fn run(config: Arc<Config>, store: Store, shutdown: watch::Receiver<bool>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut tasks = Vec::new();
    for service in &config.services {
        let replicated = service.has_datastore()
            && service
                .regions
                .iter()
                .filter(|r| service.postgres.contains_key(*r))
                .count()
                >= 2;
        if replicated && seen.insert(service.cluster.clone()) {
            tasks.push(tokio::spawn(guard_cluster(
                config.clone(),
                store.clone(),
                service.name.clone(),
                shutdown.clone(),
            )));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The health check of a cluster whose services may say different things:
/// the most patient one decides (most failures, longest timeout, longest
/// interval), as `min_down` and `cooldown` do, so no service of the
/// cluster is failed over sooner than it asked for.
fn cluster_health<'a>(checks: impl IntoIterator<Item = &'a HealthCheck>) -> HealthCheck {
    checks
        .into_iter()
        .fold(None, |acc: Option<HealthCheck>, h| {
            Some(match acc {
                None => *h,
                Some(a) => HealthCheck {
                    interval: a.interval.max(h.interval),
                    timeout: a.timeout.max(h.timeout),
                    failures: a.failures.max(h.failures),
                },
            })
        })
        .unwrap_or_default()
}

struct Guard {
    config: Arc<Config>,
    store: Store,
    engine: Engine,
    service: String,
    cluster: String,
    /// One connection per region (the datastore seam), kept open between
    /// rounds.
    endpoints: std::collections::BTreeMap<String, Box<dyn Datastore>>,
    detector: Detector,
    /// The last decision recorded, with a hold's code: a decision is
    /// recorded once per change.
    last_key: (GuardDecision, Option<String>),
    /// An automatic failover was refused (its plan's blockers): wait for the
    /// primary to come back or a person to act, do not retry every round.
    refused: bool,
    /// Old primaries coming back through their agents (`rejoin = "auto"`).
    rejoin: AutoRejoin,
}

async fn guard_cluster(
    config: Arc<Config>,
    store: Store,
    service: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(svc) = config.service(&service) else {
        return;
    };
    let health = cluster_health(config.cluster_members(&svc.cluster).map(|s| &s.health));
    let mut endpoints = std::collections::BTreeMap::new();
    for region in svc.postgres.keys() {
        match drctl_node::connect_as(svc, region, health.timeout, "drctl-guard") {
            Ok(ep) => {
                endpoints.insert(region.clone(), ep);
            }
            Err(e) => tracing::warn!(service, region, error = %e, "guard: bad connection string"),
        }
    }
    let mut guard = Guard {
        engine: Engine::new(config.clone(), store.clone()),
        cluster: svc.cluster.clone(),
        config: config.clone(),
        store,
        service,
        endpoints,
        detector: Detector::default(),
        last_key: (GuardDecision::Healthy, None),
        refused: false,
        rejoin: AutoRejoin::default(),
    };
    tracing::debug!(
        cluster = %svc.cluster,
        interval = ?health.interval,
        timeout = ?health.timeout,
        failures = health.failures,
        "guarding the cluster"
    );
    let mut tick = tokio::time::interval(health.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        guard.round().await;
    }
    for ep in guard.endpoints.values() {
        ep.close().await;
    }
}

impl Guard {
    fn members(&self) -> Vec<&Service> {
        self.config.cluster_members(&self.cluster).collect()
    }

    async fn primary_region(&self) -> Option<String> {
        match self.store.cluster_role(&self.cluster).await {
            Ok(Some(r)) => Some(r.primary_region),
            Ok(None) => self
                .config
                .service(&self.service)
                .map(|s| s.primary.clone()),
            // Without the store we know nothing for sure: do nothing.
            Err(_) => None,
        }
    }

    async fn operation_in_progress(&self) -> bool {
        // What the failover the guard would start must not race; unknown
        // counts as in progress: never act on a guess.
        self.store
            .unfinished_operation(&self.cluster, OperationKind::Failover.exclusive_with())
            .await
            .map_or(true, |o| o.is_some())
    }

    async fn round(&mut self) {
        let at = Utc::now();
        let Some(primary) = self.primary_region().await else {
            return;
        };
        let Some(ep) = self.endpoints.get(&primary) else {
            return;
        };
        let (primary_error, primary_writable) = match ep.probe().await {
            Ok(s) => (None, s.writable()),
            Err(e) => (Some(e.to_string()), false),
        };
        // Fence others only when the primary we believe in answered
        // writable in this very round: the belief may be the config's
        // default (no role recorded) or stale, and fencing on it could
        // fence the only writable primary there is.
        if primary_writable {
            self.watchdog(&primary).await;
            if !self.operation_in_progress().await {
                let cluster = Cluster {
                    config: &self.config,
                    store: &self.store,
                    engine: &self.engine,
                    cluster: &self.cluster,
                    service: &self.service,
                    primary: &primary,
                    endpoints: &self.endpoints,
                };
                self.rejoin.round(&cluster).await;
            }
        }
        if primary_error.is_none() {
            self.refused = false;
        }
        let receiver = match &primary_error {
            None => ReceiverView::Streaming { silent_ms: 0 },
            Some(_) => self.receiver_view(&primary).await,
        };
        let lease = match &primary_error {
            Some(_) => self.lease_view(&primary).await,
            None => None,
        };
        let observation = Observation {
            at,
            primary_error,
            receiver,
            lease,
        };
        let brakes = if observation.primary_error.is_some() {
            self.brakes().await
        } else {
            Brakes::default()
        };
        let settings = self.settings();
        let verdict = self.detector.observe(&settings, &observation, &brakes);
        if let Verdict::FailOver {
            detected_at,
            evidence,
            ..
        } = &verdict
        {
            if self.refused {
                return;
            }
            self.record(&verdict, &observation).await;
            self.fail_over(*detected_at, evidence.clone(), &observation)
                .await;
            return;
        }
        let (decision, code) = verdict.key();
        if (decision, code) != (self.last_key.0, self.last_key.1.as_deref()) {
            self.record(&verdict, &observation).await;
        }
    }

    fn settings(&self) -> DetectorSettings {
        let members = self.members();
        DetectorSettings {
            failures: cluster_health(members.iter().map(|s| &s.health)).failures,
            min_down: members
                .iter()
                .map(|s| s.failover.min_down)
                .max()
                .unwrap_or(Duration::from_secs(3)),
            cooldown: members
                .iter()
                .map(|s| s.failover.cooldown)
                .max()
                .unwrap_or_default(),
            limit: self.config.failover.automatic_limit,
            window: self.config.failover.automatic_window,
        }
    }

    async fn brakes(&self) -> Brakes {
        let now = Utc::now();
        let settings = self.settings();
        // Checked: a cooldown or window longer than history means "since ever", never a panic.
        let since = |d: Duration| {
            chrono::TimeDelta::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
        };
        let last_automatic = self
            .store
            .automatic_failovers_since(Some(&self.cluster), since(settings.cooldown))
            .await
            .ok()
            .and_then(|v| v.last().copied());
        let automatic_in_window = self
            .store
            .automatic_failovers_since(None, since(settings.window))
            .await
            .map_or(u32::MAX, |v| v.len() as u32);
        Brakes {
            enabled: self.config.failover.automatic_limit > 0
                && self.members().iter().all(|s| s.failover.automatic),
            last_automatic,
            automatic_in_window,
            operation_in_progress: self.operation_in_progress().await,
        }
    }

    /// The standby that would take over, asked whether it still streams.
    /// The primary's lease in etcd, when the cluster's primary holds one
    /// (`[coordination]` and an agent beside it).
    async fn lease_view(&self, primary: &str) -> Option<LeaseView> {
        let coord = self.config.coordination.as_ref()?;
        let svc = self.config.service(&self.service)?;
        svc.nodes.get(primary)?.agent.as_ref()?;
        let etcd = match drctl_coord::Etcd::shared(&coord.etcd, coord.request_timeout) {
            Ok(e) => e,
            Err(e) => {
                return Some(LeaseView::Unknown {
                    error: e.to_string(),
                })
            }
        };
        let leases = drctl_coord::PrimaryLeases::new(etcd);
        Some(match leases.current(&self.cluster).await {
            Ok(Some(c)) if c.region() == Some(primary) && c.ttl_left.is_some() => LeaseView::Held {
                ttl_left_ms: c.ttl_left.unwrap_or_default().as_millis() as u64,
            },
            Ok(c) => LeaseView::Released {
                holder: c.and_then(|c| c.region().map(String::from)),
            },
            Err(e) => LeaseView::Unknown {
                error: e.to_string(),
            },
        })
    }

    async fn receiver_view(&self, primary: &str) -> ReceiverView {
        let Some((_, ep)) = self.endpoints.iter().find(|(r, _)| *r != primary) else {
            return ReceiverView::Unknown {
                error: "no standby".into(),
            };
        };
        match ep.probe_receiver().await {
            Ok(Some(r)) if r.status == ReceiverStatus::Streaming => ReceiverView::Streaming {
                silent_ms: r.last_message_ms.unwrap_or(0).max(0) as u64,
            },
            Ok(Some(r)) => ReceiverView::Disconnected {
                status: Some(r.status.to_string()),
            },
            Ok(None) => ReceiverView::Disconnected { status: None },
            Err(e) => ReceiverView::Unknown {
                error: e.to_string(),
            },
        }
    }

    async fn fail_over(
        &mut self,
        detected_at: chrono::DateTime<Utc>,
        evidence: String,
        o: &Observation,
    ) {
        tracing::warn!(cluster = %self.cluster, %evidence, "primary lost: automatic failover");
        let request = Request {
            kind: OperationKind::Failover,
            service: self.service.clone(),
            to: None,
            accept_data_loss: false,
            accept_unfenced: false,
            requested_by: drctl_failover::REQUESTED_BY_AUTOMATIC.into(),
            reason: Some(evidence),
            detected_at: Some(detected_at),
        };
        match self.engine.run(&request, &|_| {}).await {
            Ok(outcome) => {
                tracing::info!(cluster = %self.cluster, id = %outcome.id, measured = ?outcome.measured, "automatic failover done");
                self.detector = Detector::default();
                self.last_key = (GuardDecision::Healthy, None);
            }
            Err(e) => {
                tracing::error!(cluster = %self.cluster, error = %e, "automatic failover did not complete");
                let verdict = Verdict::Hold {
                    since: detected_at,
                    failed_probes: 0,
                    code: "refused".into(),
                    reason: format!(
                        "the automatic failover did not complete: {e} ({})",
                        e.code()
                    ),
                };
                self.record(&verdict, o).await;
                self.refused = true;
            }
        }
    }

    /// Fences any server other than the primary that takes writes.
    async fn watchdog(&self, primary: &str) {
        for (region, ep) in &self.endpoints {
            if region == primary {
                continue;
            }
            let Ok(state) = ep.probe().await else {
                continue;
            };
            if !state.writable() {
                continue;
            }
            // Under the cluster's operation lease, so no failover or
            // switchover can start (or be half-way) while we fence; busy
            // means one is: leave it to the operation.
            let Some(lease) = self.watchdog_lease().await else {
                continue;
            };
            // Look again before acting: an operation may have just promoted
            // it (and then the role or the journal says so).
            if self.operation_in_progress().await
                || self.primary_region().await.as_deref() != Some(primary)
            {
                let _ = self.store.release_lease(&lease).await;
                continue;
            }
            tracing::error!(cluster = %self.cluster, %region, %primary, "a second writable primary: fencing it");
            let fenced = ep.soft_fence().await;
            // Through its agent, the fence is hard: stopped and marked, so
            // no session undoes it; the automatic rejoin takes it from there.
            let hard = match (&fenced, self.hard_fence_request(region)) {
                (Ok(_), Some(req)) => Some(
                    self.engine
                        .node(&self.service, region)
                        .hard_fence(&req)
                        .await
                        .map_err(|e| e.to_string()),
                ),
                _ => None,
            };
            let _ = self.store.release_lease(&lease).await;
            let (action_reason, code) = match fenced {
                Ok(report) => (
                    format!(
                        "{region} answered writable while {primary} is the primary: fenced ({report:?}){}",
                        match &hard {
                            Some(Ok(h)) => format!("; stopped by its agent ({:?})", h.method),
                            Some(Err(e)) => format!("; its agent could not stop it: {e}"),
                            None => String::new(),
                        }
                    ),
                    region.clone(),
                ),
                Err(e) => (
                    format!("{region} answered writable while {primary} is the primary; fencing it FAILED: {e}"),
                    region.clone(),
                ),
            };
            let _ = self
                .store
                .record_decision(&DecisionRecord {
                    id: format!("dec-{}", uuid::Uuid::new_v4().simple()),
                    cluster: self.cluster.clone(),
                    service: self.service.clone(),
                    decided_at: Utc::now(),
                    action: GuardDecision::Fenced,
                    code: Some(code),
                    reason: action_reason,
                    evidence: serde_json::json!({ "state": state, "primary": primary }).to_string(),
                    operation_id: None,
                })
                .await;
        }
    }

    /// The hard fence of `region`'s server through its agent, when the
    /// config names one (and its data directory).
    fn hard_fence_request(&self, region: &str) -> Option<drctl_node::HardFenceRequest> {
        let service = self.config.service(&self.service)?;
        self.engine.node(&self.service, region).agent()?;
        let id = format!("watchdog-{}", uuid::Uuid::new_v4().simple());
        let req = drctl_node::HardFenceRequest::for_service(service, region, &id, true);
        req.node.is_some().then_some(drctl_node::HardFenceRequest {
            hook: None,
            mode: drctl_node::StopMode::Fast,
            ..req
        })
    }

    /// The cluster's operation lease for one fence, `None` when an
    /// operation holds it or the store cannot say.
    async fn watchdog_lease(&self) -> Option<drctl_store::Lease> {
        let name = drctl_failover::lease_name(&self.cluster);
        let holder = format!("{}/watchdog", self.engine.driver());
        let now = self.store.clock().await.ok()?;
        let ttl = self.config.failover.lease;
        self.store
            .acquire_lease(&name, &holder, ttl, now)
            .await
            .ok()
            .flatten()
    }

    async fn record(&mut self, verdict: &Verdict, o: &Observation) {
        let (decision, code) = verdict.key();
        self.last_key = (decision, code.map(str::to_string));
        let action = verdict.decision();
        let (code, reason) = match verdict {
            Verdict::Healthy => (None, "the primary answers again".to_string()),
            Verdict::Suspect { failed_probes, .. } => (
                None,
                format!("{failed_probes} probe(s) of the primary failed"),
            ),
            Verdict::Hold { code, reason, .. } => (Some(code.clone()), reason.clone()),
            Verdict::FailOver { evidence, .. } => (None, evidence.clone()),
        };
        tracing::info!(cluster = %self.cluster, %action, ?code, %reason, "automatic failover decision");
        let record = DecisionRecord {
            id: format!("dec-{}", uuid::Uuid::new_v4().simple()),
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            decided_at: o.at,
            action,
            code,
            reason,
            evidence: serde_json::json!({ "observation": o, "verdict": verdict }).to_string(),
            // The failover's operation id is in its journal; the decision
            // is recorded before the operation exists.
            operation_id: None,
        };
        if let Err(e) = self.store.record_decision(&record).await {
            tracing::error!(error = %e, "cannot record an automatic failover decision");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(interval_ms: u64, timeout_ms: u64, failures: u32) -> HealthCheck {
        HealthCheck {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            failures,
        }
    }

    #[test]
    fn the_most_patient_service_of_a_cluster_sets_its_health_check() {
        let (a, b) = (check(200, 2000, 2), check(1000, 500, 5));
        assert_eq!(cluster_health([&a, &b]), check(1000, 2000, 5));
        assert_eq!(cluster_health([&a]), a);
        assert_eq!(cluster_health([]), HealthCheck::default());
    }
}
