//! Planning a rejoin: the primary reachable and writable, the old
//! primary's data directory on this host holding a copy of the primary's
//! database, and nothing writable at the old primary.

use std::time::Duration;

use drctl_config::Config;
use drctl_node::{NodeActions, NodeRef, NodeStatus};
use drctl_store::Store;

use super::report::{Blockers, LocalNode, OperationParams, PlanReport};
use crate::node::{dataset_id, read_state};

const REACH: Duration = Duration::from_secs(5);

pub(crate) async fn make_plan(
    config: &Config,
    store: &Store,
    node: &dyn NodeActions,
    p: &OperationParams,
) -> PlanReport {
    let service = config.service(&p.service);
    let mut blockers = Blockers::default();
    if p.source == p.target {
        blockers.refuse(
            "same_region",
            format!("{} is the primary: there is nothing to rejoin", p.target),
        );
    }
    let read = |region: String| async move { read_state(service, &region, REACH).await };
    let (primary, old) = tokio::join!(read(p.source.clone()), read(p.target.clone()));
    match &primary {
        Err(e) => blockers.refuse(
            "primary_unreachable",
            format!("the primary {}@{} is unreachable: {e}", p.cluster, p.source),
        ),
        Ok(s) if !s.writable() => blockers.refuse(
            "primary_not_writable",
            format!(
                "{}@{} is not a writable primary (standby: {}, fenced: {})",
                p.cluster, p.source, s.standby, s.fenced
            ),
        ),
        Ok(_) => {}
    }
    if let Ok(o) = &old {
        if o.writable() {
            blockers.refuse(
                "second_writable_primary",
                format!("{}@{} takes writes: fence it first (the daemon's watchdog does) — stopping it now would drop its clients' writes", p.cluster, p.target),
            );
        }
    }
    let server = service.and_then(|s| NodeRef::for_service(s, &p.target));
    // What the node finds at the data directory (the host it is, whether a
    // database is there and which).
    let status: Option<NodeStatus> = match &server {
        None => {
            blockers.refuse(
                "no_data_dir",
                format!("[services.postgres.{}] has no data_dir: drctl rejoin needs the server's data directory", p.target),
            );
            None
        }
        Some(n) => match node.status(n).await {
            Ok(st) if !st.initialized => {
                let engine = service
                    .map(drctl_node::Engine::of)
                    .map_or("database", |e| e.name());
                let message = match node.agent() {
                    Some(url) => format!("{} is not a {engine} data directory on the host of {}'s agent ({url}): restore it with `drctl recover`, or fix [services.postgres.{}] data_dir", n.data_dir.display(), p.target, p.target),
                    None => format!("{} is not a {engine} data directory on this host: run drctl rejoin on the host of {}", n.data_dir.display(), p.target),
                };
                blockers.refuse("data_dir_not_here", message);
                None
            }
            Ok(st) => Some(st),
            Err(e) if e.kind == drctl_node::NodeErrorKind::Unreachable => {
                blockers.refuse(
                    "node_unreachable",
                    format!(
                        "the agent of {}@{} does not answer: {e}",
                        p.cluster, p.target
                    ),
                );
                None
            }
            Err(e) => {
                blockers.refuse(
                    "data_dir_not_here",
                    format!("cannot read {} on its node: {e}", n.data_dir.display()),
                );
                None
            }
        },
    };
    let data_dir = server
        .as_ref()
        .map_or("?".to_string(), |n| n.data_dir.display().to_string());
    // The database in the data directory must be a copy of the primary's
    // (physical copies share the data set's identity): anything else is
    // another cluster's server at the same path.
    let local_id = status.as_ref().and_then(|s| s.dataset_id.clone());
    let primary_id = match (service, primary.is_ok()) {
        (Some(s), true) => dataset_id(s, &p.source, REACH).await,
        _ => None,
    };
    match (&local_id, primary_id) {
        (Some(l), Some(pid)) if *l != pid => blockers.refuse(
            "other_database",
            format!(
                "{data_dir} holds database {l}, not a copy of the primary {}@{} (database {pid}): it is another server's data; refusing to touch it",
                p.cluster,
                p.source
            ),
        ),
        (None, _) if status.is_some() => blockers.refuse(
            "no_control_file",
            format!("{data_dir} has no readable identity (global/pg_control): cannot tell which database it holds"),
        ),
        (Some(_), None) if primary.is_ok() => blockers.refuse(
            "primary_identity_unknown",
            format!("cannot read the system identifier of the primary {}@{}", p.cluster, p.source),
        ),
        _ => {}
    }
    let standby_already = old.as_ref().is_ok_and(|o| o.standby);
    let past = store.operations(500).await.unwrap_or_default();
    let targets = service
        .map(|s| s.targets)
        .unwrap_or_else(|| config.tiers.get(drctl_config::Tier::Hot));
    PlanReport {
        source_state: primary.as_ref().ok().copied(),
        source_error: primary.err(),
        target_state: old.as_ref().ok().copied(),
        target_error: old.err(),
        expected_loss_us: None,
        expected_loss_bytes: None,
        expected_loss_basis: "a rejoin discards only what the old primary wrote after the new one took over (already lost to the service)".into(),
        dns: Vec::new(),
        fence: if standby_already {
            format!("already a standby: {} needs nothing", p.target)
        } else {
            let rewind = service
                .map(drctl_node::Engine::of)
                .map_or("rewind", |e| e.resync_description());
            format!(
                "stop {} ({data_dir}), {rewind} onto {} (a fresh clone, the old directory moved aside, only if {rewind} reports a divergence it cannot mend), start it as its standby",
                p.target,
                p.source
            )
        },
        blockers: blockers.into_vec(),
        local: server.as_ref().map(|n| LocalNode {
            host: status
                .as_ref()
                .map_or_else(crate::this_host, |s| s.host.clone()),
            data_dir: n.data_dir.display().to_string(),
            system_identifier: local_id,
        }),
        ..PlanReport::skeleton(
            p,
            targets,
            service.map_or(drctl_node::Engine::Postgres, drctl_node::Engine::of),
            &past,
        )
    }
}
