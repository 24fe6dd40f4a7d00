//! Compliance: is a service inside its targets, and is that proven by
//! evidence fresh enough to trust?
//!
//! A pure function of the monitor's view of one service and the time, so
//! the API, the dashboard, the metrics and the report all judge alike:
//!
//! - **RPO** from exposure now (the monitor's status, with its breach
//!   grace) and the p99 over the last hour: a p99 above target with
//!   exposure fine now is `at_risk` (the target is being missed often).
//! - **RTO** from the newest RTO evidence against the target.
//! - **Evidence**: the tier's proof — a drill, failover or switchover for
//!   replicated tiers, a passed restore test for cold — within the
//!   service's `evidence_every`; `stale` when overdue, `unverified` when the
//!   service's configuration changed after it (the old proof no longer
//!   covers what runs now), `missing` when there never was one.
//!
//! The overall status is the worst of those, in the order `breach`,
//! `at_risk`, `unknown`, `stale`, `unverified`, `compliant`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_config::{format_secs, secs_from_us};
use serde::Serialize;

use drctl_store::states::{
    ComplianceStatus, EvidenceStatus, ProofRequired, RpoJudgement, RtoJudgement,
};

use crate::{ServiceView, Status};

/// The newest proof that a service recovers within its RTO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Proof {
    /// `drill`, `failover`, `switchover` or `restore_test`.
    pub kind: String,
    pub id: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Compliance {
    pub status: ComplianceStatus,
    /// Why it is not `compliant`, one sentence per finding.
    pub reasons: Vec<String>,
    pub rpo: RpoCompliance,
    pub rto: RtoCompliance,
    pub evidence: EvidenceCompliance,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RpoCompliance {
    pub status: RpoJudgement,
    pub exposure_s: Option<f64>,
    pub exposure_is_lower_bound: bool,
    pub p99_s: Option<f64>,
    pub target_s: f64,
    pub window: &'static str,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RtoCompliance {
    pub status: RtoJudgement,
    pub measured_s: Option<f64>,
    pub target_s: f64,
    pub source: Option<String>,
    pub measured_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EvidenceCompliance {
    pub status: EvidenceStatus,
    /// What counts as proof for this tier.
    pub required: ProofRequired,
    pub required_every_s: f64,
    pub last_kind: Option<String>,
    pub last_id: Option<String>,
    pub last_at: Option<DateTime<Utc>>,
    pub age_s: Option<f64>,
    /// When the next proof is due (overdue when in the past).
    pub due_at: Option<DateTime<Utc>>,
    /// When the service's configuration last changed (`None`: never, since
    /// drctl first saw it).
    pub config_changed_at: Option<DateTime<Utc>>,
}

/// Judges one service at `now`; `every` is its `evidence_every`.
pub fn assess(v: &ServiceView, every: Duration, now: DateTime<Utc>) -> Compliance {
    let mut reasons = Vec::new();
    let target_s = v.rpo_target.as_secs_f64();
    let p99_s = secs_from_us(v.stats_1h.p99_us);
    let exposure_s = secs_from_us(v.rpo_exposure_us);
    let rpo_status = match v.status {
        Status::Breach => {
            reasons.push(format!(
                "RPO exposure {}{} is above the {} target",
                if v.exposure_lower_bound {
                    "at least "
                } else {
                    ""
                },
                exposure_s.map(format_secs).unwrap_or_else(|| "?".into()),
                format_secs(target_s)
            ));
            RpoJudgement::Breach
        }
        Status::AtRisk => {
            reasons.push(format!(
                "RPO exposure {} is close to the {} target",
                exposure_s.map(format_secs).unwrap_or_else(|| "?".into()),
                format_secs(target_s)
            ));
            RpoJudgement::AtRisk
        }
        Status::Unknown => {
            reasons.push(format!(
                "RPO exposure cannot be measured: {}",
                v.error.clone().unwrap_or_else(|| "no sample yet".into())
            ));
            RpoJudgement::Unknown
        }
        Status::Ok => match p99_s {
            Some(p99) if p99 > target_s => {
                reasons.push(format!(
                    "RPO p99 over the last hour is {}, above the {} target",
                    format_secs(p99),
                    format_secs(target_s)
                ));
                RpoJudgement::AtRisk
            }
            _ => RpoJudgement::Met,
        },
    };

    let rto_target_s = v.rto_target.as_secs_f64();
    let rto_status = match v.rto_status {
        Status::Ok | Status::AtRisk => RtoJudgement::Met,
        Status::Breach => {
            reasons.push(v.rto_reason.clone().unwrap_or_else(|| {
                format!(
                    "measured RTO is above the {} target",
                    format_secs(rto_target_s)
                )
            }));
            RtoJudgement::Breach
        }
        Status::Unknown => RtoJudgement::Unknown,
    };

    let required = if v.tier.is_replicated() {
        ProofRequired::Drill
    } else {
        ProofRequired::RestoreTest
    };
    let proof = v.proof.as_ref();
    let age = proof.map(|p| (now - p.at).to_std().unwrap_or_default());
    // Checked: `at + TimeDelta::MAX` panics, and no duration may panic the monitor.
    let due_at = proof.map(|p| {
        chrono::TimeDelta::from_std(every)
            .ok()
            .and_then(|every| p.at.checked_add_signed(every))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    let changed_after = match (proof, v.config_changed_at) {
        (Some(p), Some(changed)) => changed > p.at,
        _ => false,
    };
    let evidence_status = match (proof, age) {
        (None, _) | (_, None) => {
            reasons.push(format!(
                "no {} has proven the RTO yet",
                required.to_string().replace('_', " ")
            ));
            EvidenceStatus::Missing
        }
        _ if changed_after => {
            reasons.push(format!(
                "the configuration changed after the last {}: run one to prove the service as it is now",
                required.to_string().replace('_', " ")
            ));
            EvidenceStatus::Unverified
        }
        (Some(p), Some(age)) if age > every => {
            reasons.push(format!(
                "the last {} ({}) is {} old; one is required every {}",
                p.kind.replace('_', " "),
                p.id,
                format_secs(age.as_secs_f64()),
                format_secs(every.as_secs_f64())
            ));
            EvidenceStatus::Stale
        }
        _ => EvidenceStatus::Fresh,
    };

    let status = match (rpo_status, rto_status, evidence_status) {
        (RpoJudgement::Breach, _, _) | (_, RtoJudgement::Breach, _) => ComplianceStatus::Breach,
        (RpoJudgement::AtRisk, _, _) => ComplianceStatus::AtRisk,
        (RpoJudgement::Unknown, _, _) => ComplianceStatus::Unknown,
        (_, _, EvidenceStatus::Stale) => ComplianceStatus::Stale,
        (_, _, EvidenceStatus::Unverified | EvidenceStatus::Missing) => {
            ComplianceStatus::Unverified
        }
        (RpoJudgement::Met, _, EvidenceStatus::Fresh) => ComplianceStatus::Compliant,
    };

    Compliance {
        status,
        reasons,
        rpo: RpoCompliance {
            status: rpo_status,
            exposure_s,
            exposure_is_lower_bound: v.exposure_lower_bound,
            p99_s,
            target_s,
            window: "1h",
        },
        rto: RtoCompliance {
            status: rto_status,
            measured_s: secs_from_us(v.rto_measured_us),
            target_s: rto_target_s,
            source: v.rto_source.clone(),
            measured_at: v.rto_measured_at,
        },
        evidence: EvidenceCompliance {
            status: evidence_status,
            required,
            required_every_s: every.as_secs_f64(),
            last_kind: proof.map(|p| p.kind.clone()),
            last_id: proof.map(|p| p.id.clone()),
            last_at: proof.map(|p| p.at),
            age_s: age.map(|a| a.as_secs_f64()),
            due_at,
            config_changed_at: v.config_changed_at,
        },
    }
}

/// Every status a service can have, for summaries and metrics.
pub const STATUSES: &[ComplianceStatus] = <ComplianceStatus as strum::VariantArray>::VARIANTS;

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_config::Tier;

    fn view(tier: Tier) -> ServiceView {
        let mut v = ServiceView::empty(
            "orders",
            tier,
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        v.status = Status::Ok;
        v.rpo_exposure_us = Some(0);
        v.rto_status = Status::Ok;
        v.rto_measured_us = Some(900_000);
        v
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    fn proof(s: i64) -> Option<Proof> {
        Some(Proof {
            kind: "drill".into(),
            id: "op-1".into(),
            at: at(s),
        })
    }

    #[test]
    fn fresh_proof_and_targets_met_is_compliant() {
        let mut v = view(Tier::Hot);
        v.proof = proof(0);
        let c = assess(&v, WEEK, at(3600));
        assert_eq!(
            (c.status, c.evidence.status),
            (ComplianceStatus::Compliant, EvidenceStatus::Fresh),
            "{:?}",
            c.reasons
        );
        assert_eq!(c.evidence.due_at, Some(at(7 * 86_400)));
    }

    #[test]
    fn overdue_proof_is_stale_and_a_config_change_unverifies_it() {
        let mut v = view(Tier::Hot);
        v.proof = proof(0);
        let c = assess(&v, WEEK, at(8 * 86_400));
        assert_eq!(
            (c.status, c.evidence.status),
            (ComplianceStatus::Stale, EvidenceStatus::Stale)
        );
        v.config_changed_at = Some(at(10));
        let c = assess(&v, WEEK, at(3600));
        assert_eq!(
            (c.status, c.evidence.status),
            (ComplianceStatus::Unverified, EvidenceStatus::Unverified)
        );
        // A drill after the change proves it again.
        v.proof = proof(20);
        assert_eq!(
            assess(&v, WEEK, at(3600)).status,
            ComplianceStatus::Compliant
        );
    }

    #[test]
    fn breach_outranks_everything_and_p99_above_target_is_at_risk() {
        let mut v = view(Tier::Hot);
        v.proof = proof(0);
        v.stats_1h.p99_us = Some(9_000_000);
        let c = assess(&v, WEEK, at(60));
        assert_eq!(
            (c.status, c.rpo.status),
            (ComplianceStatus::AtRisk, RpoJudgement::AtRisk)
        );
        v.status = Status::Breach;
        v.rpo_exposure_us = Some(12_000_000);
        v.proof = None;
        let c = assess(&v, WEEK, at(60));
        assert_eq!(c.status, ComplianceStatus::Breach);
        assert!(
            c.reasons[0].contains("above the 5s target"),
            "{:?}",
            c.reasons
        );
        assert_eq!(c.evidence.status, EvidenceStatus::Missing);
    }

    #[test]
    fn cold_tier_needs_a_restore_test() {
        let v = view(Tier::Cold);
        let c = assess(&v, WEEK, at(60));
        assert_eq!(
            (c.evidence.required, c.status),
            (ProofRequired::RestoreTest, ComplianceStatus::Unverified)
        );
    }
}
