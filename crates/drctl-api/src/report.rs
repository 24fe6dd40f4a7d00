//! Compliance reports: per service over a period, how long it was inside
//! its RPO target, every breach with its start, end and worst exposure,
//! the operations with their measured RPO and RTO, the backups,
//! verifications and restore tests, and the gaps in the evidence — the
//! record an auditor asks for. `GET /api/v1/report` and `drctl report`
//! build the same [`Report`] from the state store, in JSON, Markdown, HTML
//! or CSV.
//!
//! How the figures are made (and the report says so in each `basis`):
//! - Replicated tiers: the lag samples of the last hour, one time slot per
//!   monitor interval, the best standby's exposure in each; a slot is
//!   breaching when that exposure is above the target (no grace: the
//!   report is stricter than the live status). Before that hour, per-minute
//!   worst exposure: the rollups past the raw retention, and the raw
//!   samples folded per minute by the store where not rolled up yet. Slots
//!   with no sample are an evidence gap.
//!
//! What a report may cost (it is viewer-level, and anonymous when no token
//! is configured, while the same store carries lease renewals): a report
//! reads at most [`RAW_WINDOW`] of raw rows per service, the API serves
//! periods up to [`MAX_API_PERIOD`] (a longer one is cut to its last
//! [`MAX_API_PERIOD`], and the report's `note` says so), and at most [`CONCURRENT_REPORTS`] are
//! built at once — a request beyond that gets a 429 `report_busy` with
//! `Retry-After` instead of queueing on the store.
//! - Cold tier: exposure at any moment is the age of the newest backup
//!   verified by then; a breach starts when that age passes the target and
//!   ends when a newer backup is verified.
//! - Evidence freshness: a stretch with no drill (replicated) or passed
//!   restore test (cold) within `evidence_every` is an evidence gap.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use drctl_config::{Config, Service};
use drctl_store::{LagSample, Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::docs::{NotFound, ReadErrors};
use crate::routes::parse_time;
use crate::{ApiError, ApiState};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// The newest stretch of a report read from raw samples (one slot per
/// monitor interval); before it, per-minute worst values.
pub const RAW_WINDOW: Duration = Duration::from_secs(3600);
/// The longest period `GET /api/v1/report` serves (a quarter, with room):
/// a longer one is cut to its end, not refused (a schema-valid request is
/// answered). `drctl report`, on the operator's own machine, has no cap.
pub const MAX_API_PERIOD: Duration = Duration::from_secs(93 * 86_400);
/// Reports built at once by the API; more are refused, not queued.
pub const CONCURRENT_REPORTS: usize = 2;
/// What `Retry-After` says to a refused report request, in seconds.
pub const REPORT_RETRY_AFTER_S: u64 = 5;
/// Raw rows read per service at most: an hour at the shortest interval
/// (100 ms) for three standbys, so a store flooded with samples cannot
/// blow a report up.
const RAW_ROW_LIMIT: u32 = 36_000 * 3;
/// Per-minute rows read per service at most: the longest period, three standbys.
const MINUTE_ROW_LIMIT: u32 = 93 * 1440 * 3;

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub summary: ReportSummary,
    pub services: Vec<ServiceReport>,
    /// Why the period is not the one asked for (the API's cap), if it is not.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportSummary {
    pub services: usize,
    /// Services with no breach and no evidence gap in the period.
    pub without_findings: usize,
    pub breaches: usize,
    pub breach_s: f64,
    pub operations: usize,
    pub evidence_gaps: usize,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ServiceReport {
    pub service: String,
    pub tier: String,
    pub rpo_target_s: f64,
    pub rto_target_s: f64,
    pub evidence_every_s: f64,
    pub rpo: ReportRpo,
    pub breaches: Vec<Breach>,
    pub operations: Vec<OperationEntry>,
    pub backups: Vec<BackupEntry>,
    pub restore_tests: Vec<RestoreTestEntry>,
    pub evidence_gaps: Vec<EvidenceGap>,
}

/// RPO over the period.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct ReportRpo {
    /// Seconds of the period with a measurement.
    pub measured_s: f64,
    /// Seconds measured inside the target.
    pub compliant_s: f64,
    pub breach_s: f64,
    /// Seconds with no measurement (no sample, or no verified backup yet).
    pub unmeasured_s: f64,
    /// compliant / measured, in percent; `null` when nothing was measured.
    pub compliance_pct: Option<f64>,
    pub worst_exposure_s: Option<f64>,
    /// How the figures were made.
    pub basis: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Breach {
    pub start: DateTime<Utc>,
    /// `null` while it lasts at the end of the period.
    pub end: Option<DateTime<Utc>>,
    pub duration_s: f64,
    pub worst_exposure_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OperationEntry {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub rpo_s: Option<f64>,
    pub rpo_met: Option<bool>,
    pub rto_s: Option<f64>,
    pub rto_met: Option<bool>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupEntry {
    pub id: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub stored_bytes: Option<i64>,
    /// `verified`, `failed` or `null` (not verified).
    pub verification: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RestoreTestEntry {
    pub id: String,
    pub backup_id: String,
    pub status: String,
    pub ended_at: Option<DateTime<Utc>>,
    pub time_to_ready_s: Option<f64>,
    pub rto_met: Option<bool>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EvidenceGap {
    /// `no_samples` (nothing measured the service) or `proof_overdue` (no
    /// drill or restore test within `evidence_every`).
    pub kind: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub duration_s: f64,
    pub detail: String,
}

fn secs(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn us_secs(us: Option<i64>) -> Option<f64> {
    us.map(|u| u as f64 / 1e6)
}

/// One time slot of the exposure timeline: `[start, end)`, with the
/// exposure measured in it (`None`: unmeasured).
struct Slot {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    exposure_s: Option<f64>,
}

/// Breaches, compliance and `no_samples` gaps from a timeline of slots.
fn judge_slots(
    slots: &[Slot],
    target_s: f64,
    to: DateTime<Utc>,
    basis: String,
) -> (ReportRpo, Vec<Breach>) {
    let mut rpo = ReportRpo {
        basis,
        ..Default::default()
    };
    // Sums in whole microseconds: a percentage of sums of floats would
    // print 99.99999999999999 for a service never out of its target.
    let (mut measured, mut compliant, mut breaching, mut unmeasured) = (0i64, 0i64, 0i64, 0i64);
    let mut breaches: Vec<Breach> = Vec::new();
    let mut open: Option<Breach> = None;
    for s in slots {
        let len = (s.end - s.start).num_microseconds().unwrap_or(0);
        match s.exposure_s {
            None => {
                unmeasured += len;
                if let Some(b) = open.take() {
                    breaches.push(b);
                }
            }
            Some(e) => {
                measured += len;
                rpo.worst_exposure_s = Some(rpo.worst_exposure_s.map_or(e, |w: f64| w.max(e)));
                if e > target_s {
                    breaching += len;
                    let b = open.get_or_insert(Breach {
                        start: s.start,
                        end: Some(s.end),
                        duration_s: 0.0,
                        worst_exposure_s: Some(e),
                    });
                    b.end = Some(s.end);
                    b.duration_s = secs(s.end - b.start);
                    b.worst_exposure_s = Some(b.worst_exposure_s.unwrap_or(e).max(e));
                } else {
                    compliant += len;
                    if let Some(b) = open.take() {
                        breaches.push(b);
                    }
                }
            }
        }
    }
    if let Some(mut b) = open.take() {
        // Still breaching at the end of the period: it has not ended.
        if b.end.is_some_and(|e| e >= to) {
            b.end = None;
        }
        breaches.push(b);
    }
    rpo.measured_s = measured as f64 / 1e6;
    rpo.compliant_s = compliant as f64 / 1e6;
    rpo.breach_s = breaching as f64 / 1e6;
    rpo.unmeasured_s = unmeasured as f64 / 1e6;
    rpo.compliance_pct = (measured > 0).then(|| {
        // Rounded to a millionth of a percent, and 100 only when no
        // microsecond was out of target.
        let pct = (compliant as f64 * 1e8 / measured as f64).floor() / 1e6;
        if compliant == measured {
            100.0
        } else {
            pct.min(99.999999)
        }
    });
    (rpo, breaches)
}

/// Unmeasured stretches of slots, merged, as `no_samples` gaps.
fn sample_gaps(slots: &[Slot], min: Duration) -> Vec<EvidenceGap> {
    let mut gaps: Vec<EvidenceGap> = Vec::new();
    let mut open: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    let close = |g: Option<(DateTime<Utc>, DateTime<Utc>)>, gaps: &mut Vec<EvidenceGap>| {
        if let Some((start, end)) = g {
            let d = secs(end - start);
            if d >= min.as_secs_f64() {
                gaps.push(EvidenceGap {
                    kind: "no_samples".into(),
                    start,
                    end: Some(end),
                    duration_s: d,
                    detail: "no lag sample: the daemon was not running, could not reach the databases or could not store".into(),
                });
            }
        }
    };
    for s in slots {
        if s.exposure_s.is_none() {
            open = Some(match open {
                Some((start, _)) => (start, s.end),
                None => (s.start, s.end),
            });
        } else {
            close(open.take(), &mut gaps);
        }
    }
    close(open.take(), &mut gaps);
    gaps
}

/// The exposure timeline of a replicated service from its lag samples.
///
/// Samples taken within half an interval of each other are one tick (one
/// per standby); a tick's exposure is its best standby's. A tick covers the
/// time until the next one, unless that is more than three intervals away:
/// then it covers one interval and the rest is unmeasured.
///
/// The first breaching tick after a compliant one starts its slot earlier,
/// where the breach provably began: the oldest missing commit of a sample
/// with exposure `e` at `t` was already missing at every moment since
/// `t - e`, so exposure passed the target at `t - e + target` at the latest.
/// A breach's end is the first tick seen back inside the target (the
/// moment it really ended is somewhere before: the report errs long).
fn replicated_slots(
    samples: &[LagSample],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Duration,
    target_s: f64,
) -> Vec<Slot> {
    let step = TimeDelta::from_std(step).unwrap_or(TimeDelta::seconds(1));
    let mut sorted: Vec<&LagSample> = samples
        .iter()
        .filter(|s| s.sampled_at >= from && s.sampled_at < to)
        .collect();
    sorted.sort_by_key(|s| s.sampled_at);
    let mut ticks: Vec<(DateTime<Utc>, Option<f64>)> = Vec::new();
    for s in sorted {
        let e = s.rpo_exposure_us.map(|us| us as f64 / 1e6);
        match ticks.last_mut() {
            Some((t, best)) if s.sampled_at.signed_duration_since(*t) < step / 2 => {
                if let Some(e) = e {
                    *best = Some(best.map_or(e, |b: f64| b.min(e)));
                }
            }
            _ => ticks.push((s.sampled_at, e)),
        }
    }
    let mut slots = Vec::new();
    let mut cursor = from;
    let mut previous: Option<f64> = None;
    for (i, (t, e)) in ticks.iter().enumerate() {
        let mut start = *t;
        if let (Some(e), Some(prev)) = (e, previous) {
            if *e > target_s && prev <= target_s {
                // Checked: an absurd exposure read from the store must not panic the API.
                let began = t
                    .checked_sub_signed(TimeDelta::milliseconds(((e - target_s) * 1000.0) as i64))
                    .unwrap_or(from);
                // The compliant tick before was already breaching from `began`.
                if let Some(last) = slots
                    .last_mut()
                    .filter(|l: &&mut Slot| l.start < began && began < l.end)
                {
                    last.end = began;
                    cursor = began;
                }
                start = began.max(cursor);
            }
        }
        if start > cursor {
            slots.push(Slot {
                start: cursor,
                end: start,
                exposure_s: None,
            });
        }
        let next = ticks.get(i + 1).map(|(n, _)| *n).unwrap_or(to);
        let end = if next - *t > step * 3 {
            *t + step
        } else {
            next
        }
        .min(to);
        if end > start {
            slots.push(Slot {
                start,
                end,
                exposure_s: *e,
            });
        }
        cursor = end.max(cursor);
        previous = *e;
    }
    if cursor < to {
        slots.push(Slot {
            start: cursor,
            end: to,
            exposure_s: None,
        });
    }
    slots
}

/// The exposure timeline of a cold service from its verified backups: at
/// each moment, the age of the newest backup verified by then. Slots are
/// cut where the newest verified backup changes and where the age crosses
/// the target, so breaches start and end at the exact moment.
fn cold_slots(
    verified: &[(DateTime<Utc>, DateTime<Utc>)], // (ended_at, verified_at)
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    target: TimeDelta,
) -> Vec<Slot> {
    let mut cuts: Vec<DateTime<Utc>> = vec![from, to];
    for (ended, verified_at) in verified {
        cuts.push(*verified_at);
        cuts.push(
            ended
                .checked_add_signed(target)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        );
    }
    cuts.retain(|t| *t >= from && *t <= to);
    cuts.sort();
    cuts.dedup();
    let newest_end_by = |t: DateTime<Utc>| {
        verified
            .iter()
            .filter(|(_, v)| *v <= t)
            .map(|(e, _)| *e)
            .max()
    };
    cuts.windows(2)
        .map(|w| {
            let (start, end) = (w[0], w[1]);
            // The worst moment of a slot is its end (age only grows until
            // a new backup is verified, which starts a new slot).
            let probe = end - TimeDelta::microseconds(1);
            let exposure_s = newest_end_by(start).map(|e| secs(probe.max(start) - e).max(0.0));
            Slot {
                start,
                end,
                exposure_s,
            }
        })
        .collect()
}

/// Stretches with no fresh proof: from `proofs` (times), each proof
/// covering `every` after it.
fn proof_gaps(
    proofs: &[DateTime<Utc>],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    every: TimeDelta,
    what: &str,
) -> Vec<EvidenceGap> {
    let mut gaps = Vec::new();
    let mut sorted: Vec<DateTime<Utc>> = proofs.to_vec();
    sorted.sort();
    // Checked: a proof covers "for ever" rather than panicking at the end of time.
    let covered = |p: DateTime<Utc>| {
        p.checked_add_signed(every)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    let mut covered_until = sorted
        .iter()
        .filter(|p| **p <= from)
        .max()
        .map(|p| covered(*p))
        .unwrap_or(from);
    let mut push = |start: DateTime<Utc>, end: Option<DateTime<Utc>>| {
        let until = end.unwrap_or(to);
        if until > start {
            gaps.push(EvidenceGap {
                kind: "proof_overdue".into(),
                start,
                end,
                duration_s: secs(until - start),
                detail: format!(
                    "no {what} within the required {}",
                    drctl_monitor::format_secs(secs(every))
                ),
            });
        }
    };
    for p in sorted.iter().filter(|p| **p > from && **p <= to) {
        if *p > covered_until {
            push(covered_until, Some(*p));
        }
        covered_until = covered_until.max(covered(*p));
    }
    if covered_until < to {
        push(covered_until, None);
    }
    gaps
}

fn result_f64(result: &Option<String>, key: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(result.as_deref()?).ok()?;
    v.get(key)?.as_f64()
}

fn result_bool(result: &Option<String>, key: &str) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_str(result.as_deref()?).ok()?;
    v.get(key)?.as_bool()
}

/// Builds the report for `[from, to)` from the store.
pub async fn build(
    config: &Config,
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let operations = store.operations(100_000).await?;
    let mut services = Vec::new();
    for svc in &config.services {
        services.push(service_report(config, store, svc, &operations, from, to).await?);
    }
    let summary = ReportSummary {
        services: services.len(),
        without_findings: services
            .iter()
            .filter(|s| s.breaches.is_empty() && s.evidence_gaps.is_empty())
            .count(),
        breaches: services.iter().map(|s| s.breaches.len()).sum(),
        breach_s: services.iter().map(|s| s.rpo.breach_s).sum(),
        operations: services.iter().map(|s| s.operations.len()).sum(),
        evidence_gaps: services.iter().map(|s| s.evidence_gaps.len()).sum(),
    };
    Ok(Report {
        generated_at: Utc::now(),
        from,
        to,
        summary,
        services,
        note: None,
    })
}

async fn service_report(
    config: &Config,
    store: &Store,
    svc: &Service,
    operations: &[drctl_store::OperationRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ServiceReport, StoreError> {
    let target_s = svc.targets.rpo.as_secs_f64();
    let every = TimeDelta::from_std(svc.targets.evidence_every).unwrap_or(TimeDelta::MAX);
    let rto_target_ms = svc.targets.rto.as_millis() as f64;
    let backups = store.backups(Some(&svc.name), 100_000).await?;
    let restore_tests = store.restore_tests(Some(&svc.name), 100_000).await?;
    let in_period = |t: DateTime<Utc>| t >= from && t < to;

    let interval = config.monitor.interval;
    let (rpo, breaches, mut gaps) = if !svc.has_datastore() {
        let rpo = ReportRpo {
            measured_s: secs(to - from),
            compliant_s: secs(to - from),
            compliance_pct: Some(100.0),
            worst_exposure_s: Some(0.0),
            basis: "no datastore: nothing to lose".into(),
            ..Default::default()
        };
        (rpo, Vec::new(), Vec::new())
    } else if svc.tier.is_replicated() {
        // Raw samples for the newest hour only; per-minute worst values
        // before it: rollups, then the raw samples not rolled up yet,
        // folded per minute by the store (one row a minute, not one a
        // sample, crosses to the API).
        let raw_window = TimeDelta::from_std(RAW_WINDOW).unwrap_or(TimeDelta::hours(1));
        let raw_from = to.checked_sub_signed(raw_window).unwrap_or(from).max(from);
        let raw = store
            .lag_samples(&svc.name, raw_from, Some(to), RAW_ROW_LIMIT)
            .await?;
        let mut slots = Vec::new();
        if raw_from > from {
            let rollups = store.lag_rollups(&svc.name, from, Some(raw_from)).await?;
            let mut minutes: Vec<LagSample> = rollups
                .iter()
                .map(|r| {
                    let mut s =
                        LagSample::bare(&r.service, &r.standby_region, r.minute, r.exposure_max_us);
                    s.byte_lag = r.byte_lag_max;
                    s
                })
                .collect();
            let folded_until = rollups
                .last()
                .map(|r| {
                    r.minute
                        .checked_add_signed(TimeDelta::minutes(1))
                        .unwrap_or(r.minute)
                })
                .unwrap_or(from)
                .max(from);
            if folded_until < raw_from {
                minutes.extend(
                    store
                        .lag_buckets(
                            &svc.name,
                            folded_until,
                            Some(raw_from),
                            60_000_000,
                            MINUTE_ROW_LIMIT,
                        )
                        .await?
                        .into_iter()
                        // A bucket starts on the minute, maybe before the stretch.
                        .map(|mut s| {
                            s.sampled_at = s.sampled_at.max(folded_until);
                            s
                        }),
                );
            }
            slots.extend(replicated_slots(
                &minutes,
                from,
                raw_from,
                Duration::from_secs(60),
                target_s,
            ));
        }
        slots.extend(replicated_slots(&raw, raw_from, to, interval, target_s));
        let basis = format!(
            "lag samples every {} (per-minute worst before {}), best standby; breaching while exposure is above the target, from the moment it provably passed it until a sample is back inside",
            drctl_monitor::format_secs(interval.as_secs_f64()),
            raw_from.format("%Y-%m-%d %H:%M:%SZ")
        );
        let (rpo, breaches) = judge_slots(&slots, target_s, to, basis);
        let gaps = sample_gaps(&slots, interval * 3);
        (rpo, breaches, gaps)
    } else {
        let verified: Vec<(DateTime<Utc>, DateTime<Utc>)> = backups
            .iter()
            .filter(|b| b.verification.as_deref() == Some("verified"))
            .filter_map(|b| Some((b.ended_at?, b.verified_at?)))
            .collect();
        let slots = cold_slots(
            &verified,
            from,
            to,
            TimeDelta::from_std(svc.targets.rpo).unwrap_or(TimeDelta::MAX),
        );
        let basis = "age of the newest verified backup at each moment".to_string();
        let (rpo, breaches) = judge_slots(&slots, target_s, to, basis);
        (rpo, breaches, Vec::new())
    };

    let ops: Vec<OperationEntry> = operations
        .iter()
        .filter(|o| {
            in_period(o.started_at)
                && (o.service.as_deref() == Some(svc.name.as_str())
                    || (o.target.as_deref() == Some(svc.cluster.as_str()) && o.kind.is_journaled()))
        })
        .map(|o| OperationEntry {
            id: o.id.clone(),
            kind: o.kind.to_string(),
            status: o.status.to_string(),
            started_at: o.started_at,
            ended_at: o.ended_at,
            rpo_s: result_f64(&o.result, "rpo_us").map(|u| u / 1e6),
            rpo_met: result_bool(&o.result, "rpo_met"),
            rto_s: result_f64(&o.result, "rto_ms").map(|m| m / 1e3),
            rto_met: result_bool(&o.result, "rto_met"),
            error: o.error.clone(),
        })
        .collect();

    let proofs: Vec<DateTime<Utc>> = if svc.tier.is_replicated() {
        operations
            .iter()
            .filter(|o| {
                o.status == drctl_store::states::OpStatus::Succeeded
                    && o.target.as_deref() == Some(svc.cluster.as_str())
                    && o.kind.moves_a_service()
            })
            .filter_map(|o| o.ended_at)
            .collect()
    } else {
        restore_tests
            .iter()
            .filter(|t| t.status == "passed")
            .filter_map(|t| t.ended_at)
            .collect()
    };
    if svc.has_datastore() {
        let what = if svc.tier.is_replicated() {
            "drill"
        } else {
            "passed restore test"
        };
        gaps.extend(proof_gaps(&proofs, from, to, every, what));
    }
    gaps.sort_by_key(|g| g.start);

    Ok(ServiceReport {
        service: svc.name.clone(),
        tier: svc.tier.to_string(),
        rpo_target_s: target_s,
        rto_target_s: svc.targets.rto.as_secs_f64(),
        evidence_every_s: svc.targets.evidence_every.as_secs_f64(),
        rpo,
        breaches,
        operations: ops,
        backups: backups
            .iter()
            .filter(|b| in_period(b.started_at))
            .map(|b| BackupEntry {
                id: b.id.clone(),
                status: b.status.clone(),
                started_at: b.started_at,
                ended_at: b.ended_at,
                stored_bytes: b.stored_bytes,
                verification: b.verification.clone(),
                verified_at: b.verified_at,
            })
            .collect(),
        restore_tests: restore_tests
            .iter()
            .filter(|t| in_period(t.started_at))
            .map(|t| RestoreTestEntry {
                id: t.id.clone(),
                backup_id: t.backup_id.clone(),
                status: t.status.clone(),
                ended_at: t.ended_at,
                time_to_ready_s: us_secs(t.time_to_ready_us),
                rto_met: t
                    .time_to_ready_us
                    .map(|us| (us as f64 / 1e3) <= rto_target_ms),
            })
            .collect(),
        evidence_gaps: gaps,
    })
}

/// The period of a report: `from`/`to` as RFC 3339 or a duration ago;
/// default the last 30 days. A `from` after `to` is an empty period (the
/// report says so: nothing measured), not an error.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = to
        .map(|t| parse_time("to", t, now))
        .transpose()?
        .unwrap_or(now);
    let from = from
        .map(|f| parse_time("from", f, now))
        .transpose()?
        .unwrap_or(to - TimeDelta::days(30));
    Ok((from.min(to), to))
}

fn t(d: &DateTime<Utc>) -> String {
    d.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn opt_t(d: &Option<DateTime<Utc>>) -> String {
    d.as_ref().map(t).unwrap_or_else(|| "ongoing".into())
}

fn f(s: Option<f64>) -> String {
    s.map(drctl_monitor::format_secs)
        .unwrap_or_else(|| "—".into())
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "—",
    }
}

/// Markdown, for a ticket or a wiki page.
pub fn to_markdown(r: &Report) -> String {
    let mut out = format!(
        "# drctl compliance report\n\nPeriod: {} to {} (generated {}).\n\n\
         {} services; {} without findings; {} breaches ({} in all); {} operations; {} evidence gaps.\n",
        t(&r.from),
        t(&r.to),
        t(&r.generated_at),
        r.summary.services,
        r.summary.without_findings,
        r.summary.breaches,
        drctl_monitor::format_secs(r.summary.breach_s),
        r.summary.operations,
        r.summary.evidence_gaps,
    );
    for s in &r.services {
        out.push_str(&format!(
            "\n## {} ({})\n\nRPO target {}, RTO target {}, proof every {}.\n\n\
             RPO compliance: {} of the measured time ({} measured, {} in breach, {} unmeasured; worst exposure {}). Basis: {}.\n",
            s.service,
            s.tier,
            f(Some(s.rpo_target_s)),
            f(Some(s.rto_target_s)),
            f(Some(s.evidence_every_s)),
            s.rpo.compliance_pct.map(|p| format!("{p:.3} %")).unwrap_or_else(|| "not measured".into()),
            f(Some(s.rpo.measured_s)),
            f(Some(s.rpo.breach_s)),
            f(Some(s.rpo.unmeasured_s)),
            f(s.rpo.worst_exposure_s),
            s.rpo.basis,
        ));
        if !s.breaches.is_empty() {
            out.push_str(
                "\n| breach start | end | duration | worst exposure |\n|---|---|---|---|\n",
            );
            for b in &s.breaches {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    t(&b.start),
                    opt_t(&b.end),
                    f(Some(b.duration_s)),
                    f(b.worst_exposure_s)
                ));
            }
        }
        if !s.operations.is_empty() {
            out.push_str("\n| operation | kind | status | started | RPO | | RTO | |\n|---|---|---|---|---|---|---|---|\n");
            for o in &s.operations {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    o.id,
                    o.kind,
                    o.status,
                    t(&o.started_at),
                    f(o.rpo_s),
                    met(o.rpo_met),
                    f(o.rto_s),
                    met(o.rto_met)
                ));
            }
        }
        if !s.backups.is_empty() {
            out.push_str("\n| backup | status | ended | verification |\n|---|---|---|---|\n");
            for b in &s.backups {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    b.id,
                    b.status,
                    b.ended_at.as_ref().map(t).unwrap_or_default(),
                    b.verification.as_deref().unwrap_or("not verified")
                ));
            }
        }
        if !s.restore_tests.is_empty() {
            out.push_str(
                "\n| restore test | backup | status | ready after | RTO |\n|---|---|---|---|---|\n",
            );
            for x in &s.restore_tests {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    x.id,
                    x.backup_id,
                    x.status,
                    f(x.time_to_ready_s),
                    met(x.rto_met)
                ));
            }
        }
        if !s.evidence_gaps.is_empty() {
            out.push_str("\n| evidence gap | start | end | duration | |\n|---|---|---|---|---|\n");
            for g in &s.evidence_gaps {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    g.kind,
                    t(&g.start),
                    opt_t(&g.end),
                    f(Some(g.duration_s)),
                    g.detail
                ));
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A standalone HTML page (print it to PDF for the auditor).
pub fn to_html(r: &Report) -> String {
    let mut body = String::new();
    let mut in_table = false;
    // The Markdown rendering is the single source of the layout; its
    // tables and paragraphs become HTML line by line.
    for line in to_markdown(r).lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| esc(c.trim()))
                .collect();
            if !in_table {
                body.push_str("<table><tr>");
                body.extend(cells.iter().map(|c| format!("<th>{c}</th>")));
                body.push_str("</tr>\n");
                in_table = true;
            } else {
                let class = if line.contains("MISSED") {
                    " class=\"missed\""
                } else {
                    ""
                };
                body.push_str(&format!("<tr{class}>"));
                body.extend(cells.iter().map(|c| format!("<td>{c}</td>")));
                body.push_str("</tr>\n");
            }
            continue;
        }
        if in_table {
            body.push_str("</table>\n");
            in_table = false;
        }
        if let Some(h) = line.strip_prefix("## ") {
            body.push_str(&format!("<h2>{}</h2>\n", esc(h)));
        } else if let Some(h) = line.strip_prefix("# ") {
            body.push_str(&format!("<h1>{}</h1>\n", esc(h)));
        } else if !line.is_empty() {
            body.push_str(&format!("<p>{}</p>\n", esc(line)));
        }
    }
    if in_table {
        body.push_str("</table>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>drctl compliance report</title>\n\
         <style>body{{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2433}}table{{border-collapse:collapse;margin:.5em 0 1em}}\
         th,td{{border:1px solid #ccd;padding:.25em .6em;text-align:left}}th{{background:#eef1f6}}tr.missed td{{background:#fde8e8}}\
         h2{{margin-top:1.6em;border-bottom:1px solid #ccd}}</style></head><body>\n{body}</body></html>\n"
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV: one row per finding and record, for a spreadsheet.
pub fn to_csv(r: &Report) -> String {
    const HEADER: &str = "service,tier,record,id,start,end,duration_s,value_s,target_s,met,detail";
    let mut out = format!("{HEADER}\n");
    let o = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let b = |v: Option<bool>| v.map(|v| v.to_string()).unwrap_or_default();
    let at = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    for s in &r.services {
        // record, id, start, end, duration, value, target, met, detail
        let mut rows: Vec<[String; 9]> = vec![[
            "rpo_compliance".into(),
            String::new(),
            at(Some(r.from)),
            at(Some(r.to)),
            o(Some(s.rpo.measured_s)),
            o(s.rpo.compliance_pct),
            String::new(),
            String::new(),
            s.rpo.basis.clone(),
        ]];
        rows.extend(s.breaches.iter().map(|x| {
            [
                "breach".into(),
                String::new(),
                at(Some(x.start)),
                at(x.end),
                o(Some(x.duration_s)),
                o(x.worst_exposure_s),
                o(Some(s.rpo_target_s)),
                "false".into(),
                String::new(),
            ]
        }));
        rows.extend(s.operations.iter().map(|x| {
            [
                "operation".into(),
                x.id.clone(),
                at(Some(x.started_at)),
                at(x.ended_at),
                String::new(),
                o(x.rto_s),
                o(Some(s.rto_target_s)),
                b(x.rto_met),
                format!(
                    "{} {}; RPO {} ({})",
                    x.kind,
                    x.status,
                    o(x.rpo_s),
                    b(x.rpo_met)
                ),
            ]
        }));
        rows.extend(s.backups.iter().map(|x| {
            [
                "backup".into(),
                x.id.clone(),
                at(Some(x.started_at)),
                at(x.ended_at),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!(
                    "{}; {}",
                    x.status,
                    x.verification.as_deref().unwrap_or("not verified")
                ),
            ]
        }));
        rows.extend(s.restore_tests.iter().map(|x| {
            [
                "restore_test".into(),
                x.id.clone(),
                String::new(),
                at(x.ended_at),
                String::new(),
                o(x.time_to_ready_s),
                o(Some(s.rto_target_s)),
                b(x.rto_met),
                format!("{} (backup {})", x.status, x.backup_id),
            ]
        }));
        rows.extend(s.evidence_gaps.iter().map(|x| {
            [
                "evidence_gap".into(),
                x.kind.clone(),
                at(Some(x.start)),
                at(x.end),
                o(Some(x.duration_s)),
                String::new(),
                String::new(),
                String::new(),
                x.detail.clone(),
            ]
        }));
        for row in rows {
            let cells = [s.service.clone(), s.tier.clone()].into_iter().chain(row);
            out.push_str(&cells.map(|c| csv_field(&c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
    }
    out
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// Start of the period (default: 30 days before `to`).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    from: Option<String>,
    /// End of the period (default: now).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    to: Option<String>,
    /// `json` (default), `md`, `html` or `csv`.
    #[param(value_type = Option<String>, pattern = "^(json|md|html|csv)$")]
    format: Option<String>,
}

/// Compliance over a period, per service: time inside the RPO target,
/// breaches, operations with measured RPO/RTO, backups, verifications,
/// restore tests and evidence gaps.
#[utoipa::path(get, path = "/api/v1/report", tag = "reports", params(ReportQuery),
    responses((status = 200, description = "The report (JSON; or Markdown, HTML, CSV by `format`)",
               content((Report = "application/json"), (String = "text/markdown"), (String = "text/html"), (String = "text/csv"))),
              ReadErrors, NotFound, crate::docs::Busy))]
async fn report(
    State(state): State<ApiState>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "md" | "html" | "csv") {
        return Err(ApiError::InvalidParameter {
            parameter: "format",
            reason: format!("{format:?} is not json, md, html or csv"),
        });
    }
    let (asked_from, to) = period(q.from.as_deref(), q.to.as_deref(), Utc::now())?;
    let longest = TimeDelta::from_std(MAX_API_PERIOD).unwrap_or(TimeDelta::days(93));
    let from = asked_from.max(to.checked_sub_signed(longest).unwrap_or(asked_from));
    let note = (from > asked_from).then(|| {
        format!(
            "the API serves at most {}: this report starts at {} instead of {}; ask for the rest in parts, or run `drctl report` beside the store",
            drctl_config::format_duration(MAX_API_PERIOD),
            t(&from),
            t(&asked_from)
        )
    });
    // Refused, not queued: a queue of reports would still hold the store.
    let Ok(_slot) = state.report_slots.clone().try_acquire_owned() else {
        return Err(ApiError::ReportBusy {
            retry_after_s: REPORT_RETRY_AFTER_S,
        });
    };
    let mut report = build(state.monitor.config(), state.monitor.store(), from, to).await?;
    report.note = note;
    let (content_type, body) = match format {
        "md" => ("text/markdown; charset=utf-8", to_markdown(&report)),
        "html" => ("text/html; charset=utf-8", to_html(&report)),
        "csv" => ("text/csv; charset=utf-8", to_csv(&report)),
        _ => return Ok(axum::Json(report).into_response()),
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_breach_in_the_samples_has_its_start_end_and_worst() {
        let slots: Vec<Slot> = [0.1, 0.2, 7.0, 9.0, 3.0, 0.1]
            .iter()
            .enumerate()
            .map(|(i, e)| Slot {
                start: at(i as i64),
                end: at(i as i64 + 1),
                exposure_s: Some(*e),
            })
            .collect();
        let (rpo, breaches) = judge_slots(&slots, 5.0, at(6), String::new());
        assert_eq!(breaches.len(), 1);
        assert_eq!((breaches[0].start, breaches[0].end), (at(2), Some(at(4))));
        assert_eq!(breaches[0].worst_exposure_s, Some(9.0));
        assert_eq!((rpo.breach_s, rpo.compliant_s), (2.0, 4.0));
        assert!((rpo.compliance_pct.unwrap() - 66.666).abs() < 0.01);
    }

    #[test]
    fn cold_exposure_breaches_exactly_when_the_backup_grows_too_old() {
        // Backup ended at 0, verified at 10; the next ended at 100,
        // verified at 110; target 50 s.
        let verified = [(at(0), at(10)), (at(100), at(110))];
        let slots = cold_slots(&verified, at(0), at(200), TimeDelta::seconds(50));
        let (rpo, breaches) = judge_slots(&slots, 50.0, at(200), String::new());
        assert_eq!(rpo.unmeasured_s, 10.0, "nothing verified before 10 s");
        assert_eq!(breaches.len(), 2, "{breaches:?}");
        assert_eq!(
            (breaches[0].start, breaches[0].end),
            (at(50), Some(at(110)))
        );
        assert_eq!(breaches[1].start, at(150));
        assert_eq!(
            breaches[1].end, None,
            "still breaching at the end of the period"
        );
    }

    #[test]
    fn proof_gaps_are_the_stretches_without_a_fresh_drill() {
        let gaps = proof_gaps(
            &[at(10), at(20)],
            at(0),
            at(100),
            TimeDelta::seconds(30),
            "drill",
        );
        let spans: Vec<_> = gaps.iter().map(|g| (g.start, g.end)).collect();
        assert_eq!(spans, vec![(at(0), Some(at(10))), (at(50), None)]);
    }

    fn sample(t: DateTime<Utc>, e: f64) -> LagSample {
        LagSample::bare("orders", "b", t, Some((e * 1e6) as i64))
    }

    #[test]
    fn a_breach_starts_where_it_provably_began_and_a_silence_is_unmeasured() {
        // Link cut at 10: exposure grows 1 s per second; 5 s target; the
        // link is back at 20 and the sample at 21 is inside again.
        let mut samples: Vec<LagSample> = (0..=9).map(|i| sample(at(i), 0.1)).collect();
        samples.extend((11..=20).map(|i| sample(at(i), (i - 10) as f64 + 0.5)));
        samples.push(sample(at(21), 0.1));
        // Then nothing for 10 s (daemon down), then one sample.
        samples.push(sample(at(31), 0.1));
        let slots = replicated_slots(&samples, at(0), at(33), Duration::from_secs(1), 5.0);
        let (rpo, breaches) = judge_slots(&slots, 5.0, at(33), String::new());
        assert_eq!(breaches.len(), 1, "{breaches:?}");
        assert_eq!(
            breaches[0].start,
            at(14) + TimeDelta::milliseconds(500),
            "exposure 5.5 s at 15 means above 5 s since 14.5"
        );
        assert_eq!(breaches[0].end, Some(at(21)));
        assert_eq!(breaches[0].worst_exposure_s, Some(10.5));
        assert_eq!(rpo.breach_s, 6.5);
        assert_eq!(rpo.unmeasured_s, 9.0, "22..31 had no sample");
    }

    #[test]
    fn missing_samples_are_a_gap() {
        let slots: Vec<Slot> = [Some(0.1), None, None, None, Some(0.2)]
            .iter()
            .enumerate()
            .map(|(i, e)| Slot {
                start: at(i as i64),
                end: at(i as i64 + 1),
                exposure_s: *e,
            })
            .collect();
        let gaps = sample_gaps(&slots, Duration::from_secs(3));
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].start, gaps[0].end), (at(1), Some(at(4))));
    }
}
