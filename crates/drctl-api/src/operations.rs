//! Operations started through the API: take a backup, verify one, run a
//! restore test; fail over, switch over or drill a service (the failover
//! engine's journaled operations). Each returns `202 Accepted` with an
//! operation id at once;
//! the work runs in the daemon and records its progress and outcome in the
//! state store, where `GET /api/v1/operations/{id}` reads it.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use chrono::Utc;
use drctl_backup::jobs;
use drctl_store::states::{OpStatus, OperationKind, StepState};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{audit, Caller};
use crate::docs::{Conflict, NotFound, ReadErrors};
use crate::error::ApiPath;
use crate::params::known_service;
use crate::{ApiError, ApiState};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(start_backup))
        .routes(routes!(start_restore_test))
        .routes(routes!(start_verify))
        .routes(routes!(start_operation))
        .routes(routes!(list_operations))
        .routes(routes!(operation))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StartedOperation {
    id: String,
    kind: OperationKind,
    /// Always `running` here; follow `url` for the rest.
    status: OpStatus,
    url: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Accepted {
    operation: StartedOperation,
}

fn accepted(id: &str, kind: OperationKind) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            operation: StartedOperation {
                id: id.to_string(),
                kind,
                status: OpStatus::Running,
                url: format!("/api/v1/operations/{id}"),
            },
        }),
    )
}

/// The body of `POST /api/v1/services/{name}/operations`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperationRequest {
    /// `failover`, `switchover` or `drill` (a rejoin needs the server's
    /// data directory: `drctl rejoin` on its host).
    #[schema(value_type = String, pattern = "^(failover|switchover|drill)$", example = "drill")]
    kind: String,
    to: Option<String>,
    #[serde(default)]
    accept_data_loss: bool,
    reason: Option<String>,
    /// Answer the plan (expected loss, expected RTO, blockers) and start
    /// nothing.
    #[serde(default)]
    dry_run: bool,
    /// The plan a dry run answered, passed back once confirmed: the
    /// operation executes exactly that plan, and is refused when it went
    /// stale in a way that matters (the roles changed, a blocker appeared).
    /// Without it the operation executes the plan it makes itself.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    plan: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PlanAnswer {
    /// Expected data loss and RTO, the steps, every blocker.
    #[schema(value_type = Object)]
    plan: Value,
    /// A blocker stands: the operation would be refused.
    blocked: bool,
}

/// Starts a failover, switchover or drill of the service's cluster (202),
/// or with `dry_run` answers its plan (200).
#[utoipa::path(post, path = "/api/v1/services/{name}/operations", tag = "operations",
    params(("name" = String, Path, description = "The service (its whole cluster moves)")),
    request_body = OperationRequest,
    responses((status = 202, description = "Started", body = Accepted),
              (status = 200, description = "The plan (dry run)", body = PlanAnswer), ReadErrors, NotFound, Conflict))]
