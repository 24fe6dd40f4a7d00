//! `GET /api/v1/report`: the compliance report of `drctl-report`, served
//! in JSON, Markdown, HTML or CSV, with what the API adds to it: a cap on
//! the period ([`MAX_API_PERIOD`], the report's `note` says when it cut
//! one) and on reports built at once ([`CONCURRENT_REPORTS`]; a request
//! beyond that gets a 429 `report_busy` with `Retry-After` instead of
//! queueing on the store).

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use drctl_report::{build, period, to_csv, to_html, to_markdown, Report};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::docs::{NotFound, ReadErrors};
use crate::{ApiError, ApiState};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// The longest period `GET /api/v1/report` serves (a quarter, with room):
/// a longer one is cut to its end, not refused (a schema-valid request is
/// answered). `drctl report`, on the operator's own machine, has no cap.
pub const MAX_API_PERIOD: Duration = Duration::from_secs(93 * 86_400);
/// Reports built at once by the API; more are refused, not queued.
pub const CONCURRENT_REPORTS: usize = 2;
/// What `Retry-After` says to a refused report request, in seconds.
pub const REPORT_RETRY_AFTER_S: u64 = 5;

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
    let (asked_from, to) = period(q.from.as_deref(), q.to.as_deref(), Utc::now()).map_err(|e| {
        ApiError::InvalidParameter {
            parameter: e.parameter,
            reason: e.reason,
        }
    })?;
    let longest = TimeDelta::from_std(MAX_API_PERIOD).unwrap_or(TimeDelta::days(93));
    let from = asked_from.max(to.checked_sub_signed(longest).unwrap_or(asked_from));
    let note = (from > asked_from).then(|| {
        format!(
            "the API serves at most {}: this report starts at {} instead of {}; ask for the rest in parts, or run `drctl report` beside the store",
            drctl_config::format_duration(MAX_API_PERIOD),
            from.format("%Y-%m-%d %H:%M:%SZ"),
            asked_from.format("%Y-%m-%d %H:%M:%SZ")
        )
    });
    // Refused, not queued: a queue of reports would still hold the store.
    let Ok(_slot) = state.report_slots.clone().try_acquire_owned() else {
        return Err(ApiError::ReportBusy {
            retry_after_s: REPORT_RETRY_AFTER_S,
        });
    };
    let mut report = build(&state.config, &state.store, from, to).await?;
    report.note = note;
    let (content_type, body) = match format {
        "md" => ("text/markdown; charset=utf-8", to_markdown(&report)),
        "html" => ("text/html; charset=utf-8", to_html(&report)),
        "csv" => ("text/csv; charset=utf-8", to_csv(&report)),
        _ => return Ok(axum::Json(report).into_response()),
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
