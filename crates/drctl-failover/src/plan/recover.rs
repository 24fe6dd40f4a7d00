//! Planning a recovery from backup: the newest verified backup, an empty
//! data directory to restore into, no server already answering there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_config::Config;
use drctl_node::{NodeActions, NodeRef};
use drctl_store::{BackupRecord, Store};

use super::report::{self, Blockers, OperationParams, PlanReport};

const REACH: Duration = Duration::from_secs(3);

pub(crate) async fn make_plan(
    config: &Config,
    store: &Store,
    node: &dyn NodeActions,
    p: &OperationParams,
) -> PlanReport {
    let service = config.service(&p.service);
    let mut blockers = Blockers::default();
    blockers.same_region(p);
    let backup: Option<BackupRecord> = store
        .newest_verified_backup(&p.service)
        .await
        .ok()
        .flatten();
    if backup.is_none() {
        blockers.block(
            "no_verified_backup",
            format!(
                "{} has no verified backup to recover from (drctl backup run, drctl backup verify)",
                p.service
            ),
            false,
        );
    }
    let server = service.and_then(|s| NodeRef::for_service(s, &p.target));
    match &server {
        None => blockers.block(
            "no_data_dir",
            format!("[services.postgres.{}] of {} has no data_dir to restore into", p.target, p.service),
            false,
        ),
        // A directory this recovery's own restore claimed may be wiped
        // and redone; anything else in it is never overwritten.
        Some(n) => match node.status(n).await {
            Ok(st) if !st.empty && st.restore_claim.is_none() => blockers.block(
                "data_dir_not_empty",
                format!("{} is not empty: a recovery never overwrites a directory it did not fill (move it away first)", n.data_dir.display()),
                false,
            ),
            Ok(_) => {}
            Err(e) => blockers.block(
                "node_unreadable",
                format!("cannot read {} on its node: {e}", n.data_dir.display()),
                false,
            ),
        },
    }
    let read =
        |region: String| async move { crate::node::read_state(service, &region, REACH).await };
    let (source, target) = tokio::join!(read(p.source.clone()), read(p.target.clone()));
    if target.as_ref().is_ok_and(|t| t.writable()) {
        blockers.block(
            "target_running",
            format!("a writable server already answers for {} in {}: recovered already? (drctl operations list)", p.service, p.target),
            false,
        );
    }
    let targets = service
        .map(|s| s.targets)
        .unwrap_or_else(|| config.tiers.get(drctl_config::Tier::Cold));
    let end = p
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    let expected_loss_us = backup
        .as_ref()
        .and_then(|b| b.ended_at)
        .map(|e| (end - e).num_microseconds().unwrap_or(i64::MAX).max(0));
    if let Some(loss) = expected_loss_us.filter(|l| *l > report::us(targets.rpo)) {
        blockers.block(
            "data_loss",
            format!(
                "the newest verified backup ended {:.0} s ago, beyond the RPO target {:?}",
                loss as f64 / 1e6,
                targets.rpo
            ),
            true,
        );
    }
    let past = store.operations(500).await.unwrap_or_default();
    PlanReport {
        source_state: source.as_ref().ok().copied(),
        source_error: source.as_ref().err().cloned(),
        target_state: target.as_ref().ok().copied(),
        target_error: target.err(),
        expected_loss_us,
        expected_loss_bytes: None,
        expected_loss_basis: match &backup {
            Some(b) => format!("at most: everything written after backup {} ended", b.id),
            None => "unknown: no verified backup".into(),
        },
        dns: report::dns_flips(config, &p.members, &p.target, p.kind),
        fence: match (
            &source,
            service.and_then(|s| s.failover.fence_hook.as_ref()),
        ) {
            (Ok(_), _) => service
                .map(drctl_node::Engine::of)
                .map_or("", |e| e.soft_fence_description())
                .into(),
            (_, Some(h)) => format!("source unreachable: run the fence hook {}", h.join(" ")),
            _ => "source unreachable and no fence hook: DNS removal only".into(),
        },
        blockers: blockers.into_vec(),
        ..PlanReport::skeleton(
            p,
            targets,
            service.map_or(drctl_node::Engine::Postgres, drctl_node::Engine::of),
            &past,
        )
    }
}
