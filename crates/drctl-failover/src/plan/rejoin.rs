//! Planning a rejoin: the primary reachable and writable, the old
//! primary's data directory on this host holding a copy of the primary's
//! database, and nothing writable at the old primary.

use std::path::PathBuf;
use std::time::Duration;

use drctl_config::Config;
use drctl_store::Store;

use super::report::{Blocker, LocalNode, OperationParams, PlanReport};
use crate::node::{local_system_identifier, read_state};

const REACH: Duration = Duration::from_secs(5);

pub(crate) async fn make_plan(config: &Config, store: &Store, p: &OperationParams) -> PlanReport {
    let service = config.service(&p.service);
    let mut blockers = Vec::new();
    let mut block = |code: &str, message: String| {
        blockers.push(Blocker {
            code: code.into(),
            message,
            overridable: false,
        })
    };
    if p.source == p.target {
        block(
            "same_region",
            format!("{} is the primary: there is nothing to rejoin", p.target),
        );
    }
    let read = |region: String| async move { read_state(service, &region, REACH).await };
    let (primary, old) = tokio::join!(read(p.source.clone()), read(p.target.clone()));
    match &primary {
        Err(e) => block(
            "primary_unreachable",
            format!("the primary {}@{} is unreachable: {e}", p.cluster, p.source),
        ),
        Ok(s) if !s.writable() => block(
            "primary_not_writable",
            format!(
                "{}@{} is not a writable primary (in recovery: {}, read-only: {})",
                p.cluster, p.source, s.in_recovery, s.read_only
            ),
        ),
        Ok(_) => {}
    }
    if let Ok(o) = &old {
        if o.writable() {
            block(
                "second_writable_primary",
                format!("{}@{} takes writes: fence it first (the daemon's watchdog does) — stopping it now would drop its clients' writes", p.cluster, p.target),
            );
        }
    }
    let data_dir: Option<PathBuf> = service
        .and_then(|s| s.nodes.get(&p.target))
        .and_then(|n| n.data_dir.clone());
    match &data_dir {
        None => block(
            "no_data_dir",
            format!("[services.postgres.{}] has no data_dir: drctl rejoin needs the server's data directory", p.target),
        ),
        Some(d) if !d.join("PG_VERSION").exists() => block(
            "data_dir_not_here",
            format!("{} is not a PostgreSQL data directory on this host: run drctl rejoin on the host of {}", d.display(), p.target),
        ),
        Some(_) => {}
    }
    // The database in the data directory must be a copy of the primary's
    // (physical copies share the system identifier): anything else is
    // another cluster's server at the same path.
    let local_id = data_dir.as_deref().and_then(local_system_identifier);
    let primary_id = match (service, primary.is_ok()) {
        (Some(s), true) => match crate::node::endpoint(s, &p.source, REACH) {
            Ok(ep) => {
                let id = ep.system_identifier().await.ok();
                ep.close().await;
                id
            }
            Err(_) => None,
        },
        _ => None,
    };
    match (local_id, primary_id) {
        (Some(l), Some(pid)) if l != pid => block(
            "other_database",
            format!(
                "{} holds database {l}, not a copy of the primary {}@{} (database {pid}): it is another server's data; refusing to touch it",
                data_dir.as_deref().map_or("?".into(), |d| d.display().to_string()),
                p.cluster,
                p.source
            ),
        ),
        (None, _) if data_dir.as_deref().is_some_and(|d| d.join("PG_VERSION").exists()) => block(
            "no_control_file",
            format!(
                "{} has no readable global/pg_control: cannot tell which database it holds",
                data_dir.as_deref().map_or("?".into(), |d| d.display().to_string())
            ),
        ),
        (Some(_), None) if primary.is_ok() => block(
            "primary_identity_unknown",
            format!("cannot read the system identifier of the primary {}@{}", p.cluster, p.source),
        ),
        _ => {}
    }
    let standby_already = old.as_ref().is_ok_and(|o| o.in_recovery);
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
            format!(
                "stop {} ({}), pg_rewind onto {} (a fresh clone, the old directory moved aside, only if pg_rewind reports a divergence it cannot mend), start it as its standby",
                p.target,
                data_dir.as_ref().map_or("?".into(), |d| d.display().to_string()),
                p.source
            )
        },
        blockers,
        local: data_dir.as_ref().map(|d| LocalNode {
            host: crate::this_host(),
            data_dir: d.display().to_string(),
            system_identifier: local_id.map(|i| i.to_string()),
        }),
        ..PlanReport::skeleton(p, targets, &past)
    }
}
