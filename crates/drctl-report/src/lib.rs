//! Compliance reports: per service over a period, how long it was inside
//! its RPO target, every breach with its start, end and worst exposure,
//! the operations with their measured RPO and RTO, the backups,
//! verifications and restore tests, and the gaps in the evidence — the
//! record an auditor asks for. `GET /api/v1/report` (drctl-api) and `drctl report`
//! build the same [`Report`] from the state store by this crate, and render
//! it by [`render`] in Markdown, HTML or CSV (JSON is its serde form).
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
//! reads at most [`RAW_WINDOW`] of raw rows per service; the API caps the
//! period and the reports built at once (drctl-api's `report` module).
//! - Cold tier: exposure at any moment is the age of the newest backup
//!   verified by then; a breach starts when that age passes the target and
//!   ends when a newer backup is verified.
//! - Evidence freshness: a stretch with no drill (replicated) or passed
//!   restore test (cold) within `evidence_every` is an evidence gap.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;

mod build;
pub mod render;

pub use build::build;

pub use render::{to_csv, to_html, to_markdown};

/// The newest stretch of a report read from raw samples (one slot per
/// monitor interval); before it, per-minute worst values.
pub const RAW_WINDOW: Duration = Duration::from_secs(3600);
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

/// A `from` or `to` that is no point in time.
#[derive(Debug, thiserror::Error)]
#[error("{parameter}: {reason}")]
pub struct PeriodError {
    /// `from` or `to`.
    pub parameter: &'static str,
    pub reason: String,
}

/// The period of a report: `from`/`to` as RFC 3339 or a duration ago;
/// default the last 30 days. A `from` after `to` is an empty period (the
/// report says so: nothing measured), not an error.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), PeriodError> {
    let parse = |parameter: &'static str, text: &str| {
        parse_instant(text, now).map_err(|reason| PeriodError { parameter, reason })
    };
    let to = to.map(|t| parse("to", t)).transpose()?.unwrap_or(now);
    let from = from
        .map(|f| parse("from", f))
        .transpose()?
        .unwrap_or(to - TimeDelta::days(30));
    Ok((from.min(to), to))
}

/// A point in time: RFC 3339, or a duration ago (a whole number and one
/// of `s`, `m`, `h`, `d`: `15m`, `24h`, `7d`). Exactly what the OpenAPI
/// document declares (drctl-api's `TimeParam`), no more.
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    // A duration reaching back past the Unix epoch (999999d: before year
    // 1, which has no RFC 3339 form to answer with) means "everything":
    // no evidence is older than the epoch.
    parse_any_instant(text, now).map(|t| t.max(DateTime::UNIX_EPOCH))
}

/// The duration form of [`parse_instant`].
fn parse_any_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    // Split off the last character (which may be any Unicode character:
    // slice on its boundary, never on a byte count).
    let mut chars = text.chars();
    let unit = chars.next_back().unwrap_or(' ');
    let number = chars.as_str();
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if secs > 0 && (1..=6).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(now - chrono::TimeDelta::seconds(n * secs))
        }
        _ => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration ago (90s, 15m, 24h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    #[test]
    fn durations_reach_back_no_further_than_the_epoch() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_instant("999999d", now).unwrap(),
            chrono::DateTime::UNIX_EPOCH
        );
        let old = parse_instant("0318-06-12T18:01:32+01:13", now).unwrap();
        assert_eq!(old.to_rfc3339(), "0318-06-12T16:48:32+00:00");
    }

    #[test]
    fn instants_take_rfc3339_and_durations_and_refuse_the_rest_without_panicking() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_instant("15m", now).unwrap(),
            now - chrono::TimeDelta::minutes(15)
        );
        assert_eq!(
            parse_instant("7d", now).unwrap(),
            now - chrono::TimeDelta::days(7)
        );
        assert!(parse_instant("2026-01-31T12:00:00Z", now).is_ok());
        for bad in [
            "", "m", "LÐ", "Ð", "1.5h", "-1h", "1234567d", "1 h", "15min", "+5m", "1hm",
        ] {
            assert!(parse_instant(bad, now).is_err(), "{bad:?}");
        }
    }
}
