//! Errors of the failover engine. Every message says what to do next.

use drctl_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("no service named {0:?} in the config")]
    UnknownService(String),
    #[error("service {service} has no region {region:?} (its regions: {known})")]
    UnknownRegion {
        service: String,
        region: String,
        known: String,
    },
    #[error("operation {id} is in progress for cluster {cluster} ({detail}); follow it with `drctl operations show {id}`, or resume it with `drctl failover --resume {id}` if its driver died")]
    InProgress {
        id: String,
        cluster: String,
        detail: String,
    },
    #[error("another drctl process holds the lease of cluster {cluster} ({holder}, until {until}); wait for it or for the lease to expire")]
    LeaseBusy {
        cluster: String,
        holder: String,
        until: String,
    },
    #[error("refused: {}{}", blockers.join("; "), if *overridable { " (pass --accept-data-loss to fail over anyway)" } else { "" })]
    Refused {
        blockers: Vec<String>,
        /// Only data-loss blockers can be overridden.
        overridable: bool,
    },
    #[error("no operation {0}")]
    NotFound(String),
    #[error("operation {id} is {status} and cannot be resumed")]
    NotResumable { id: String, status: String },
    #[error("operation {id} stopped at step {step}: {error}. Nothing is half-applied; fix the cause and resume with `drctl failover --resume {id}`")]
    Stopped {
        id: String,
        step: String,
        error: String,
    },
    #[error("operation {id} failed at step {step}: {error}")]
    Failed {
        id: String,
        step: String,
        error: String,
    },
    #[error("this driver lost the lease of operation {id} (another drctl process took it over); it stopped writing")]
    LeaseLost { id: String },
    #[error("the journal of operation {id} is unreadable: {detail}")]
    Journal { id: String, detail: String },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for FailoverError {
    fn from(e: StoreError) -> Self {
        FailoverError::Store(e)
    }
}

impl FailoverError {
    /// A stable code for scripts and the API (`-o json`); never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            FailoverError::UnknownService(_) => "service_not_found",
            FailoverError::UnknownRegion { .. } => "region_not_found",
            FailoverError::InProgress { .. } => "operation_in_progress",
            FailoverError::LeaseBusy { .. } => "lease_busy",
            FailoverError::Refused { .. } => "refused",
            FailoverError::NotFound(_) => "operation_not_found",
            FailoverError::NotResumable { .. } => "not_resumable",
            FailoverError::Stopped { .. } => "operation_stopped",
            FailoverError::Failed { .. } => "operation_failed",
            FailoverError::LeaseLost { .. } => "lease_lost",
            FailoverError::Journal { .. } => "journal_unreadable",
            FailoverError::Store(_) => "store_unavailable",
        }
    }
}
