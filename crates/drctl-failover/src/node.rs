//! The engine's reads through the datastore seam that are not actions of
//! their own: a region's server state for a plan. Everything else the
//! engine does to a server goes through [`drctl_node::Datastore`] (over
//! its protocol) or [`drctl_node::NodeActions`] (its processes and files),
//! reached from the action's context (`saga/ctx.rs`).

use std::time::Duration;

use drctl_config::Service;
use drctl_node::ServerState;

/// A region's server's role and positions, or why it could not be read
/// (one connection, closed after).
pub(crate) async fn read_state(
    service: Option<&Service>,
    region: &str,
    timeout: Duration,
) -> Result<ServerState, String> {
    let server = drctl_node::connect(service.ok_or("unknown service")?, region, timeout)
        .map_err(|e| e.to_string())?;
    let r = server.probe().await.map_err(|e| e.to_string());
    server.close().await;
    r
}

/// The identity of the data set `service`'s server in `region` holds, when
/// it answers.
pub(crate) async fn dataset_id(
    service: &Service,
    region: &str,
    timeout: Duration,
) -> Option<String> {
    let server = drctl_node::connect(service, region, timeout).ok()?;
    let id = server.dataset_id().await.ok();
    server.close().await;
    id
}
