//! The orchestrator's map of node actions from its config: drctl's own
//! host by default, a [`RemoteNode`] for each server whose region names an
//! agent (`[services.postgres.REGION] agent`), one client per agent
//! address, authenticated with `[agents]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use drctl_config::Config;
use drctl_node::{
    CloneRequest, HardFenceRequest, HardFenced, NodeActions, NodeError, NodeErrorKind, NodeRef,
    NodeStatus, Nodes, RestoreRequest, Restored, ResyncRequest, Resynced, ScratchClone,
    ScratchRestoreRequest, StandbyConfigured, StandbyRequest, StartRequest, Started, StopMode,
    Stopped, TeardownRequest, TornDown,
};

use crate::{ClientTls, RemoteNode};

/// The node actions for every server of `config`: `local` where no agent
/// is named. An agent whose client cannot be built (its certificate files
/// unreadable) answers every action with that reason, so the plan names it
/// instead of drctl acting on the wrong host.
pub fn nodes_for(config: &Config, local: Arc<dyn NodeActions>) -> Nodes {
    let mut nodes = Nodes::uniform(local);
    let mut clients: BTreeMap<String, Arc<dyn NodeActions>> = BTreeMap::new();
    for service in &config.services {
        for (region, node) in &service.nodes {
            let Some(url) = &node.agent else {
                continue;
            };
            let client = clients
                .entry(url.clone())
                .or_insert_with(|| remote(url, config))
                .clone();
            nodes = nodes.with(&service.name, region, client);
        }
    }
    nodes
}

fn remote(url: &str, config: &Config) -> Arc<dyn NodeActions> {
    let Some(tls) = &config.agents else {
        // The config check refuses an agent without [agents].
        return Arc::new(Unusable {
            url: url.to_string(),
            reason: "there is no [agents] table in the config".into(),
        });
    };
    let tls = ClientTls {
        ca: tls.ca.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    };
    match RemoteNode::new(url, &tls) {
        Ok(node) => Arc::new(node),
        Err(e) => Arc::new(Unusable {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// An agent drctl cannot talk to at all (its client could not be built).
struct Unusable {
    url: String,
    reason: String,
}

impl Unusable {
    fn error<T>(&self) -> Result<T, NodeError> {
        Err(NodeError::new(
            NodeErrorKind::Missing,
            format!(
                "cannot reach the agent at {}: {} (check [agents] ca, cert and key)",
                self.url, self.reason
            ),
        ))
    }
}

#[async_trait]
impl NodeActions for Unusable {
    async fn status(&self, _: &NodeRef) -> Result<NodeStatus, NodeError> {
        self.error()
    }
    async fn stop(&self, _: &NodeRef, _: StopMode) -> Result<Stopped, NodeError> {
        self.error()
    }
    async fn start(&self, _: &StartRequest) -> Result<Started, NodeError> {
        self.error()
    }
    async fn rewind_or_reclone(&self, _: &ResyncRequest) -> Result<Resynced, NodeError> {
        self.error()
    }
    async fn configure_standby(&self, _: &StandbyRequest) -> Result<StandbyConfigured, NodeError> {
        self.error()
    }
    async fn restore_backup(&self, _: &RestoreRequest) -> Result<Restored, NodeError> {
        self.error()
    }
    async fn clone_scratch(&self, _: &CloneRequest) -> Result<ScratchClone, NodeError> {
        self.error()
    }
    async fn restore_scratch(&self, _: &ScratchRestoreRequest) -> Result<ScratchClone, NodeError> {
        self.error()
    }
    async fn teardown_scratch(&self, _: &TeardownRequest) -> Result<TornDown, NodeError> {
        self.error()
    }
    async fn hard_fence(&self, _: &HardFenceRequest) -> Result<HardFenced, NodeError> {
        self.error()
    }
    fn agent(&self) -> Option<&str> {
        Some(&self.url)
    }
}
