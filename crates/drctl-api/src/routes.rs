//! Routes and handlers under `/api/v1`, plus `/healthz` and `/metrics`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use drctl_monitor::ServiceView;
use drctl_store::{ExposureStats, LagSample};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{ApiError, ApiState};

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/services", get(services))
        .route("/api/v1/rpo-rto", get(rpo_rto))
        .route("/api/v1/services/{name}/lag", get(lag_history))
        .fallback(|| async { ApiError::NotFound })
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

async fn services(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "services": state.monitor.config().services }))
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

/// The RPO/RTO figures of one service, as the API and `drctl status` show them.
pub(crate) fn service_figures(v: &ServiceView) -> Value {
    json!({
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
            "measured_s": null,
            "evidence": null,
            "note": "no failover, drill or restore test has measured this service's RTO yet",
        },
        "sampled_at": v.sampled_at,
        "primary_time": v.primary_time,
        "error": v.error,
        "note": v.note,
        "standbys": v.standbys.iter().map(StandbyFigures::from).collect::<Vec<_>>(),
    })
}

async fn rpo_rto(State(state): State<ApiState>) -> Json<Value> {
    let services: Vec<Value> = state.monitor.views().iter().map(service_figures).collect();
    Json(json!({ "generated_at": Utc::now(), "services": services }))
}

#[derive(Deserialize)]
struct LagQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

/// A point in time: RFC 3339, or a duration ago (`15m`, `24h`).
fn parse_time(
    parameter: &'static str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now - chrono::TimeDelta::from_std(ago).unwrap_or(chrono::TimeDelta::MAX)),
        Err(_) => Err(ApiError::InvalidParameter {
            parameter,
            reason: format!("{text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration ago (15m, 24h)"),
        }),
    }
}

const MAX_LIMIT: u32 = 100_000;

async fn lag_history(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    query: Result<Query<LagQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    let config = state.monitor.config();
    if config.service(&name).is_none() {
        let suggestion = config
            .services
            .iter()
            .map(|s| (strsim::jaro_winkler(&s.name, &name), &s.name))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, n)| n.clone());
        return Err(ApiError::ServiceNotFound { name, suggestion });
    }
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
    let samples = state
        .monitor
        .store()
        .lag_samples(&name, since, until, limit)
        .await?;
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
