//! Which node actions serve which database server: drctl's own host
//! ([`crate::LocalNode`]) by default, an agent where the config names one
//! (`[services.postgres.REGION] agent`). The engine asks this map for the
//! node of a service's region before every action, so one operation may
//! act on two hosts (the old primary's agent, the new primary's agent).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::NodeActions;

/// The node actions per (service, region), with a default for the rest.
#[derive(Clone)]
pub struct Nodes {
    default: Arc<dyn NodeActions>,
    by_server: BTreeMap<(String, String), Arc<dyn NodeActions>>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for ((service, region), node) in &self.by_server {
            m.entry(
                &format!("{service}@{region}"),
                &node.agent().unwrap_or("this host"),
            );
        }
        m.finish()
    }
}

impl Nodes {
    /// Every server through the same node actions.
    pub fn uniform(node: Arc<dyn NodeActions>) -> Self {
        Nodes {
            default: node,
            by_server: BTreeMap::new(),
        }
    }

    /// The server of `service` in `region` through `node`.
    pub fn with(mut self, service: &str, region: &str, node: Arc<dyn NodeActions>) -> Self {
        self.by_server
            .insert((service.to_string(), region.to_string()), node);
        self
    }

    /// The node actions for the server of `service` in `region`.
    pub fn of(&self, service: &str, region: &str) -> &dyn NodeActions {
        self.by_server
            .get(&(service.to_string(), region.to_string()))
            .unwrap_or(&self.default)
            .as_ref()
    }

    /// [`Nodes::of`], shared: for work that outlives the borrow (a restore
    /// test holds its node for the whole test).
    pub fn shared(&self, service: &str, region: &str) -> Arc<dyn NodeActions> {
        self.by_server
            .get(&(service.to_string(), region.to_string()))
            .unwrap_or(&self.default)
            .clone()
    }

    /// The default node actions (drctl's own host), for work bound to no
    /// server of a region.
    pub fn default_node(&self) -> &dyn NodeActions {
        self.default.as_ref()
    }
}
