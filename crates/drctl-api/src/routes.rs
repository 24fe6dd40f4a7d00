//! Routes and handlers under `/api/v1`, plus `/healthz` and `/metrics`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use drctl_monitor::ServiceView;
use drctl_store::{ExposureStats, LagSample};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiPath;
use crate::{ApiError, ApiState};

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/services", get(services))
        .route("/api/v1/rpo-rto", get(rpo_rto))
        .route("/api/v1/services/{name}/lag", get(lag_history))
        .route("/api/v1/backups", get(backups))
        .route("/api/v1/restore-tests", get(restore_tests))
        .route("/api/v1/schedule-runs", get(schedule_runs))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/audit/verify", get(audit_verify))
        .merge(crate::operations::routes())
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::NotFound })
        // Without this a wrong method gets axum's empty 405, not JSON.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authorize,
        ))
        .with_state(state)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&state.monitor),
    )
}

/// The configured services, with `primary` where the primary is now (a
/// failover or switchover moves it away from the config's `primary`, which
/// stays as `configured_primary`).
async fn services(State(state): State<ApiState>) -> Json<Value> {
    let services: Vec<Value> = state
        .monitor
        .config()
        .services
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            v["configured_primary"] = json!(s.primary);
            v["primary"] = json!(state.monitor.primary_region(s));
            v
        })
        .collect();
    Json(json!({ "services": services }))
}

fn secs(us: Option<i64>) -> Option<f64> {
    us.map(|us| us as f64 / 1e6)
}

#[derive(Serialize)]
struct Window {
    samples: u64,
    unknown_samples: u64,
    p50_s: Option<f64>,
    p99_s: Option<f64>,
    max_s: Option<f64>,
}

impl From<ExposureStats> for Window {
    fn from(s: ExposureStats) -> Self {
        Window {
            samples: s.samples,
            unknown_samples: s.unknown_samples,
            p50_s: secs(s.p50_us),
            p99_s: secs(s.p99_us),
            max_s: secs(s.max_us),
        }
    }
}

#[derive(Serialize)]
struct StandbyFigures {
    region: String,
    status: String,
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
            status: s.status.clone(),
            exposure_s: secs(s.rpo_exposure_us),
            exposure_is_lower_bound: s.exposure_lower_bound,
            replay_lag_s: secs(s.replay_lag_us),
            byte_lag: s.byte_lag,
            replay_byte_lag: s.replay_byte_lag,
            wal_receiver: s.wal_receiver.clone(),
            naive_replay_delay_s: secs(s.naive_replay_delay_us),
            error: s.error.clone(),
        }
    }
}

/// The RPO/RTO figures of one service, as the API and `drctl status` show
/// them, with their compliance judged at `now`.
pub(crate) fn service_figures(v: &ServiceView, every: std::time::Duration, now: DateTime<Utc>) -> Value {
    json!({
        "compliance": drctl_monitor::compliance::assess(v, every, now),
        "service": v.service,
        "tier": v.tier,
        "status": v.status,
        "rpo": {
            "target_s": v.rpo_target.as_secs_f64(),
            "exposure_s": secs(v.rpo_exposure_us),
            "exposure_is_lower_bound": v.exposure_lower_bound,
            "best_standby": v.best_standby,
            "above_target_since": v.above_target_since,
            "window_1h": Window::from(v.stats_1h),
            "window_24h": Window::from(v.stats_24h),
            "windows_computed_at": v.stats_at,
        },
        "rto": {
            "target_s": v.rto_target.as_secs_f64(),
            "status": v.rto_status,
            "reason": v.rto_reason,
            "measured_s": secs(v.rto_measured_us),
            "source": v.rto_source,
            "measured_at": v.rto_measured_at,
            "evidence_age_s": v.rto_measured_at.map(|t| (Utc::now() - t).num_milliseconds() as f64 / 1000.0),
            "note": if v.rto_measured_us.is_none() { Some("no failover, drill or restore test has measured this service's RTO yet") } else { None },
        },
        "backup": v.backup_evidence.as_ref().map(|e| json!({
            "newest_backup": e.newest_backup.as_ref().map(|b| json!({"id": b.id, "status": b.status, "ended_at": b.ended_at, "verification": b.verification})),
            "newest_verified_backup": e.newest_verified_backup.as_ref().map(|b| json!({"id": b.id, "ended_at": b.ended_at, "stop_lsn": b.stop_lsn, "stored_bytes": b.stored_bytes})),
            "newest_restore_tested_backup": e.newest_restore_tested_backup.as_ref().map(|b| json!({"id": b.id, "ended_at": b.ended_at})),
            "latest_restore_test": e.latest_restore_test.as_ref().map(|t| json!({"id": t.id, "backup_id": t.backup_id, "status": t.status, "ended_at": t.ended_at, "time_to_ready_s": secs(t.time_to_ready_us), "error": t.error})),
        })),
        "sampled_at": v.sampled_at,
        "primary_time": v.primary_time,
        "error": v.error,
        "note": v.note,
        "standbys": v.standbys.iter().map(StandbyFigures::from).collect::<Vec<_>>(),
    })
}

