//! API errors: a stable machine-readable `code`, a message for people, the
//! right HTTP status. Codes are part of the API contract; never rename one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 `service_not_found`
    #[error("no service named {name:?}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    ServiceNotFound {
        name: String,
        suggestion: Option<String>,
    },
    /// 400 `invalid_parameter`
    #[error("invalid {parameter}: {reason}")]
    InvalidParameter {
        parameter: &'static str,
        reason: String,
    },
    /// 404 `backup_not_found`
    #[error("no backup {0:?} (see GET /api/v1/backups)")]
    BackupNotFound(String),
    /// 404 `operation_not_found`
    #[error("no operation {0:?}")]
    OperationNotFound(String),
    /// 409 `backup_not_verifiable`: deleted, running or failed.
    #[error("backup {id:?} cannot be verified: {reason}")]
    BackupNotVerifiable { id: String, reason: String },
    /// 409 `no_backup_policy`
    #[error("service {0:?} has no backup policy; add [services.backup] to the config")]
    NoBackupPolicy(String),
    /// 404 `not_found`
    #[error("no such endpoint; the API lives under /api/v1 (see /api/v1/rpo-rto)")]
    NotFound,
    /// 405 `method_not_allowed`
    #[error("this endpoint does not take that method (GET reads, POST starts work)")]
    MethodNotAllowed,
    /// A failover, switchover or drill could not start: its own stable code
    /// (`operation_in_progress`, `refused`, `region_not_found`, …).
    #[error("{0}")]
    Operation(#[from] drctl_failover::FailoverError),
    /// 401 `unauthorized`: no token where one is needed, or a wrong one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the token's role is below what the endpoint needs.
    #[error("{caller:?} has the {role} role; this needs {needed} or above")]
    Forbidden {
        caller: String,
        role: drctl_config::Role,
        needed: drctl_config::Role,
    },
    /// 503 `not_leader`: this daemon follows; work starts on the leader.
    #[error("{0}")]
    NotLeader(String),
    /// 500 `internal_error`: a bug; details are logged.
    #[error("drctl failed to answer this request; the details are in its log")]
    Internal,
    /// 429 `report_busy`: as many reports as the daemon builds at once are
    /// under way; `Retry-After` says when to try again.
    #[error("as many reports as this daemon builds at once are under way; try again in {retry_after_s}s")]
    ReportBusy { retry_after_s: u64 },
    /// 503 `store_unavailable`: the state store failed; details are logged.
    #[error("the state store is unavailable; see the drctl log")]
    Store(#[source] drctl_store::StoreError),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::ServiceNotFound { .. } => "service_not_found",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::NotFound => "not_found",
            ApiError::BackupNotFound(_) => "backup_not_found",
            ApiError::OperationNotFound(_) => "operation_not_found",
            ApiError::NoBackupPolicy(_) => "no_backup_policy",
            ApiError::BackupNotVerifiable { .. } => "backup_not_verifiable",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Internal => "internal_error",
            ApiError::NotLeader(_) => "not_leader",
            ApiError::Store(_) => "store_unavailable",
            ApiError::ReportBusy { .. } => "report_busy",
            ApiError::Operation(e) => e.code(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::ServiceNotFound { .. }
            | ApiError::NotFound
            | ApiError::BackupNotFound(_)
            | ApiError::OperationNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NoBackupPolicy(_) | ApiError::BackupNotVerifiable { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(_) | ApiError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ReportBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Operation(e) => {
                use drctl_failover::FailoverError as F;
                match e {
                    F::UnknownService(_) | F::NotFound(_) => StatusCode::NOT_FOUND,
                    F::UnknownRegion { .. } => StatusCode::BAD_REQUEST,
                    F::InProgress { .. }
                    | F::LeaseBusy { .. }
                    | F::Refused { .. }
                    | F::NotResumable { .. } => StatusCode::CONFLICT,
                    F::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
        }
    }
}

/// Every error's body: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    #[schema(inline)]
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable and machine-readable: `service_not_found`, `forbidden`, …
    code: String,
    /// For people; may change between versions.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "state store error while serving the API");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Unauthorized(_) = self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"drctl\""),
            );
        }
        if let ApiError::ReportBusy { retry_after_s } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_s),
            );
        }
        response
    }
}

impl From<drctl_store::StoreError> for ApiError {
    fn from(e: drctl_store::StoreError) -> Self {
        ApiError::Store(e)
    }
}

/// `axum::extract::Path` whose rejection (a segment that is not UTF-8, say
/// `%FF`) is a JSON `invalid_parameter` like every other error, not axum's
/// plain text.
pub(crate) struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::InvalidParameter {
                parameter: "path",
                reason: e.body_text(),
            }),
        }
    }
}
