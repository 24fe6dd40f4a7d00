//! The validated `[[object_stores]]` and `[services.backup]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::sources::KeySource;

/// A place backups are written to and restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStoreConfig {
    /// `[a-z0-9-]+`, unique; what `[services.backup] store` names.
    pub name: String,
    /// Flattened, so the API shows `{"name": …, "kind": "s3", "bucket": …}`
    /// like the config file.
    #[serde(flatten)]
    pub kind: ObjectStoreKind,
}

/// The kind of an object store and where exactly it is.
///
/// There are no credentials here: S3 ones come from the standard AWS chain
/// (environment, profile, instance role), never from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ObjectStoreKind {
    /// A directory on this machine (labs, tests, a mounted NFS share).
    Local {
        /// Absolute: a relative path in the config is resolved against the
        /// config file's directory.
        path: PathBuf,
    },
    /// An S3 bucket, on AWS or on a compatible server (MinIO, R2, moto).
    S3 {
        /// A valid S3 bucket name: 3-63 characters of a-z, 0-9, '.', '-'.
        bucket: String,
        /// Key prefix inside the bucket: empty, or ending with `/`.
        prefix: String,
        /// `http://…` or `https://…`; `None` for AWS itself.
        endpoint: Option<String>,
        /// The bucket's region.
        region: String,
        /// Path-style addressing (`endpoint/bucket/key`), which most
        /// S3-compatible servers need.
        path_style: bool,
        /// How long one attempt of one call may take before
        /// it is abandoned and retried: a server that stops answering must
        /// fail a backup, not hang it.
        #[serde(serialize_with = "crate::duration::serialize")]
        timeout: Duration,
        /// S3 Object Lock on every object drctl writes; `None`: none.
        /// Flat, as written (`object_lock`, `lock_retention`).
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        lock: Option<ObjectLockConfig>,
    },
}

/// S3 Object Lock on a store (`object_lock`, `lock_retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObjectLockConfig {
    #[serde(rename = "object_lock")]
    pub mode: ObjectLockMode,
    /// How long each object stays locked after it is written.
    #[serde(
        rename = "lock_retention",
        serialize_with = "crate::duration::serialize"
    )]
    pub retention: Duration,
}

/// The S3 Object Lock mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockMode {
    /// A user granted `s3:BypassGovernanceRetention` can remove a lock.
    Governance,
    /// Nobody can remove or shorten a lock.
    Compliance,
}

/// How a service's datastore is backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupPolicy {
    /// The name of one of [`Config::object_stores`].
    pub store: String,
    /// The region whose database is copied (default: the primary); one of
    /// the service's regions, with a connection in [`Service::postgres`].
    pub from_region: String,
    /// zstd level, 1..=19 (1 is fastest: a backup keeps pace with
    /// pg_basebackup alone).
    pub compression_level: i32,
    /// zstd worker threads; 0 means one per core of the host
    /// drctl runs on. Compression is a backup's bottleneck, so it uses every
    /// core unless told otherwise.
    pub compression_threads: u32,
    /// SQL run against a restored copy; each must return true for the
    /// backup to count as verified. Never empty strings. Default none.
    pub validation_queries: Vec<String>,
    /// When set, a cold service's RPO exposure counts only backups whose
    /// restore was tested, not every backup that was written.
    pub strict: bool,
    /// When to take a backup: a 5-field cron expression (minute hour
    /// day-of-month month day-of-week), in UTC. `None`: only on demand.
    pub schedule: Option<String>,
    /// When to verify the newest unverified backup (5-field cron, UTC).
    pub verify_schedule: Option<String>,
    /// When to restore-test the newest verified backup (5-field cron, UTC).
    pub restore_test_schedule: Option<String>,
    /// A service whose newest passed restore test is older than this is in
    /// breach: its evidence of being restorable is stale.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub restore_test_max_age: Duration,
    /// Which backups are kept when older ones are pruned.
    pub retention: Retention,
    /// A second object store every backup is copied to: one of
    /// [`Config::object_stores`], never [`BackupPolicy::store`] itself.
    pub offsite_store: Option<String>,
    /// Where the key that encrypts backups comes from; `None`: backups are
    /// not encrypted by drctl.
    pub encryption_key: Option<KeySource>,
    /// Continuous WAL archiving (`wal_archive`, `wal_spool`); `None`: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<WalArchivePolicy>,
}

/// Continuous WAL archiving of a service into its backup store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalArchivePolicy {
    /// Where the receiver writes before WAL is shipped (absolute).
    pub spool: PathBuf,
    /// How often the spool is shipped (`wal_ship_interval`).
    #[serde(serialize_with = "crate::duration::serialize")]
    pub ship_interval: Duration,
}

/// Grandfather-father-son retention: a backup is kept while any rule wants
/// it. `keep_last` is at least 1, so pruning never deletes the newest backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// The newest backups, whatever their age; >= 1.
    pub keep_last: u32,
    /// The newest backup of each of the last this many days (UTC).
    pub keep_daily: u32,
    /// The newest backup of each of the last this many ISO weeks.
    pub keep_weekly: u32,
    /// The newest backup of each of the last this many months.
    pub keep_monthly: u32,
}
