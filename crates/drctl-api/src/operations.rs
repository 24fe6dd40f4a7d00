//! Operations started through the API: take a backup, verify one, run a
//! restore test; fail over, switch over or drill a service (the failover
//! engine's journaled operations). Each returns `202 Accepted` with an
//! operation id at once;
//! the work runs in the daemon and records its progress and outcome in the
//! state store, where `GET /api/v1/operations/{id}` reads it.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Extension;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use drctl_backup::jobs;
use serde_json::{json, Value};

use crate::auth::{audit, Caller};
use crate::routes::known_service;
use crate::error::ApiPath;
use crate::{ApiError, ApiState};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/services/{name}/backups", post(start_backup))
        .route(
            "/api/v1/services/{name}/restore-tests",
            post(start_restore_test),
        )
        .route("/api/v1/backups/{id}/verify", post(start_verify))
        .route("/api/v1/services/{name}/operations", post(start_operation))
        .route("/api/v1/operations", get(list_operations))
        .route("/api/v1/operations/{id}", get(operation))
}

fn accepted(id: &str, kind: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        Json(
            json!({ "operation": { "id": id, "kind": kind, "status": "running", "url": format!("/api/v1/operations/{id}") } }),
        ),
    )
}

/// The body of `POST /api/v1/services/{name}/operations`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationRequest {
    /// `failover`, `switchover` or `drill` (a rejoin needs the server's
    /// data directory: `drctl rejoin` on its host).
    kind: String,
    to: Option<String>,
    #[serde(default)]
    accept_data_loss: bool,
    reason: Option<String>,
    /// Answer the plan (expected loss, expected RTO, blockers) and start
    /// nothing.
    #[serde(default)]
    dry_run: bool,
}

async fn start_operation(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<OperationRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use drctl_failover::{Engine, OperationKind, Progress, Request};
    known_service(&state, &name)?;
    let Json(body) = body.map_err(|e| ApiError::InvalidParameter {
        parameter: "body",
        reason: e.body_text(),
    })?;
    let kind = OperationKind::parse(&body.kind)
        .filter(|k| *k != OperationKind::Rejoin)
        .ok_or_else(|| ApiError::InvalidParameter {
            parameter: "kind",
            reason: format!("{:?} is not failover, switchover or drill", body.kind),
        })?;
    let request = Request {
        kind,
        service: name,
        to: body.to,
        accept_data_loss: body.accept_data_loss,
        requested_by: caller.requested_by(),
        reason: body.reason,
        detected_at: None,
    };
    let engine = Engine::new(state.monitor.config_arc(), state.monitor.store().clone());
    if body.dry_run {
        let plan = engine.plan(&request).await?;
        let blocked = !plan.standing(request.accept_data_loss).is_empty();
        return Ok((StatusCode::OK, Json(json!({ "plan": plan, "blocked": blocked }))));
    }
    let asked = json!({
        "kind": kind.as_str(), "to": request.to, "accept_data_loss": request.accept_data_loss,
        "reason": request.reason,
    });
    let service = request.service.clone();
    audit(&state, &caller, "operation_requested", Some(service.clone()), asked).await?;
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
        let outcome = engine.run(&request, &report).await;
        match outcome {
            Ok(o) => tracing::info!(id = %o.id, status = ?o.status, "operation started through the API ended"),
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
            Ok(accepted(&id, kind.as_str()))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::OperationNotFound("the operation ended before it was recorded".into())),
    }
}