async fn rpo_rto(State(state): State<ApiState>) -> Json<Value> {
    let now = Utc::now();
    let config = state.monitor.config();
    let services: Vec<Value> = state
        .monitor
        .views()
        .iter()
        .map(|v| {
            let every = config
                .service(&v.service)
                .map(|s| s.targets.evidence_every)
                .unwrap_or_else(|| config.tiers.get(v.tier).evidence_every);
            service_figures(v, every, now)
        })
        .collect();
    let mut by_status = serde_json::Map::new();
    let mut fresh = 0;
    for s in &services {
        let status = s["compliance"]["status"].as_str().unwrap_or("unknown").to_string();
        let n = by_status.get(&status).and_then(Value::as_u64).unwrap_or(0);
        by_status.insert(status, json!(n + 1));
        fresh += (s["compliance"]["evidence"]["status"] == "fresh") as u64;
    }
    Json(json!({
        "generated_at": now,
        "summary": {
            "services": services.len(),
            "by_status": by_status,
            "covered_by_fresh_evidence": fresh,
        },
        "services": services,
    }))
}

#[derive(Deserialize)]
struct LagQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    /// Fold samples into buckets of this length (`1m`, `5m`): the worst of
    /// each, for charts over a day.
    bucket: Option<String>,
}

/// A point in time: RFC 3339, or a duration ago (`15m`, `24h`).
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now - chrono::TimeDelta::from_std(ago).unwrap_or(chrono::TimeDelta::MAX)),
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration ago (15m, 24h)"
        )),
    }
}

pub(crate) fn parse_time(
    parameter: &'static str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    parse_instant(text, now).map_err(|reason| ApiError::InvalidParameter { parameter, reason })
}

const MAX_LIMIT: u32 = 100_000;

/// `Ok` for a configured service; a 404 with a did-you-mean otherwise.
pub(crate) fn known_service(state: &ApiState, name: &str) -> Result<(), ApiError> {
    let config = state.monitor.config();
    if config.service(name).is_some() {
        return Ok(());
    }
    let suggestion = config
        .services
        .iter()
        .map(|s| (strsim::jaro_winkler(&s.name, name), &s.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.clone());
    Err(ApiError::ServiceNotFound {
        name: name.to_string(),
        suggestion,
    })
}

async fn lag_history(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    query: Result<Query<LagQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    known_service(&state, &name)?;
    let now = Utc::now();
    let since = match &q.since {
        Some(s) => parse_time("since", s, now)?,
        None => now - chrono::TimeDelta::hours(1),
    };
    let until = q
        .until
        .as_deref()
        .map(|u| parse_time("until", u, now))
        .transpose()?;
    let limit = match &q.limit {
        None => 3600,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or(ApiError::InvalidParameter {
                parameter: "limit",
                reason: format!("{l:?} is not a whole number from 1 to {MAX_LIMIT}"),
            })?,
    };
    let bucket = q
        .bucket
        .as_deref()
        .map(|b| {
            humantime::parse_duration(b)
                .ok()
                .filter(|d| *d >= std::time::Duration::from_secs(1) && *d <= std::time::Duration::from_secs(86_400))
                .ok_or_else(|| ApiError::InvalidParameter {
                    parameter: "bucket",
                    reason: format!("{b:?} is not a duration from 1s to 24h (e.g. 1m, 5m)"),
                })
        })
        .transpose()?;
    let store = state.monitor.store();
    let samples = match bucket {
        Some(b) => {
            store
                .lag_buckets(&name, since, until, b.as_micros() as i64, limit)
                .await?
        }
        None => store.lag_samples(&name, since, until, limit).await?,
    };
    let points: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "sampled_at": s.sampled_at,
                "standby_region": s.standby_region,
                "status": s.status,
                "exposure_s": secs(s.rpo_exposure_us),
                "exposure_is_lower_bound": s.exposure_lower_bound,
                "replay_lag_s": secs(s.replay_lag_us),
                "byte_lag": s.byte_lag,
                "naive_replay_delay_s": secs(s.naive_replay_delay_us),
                "error": s.error,
            })
        })
        .collect();
    Ok(Json(json!({
        "service": name,
        "since": since,
        "until": until,
        "truncated": points.len() as u32 == limit,
        "samples": points,
    })))
}