async fn start_operation(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<OperationRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use drctl_failover::{Engine, Progress, Request};
    known_service(&state, &name)?;
    let Json(body) = body.map_err(|e| ApiError::InvalidParameter {
        parameter: "body",
        reason: e.body_text(),
    })?;
    // Jobs (backup, verify, restore test) have their own routes.
    let kind = OperationKind::parse(&body.kind)
        .filter(|k| k.is_journaled() && *k != OperationKind::Rejoin)
        .ok_or_else(|| ApiError::InvalidParameter {
            parameter: "kind",
            reason: format!("{:?} is not failover, switchover or drill", body.kind),
        })?;
    let request = Request {
        kind,
        service: name,
        to: body.to,
        accept_data_loss: body.accept_data_loss,
        // An unfenced failover is a terminal decision (`drctl failover
        // --accept-unfenced`), not an API one.
        accept_unfenced: false,
        requested_by: caller.requested_by(),
        reason: body.reason,
        detected_at: None,
    };
    let confirmed = body
        .plan
        .map(serde_json::from_value::<drctl_failover::PlanReport>)
        .transpose()
        .map_err(|e| ApiError::InvalidParameter {
            parameter: "plan",
            reason: format!("not a plan a dry run answered: {e}"),
        })?;
    let engine = Engine::new(state.config.clone(), state.store.clone());
    if body.dry_run {
        let plan = engine.plan(&request).await?;
        let blocked = !plan.standing(request.accept_data_loss).is_empty();
        let plan = serde_json::to_value(&plan).unwrap_or(Value::Null);
        return Ok((StatusCode::OK, Json(PlanAnswer { plan, blocked })).into_response());
    }
    let asked = json!({
        "kind": kind.as_str(), "to": request.to, "accept_data_loss": request.accept_data_loss,
        "reason": request.reason,
    });
    let service = request.service.clone();
    audit(
        &state,
        &caller,
        "operation_requested",
        Some(service.clone()),
        asked,
    )
    .await?;
    // The id exists once the engine has taken the lease and recorded the
    // operation; a request refused before that gets its error here.
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<String, drctl_failover::FailoverError>>();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
    let started = tx.clone();
    tokio::spawn(async move {
        let report = move |p: Progress| {
            if let Progress::Operation { id, .. } = p {
                if let Some(tx) = started.lock().unwrap().take() {
                    let _ = tx.send(Ok(id));
                }
            }
        };
        let outcome = match confirmed {
            Some(plan) => engine.run_plan(&request, plan, &report).await,
            None => engine.run(&request, &report).await,
        };
        match outcome {
            Ok(o) => {
                tracing::info!(id = %o.id, status = ?o.status, "operation started through the API ended")
            }
            Err(e) => {
                tracing::warn!(error = %e, "operation started through the API did not succeed");
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(Err(e));
                }
            }
        }
    });
    match rx.await {
        Ok(Ok(id)) => {
            let detail = json!({ "kind": kind.as_str(), "operation_id": id });
            audit(&state, &caller, "operation_started", Some(service), detail).await?;
            Ok(accepted(&id, kind).into_response())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::OperationNotFound(
            "the operation ended before it was recorded".into(),
        )),
    }
}

fn has_policy(state: &ApiState, name: &str) -> Result<(), ApiError> {
    known_service(state, name)?;
    match state.config.service(name).and_then(|s| s.backup.as_ref()) {
        Some(_) => Ok(()),
        None => Err(ApiError::NoBackupPolicy(name.to_string())),
    }
}

fn new_operation_id() -> String {
    format!("op-{}", uuid::Uuid::new_v4().simple())
}

/// Audits the request, records the operation, runs `work` in the
/// background, records its end.
async fn launch<F>(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    kind: OperationKind,
    service: Option<&str>,
    target: Option<&str>,
    work: F,
) -> Result<(), ApiError>
where
    F: std::future::Future<Output = Result<Value, String>> + Send + 'static,
{
    audit(
        state,
        caller,
        &format!("{kind}_started"),
        service.or(target).map(str::to_string),
        json!({ "operation_id": id }),
    )
    .await?;
    let store = state.store.clone();
    store
        .operation_started(id, kind, service, target, Utc::now())
        .await?;
    let op = id.to_string();
    tokio::spawn(async move {
        let outcome = work.await;
        let recorded = match &outcome {
            Ok(v) => {
                store
                    .operation_finished(&op, Utc::now(), Ok(&v.to_string()))
                    .await
            }
            Err(e) => store.operation_finished(&op, Utc::now(), Err(e)).await,
        };
        if let Err(e) = recorded {
            tracing::error!(operation = %op, error = %e, "could not record an operation's outcome");
        }
    });
    Ok(())
}

/// Writes progress to the store at most once a second.
fn progress_writer(store: drctl_store::Store, id: String) -> impl FnMut(Value) {
    let mut last: Option<Instant> = None;
    move |progress: Value| {
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        last = Some(Instant::now());
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let _ = store.operation_progress(&id, &progress.to_string()).await;
        });
    }
}

/// Takes a backup of the service now.
#[utoipa::path(post, path = "/api/v1/services/{name}/backups", tag = "operations",
    params(("name" = String, Path, description = "The service")),
    responses((status = 202, description = "Started", body = Accepted), ReadErrors, NotFound, Conflict))]