fn has_policy(state: &ApiState, name: &str) -> Result<(), ApiError> {
    known_service(state, name)?;
    match state
        .monitor
        .config()
        .service(name)
        .and_then(|s| s.backup.as_ref())
    {
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
    kind: &'static str,
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
    let store = state.monitor.store().clone();
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

async fn start_backup(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    has_policy(&state, &name)?;
    let config = state.monitor.config_arc();
    let store = state.monitor.store().clone();
    let id = new_operation_id();
    let mut report = progress_writer(store.clone(), id.clone());
    let service = name.clone();
    launch(&state, &caller, &id, "backup", Some(&name), None, async move {
        let outcome = jobs::backup_service(&config, &store, &service, |p| {
            report(json!({ "read_bytes": p.read_bytes, "stored_bytes": p.stored_bytes }))
        })
        .await;
        outcome
            .map(|(record, _)| json!({ "backup_id": record.id, "stored_bytes": record.stored_bytes, "stop_lsn": record.stop_lsn }))
            .map_err(|e| e.to_string())
    })
    .await?;
    Ok(accepted(&id, "backup"))
}

async fn start_verify(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(backup): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(record) = state.monitor.store().backup(&backup).await? else {
        return Err(ApiError::BackupNotFound(backup));
    };
    // Nothing to verify: say so now, not in an operation that fails later.
    if record.deleted_at.is_some() {
        return Err(ApiError::BackupNotVerifiable {
            id: backup,
            reason: "it was deleted by retention".into(),
        });
    }
    if record.status != "complete" {
        return Err(ApiError::BackupNotVerifiable {
            id: backup,
            reason: format!("it is {} (only a complete backup can be verified)", record.status),
        });
    }
    let config = state.monitor.config_arc();
    let store = state.monitor.store().clone();
    let b = backup.clone();
    let id = new_operation_id();
    launch(&state, &caller, &id, "verify", None, Some(&backup), async move {
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
    })
    .await?;
    Ok(accepted(&id, "verify"))
}

async fn start_restore_test(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    has_policy(&state, &name)?;
    let config = state.monitor.config_arc();
    let store = state.monitor.store().clone();
    let service = name.clone();
    let id = new_operation_id();
    launch(&state, &caller, &id, "restore_test", Some(&name), None, async move {
        let (record, outcome) = jobs::restore_test_service(&config, &store, &service, None, crate::daemon::scratch_root(), |_| {})
            .await
            .map_err(|e| e.to_string())?;
        if outcome.passed {
            Ok(json!({ "restore_test_id": record.id, "backup_id": record.backup_id, "time_to_ready_s": outcome.time_to_ready.map(|d| d.as_secs_f64()) }))
        } else {
            Err(format!("restore test {} failed: {}", record.id, outcome.error.unwrap_or_default()))
        }
    })
    .await?;
    Ok(accepted(&id, "restore_test"))
}

fn operation_json(o: &drctl_store::OperationRecord) -> Value {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
    };
    json!({
        "id": o.id, "kind": o.kind, "service": o.service, "target": o.target, "status": o.status,
        "started_at": o.started_at, "ended_at": o.ended_at,
        "progress": parse(&o.progress), "result": parse(&o.result), "error": o.error,
    })
}

async fn operation(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let op = state
        .monitor
        .store()
        .operation(&id)
        .await?
        .ok_or(ApiError::OperationNotFound(id.clone()))?;
    // Journaled operations (failover, switchover) carry their step timeline.
    let steps: Vec<Value> = state
        .monitor
        .store()
        .journal(&id)
        .await?
        .iter()
        .map(|s| {
            json!({
                "step": s.step, "status": s.status, "attempts": s.attempts,
                "started_at": s.started_at, "ended_at": s.ended_at,
                "output": s.output.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
                "error": s.error, "driver": s.driver,
            })
        })
        .collect();
    if steps.is_empty() && !matches!(op.kind.as_str(), "failover" | "switchover") {
        return Ok(Json(json!({ "operation": operation_json(&op) })));
    }
    Ok(Json(
        json!({ "operation": operation_json(&op), "steps": steps }),
    ))
}

async fn list_operations(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let ops = state.monitor.store().operations(100).await?;
    Ok(Json(
        json!({ "operations": ops.iter().map(operation_json).collect::<Vec<_>>() }),
    ))
}
