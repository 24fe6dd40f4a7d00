//! The API's response bodies for stored records: its own types, not the
//! store's rows, so a column added to the store is not published by
//! accident and a change of storage does not change the API.
//!
//! Field names, their order and the spelling of every state are the ones
//! the API has always served (tests/api.rs and the crate's tests pin them);
//! each type converts from its row with `From<&Row>`. The answers that are
//! computed rather than read (RPO/RTO figures, compliance, reports) stay
//! with their handlers and use these for the records they cite.

use chrono::{DateTime, Utc};
use drctl_config::secs_from_us;
use drctl_store::states::{
    BackupStatus, MonitorStatus, OffsiteStatus, RestoreTestStatus, ScheduleRunStatus, ScheduledJob,
    VerificationStatus,
};
use drctl_store::{
    AuditEntry, BackupRecord, DaemonRecord, LagSample, RestoreTestRecord, ScheduleRun,
};
use serde::Serialize;
use utoipa::ToSchema;

/// A backup as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupView {
    pub id: String,
    pub service: String,
    pub region: String,
    /// The object store's name in the config.
    pub store: String,
    pub status: BackupStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub timeline: Option<i64>,
    pub start_lsn: Option<String>,
    pub stop_lsn: Option<String>,
    pub stored_bytes: Option<i64>,
    pub uncompressed_bytes: Option<i64>,
    /// The manifest as written to the object store (JSON).
    pub manifest: Option<String>,
    pub error: Option<String>,
    /// `null` until verified.
    pub verification: Option<VerificationStatus>,
    pub verified_at: Option<DateTime<Utc>>,
    pub verification_error: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The second store the backup is copied to, if any.
    pub offsite_store: Option<String>,
    pub offsite_status: Option<OffsiteStatus>,
    pub offsite_error: Option<String>,
    pub offsite_at: Option<DateTime<Utc>>,
}

impl From<&BackupRecord> for BackupView {
    fn from(b: &BackupRecord) -> Self {
        BackupView {
            id: b.id.clone(),
            service: b.service.clone(),
            region: b.region.clone(),
            store: b.store.clone(),
            status: b.status,
            started_at: b.started_at,
            ended_at: b.ended_at,
            timeline: b.timeline,
            start_lsn: b.start_lsn.clone(),
            stop_lsn: b.stop_lsn.clone(),
            stored_bytes: b.stored_bytes,
            uncompressed_bytes: b.uncompressed_bytes,
            manifest: b.manifest.clone(),
            error: b.error.clone(),
            verification: b.verification,
            verified_at: b.verified_at,
            verification_error: b.verification_error.clone(),
            deleted_at: b.deleted_at,
            offsite_store: b.offsite_store.clone(),
            offsite_status: b.offsite_status,
            offsite_error: b.offsite_error.clone(),
            offsite_at: b.offsite_at,
        }
    }
}

/// A restore test as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RestoreTestView {
    pub id: String,
    pub service: String,
    pub backup_id: String,
    pub status: RestoreTestStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// From the start of the restore until PostgreSQL answered: RTO evidence.
    pub time_to_ready_us: Option<i64>,
    /// Validation query results (JSON).
    pub results: Option<String>,
    pub error: Option<String>,
}

impl From<&RestoreTestRecord> for RestoreTestView {
    fn from(t: &RestoreTestRecord) -> Self {
        RestoreTestView {
            id: t.id.clone(),
            service: t.service.clone(),
            backup_id: t.backup_id.clone(),
            status: t.status,
            started_at: t.started_at,
            ended_at: t.ended_at,
            time_to_ready_us: t.time_to_ready_us,
            results: t.results.clone(),
            error: t.error.clone(),
        }
    }
}

/// One due run of a schedule as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ScheduleRunView {
    pub service: String,
    pub job: ScheduledJob,
    pub due_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: ScheduleRunStatus,
    pub detail: Option<String>,
}

