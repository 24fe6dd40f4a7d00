//! Backups for drctl: streamed base backups into object storage, manifests
//! written last, and verification that re-reads every byte.
//!
//! Object key layout (under the store's prefix):
//! ```text
//! <service>/<backup id>/base.tar.zst     pg_basebackup tar (with the WAL to make it consistent), zstd
//! <service>/<backup id>/manifest.json    written last: a backup without it is not complete
//! ```
//! A backup id is its start time in UTC plus a random suffix
//! (`20261123T202500Z-3f9a1c`), so ids sort by time and never collide.
//!
//! This crate reaches databases only through drctl-node's two seams: the
//! datastore's base backup tool ([`drctl_node::Datastore::base_backup_command`],
//! its positions read back with [`drctl_node::Datastore::backup_positions`])
//! and, for restore tests, the node actions
//! ([`drctl_node::NodeActions::restore_scratch`], `start`,
//! `teardown_scratch`), fed the verified backup through a
//! [`drctl_node::BackupSource`]. Object stores are reached through
//! [`ObjectStore`]; recording results is the caller's (the state store's)
//! job.

pub mod archive;
pub mod archiver;
mod backup;
mod crypto;
pub mod jobs;
mod manifest;
pub mod pitr;
mod restore;
mod restore_test;
mod retention;
pub mod scheduler;
pub mod source;
mod store;
mod verify;
pub mod wal_archive;

pub use backup::{run_backup, BackupProgress, BackupRequest};
pub use crypto::{BackupKey, Opener, SealedObject, SCHEME as ENCRYPTION_SCHEME};
pub use manifest::{Manifest, ManifestObject, MANIFEST_FORMAT};
pub use restore::restore_backup;
pub use restore_test::{
    run_restore_test, AgentPlace, QueryResult, RestorePhase, RestoreTestOutcome, RestoreTestRequest,
};
pub use retention::{plan_retention, Candidate, RetentionPlan, RetentionRule};
pub use source::RecordedBackups;
pub use store::{
    part_size, LockMode, LockState, ObjectInfo, ObjectLock, ObjectReader, ObjectStore, S3Location,
    Upload, MAX_PARTS, PART_SIZE,
};

/// Static AWS keys ([`S3Location::credentials`]; also what drctl-dns's
/// Route 53 provider takes): the SDK's own type, whose `Debug` redacts the
/// secret.
pub use aws_sdk_s3::config::Credentials as AwsCredentials;
pub use verify::{check_object_contents, verify_backup, Expected, VerifyReport};

/// What went wrong with a backup or its verification.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    ObjectStore { what: String, reason: String },
    #[error("object {0} is missing")]
    MissingObject(String),
    #[error("pg_basebackup failed: {0}")]
    BaseBackup(String),
    #[error("{0}")]
    Key(String),
    #[error("manifest {key}: {reason}")]
    Manifest { key: String, reason: String },
    /// S3 Object Lock keeps the object (see [`ObjectLock`]).
    #[error("{key} is locked (S3 Object Lock){}: it can be deleted once the lock ends", until.map(|u| format!(" until {}", u.to_rfc3339())).unwrap_or_default())]
    Locked {
        key: String,
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// `<service>/<id>/` — where a backup's objects live.
pub fn backup_prefix(service: &str, backup_id: &str) -> String {
    format!("{service}/{backup_id}/")
}

/// A new backup id: UTC start time and a random suffix.
pub fn new_backup_id(at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}-{}",
        at.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_location_never_shows_its_secret_key() {
        let location = S3Location {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            attempt_timeout: std::time::Duration::from_secs(1),
            credentials: Some(AwsCredentials::new(
                "AKIDTEST",
                "hunter2-secret",
                None,
                None,
                "t",
            )),
            lock: None,
        };
        let shown = format!("{location:?}");
        assert!(shown.contains("AKIDTEST"), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