#[derive(Deserialize)]
struct EvidenceQuery {
    service: Option<String>,
    limit: Option<String>,
}

fn evidence_query(
    state: &ApiState,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<(Option<String>, u32), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    if let Some(name) = &q.service {
        known_service(state, name)?;
    }
    let limit = match &q.limit {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or(ApiError::InvalidParameter {
                parameter: "limit",
                reason: format!("{l:?} is not a whole number from 1 to 10000"),
            })?,
    };
    Ok((q.service, limit))
}

async fn backups(
    State(state): State<ApiState>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (service, limit) = evidence_query(&state, query)?;
    let list = state
        .monitor
        .store()
        .backups(service.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "backups": list })))
}

async fn restore_tests(
    State(state): State<ApiState>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (service, limit) = evidence_query(&state, query)?;
    let list = state
        .monitor
        .store()
        .restore_tests(service.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "restore_tests": list })))
}

async fn schedule_runs(
    State(state): State<ApiState>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (service, limit) = evidence_query(&state, query)?;
    let list = state
        .monitor
        .store()
        .schedule_runs(service.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "schedule_runs": list })))
}

#[derive(Deserialize)]
struct AuditQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    /// The page before this sequence number (the `next` link carries it).
    before: Option<String>,
}

/// The audit log, newest first, a page at a time (admin only).
async fn audit_log(
    State(state): State<ApiState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    let now = Utc::now();
    let since = q.since.as_deref().map(|t| parse_time("since", t, now)).transpose()?;
    let until = q.until.as_deref().map(|t| parse_time("until", t, now)).transpose()?;
    let limit = page_limit(q.limit.as_deref(), 100, 1000)?;
    let before = q
        .before
        .as_deref()
        .map(|b| {
            b.parse::<i64>().map_err(|_| ApiError::InvalidParameter {
                parameter: "before",
                reason: format!("{b:?} is not an audit row number"),
            })
        })
        .transpose()?;
    let entries = state
        .monitor
        .store()
        .audit_entries(since, until, before, limit as i64)
        .await?;
    let next = (entries.len() as u32 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten()
        .map(|seq| {
            let mut link = format!("/api/v1/audit?limit={limit}&before={seq}");
            for (k, v) in [("since", &q.since), ("until", &q.until)] {
                if let Some(v) = v {
                    link.push_str(&format!("&{k}={}", urlencode(v)));
                }
            }
            link
        });
    Ok(Json(json!({ "entries": entries, "next": next })))
}

/// Recomputes the audit log's hash chain (admin only).
async fn audit_verify(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let report = state.monitor.store().verify_audit(None).await?;
    Ok(Json(json!({ "verification": report })))
}

/// `limit` of a list endpoint: 1..=max, `default` when absent.
pub(crate) fn page_limit(text: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    match text {
        None => Ok(default),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or(ApiError::InvalidParameter {
                parameter: "limit",
                reason: format!("{l:?} is not a whole number from 1 to {max}"),
            }),
    }
}

/// Percent-encodes a query value for a `next` link.
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