impl From<&ScheduleRun> for ScheduleRunView {
    fn from(r: &ScheduleRun) -> Self {
        ScheduleRunView {
            service: r.service.clone(),
            job: r.job,
            due_at: r.due_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            status: r.status,
            detail: r.detail.clone(),
        }
    }
}

/// A daemon sharing the store, as it last reported itself.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DaemonView {
    pub id: String,
    pub host: String,
    /// Where its API answers (`[api] advertise`, or its listen address).
    pub api_url: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Its last refresh, on the store's clock.
    pub seen_at: DateTime<Utc>,
}

impl From<&DaemonRecord> for DaemonView {
    fn from(d: &DaemonRecord) -> Self {
        DaemonView {
            id: d.id.clone(),
            host: d.host.clone(),
            api_url: d.api_url.clone(),
            version: d.version.clone(),
            started_at: d.started_at,
            seen_at: d.seen_at,
        }
    }
}

/// One row of the audit log, with its place in the hash chain.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: Option<String>,
    pub source: String,
    pub action: String,
    pub target: Option<String>,
    /// A JSON object, secrets redacted.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(e: &AuditEntry) -> Self {
        AuditEntryView {
            seq: e.seq,
            at: e.at,
            actor: e.actor.clone(),
            role: e.role.clone(),
            source: e.source.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            detail: e.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// One standby's figures in a service's RPO/RTO answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StandbyFigures {
    region: String,
    status: MonitorStatus,
    exposure_s: Option<f64>,
    exposure_is_lower_bound: bool,
    replay_lag_s: Option<f64>,
    byte_lag: Option<i64>,
    replay_byte_lag: Option<i64>,
    wal_receiver: Option<String>,
    /// `now() - pg_last_xact_replay_timestamp()` on the standby, for
    /// comparison only: it grows on an idle primary although nothing is lost.
    naive_replay_delay_s: Option<f64>,
    error: Option<String>,
}

impl From<&LagSample> for StandbyFigures {
    fn from(s: &LagSample) -> Self {
        StandbyFigures {
            region: s.standby_region.clone(),
            status: s.status,
            exposure_s: secs_from_us(s.rpo_exposure_us),
            exposure_is_lower_bound: s.exposure_lower_bound,
            replay_lag_s: secs_from_us(s.replay_lag_us),
            byte_lag: s.byte_lag,
            replay_byte_lag: s.replay_byte_lag,
            wal_receiver: s.wal_receiver.clone(),
            naive_replay_delay_s: secs_from_us(s.naive_replay_delay_us),
            error: s.error.clone(),
        }
    }
}

/// One point of a service's lag history (a sample, or a bucket's worst).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LagPoint {
    sampled_at: DateTime<Utc>,
    standby_region: String,
    status: MonitorStatus,
    exposure_s: Option<f64>,
    exposure_is_lower_bound: bool,
    replay_lag_s: Option<f64>,
    byte_lag: Option<i64>,
    naive_replay_delay_s: Option<f64>,
    error: Option<String>,
}

impl From<&LagSample> for LagPoint {
    fn from(s: &LagSample) -> Self {
        LagPoint {
            sampled_at: s.sampled_at,
            standby_region: s.standby_region.clone(),
            status: s.status,
            exposure_s: secs_from_us(s.rpo_exposure_us),
            exposure_is_lower_bound: s.exposure_lower_bound,
            replay_lag_s: secs_from_us(s.replay_lag_us),
            byte_lag: s.byte_lag,
            naive_replay_delay_s: secs_from_us(s.naive_replay_delay_us),
            error: s.error.clone(),
        }
    }
}

/// A backup named as evidence in a service's RPO/RTO answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupRef {
    id: String,
    status: Option<BackupStatus>,
    ended_at: Option<DateTime<Utc>>,
    verification: Option<VerificationStatus>,
    stop_lsn: Option<String>,
    stored_bytes: Option<i64>,
}