async fn start_backup(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    has_policy(&state, &name)?;
    let config = state.config.clone();
    let store = state.store.clone();
    let id = new_operation_id();
    let mut report = progress_writer(store.clone(), id.clone());
    let service = name.clone();
    launch(&state, &caller, &id, OperationKind::Backup, Some(&name), None, async move {
        let outcome = jobs::backup_service(&config, &store, &service, |p| {
            report(json!({ "read_bytes": p.read_bytes, "stored_bytes": p.stored_bytes }))
        })
        .await;
        outcome
            .map(|(record, _)| json!({ "backup_id": record.id, "stored_bytes": record.stored_bytes, "stop_lsn": record.stop_lsn }))
            .map_err(|e| e.to_string())
    })
    .await?;
    Ok(accepted(&id, OperationKind::Backup))
}

/// Re-reads a backup from the object store and checks every checksum.
#[utoipa::path(post, path = "/api/v1/backups/{id}/verify", tag = "operations",
    params(("id" = String, Path, description = "The backup")),
    responses((status = 202, description = "Started", body = Accepted), ReadErrors, NotFound, Conflict))]
async fn start_verify(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(backup): ApiPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Some(record) = state.store.backup(&backup).await? else {
        return Err(ApiError::BackupNotFound(backup));
    };
    // Nothing to verify: say so now, not in an operation that fails later.
    if record.deleted_at.is_some() {
        return Err(ApiError::BackupNotVerifiable {
            id: backup,
            reason: "it was deleted by retention".into(),
        });
    }
    if record.status != drctl_store::states::BackupStatus::Complete {
        return Err(ApiError::BackupNotVerifiable {
            id: backup,
            reason: format!(
                "it is {} (only a complete backup can be verified)",
                record.status
            ),
        });
    }
    let config = state.config.clone();
    let store = state.store.clone();
    let b = backup.clone();
    let id = new_operation_id();
    launch(
        &state,
        &caller,
        &id,
        OperationKind::Verify,
        None,
        Some(&backup),
        async move {
            let report = jobs::verify_recorded_backup(&config, &store, &b)
                .await
                .map_err(|e| e.to_string())?;
            if report.verified {
                Ok(json!({ "backup_id": b, "verified": true, "bytes_read": report.bytes_read }))
            } else {
                Err(format!(
                    "backup {b} failed verification: {}",
                    report.reason.unwrap_or_default()
                ))
            }
        },
    )
    .await?;
    Ok(accepted(&id, OperationKind::Verify))
}

/// Restores the newest verified backup into a scratch cluster, runs the
/// validation queries and records how long it took (RTO evidence).
#[utoipa::path(post, path = "/api/v1/services/{name}/restore-tests", tag = "operations",
    params(("name" = String, Path, description = "The service")),
    responses((status = 202, description = "Started", body = Accepted), ReadErrors, NotFound, Conflict))]
async fn start_restore_test(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    has_policy(&state, &name)?;
    let config = state.config.clone();
    let store = state.store.clone();
    let service = name.clone();
    let id = new_operation_id();
    launch(&state, &caller, &id, OperationKind::RestoreTest, Some(&name), None, async move {
        let (record, outcome) = jobs::restore_test_service(&config, &store, &service, None, crate::scratch_root(&config), |_| {})
            .await
            .map_err(|e| e.to_string())?;
        if outcome.passed {
            Ok(json!({ "restore_test_id": record.id, "backup_id": record.backup_id, "time_to_ready_s": outcome.time_to_ready.map(|d| d.as_secs_f64()) }))
        } else {
            Err(format!("restore test {} failed: {}", record.id, outcome.error.unwrap_or_default()))
        }
    })
    .await?;
    Ok(accepted(&id, OperationKind::RestoreTest))
}

/// An operation as the API shows it (its JSON fields parsed).
#[derive(Serialize, ToSchema)]
pub(crate) struct OperationView {
    id: String,
    kind: OperationKind,
    service: Option<String>,
    target: Option<String>,
    /// `stopped` is resumable.
    status: OpStatus,
    started_at: chrono::DateTime<Utc>,
    ended_at: Option<chrono::DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    progress: Option<Value>,
    /// What it measured: RPO/RTO against targets, per-step times, …
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    error: Option<String>,
}

/// A fence hook's argv and output are for operators (see
/// [`crate::auth::redact_fence_hooks`]).
fn redact_view(v: &mut OperationView) {
    v.progress
        .iter_mut()
        .for_each(crate::auth::redact_fence_hooks);
    v.result
        .iter_mut()
        .for_each(crate::auth::redact_fence_hooks);
}

