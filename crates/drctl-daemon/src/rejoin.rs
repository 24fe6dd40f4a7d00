//! The guard's automatic rejoin (`[services.failover] rejoin = "auto"`,
//! the default): once an old primary's agent answers again after a
//! failover, its server is rewound (or re-cloned) as a standby of the
//! current primary by a journaled rejoin, as Patroni and CloudNativePG make
//! an old primary follow the new one. After a switchover the engine does
//! it at once; this covers the failover, whose old primary's host may be
//! gone for hours.
//!
//! Only servers reached through an agent: the agent answering is the
//! evidence that the old primary's host is back. Without an agent the old
//! primary waits for `drctl rejoin` on its host.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use drctl_config::{Config, RejoinPolicy};
use drctl_failover::{Engine, OperationKind, Request};
use drctl_node::{Datastore, NodeRef};
use drctl_store::states::GuardDecision;
use drctl_store::{DecisionRecord, Store};

/// How long after an attempt (done, refused or failed) the same server is
/// looked at again: a rejoin that cannot go ahead is not retried every
/// health interval.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The guard's memory of its rejoin attempts, per region.
#[derive(Default)]
pub(crate) struct AutoRejoin {
    next_try: BTreeMap<String, Instant>,
    /// The last reason a rejoin could not go ahead, logged once per change.
    last_blocked: BTreeMap<String, String>,
}

/// What the guard needs to look at one cluster's old primaries.
pub(crate) struct Cluster<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub engine: &'a Engine,
    pub cluster: &'a str,
    pub service: &'a str,
    pub primary: &'a str,
    pub endpoints: &'a BTreeMap<String, Box<dyn Datastore>>,
}

impl AutoRejoin {
    /// Rejoins each old primary of the cluster that its agent reports back
    /// and that is not a standby already. The caller checked that the
    /// primary answers writable.
    pub(crate) async fn round(&mut self, c: &Cluster<'_>) {
        let auto = c
            .config
            .cluster_members(c.cluster)
            .all(|s| s.failover.rejoin == RejoinPolicy::Auto);
        let Some(service) = c.config.service(c.service) else {
            return;
        };
        if !auto {
            return;
        }
        for (region, endpoint) in c.endpoints {
            if region == c.primary {
                continue;
            }
            let Some(server) = NodeRef::for_service(service, region) else {
                continue;
            };
            let node = c.engine.node(c.service, region);
            let Some(agent) = node.agent() else {
                continue;
            };
            if self
                .next_try
                .get(region)
                .is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            // Its host does not answer yet: wait, quietly.
            let Ok(status) = node.status(&server).await else {
                continue;
            };
            if !status.initialized {
                // Nothing to rewind: restoring it is `drctl recover`'s job.
                continue;
            }
            if status.running {
                match endpoint.probe().await {
                    Ok(s) if s.standby => {
                        self.last_blocked.remove(region);
                        continue;
                    }
                    // A second writable primary is the watchdog's to fence
                    // first; an answer we cannot read is no evidence.
                    Ok(s) if s.writable() => continue,
                    Err(_) => continue,
                    Ok(_) => {}
                }
            }
            self.next_try
                .insert(region.clone(), Instant::now() + RETRY_AFTER);
            self.rejoin(c, region, agent, &status).await;
        }
    }

    async fn rejoin(
        &mut self,
        c: &Cluster<'_>,
        region: &str,
        agent: &str,
        status: &drctl_node::NodeStatus,
    ) {
        let request = Request {
            kind: OperationKind::Rejoin,
            service: c.service.to_string(),
            to: Some(region.to_string()),
            accept_data_loss: false,
            accept_unfenced: false,
            requested_by: drctl_failover::REQUESTED_BY_AUTOMATIC.into(),
            reason: Some(format!(
                "the old primary's agent ({agent}) answers again: rejoin as a standby of {}",
                c.primary
            )),
            detected_at: None,
        };
        // A plan that cannot go ahead is logged once, not run (a run would
        // journal a refused operation every attempt).
        match c.engine.plan(&request).await {
            Ok(plan) => {
                let standing: Vec<String> = plan
                    .standing(false)
                    .iter()
                    .map(|b| format!("{}: {}", b.code, b.message))
                    .collect();
                if !standing.is_empty() {
                    let why = standing.join("; ");
                    if self.last_blocked.get(region) != Some(&why) {
                        tracing::warn!(cluster = %c.cluster, %region, %why, "automatic rejoin blocked");
                        self.last_blocked.insert(region.to_string(), why);
                    }
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(cluster = %c.cluster, %region, error = %e, "automatic rejoin not planned");
                return;
            }
        }
        tracing::info!(cluster = %c.cluster, %region, %agent, "automatic rejoin of the old primary");
        let outcome = c.engine.run(&request, &|_| {}).await;
        let (reason, operation_id) = match &outcome {
            Ok(o) => (
                format!(
                    "{region}'s agent answers again: rejoined as a standby of {} ({})",
                    c.primary,
                    o.status.as_str()
                ),
                Some(o.id.clone()),
            ),
            Err(e) => (
                format!(
                    "{region}'s agent answers again; its automatic rejoin did not complete: {e}"
                ),
                None,
            ),
        };
        self.last_blocked.remove(region);
        let record = DecisionRecord {
            id: format!("dec-{}", uuid::Uuid::new_v4().simple()),
            cluster: c.cluster.to_string(),
            service: c.service.to_string(),
            decided_at: Utc::now(),
            action: GuardDecision::Rejoin,
            code: Some(region.to_string()),
            reason,
            evidence: serde_json::json!({ "node": status, "agent": agent, "primary": c.primary })
                .to_string(),
            operation_id,
        };
        if let Err(e) = c.store.record_decision(&record).await {
            tracing::error!(error = %e, "cannot record an automatic rejoin");
        }
    }
}
