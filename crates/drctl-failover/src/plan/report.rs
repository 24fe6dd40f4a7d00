//! Planning: what an operation would do and cost right now, and what blocks
//! it. `--dry-run` prints this; a real run journals it as its first step and
//! refuses when a blocker stands (data-loss blockers can be accepted).

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_config::{Config, Service};
use drctl_node::{Engine, ServerState};
use serde::{Deserialize, Serialize};

use crate::{measure::Measured, OperationKind, Step};

/// What a driver needs to run (or resume) an operation: stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationParams {
    pub kind: OperationKind,
    /// The service named in the request; the operation acts on its cluster.
    pub service: String,
    pub cluster: String,
    /// Every service of the cluster (each gets its DNS flipped).
    pub members: Vec<String>,
    pub source: String,
    pub target: String,
    pub accept_data_loss: bool,
    /// An operator accepted a failover that cannot fence the source (it is
    /// unreachable and has no fence hook). Never set by automatic failover.
    #[serde(default)]
    pub accept_unfenced: bool,
    /// `cli`, `api`, `automatic`.
    pub requested_by: String,
    pub reason: Option<String>,
    /// Automatic failover: when the primary was first seen failing. RTO
    /// counts from there, not from the decision.
    pub detected_at_us: Option<i64>,
    /// The host a host-local operation (rejoin, recover, drill) was started
    /// on: only a driver there may run or resume it.
    #[serde(default)]
    pub host: Option<String>,
    /// The plan the operator confirmed (`drctl failover` at its prompt, or
    /// an API caller passing its dry run's plan back): the Plan action
    /// executes exactly this one, and refuses when it went stale in a way
    /// that matters. `None`: the plan the Plan action makes is the one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_plan: Option<Box<PlanReport>>,
}

/// A reason not to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    /// Stable: `target_unreachable`, `target_not_standby`, `data_loss`,
    /// `data_loss_unknown`, `source_unreachable`, `target_not_streaming`,
    /// `same_region`, `unfenced_source` (only `--accept-unfenced` passes it).
    pub code: String,
    pub message: String,
    /// `--accept-data-loss` overrides it.
    pub overridable: bool,
}

/// The blockers a plan collects as it reads each side.
#[derive(Debug, Default)]
pub(crate) struct Blockers(Vec<Blocker>);

impl Blockers {
    /// A reason not to run; `overridable`: `--accept-data-loss` passes it.
    pub fn block(&mut self, code: &str, message: String, overridable: bool) {
        self.0.push(Blocker {
            code: code.into(),
            message,
            overridable,
        });
    }

    /// A reason not to run that no flag overrides.
    pub fn refuse(&mut self, code: &str, message: String) {
        self.block(code, message, false);
    }

    /// `same_region` when the operation would move a service onto the
    /// region it is in.
    pub fn same_region(&mut self, p: &OperationParams) {
        if p.source == p.target {
            self.refuse(
                "same_region",
                format!("source and target are both {}", p.source),
            );
        }
    }

    pub fn into_vec(self) -> Vec<Blocker> {
        self.0
    }
}

/// The plan: what would happen and what it would cost, now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    pub kind: OperationKind,
    pub service: String,
    pub cluster: String,
    pub members: Vec<String>,
    pub source: String,
    pub target: String,
    /// The engine of the service's servers (how to read the states and
    /// positions below). Plans journaled before it was recorded were all
    /// PostgreSQL's.
    #[serde(default = "postgres")]
    pub engine: Engine,
    pub steps: Vec<Step>,
    pub source_state: Option<ServerState>,
    pub source_error: Option<String>,
    pub target_state: Option<ServerState>,
    pub target_error: Option<String>,
    /// Expected data loss in time (µs) and WAL bytes, if the primary region
    /// were lost now.
    pub expected_loss_us: Option<i64>,
    pub expected_loss_bytes: Option<u64>,
    /// Where the expected loss comes from.
    pub expected_loss_basis: String,
    pub rpo_target_us: i64,
    pub rto_target_ms: u64,
    /// Median RTO of past operations of this kind on this service.
    pub expected_rto_ms: Option<u64>,
    pub expected_rto_basis: String,
    /// `record → value` flips, one per member with DNS.
    pub dns: Vec<String>,
    /// How the source will be fenced.
    pub fence: String,
    pub blockers: Vec<Blocker>,
    pub planned_at: DateTime<Utc>,
    /// A rejoin's server: the host and data directory it acts on and the
    /// database found there, checked again before every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalNode>,
}

fn postgres() -> Engine {
    Engine::Postgres
}

/// The server a host-local operation acts on, as its plan found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalNode {
    pub host: String,
    pub data_dir: String,
    /// The database system identifier in the data directory's
    /// `global/pg_control` (text: it is an unsigned 64-bit number), `None`
    /// when there was none.
    pub system_identifier: Option<String>,
}

