//! The record lists under `/api/v1`: backups, restore tests, scheduled
//! runs, a page at a time with a `next` link, and the audit log with its
//! hash-chain check (admin only).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::Utc;
use drctl_store::AuditVerification;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::docs::{NotFound, ReadErrors};
use crate::params::{list_window, page_limit, parse_time, urlencode, ListWindow};
use crate::views::{AuditEntryView, BackupView, RestoreTestView, ScheduleRunView};
use crate::{ApiError, ApiState};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(backups))
        .routes(routes!(restore_tests))
        .routes(routes!(schedule_runs))
        .routes(routes!(audit_log))
        .routes(routes!(audit_verify))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EvidenceQuery {
    /// Only this service's.
    service: Option<String>,
    /// Started (due, for schedule runs) at or after this.
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    since: Option<String>,
    /// Started before this (the `next` link of a full page sets it).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    until: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
}

fn evidence_query(
    state: &ApiState,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<ListWindow, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    list_window(
        state,
        q.service,
        q.since.as_deref(),
        q.until.as_deref(),
        q.limit.as_deref(),
        10_000,
    )
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BackupList {
    backups: Vec<BackupView>,
    /// The next (older) page, when this one was full.
    next: Option<String>,
}

/// Backups, newest first.
#[utoipa::path(get, path = "/api/v1/backups", tag = "evidence", params(EvidenceQuery),
    responses((status = 200, body = BackupList), ReadErrors, NotFound))]
async fn backups(
    State(state): State<ApiState>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<BackupList>, ApiError> {
    let w = evidence_query(&state, query)?;
    let list = state
        .store
        .backups_in(w.service.as_deref(), w.since, w.until, w.limit)
        .await?;
    let next = w.next(
        "/api/v1/backups",
        list.len(),
        list.last().map(|b| b.started_at),
        &[],
    );
    Ok(Json(BackupList {
        backups: list.iter().map(BackupView::from).collect(),
        next,
    }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RestoreTestList {
    restore_tests: Vec<RestoreTestView>,
    /// The next (older) page, when this one was full.
    next: Option<String>,
}

/// Restore tests, newest first.
#[utoipa::path(get, path = "/api/v1/restore-tests", tag = "evidence", params(EvidenceQuery),
    responses((status = 200, body = RestoreTestList), ReadErrors, NotFound))]
async fn restore_tests(
    State(state): State<ApiState>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<RestoreTestList>, ApiError> {
    let w = evidence_query(&state, query)?;
    let list = state
        .store
        .restore_tests_in(w.service.as_deref(), w.since, w.until, w.limit)
        .await?;
    let next = w.next(
        "/api/v1/restore-tests",
        list.len(),
        list.last().map(|t| t.started_at),
        &[],
    );
    Ok(Json(RestoreTestList {
        restore_tests: list.iter().map(RestoreTestView::from).collect(),
        next,
    }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleRunList {
    schedule_runs: Vec<ScheduleRunView>,
    /// The next (older) page, when this one was full.
    next: Option<String>,
}

/// Scheduled backup, verify and restore-test runs: due, ran, missed.
#[utoipa::path(get, path = "/api/v1/schedule-runs", tag = "evidence", params(EvidenceQuery),
    responses((status = 200, body = ScheduleRunList), ReadErrors, NotFound))]
async fn schedule_runs(
    State(state): State<ApiState>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<ScheduleRunList>, ApiError> {
    let w = evidence_query(&state, query)?;
    let list = state
        .store
        .schedule_runs_in(w.service.as_deref(), w.since, w.until, w.limit)
        .await?;
    let next = w.next(
        "/api/v1/schedule-runs",
        list.len(),
        list.last().map(|r| r.due_at),
        &[],
    );
    Ok(Json(ScheduleRunList {
        schedule_runs: list.iter().map(ScheduleRunView::from).collect(),
        next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// From (inclusive).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    since: Option<String>,
    /// Until (exclusive).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    until: Option<String>,
    /// Rows per page (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The page before this row number (the `next` link carries it).
    #[param(value_type = Option<i64>)]
    before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// Newest first.
    entries: Vec<AuditEntryView>,
    /// The next (older) page, when this one was full.
    next: Option<String>,
}

/// The audit log, newest first, a page at a time (admin only).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), ReadErrors))]
async fn audit_log(
    State(state): State<ApiState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    let now = Utc::now();
    let since = q
        .since
        .as_deref()
        .map(|t| parse_time("since", t, now))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|t| parse_time("until", t, now))
        .transpose()?;
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
        .store
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
    let entries = entries.iter().map(AuditEntryView::from).collect();
    Ok(Json(AuditPage { entries, next }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditCheck {
    verification: AuditVerification,
}

/// Recomputes the audit log's hash chain (admin only).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditCheck), ReadErrors))]
async fn audit_verify(State(state): State<ApiState>) -> Result<Json<AuditCheck>, ApiError> {
    let verification = state.store.verify_audit(None).await?;
    Ok(Json(AuditCheck { verification }))
}
