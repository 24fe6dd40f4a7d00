//! Routes and handlers under `/api/v1`, plus `/healthz` and `/metrics`.
//!
//! Every documented route is registered through `utoipa_axum::routes!` from
//! its handler's `#[utoipa::path]`, and every response body is a type that
//! derives its schema: the OpenAPI document served at
//! `/api/v1/openapi.json` is built from the same code that serves the
//! routes, so the two cannot drift.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use drctl_config::secs_from_us;
use drctl_monitor::compliance::Compliance;
use drctl_monitor::ServiceView;
use drctl_store::states::{EvidenceStatus, MonitorStatus};
use drctl_store::ExposureStats;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::docs::{NotFound, ReadErrors};
use crate::error::ApiPath;
use crate::params::{known_service, page_limit, parse_time, MAX_LIMIT};
use crate::views::{BackupRef, DaemonView, LagPoint, RestoreTestRef, StandbyFigures};
use crate::{ApiError, ApiState};

/// The documented routes, and the OpenAPI document they make.
pub(crate) fn documented() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(crate::docs::base())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(cluster))
        .routes(routes!(services))
        .routes(routes!(rpo_rto))
        .routes(routes!(lag_history))
        .merge(crate::records::routes())
        .merge(crate::operations::routes())
        .merge(crate::report::routes())
        .split_for_parts()
}