impl From<&BackupRecord> for BackupRef {
    fn from(b: &BackupRecord) -> Self {
        BackupRef {
            id: b.id.clone(),
            status: Some(b.status),
            ended_at: b.ended_at,
            verification: b.verification,
            stop_lsn: b.stop_lsn.clone(),
            stored_bytes: b.stored_bytes,
        }
    }
}

/// A restore test named as evidence in a service's RPO/RTO answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RestoreTestRef {
    id: String,
    backup_id: String,
    status: RestoreTestStatus,
    ended_at: Option<DateTime<Utc>>,
    time_to_ready_s: Option<f64>,
    error: Option<String>,
}

impl From<&RestoreTestRecord> for RestoreTestRef {
    fn from(t: &RestoreTestRecord) -> Self {
        RestoreTestRef {
            id: t.id.clone(),
            backup_id: t.backup_id.clone(),
            status: t.status,
            ended_at: t.ended_at,
            time_to_ready_s: secs_from_us(t.time_to_ready_us),
            error: t.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// The view serializes exactly as the row did when the API served rows:
    /// same fields, same order, same spellings.
    #[test]
    fn views_serialize_byte_for_byte_as_the_rows_did() {
        let backup = BackupRecord {
            id: "bk-1".into(),
            service: "orders".into(),
            region: "eu".into(),
            store: "dr".into(),
            status: BackupStatus::Complete,
            started_at: at(0),
            ended_at: Some(at(60)),
            timeline: Some(1),
            start_lsn: Some("0/2000028".into()),
            stop_lsn: Some("0/2000100".into()),
            stored_bytes: Some(10),
            uncompressed_bytes: Some(20),
            manifest: Some("{}".into()),
            error: None,
            verification: Some(VerificationStatus::Failed),
            verified_at: Some(at(61)),
            verification_error: Some("x".into()),
            deleted_at: None,
            offsite_store: Some("far".into()),
            offsite_status: Some(OffsiteStatus::Copying),
            offsite_error: None,
            offsite_at: None,
        };
        let json = serde_json::to_string(&BackupView::from(&backup)).unwrap();
        assert_eq!(json, serde_json::to_string(&backup).unwrap());
        assert!(json.contains(r#""status":"complete""#), "{json}");
        assert!(json.contains(r#""verification":"failed""#), "{json}");
        assert!(json.contains(r#""offsite_status":"copying""#), "{json}");

        let test = RestoreTestRecord {
            id: "rt-1".into(),
            service: "orders".into(),
            backup_id: "bk-1".into(),
            status: RestoreTestStatus::Passed,
            started_at: at(0),
            ended_at: None,
            time_to_ready_us: Some(5),
            results: None,
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&RestoreTestView::from(&test)).unwrap(),
            serde_json::to_string(&test).unwrap()
        );

        let run = ScheduleRun {
            service: "orders".into(),
            job: ScheduledJob::Backup,
            due_at: at(0),
            started_at: None,
            ended_at: None,
            status: ScheduleRunStatus::Missed,
            detail: None,
        };
        let json = serde_json::to_string(&ScheduleRunView::from(&run)).unwrap();
        assert_eq!(json, serde_json::to_string(&run).unwrap());
        assert!(json.contains(r#""status":"missed""#), "{json}");
    }

    /// The states are schemas of their own now (enums with their
    /// spellings): every reference to one in the document resolves.
    #[test]
    fn every_schema_reference_of_the_document_resolves() {
        let (_, doc) = crate::routes::documented();
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for r in &found {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(schemas.get(name).is_some(), "{r} does not resolve");
        }
        assert_eq!(
            schemas["MonitorStatus"]["enum"],
            serde_json::json!(["ok", "at_risk", "breach", "unknown"])
        );
        assert!(
            found.iter().any(|r| r.ends_with("/BackupView")),
            "{found:?}"
        );
    }
}