pub(crate) fn operation_json(o: &drctl_store::OperationRecord) -> OperationView {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
    };
    OperationView {
        id: o.id.clone(),
        kind: o.kind,
        service: o.service.clone(),
        target: o.target.clone(),
        status: o.status,
        started_at: o.started_at,
        ended_at: o.ended_at,
        progress: parse(&o.progress),
        result: parse(&o.result),
        error: o.error.clone(),
    }
}

/// One step of a journaled operation.
#[derive(Serialize, ToSchema)]
pub(crate) struct StepView {
    step: String,
    status: StepState,
    attempts: i64,
    started_at: chrono::DateTime<Utc>,
    ended_at: Option<chrono::DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    error: Option<String>,
    /// Which process drove it.
    driver: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OperationDetail {
    operation: OperationView,
    /// The step timeline (journaled operations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<StepView>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OperationList {
    operations: Vec<OperationView>,
    /// The next (older) page, when this one was full.
    next: Option<String>,
}

/// One operation, with its step timeline.
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "The operation")),
    responses((status = 200, body = OperationDetail), ReadErrors, NotFound))]
async fn operation(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OperationDetail>, ApiError> {
    let op = state
        .store
        .operation(&id)
        .await?
        .ok_or(ApiError::OperationNotFound(id.clone()))?;
    // Journaled operations (failover, switchover) carry their step timeline.
    let steps: Vec<StepView> = state
        .store
        .journal(&id)
        .await?
        .iter()
        .map(|s| StepView {
            step: s.step.clone(),
            status: s.status,
            attempts: s.attempts,
            started_at: s.started_at,
            ended_at: s.ended_at,
            // The action's own output, not the journal's envelope.
            output: s.output.as_deref().map(drctl_failover::view_output),
            error: s.error.clone(),
            driver: s.driver.clone(),
        })
        .collect();
    let journaled =
        !steps.is_empty() || matches!(op.kind, OperationKind::Failover | OperationKind::Switchover);
    let mut operation = operation_json(&op);
    let mut steps = steps;
    if !caller.is_some_and(|Extension(c)| c.sees_fence_hooks()) {
        redact_view(&mut operation);
        for s in &mut steps {
            s.output
                .iter_mut()
                .for_each(crate::auth::redact_fence_hooks);
        }
    }
    Ok(Json(OperationDetail {
        operation,
        steps: journaled.then_some(steps),
    }))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OperationsQuery {
    /// Only this kind (`drill` lists the drills).
    #[param(value_type = Option<String>, pattern = "^(failover|switchover|drill|rejoin|recover|backup|verify|restore_test)$")]
    kind: Option<String>,
    /// Only this service's.
    service: Option<String>,
    /// Started at or after this.
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    since: Option<String>,
    /// Started before this (the `next` link of a full page sets it).
    #[param(value_type = Option<crate::docs::TimeParam>, inline)]
    until: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Operations (drills included), newest first.
#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", params(OperationsQuery),
    responses((status = 200, body = OperationList), ReadErrors, NotFound))]
async fn list_operations(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    query: Result<axum::extract::Query<OperationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OperationList>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::InvalidParameter {
        parameter: "query string",
        reason: e.body_text(),
    })?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(OperationKind::parse(k).ok_or_else(|| {
            let known: Vec<&str> = OperationKind::all().iter().map(|k| k.as_str()).collect();
            ApiError::InvalidParameter {
                parameter: "kind",
                reason: format!("{k:?} is not one of {}", known.join(", ")),
            }
        })?),
    };
    let w = crate::params::list_window(
        &state,
        q.service,
        q.since.as_deref(),
        q.until.as_deref(),
        q.limit.as_deref(),
        1000,
    )?;
    let ops = state
        .store
        .operations_in(kind, w.service.as_deref(), w.since, w.until, w.limit)
        .await?;
    let next = w.next(
        "/api/v1/operations",
        ops.len(),
        ops.last().map(|o| o.started_at),
        &[("kind", &q.kind)],
    );
    let mut operations: Vec<OperationView> = ops.iter().map(operation_json).collect();
    if !caller.is_some_and(|Extension(c)| c.sees_fence_hooks()) {
        operations.iter_mut().for_each(redact_view);
    }
    Ok(Json(OperationList { operations, next }))
}