pub fn router(state: ApiState) -> Router {
    let (routes, mut doc) = documented();
    let config = &*state.config;
    let services: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
    crate::docs::adapt_to_config(&mut doc, &services, config.api.anonymous.is_some());
    let doc = std::sync::Arc::new(doc);
    routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::NotFound })
        // Without this a wrong method gets axum's empty 405, not JSON.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authorize,
        ))
        // Outermost: a bug that panics in any handler is a logged 500 with
        // the usual JSON body, never a dropped connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = %what, "a request handler panicked");
    ApiError::Internal.into_response()
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`: the daemon answers.
    status: String,
}

/// Liveness: the daemon answers (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "daemon", security(()),
    responses((status = 200, description = "The daemon answers", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ThisDaemon {
    id: String,
    api_url: String,
    leading: bool,
    /// Its term (the leader lease's token) while it leads.
    term: Option<i64>,
    leading_since: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClusterAnswer {
    /// The daemon that answers.
    this: ThisDaemon,
    /// The leader as the store names it; `null` during an election.
    leader: Option<crate::leadership::LeaderView>,
    /// Every daemon seen within three lease times.
    daemons: Vec<DaemonView>,
    /// The leader lease (`[failover] lease`): how long a dead leader is
    /// waited for.
    lease_s: f64,
}

/// The daemons sharing this store: which one leads (and its API, where
/// work is started), and which are there.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "daemon",
    responses((status = 200, description = "The leader and the daemons", body = ClusterAnswer), ReadErrors))]
async fn cluster(State(state): State<ApiState>) -> Json<ClusterAnswer> {
    let l = &state.leadership;
    let s = l.standing();
    Json(ClusterAnswer {
        this: ThisDaemon {
            id: l.id().to_string(),
            api_url: l.api_url().to_string(),
            leading: s.leading,
            term: s.term.filter(|_| s.leading),
            leading_since: s.leading_since.filter(|_| s.leading),
        },
        leader: s.leader,
        daemons: s.daemons.iter().map(DaemonView::from).collect(),
        lease_s: l.lease_time().as_secs_f64(),
    })
}

/// Prometheus metrics (OpenMetrics text): RPO exposure and targets,
/// compliance, evidence age, replication lag, operations, the monitor's own
/// counters.
#[utoipa::path(get, path = "/metrics", tag = "daemon",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String), ReadErrors))]
async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(
            &state.config,
            &state.monitor,
            &state.alerts,
            &state.leadership,
        ),
    )
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ServicesResponse {
    /// Each service's configuration (secrets redacted) with `primary`
    /// (where the primary is now) and `configured_primary`.
    #[schema(value_type = Vec<Object>)]
    services: Vec<Value>,
}

/// The configured services, with `primary` where the primary is now (a
/// failover or switchover moves it away from the config's `primary`, which
/// stays as `configured_primary`).
#[utoipa::path(get, path = "/api/v1/services", tag = "services",
    responses((status = 200, body = ServicesResponse), ReadErrors))]
async fn services(
    State(state): State<ApiState>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Json<ServicesResponse> {
    // A fence hook's argv is for operators: it may carry a credential.
    let sees_hooks = caller.is_some_and(|axum::Extension(c)| c.sees_fence_hooks());
    let services: Vec<Value> = state
        .config
        .services
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            v["configured_primary"] = json!(s.primary);
            v["primary"] = json!(state.monitor.primary_region(s));
            if !sees_hooks {
                crate::auth::redact_fence_hooks(&mut v);
            }
            v
        })
        .collect();
    Json(ServicesResponse { services })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Window {
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
            p50_s: secs_from_us(s.p50_us),
            p99_s: secs_from_us(s.p99_us),
            max_s: secs_from_us(s.max_us),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RpoFigures {
    target_s: f64,
    /// Exposure now on the best standby (cold tier: the WAL archive's lag,
    /// else since the newest verified backup); `null` when it cannot be
    /// measured.
    exposure_s: Option<f64>,
    /// The figure is a minimum (the standby is older than every heartbeat known).
    exposure_is_lower_bound: bool,
    best_standby: Option<String>,
    above_target_since: Option<DateTime<Utc>>,
    window_1h: Window,
    window_24h: Window,
    windows_computed_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RtoFigures {
    target_s: f64,
    status: MonitorStatus,
    reason: Option<String>,
    measured_s: Option<f64>,
    /// What measured it: `drill op-…`, `failover op-…`, `restore_test rt-…`.
    source: Option<String>,
    measured_at: Option<DateTime<Utc>>,
    evidence_age_s: Option<f64>,
    note: Option<String>,
}

/// The continuous WAL archive: its receiver and how far behind the
/// primary it is, on the primary's clock (served by the leading daemon,
/// which runs the archivers).
#[derive(Serialize, ToSchema)]
pub(crate) struct WalArchiveFigures {
    /// The server streamed from (`service/region`).
    source: Option<String>,
    /// `starting`, `running`, `waiting` (it exited and starts again) or
    /// `stopped`.
    receiver: String,
    /// Why the receiver last exited, while it waits.
    receiver_error: Option<String>,
    /// Age of the oldest commit not yet durable on the receiver's disk.
    receive_lag_s: Option<f64>,
    /// Age of the oldest commit not yet in the object store: what a
    /// restore from the archive would lose now.
    archive_lag_s: Option<f64>,
    /// The lags are minimums (older than every heartbeat known).
    lag_is_lower_bound: bool,
    /// Positions (bytes of WAL): whole records on the receiver's disk, and
    /// in the object store on the current timeline.
    received_position: Option<i64>,
    archived_position: Option<i64>,
    /// The last shipping pass's failure (cleared by a good pass).
    last_error: Option<String>,
    sampled_at: Option<DateTime<Utc>>,
    /// The restorable window: from the oldest retained backup the archive
    /// replays from (`restorable_from_backup`, consistent when it ended) to
    /// the newest commit in the object store. `null` until both are known.
    restorable_from: Option<DateTime<Utc>>,
    restorable_from_backup: Option<String>,
    restorable_to: Option<DateTime<Utc>>,
}

impl From<&drctl_monitor::WalArchiveView> for WalArchiveFigures {
    fn from(w: &drctl_monitor::WalArchiveView) -> Self {
        WalArchiveFigures {
            source: w.source.clone(),
            receiver: w.receiver.to_string(),
            receiver_error: w.receiver_error.clone(),
            receive_lag_s: secs_from_us(w.receive_lag_us),
            archive_lag_s: secs_from_us(w.archive_lag_us),
            lag_is_lower_bound: w.lag_lower_bound,
            received_position: w.received_lsn,
            archived_position: w.archived_lsn,
            last_error: w.last_error.clone(),
            sampled_at: w.sampled_at,
            restorable_from: w.restorable_from,
            restorable_from_backup: w.restorable_from_backup.clone(),
            restorable_to: w.restorable_to,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BackupFigures {
    newest_backup: Option<BackupRef>,
    newest_verified_backup: Option<BackupRef>,
    newest_restore_tested_backup: Option<BackupRef>,
    latest_restore_test: Option<RestoreTestRef>,
}

/// One service's figures against its targets, and its compliance.
#[derive(Serialize, ToSchema)]
pub(crate) struct ServiceFigures {
    service: String,
    /// `hot`, `warm` or `cold`.
    tier: String,
    /// RPO status now.
    status: MonitorStatus,
    compliance: Compliance,
    rpo: RpoFigures,
    rto: RtoFigures,
    backup: Option<BackupFigures>,
    /// `null` when the service archives no WAL, or on a daemon that does
    /// not lead (only the leader runs the archivers).
    wal_archive: Option<WalArchiveFigures>,
    sampled_at: Option<DateTime<Utc>>,
    primary_time: Option<DateTime<Utc>>,
    error: Option<String>,
    note: Option<String>,
    standbys: Vec<StandbyFigures>,
}

/// The RPO/RTO figures of one service, with their compliance judged at `now`.
pub(crate) fn service_figures(
    v: &ServiceView,
    every: std::time::Duration,
    now: DateTime<Utc>,
) -> ServiceFigures {
    ServiceFigures {
        service: v.service.clone(),
        tier: v.tier.to_string(),
        status: v.status,
        compliance: drctl_monitor::compliance::assess(v, every, now),
        rpo: RpoFigures {
            target_s: v.rpo_target.as_secs_f64(),
            exposure_s: secs_from_us(v.rpo_exposure_us),
            exposure_is_lower_bound: v.exposure_lower_bound,
            best_standby: v.best_standby.clone(),
            above_target_since: v.above_target_since,
            window_1h: Window::from(v.stats_1h),
            window_24h: Window::from(v.stats_24h),
            windows_computed_at: v.stats_at,
        },
        rto: RtoFigures {
            target_s: v.rto_target.as_secs_f64(),
            status: v.rto_status,
            reason: v.rto_reason.clone(),
            measured_s: secs_from_us(v.rto_measured_us),
            source: v.rto_source.clone(),
            measured_at: v.rto_measured_at,
            evidence_age_s: v
                .rto_measured_at
                .map(|t| (now - t).num_milliseconds() as f64 / 1000.0),
            note: v.rto_measured_us.is_none().then(|| {
                "no failover, drill or restore test has measured this service's RTO yet".to_string()
            }),
        },
        backup: v.backup_evidence.as_ref().map(|e| BackupFigures {
            newest_backup: e.newest_backup.as_ref().map(BackupRef::from),
            newest_verified_backup: e.newest_verified_backup.as_ref().map(BackupRef::from),
            newest_restore_tested_backup: e
                .newest_restore_tested_backup
                .as_ref()
                .map(BackupRef::from),
            latest_restore_test: e.latest_restore_test.as_ref().map(RestoreTestRef::from),
        }),
        wal_archive: v.wal_archive.as_ref().map(WalArchiveFigures::from),
        sampled_at: v.sampled_at,
        primary_time: v.primary_time,
        error: v.error.clone(),
        note: v.note.clone(),
        standbys: v.standbys.iter().map(StandbyFigures::from).collect(),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Summary {
    services: usize,
    /// How many services have each compliance status.
    #[schema(value_type = Object)]
    by_status: std::collections::BTreeMap<&'static str, usize>,
    /// Services whose drill or restore test is fresh.
    covered_by_fresh_evidence: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RpoRtoResponse {
    generated_at: DateTime<Utc>,
    summary: Summary,
    services: Vec<ServiceFigures>,
}

/// Every service's compliance at `now`, in config order (the report and
/// the metrics judge the same way).
pub(crate) fn all_figures(state: &ApiState, now: DateTime<Utc>) -> Vec<ServiceFigures> {
    let config = &*state.config;
    state
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
        .collect()
}

/// How long one rendering of `/api/v1/rpo-rto` is served: the figures
/// change once a monitor interval (1 s by default), and rendering a
/// thousand services for every request would cost more than the sampling.
/// The body's `generated_at` says how old it is.
const RPO_RTO_CACHE: std::time::Duration = std::time::Duration::from_millis(250);

/// Measured RPO and RTO of every service against its targets, with the
/// evidence behind each figure and a compliance verdict.
#[utoipa::path(get, path = "/api/v1/rpo-rto", tag = "services",
    responses((status = 200, body = RpoRtoResponse), ReadErrors))]
async fn rpo_rto(State(state): State<ApiState>) -> axum::response::Response {
    let cached = state
        .rpo_rto_cache
        .lock()
        .expect("cache lock")
        .as_ref()
        .filter(|(at, _)| at.elapsed() < RPO_RTO_CACHE)
        .map(|(_, body)| body.clone());
    let body = match cached {
        Some(body) => body,
        None => {
            let body = axum::body::Bytes::from(
                serde_json::to_vec(&rpo_rto_now(&state)).expect("figures serialize"),
            );
            *state.rpo_rto_cache.lock().expect("cache lock") =
                Some((std::time::Instant::now(), body.clone()));
            body
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn rpo_rto_now(state: &ApiState) -> RpoRtoResponse {
    let now = Utc::now();
    let services = all_figures(state, now);
    let mut by_status = std::collections::BTreeMap::new();
    for s in &services {
        *by_status
            .entry(<&'static str>::from(s.compliance.status))
            .or_default() += 1;
    }
    let covered_by_fresh_evidence = services
        .iter()
        .filter(|s| s.compliance.evidence.status == EvidenceStatus::Fresh)
        .count();
    RpoRtoResponse {
        generated_at: now,
        summary: Summary {
            services: services.len(),
            by_status,
            covered_by_fresh_evidence,
        },
        services,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LagQuery {
    /// From (inclusive); default 1h ago.
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    since: Option<String>,
    /// Until (exclusive).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    until: Option<String>,
    /// At most this many samples, oldest first (default 3600).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100000)]
    limit: Option<String>,
    /// Fold samples into buckets of this length: the worst of each, for
    /// charts over a day.
    #[param(value_type = Option<String>, pattern = "^(10s|30s|1m|5m|15m|1h)$")]
    bucket: Option<String>,
}

/// The bucket lengths `?bucket=` takes.
const BUCKETS: [(&str, u64); 6] = [
    ("10s", 10),
    ("30s", 30),
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
];

#[derive(Serialize, ToSchema)]
pub(crate) struct LagHistory {
    service: String,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    /// `limit` samples came back: there may be more (ask again from the last).
    truncated: bool,
    samples: Vec<LagPoint>,
}

/// A service's lag samples (per standby), raw or folded into buckets.
#[utoipa::path(get, path = "/api/v1/services/{name}/lag", tag = "services",
    params(("name" = String, Path, description = "The service"), LagQuery),
    responses((status = 200, body = LagHistory), ReadErrors, NotFound))]
async fn lag_history(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    query: Result<Query<LagQuery>, QueryRejection>,
) -> Result<Json<LagHistory>, ApiError> {
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
    let limit = page_limit(q.limit.as_deref(), 3600, MAX_LIMIT)?;
    let bucket = q
        .bucket
        .as_deref()
        .map(|b| {
            BUCKETS
                .iter()
                .find(|(name, _)| *name == b)
                .map(|(_, secs)| std::time::Duration::from_secs(*secs))
                .ok_or_else(|| ApiError::InvalidParameter {
                    parameter: "bucket",
                    reason: format!("{b:?} is not one of 10s, 30s, 1m, 5m, 15m, 1h"),
                })
        })
        .transpose()?;
    let store = &state.store;
    let samples = match bucket {
        Some(b) => {
            store
                .lag_buckets(&name, since, until, b.as_micros() as i64, limit)
                .await?
        }
        None => store.lag_samples(&name, since, until, limit).await?,
    };
    let points: Vec<LagPoint> = samples.iter().map(LagPoint::from).collect();
    Ok(Json(LagHistory {
        service: name,
        since,
        until,
        truncated: points.len() as u32 == limit,
        samples: points,
    }))
}