impl PlanReport {
    /// A plan for `p` with nothing read yet (no server state, no expected
    /// loss, no DNS flip, no blocker): what every kind shares, including
    /// the expected RTO from `past` operations. Each kind fills in the rest.
    pub(crate) fn skeleton(
        p: &OperationParams,
        targets: drctl_config::Targets,
        engine: Engine,
        past: &[drctl_store::OperationRecord],
    ) -> PlanReport {
        let (expected_rto_ms, expected_rto_basis) = expected_rto(past, p.kind, &p.service);
        PlanReport {
            kind: p.kind,
            service: p.service.clone(),
            cluster: p.cluster.clone(),
            members: p.members.clone(),
            source: p.source.clone(),
            target: p.target.clone(),
            engine,
            // The saga fills in its list (plan does not depend on it).
            steps: Vec::new(),
            source_state: None,
            source_error: None,
            target_state: None,
            target_error: None,
            expected_loss_us: None,
            expected_loss_bytes: None,
            expected_loss_basis: String::new(),
            rpo_target_us: us(targets.rpo),
            rto_target_ms: targets.rto.as_millis() as u64,
            expected_rto_ms,
            expected_rto_basis,
            dns: Vec::new(),
            fence: String::new(),
            blockers: Vec::new(),
            planned_at: Utc::now(),
            local: None,
        }
    }

    /// The blockers that stand given `accept_data_loss`.
    pub fn standing(&self, accept_data_loss: bool) -> Vec<&Blocker> {
        self.blockers
            .iter()
            .filter(|b| !(accept_data_loss && b.overridable))
            .collect()
    }
}

pub(crate) fn us(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// Picks source and target: the source is the cluster's primary now (store,
/// else config); the target is `to`, else the first other region.
pub(crate) fn regions(
    service: &Service,
    current_primary: &str,
    to: Option<&str>,
) -> Result<(String, String), crate::FailoverError> {
    let target = match to {
        Some(t) => {
            if !service.regions.iter().any(|r| r == t) {
                return Err(crate::FailoverError::UnknownRegion {
                    service: service.name.clone(),
                    region: t.to_string(),
                    known: service.regions.join(", "),
                });
            }
            t.to_string()
        }
        None => service
            .regions
            .iter()
            .find(|r| *r != current_primary)
            .cloned()
            .ok_or_else(|| crate::FailoverError::UnknownRegion {
                service: service.name.clone(),
                region: "(another region)".into(),
                known: service.regions.join(", "),
            })?,
    };
    Ok((current_primary.to_string(), target))
}

/// The DNS flips an operation makes, as text (a drill's go to the drill
/// records, never the production ones).
pub(crate) fn dns_flips(
    config: &Config,
    members: &[String],
    target: &str,
    kind: OperationKind,
) -> Vec<String> {
    members
        .iter()
        .filter_map(|m| config.service(m))
        .filter_map(|s| s.dns.as_ref())
        .map(|d| {
            format!(
                "{} {} → {} ({target})",
                if kind == OperationKind::Drill {
                    &d.drill_record
                } else {
                    &d.record
                },
                d.rtype.as_str(),
                d.target(target).unwrap_or("?")
            )
        })
        .collect()
}

/// The median RTO of past succeeded operations of `kind` on `service`.
pub(crate) fn expected_rto(
    past: &[drctl_store::OperationRecord],
    kind: OperationKind,
    service: &str,
) -> (Option<u64>, String) {
    let mut rtos: Vec<u64> = past
        .iter()
        .filter(|o| {
            o.kind == kind
                && o.service.as_deref() == Some(service)
                && o.status == crate::OpStatus::Succeeded
        })
        .filter_map(|o| o.result.as_deref())
        .filter_map(|r| serde_json::from_str::<Measured>(r).ok())
        .map(|m| m.rto_ms)
        .collect();
    if rtos.is_empty() {
        return (
            None,
            format!("no past {} of {service} on record", kind.as_str()),
        );
    }
    rtos.sort_unstable();
    let n = rtos.len();
    (
        Some(rtos[n / 2]),
        format!("median of {n} past {}(s) of {service}", kind.as_str()),
    )
}

impl PlanReport {
    /// Why this plan, confirmed earlier, may no longer be executed given
    /// `now`, the plan as of now: another source or target (the roles
    /// changed), other members, or a blocker standing now that was not
    /// standing when it was confirmed. What may change without mattering:
    /// server readings, the expected loss within what passes, timings.
    pub fn stale_against(&self, now: &PlanReport, accept_data_loss: bool) -> Vec<String> {
        let mut why = Vec::new();
        if self.kind != now.kind || self.service != now.service {
            why.push(format!(
                "the confirmed plan is a {} of {}, not a {} of {}",
                self.kind.as_str(),
                self.service,
                now.kind.as_str(),
                now.service
            ));
        }
        if self.source != now.source || self.target != now.target {
            why.push(format!(
                "the roles changed: the confirmed plan moves {} → {}, now it would be {} → {}",
                self.source, self.target, now.source, now.target
            ));
        }
        if self.members != now.members {
            why.push(format!(
                "the cluster's services changed: confirmed {}, now {}",
                self.members.join(", "),
                now.members.join(", ")
            ));
        }
        let confirmed: Vec<&str> = self
            .standing(accept_data_loss)
            .iter()
            .map(|b| b.code.as_str())
            .collect();
        for b in now.standing(accept_data_loss) {
            if !confirmed.contains(&b.code.as_str()) {
                why.push(format!("a blocker appeared: {}", b.message));
            }
        }
        why
    }
}
