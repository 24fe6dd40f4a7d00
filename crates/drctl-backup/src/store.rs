//! Object stores: where backups live. S3 (AWS, MinIO, Ceph, R2, moto…)
//! through aws-sdk-s3, and a local directory (the embedded default).
//!
//! Large objects are written as streams with bounded memory: S3 multipart
//! uploads whose parts start at [`PART_SIZE`] and grow (see [`part_size`]),
//! or a temporary file renamed into place, so an interrupted upload never
//! leaves an object under its final key. Small objects (manifests) are
//! written whole and atomically.

use std::path::{Path, PathBuf};

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncWriteExt;

use crate::BackupError;

/// The first S3 parts are buffered to this size (S3's minimum is 5 MiB,
/// except the last); later parts grow, see [`part_size`].
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 refuses part numbers above this.
pub const MAX_PARTS: usize = 10_000;
/// S3's largest part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Parts of one size before the size doubles.
const PARTS_PER_SIZE: usize = 1_000;

/// The size of part `number` (1-based) of an upload whose first part is
/// `initial` bytes: doubled every [`PARTS_PER_SIZE`] parts, at most 5 GiB.
///
/// A streamed upload does not know its size up front, and S3 takes at most
/// [`MAX_PARTS`] parts: fixed 8 MiB parts would cap an object at 78 GiB.
/// Doubling every thousand parts keeps small backups in small parts (and
/// little memory) while 10,000 parts from [`PART_SIZE`] hold 7.8 TiB, more
/// than S3's 5 TiB object limit.
pub fn part_size(initial: usize, number: usize) -> usize {
    let doublings = (number.saturating_sub(1) / PARTS_PER_SIZE).min(20) as u32;
    initial.saturating_mul(1 << doublings).min(MAX_PART_SIZE)
}

/// An object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// Where an S3 store is and how to reach it.
#[derive(Clone, Debug)]
pub struct S3Location {
    pub bucket: String,
    /// Prepended to every key (e.g. `drctl/`); may be empty.
    pub prefix: String,
    /// A custom endpoint (MinIO, moto…); `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most
    /// S3-compatible servers.
    pub path_style: bool,
    /// One attempt of one call; a slower one is abandoned and retried.
    pub attempt_timeout: std::time::Duration,
    /// Keys to sign with instead of the standard AWS chain (environment,
    /// profile, web identity, instance metadata); `None` in production.
    /// For callers that must not change the process environment to pass
    /// keys (tests run in parallel). `Debug` never shows the secret.
    pub credentials: Option<crate::AwsCredentials>,
    /// S3 Object Lock on every object drctl writes; `None`: objects are
    /// not locked (and the bucket need not support it).
    pub lock: Option<ObjectLock>,
}

/// S3 Object Lock (write once, read many) on everything drctl writes to a
/// store, for a retention time after each write: whoever holds drctl's own
/// credentials (an attacker who took them, ransomware on drctl's host)
/// cannot delete or replace a backup or a WAL segment before it ends. The
/// bucket must have Object Lock enabled, which S3 allows only on a
/// versioned bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// How long each object stays locked after it is written.
    pub retention: std::time::Duration,
}

impl ObjectLock {
    /// When an object written now is unlocked.
    pub fn until_from(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        now + chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX)
    }
}

/// The two Object Lock modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// A user granted `s3:BypassGovernanceRetention` can still remove the
    /// lock: grant it to nothing drctl runs as.
    Governance,
    /// Nobody can remove or shorten the lock, not even the account's root
    /// user, until it ends.
    Compliance,
}

impl LockMode {
    fn s3(self) -> aws_sdk_s3::types::ObjectLockMode {
        match self {
            LockMode::Governance => aws_sdk_s3::types::ObjectLockMode::Governance,
            LockMode::Compliance => aws_sdk_s3::types::ObjectLockMode::Compliance,
        }
    }

    fn from_s3(mode: &str) -> Option<LockMode> {
        match mode.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// An object's lock as the store reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockState {
    pub mode: LockMode,
    pub until: chrono::DateTime<chrono::Utc>,
}

impl LockState {
    pub fn holds_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.until > now
    }
}

fn s3_time(t: chrono::DateTime<chrono::Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_millis(t.timestamp_millis())
}

fn from_s3_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?)
}

/// An object store.
#[derive(Clone, Debug)]
pub enum ObjectStore {
    Local(LocalStore),
    S3(S3Store),
}

#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    location: S3Location,
    /// The size of an upload's first parts ([`PART_SIZE`] but in tests).
    initial_part_size: usize,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> BackupError {
    move |source| BackupError::Io { what, source }
}

fn s3_err<E>(what: String) -> impl FnOnce(aws_sdk_s3::error::SdkError<E>) -> BackupError
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
{
    move |e| BackupError::ObjectStore {
        what,
        reason: s3_reason(&e),
    }
}

/// What went wrong with an S3 call, in one line: the HTTP status and S3's
/// error code and message when it answered, else how the call failed (no
/// secrets travel in either). The SDK's own rendering carries the raw
/// response, headers and body included.
fn s3_reason<E>(e: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
{
    use aws_sdk_s3::error::SdkError;
    let attempts = format!("(after up to {S3_ATTEMPTS} attempts)");
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            format!(
                "S3 answered HTTP {} {}: {} {attempts}",
                service.raw().status().as_u16(),
                err.code().unwrap_or("(no error code)"),
                err.message().unwrap_or("(no message)"),
            )
        }
        SdkError::TimeoutError(_) => format!("no answer within the store's timeout {attempts}"),
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            format!("no answer within the store's timeout {attempts}")
        }
        SdkError::DispatchFailure(f) if f.is_io() => format!(
            "the connection failed: {} {attempts}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        ),
        SdkError::ResponseError(_) => format!("S3's answer could not be read {attempts}"),
        _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

/// Attempts of one S3 call (the SDK's default is 3).
pub const S3_ATTEMPTS: u32 = 5;

impl ObjectStore {
    /// A directory on this machine; created if missing.
    pub async fn local(root: impl Into<PathBuf>) -> Result<ObjectStore, BackupError> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(io(format!("creating {}", root.display())))?;
        Ok(ObjectStore::Local(LocalStore { root }))
    }

    /// An S3 bucket; credentials come from the standard AWS chain
    /// (environment, profile, web identity, instance metadata) unless the
    /// location gives its own ([`S3Location::credentials`]).
    pub async fn s3(location: S3Location) -> Result<ObjectStore, BackupError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(location.region.clone()));
        if let Some(credentials) = &location.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        let shared = loader.load().await;
        // Without timeouts a server that accepts and never answers hangs a
        // backup for ever. Each attempt is bounded; errors the SDK deems
        // transient (5xx, throttling, resets, timeouts) are retried with
        // backoff, up to five attempts, before the backup fails cleanly.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(10).min(location.attempt_timeout))
            .read_timeout(location.attempt_timeout)
            .operation_attempt_timeout(location.attempt_timeout)
            .build();
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(location.path_style)
            .timeout_config(timeouts)
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(S3_ATTEMPTS),
            );
        if let Some(endpoint) = &location.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(ObjectStore::S3(S3Store {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            location,
            initial_part_size: PART_SIZE,
        }))
    }

    /// Starts S3 uploads with parts of `bytes` instead of [`PART_SIZE`].
    /// For tests only: they cross S3's part-count limit with megabytes
    /// instead of 78 GiB (against a server that allows parts this small).
    #[doc(hidden)]
    pub fn with_initial_part_size(mut self, bytes: usize) -> ObjectStore {
        if let ObjectStore::S3(s) = &mut self {
            s.initial_part_size = bytes.max(1);
        }
        self
    }

    /// Creates the S3 bucket if it does not exist (the lab and tests start
    /// from an empty server); nothing to do for a directory.
    pub async fn ensure_bucket(&self) -> Result<(), BackupError> {
        let ObjectStore::S3(s) = self else {
            return Ok(());
        };
        if s.client
            .head_bucket()
            .bucket(&s.location.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        s.client
            .create_bucket()
            .bucket(&s.location.bucket)
            .set_object_lock_enabled_for_bucket(s.location.lock.is_some().then_some(true))
            .send()
            .await
            .map_err(s3_err(format!("creating bucket {}", s.location.bucket)))?;
        Ok(())
    }

    /// Checks that a store configured with Object Lock can give it: the
    /// bucket has Object Lock enabled. Without it S3 refuses every locked
    /// write, so a backup would fail anyway; this says why up front.
    pub async fn check_lock(&self) -> Result<(), BackupError> {
        let ObjectStore::S3(s) = self else {
            return Ok(());
        };
        if s.location.lock.is_none() {
            return Ok(());
        }
        let bucket = &s.location.bucket;
        let not_enabled = || {
            BackupError::ObjectStore {
            what: format!("bucket {bucket}"),
            reason: "the store is configured with object_lock, but the bucket does not have S3 Object Lock enabled: create the bucket with it (aws s3api create-bucket --object-lock-enabled-for-bucket) or enable it (aws s3api put-object-lock-configuration, on a versioned bucket)".into(),
        }
        };
        match s
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| e.as_str() == "Enabled");
                if enabled {
                    Ok(())
                } else {
                    Err(not_enabled())
                }
            }
            Err(e)
                if e.as_service_error().and_then(|e| e.code())
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                Err(not_enabled())
            }
            Err(e) => Err(s3_err(format!(
                "reading the Object Lock configuration of {bucket}"
            ))(e)),
        }
    }

    /// Whether objects written to this store are locked against deletion
    /// and replacement. A directory never is: whoever can write to it can
    /// delete from it.
    pub fn lock(&self) -> Option<ObjectLock> {
        match self {
            ObjectStore::Local(_) => None,
            ObjectStore::S3(s) => s.location.lock,
        }
    }

    /// The lock the store reports on an object; `None` when it has none
    /// (or the store cannot lock).
    pub async fn lock_of(&self, key: &str) -> Result<Option<LockState>, BackupError> {
        let ObjectStore::S3(s) = self else {
            return Ok(None);
        };
        let full_key = format!("{}{key}", s.location.prefix);
        let head = s
            .client
            .head_object()
            .bucket(&s.location.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| match e.as_service_error().map(|e| e.is_not_found()) {
                Some(true) => BackupError::MissingObject(key.to_string()),
                _ => s3_err(format!("reading the lock of {full_key}"))(e),
            })?;
        Ok(head
            .object_lock_mode()
            .and_then(|m| LockMode::from_s3(m.as_str()))
            .zip(head.object_lock_retain_until_date().and_then(from_s3_time))
            .map(|(mode, until)| LockState { mode, until }))
    }

    /// `file:///dir` or `s3://bucket/prefix`, for people and manifests.
    pub fn describe(&self) -> String {
        match self {
            ObjectStore::Local(l) => format!("file://{}", l.root.display()),
            ObjectStore::S3(s) => format!("s3://{}/{}", s.location.bucket, s.location.prefix),
        }
    }

    fn local_path(root: &Path, key: &str) -> Result<PathBuf, BackupError> {
        if key.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(BackupError::ObjectStore {
                what: format!("object key {key:?}"),
                reason: "keys may not be empty or contain '..' segments".into(),
            });
        }
        Ok(root.join(key))
    }

    /// Starts a streamed upload to `key`.
    pub async fn begin_upload(&self, key: &str) -> Result<Upload, BackupError> {
        match self {
            ObjectStore::Local(l) => {
                let path = Self::local_path(&l.root, key)?;
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(io(format!("creating {}", dir.display())))?;
                }
                let tmp = path.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
                let file = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(io(format!("creating {}", tmp.display())))?;
                Ok(Upload::Local {
                    tmp,
                    path,
                    file,
                    size: 0,
                })
            }
            ObjectStore::S3(s) => {
                let full_key = format!("{}{key}", s.location.prefix);
                let retain_until = s.location.lock.map(|l| l.until_from(chrono::Utc::now()));
                let created = s
                    .client
                    .create_multipart_upload()
                    .bucket(&s.location.bucket)
                    .key(&full_key)
                    .set_object_lock_mode(s.location.lock.map(|l| l.mode.s3()))
                    .set_object_lock_retain_until_date(retain_until.map(s3_time))
                    .send()
                    .await
                    .map_err(s3_err(format!("starting the upload of {full_key}")))?;
                let upload_id = created.upload_id().unwrap_or_default().to_string();
                Ok(Upload::S3 {
                    store: s.clone(),
                    key: full_key,
                    upload_id,
                    parts: Vec::new(),
                    buffer: Vec::with_capacity(s.initial_part_size),
                    size: 0,
                    retain_until,
                })
            }
        }
    }

    /// Writes a small object whole (atomically: readers see all or nothing).
    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), BackupError> {
        self.put_locked(key, data, true).await
    }

    /// [`ObjectStore::put`] of an object that is superseded soon (a
    /// partial copy of the WAL segment being written): never locked, so it
    /// can be deleted once superseded, whatever the store's lock.
    pub async fn put_unlocked(&self, key: &str, data: Vec<u8>) -> Result<(), BackupError> {
        self.put_locked(key, data, false).await
    }

    async fn put_locked(
        &self,
        key: &str,
        data: Vec<u8>,
        lockable: bool,
    ) -> Result<(), BackupError> {
        match self {
            ObjectStore::Local(_) => {
                let mut up = self.begin_upload(key).await?;
                up.write(&data).await?;
                up.finish().await.map(|_| ())
            }
            ObjectStore::S3(s) => {
                let full_key = format!("{}{key}", s.location.prefix);
                let lock = s.location.lock.filter(|_| lockable);
                s.client
                    .put_object()
                    .bucket(&s.location.bucket)
                    .key(&full_key)
                    .body(ByteStream::from(data))
                    .set_object_lock_mode(lock.map(|l| l.mode.s3()))
                    .set_object_lock_retain_until_date(
                        lock.map(|l| s3_time(l.until_from(chrono::Utc::now()))),
                    )
                    .send()
                    .await
                    .map_err(s3_err(format!("writing {full_key}")))?;
                Ok(())
            }
        }
    }

    /// Opens an object for reading in chunks.
    pub async fn open_reader(&self, key: &str) -> Result<ObjectReader, BackupError> {
        match self {
            ObjectStore::Local(l) => {
                let path = Self::local_path(&l.root, key)?;
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => BackupError::MissingObject(key.to_string()),
                        _ => BackupError::Io {
                            what: format!("opening {}", path.display()),
                            source: e,
                        },
                    })?;
                Ok(ObjectReader::Local {
                    file,
                    path,
                    buf: vec![0u8; 1024 * 1024],
                })
            }
            ObjectStore::S3(s) => {
                let full_key = format!("{}{key}", s.location.prefix);
                let got = s
                    .client
                    .get_object()
                    .bucket(&s.location.bucket)
                    .key(&full_key)
                    .send()
                    .await;
                match got {
                    Ok(o) => Ok(ObjectReader::S3 {
                        body: o.body,
                        key: full_key,
                    }),
                    Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                        Err(BackupError::MissingObject(key.to_string()))
                    }
                    Err(e) => Err(s3_err(format!("reading {full_key}"))(e)),
                }
            }
        }
    }

    /// Reads an object in chunks, calling `each` on every chunk in order.
    pub async fn read(&self, key: &str, mut each: impl FnMut(&[u8])) -> Result<u64, BackupError> {
        let mut reader = self.open_reader(key).await?;
        let mut total = 0u64;
        while let Some(chunk) = reader.next_chunk().await? {
            total += chunk.len() as u64;
            each(&chunk);
        }
        Ok(total)
    }

    /// Copies an object from this store to `to` as a stream (bounded memory).
    pub async fn copy_to(&self, key: &str, to: &ObjectStore) -> Result<u64, BackupError> {
        let mut reader = self.open_reader(key).await?;
        let mut upload = to.begin_upload(key).await?;
        loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = upload.write(&chunk).await {
                        upload.abort().await;
                        return Err(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    upload.abort().await;
                    return Err(e);
                }
            }
        }
        upload.finish().await
    }

    /// Reads a small object whole.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, BackupError> {
        let mut out = Vec::new();
        self.read(key, |c| out.extend_from_slice(c)).await?;
        Ok(out)
    }

    /// Objects under `prefix` (keys relative to the store), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackupError> {
        let mut out = Vec::new();
        match self {
            ObjectStore::Local(l) => {
                let mut stack = vec![l.root.clone()];
                while let Some(dir) = stack.pop() {
                    let Ok(mut rd) = tokio::fs::read_dir(&dir).await else {
                        continue;
                    };
                    while let Some(e) = rd
                        .next_entry()
                        .await
                        .map_err(io(format!("listing {}", dir.display())))?
                    {
                        let path = e.path();
                        let meta = e
                            .metadata()
                            .await
                            .map_err(io(format!("reading {}", path.display())))?;
                        if meta.is_dir() {
                            stack.push(path);
                            continue;
                        }
                        let key = path
                            .strip_prefix(&l.root)
                            .unwrap_or(&path)
                            .to_string_lossy()
                            .into_owned();
                        // Unfinished local uploads are not objects.
                        if key.starts_with(prefix) && !key.contains(".partial-") {
                            out.push(ObjectInfo {
                                key,
                                size: meta.len(),
                            });
                        }
                    }
                }
            }
            ObjectStore::S3(s) => {
                let mut pages = s
                    .client
                    .list_objects_v2()
                    .bucket(&s.location.bucket)
                    .prefix(format!("{}{prefix}", s.location.prefix))
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(s3_err(format!(
                        "listing s3://{}/{}",
                        s.location.bucket, s.location.prefix
                    )))?;
                    for o in page.contents() {
                        let key = o.key().unwrap_or_default();
                        out.push(ObjectInfo {
                            key: key
                                .strip_prefix(&s.location.prefix)
                                .unwrap_or(key)
                                .to_string(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes an object; deleting a missing one is success.
    pub async fn delete(&self, key: &str) -> Result<(), BackupError> {
        match self {
            ObjectStore::Local(l) => {
                let path = Self::local_path(&l.root, key)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(BackupError::Io {
                        what: format!("deleting {}", path.display()),
                        source: e,
                    }),
                }
            }
            ObjectStore::S3(s) if s.location.lock.is_some() => s.delete_versions(key).await,
            ObjectStore::S3(s) => {
                let full_key = format!("{}{key}", s.location.prefix);
                s.client
                    .delete_object()
                    .bucket(&s.location.bucket)
                    .key(&full_key)
                    .send()
                    .await
                    .map_err(s3_err(format!("deleting {full_key}")))?;
                Ok(())
            }
        }
    }

    /// Aborts unfinished uploads under `prefix` (left by a process that died
    /// mid-backup); returns how many were swept.
    pub async fn sweep_unfinished_uploads(&self, prefix: &str) -> Result<usize, BackupError> {
        let mut swept = 0;
        match self {
            ObjectStore::Local(l) => {
                let mut stack = vec![l.root.clone()];
                while let Some(dir) = stack.pop() {
                    let Ok(mut rd) = tokio::fs::read_dir(&dir).await else {
                        continue;
                    };
                    while let Ok(Some(e)) = rd.next_entry().await {
                        let path = e.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else {
                            let key = path
                                .strip_prefix(&l.root)
                                .unwrap_or(&path)
                                .to_string_lossy()
                                .into_owned();
                            if key.starts_with(prefix) && key.contains(".partial-") {
                                let _ = tokio::fs::remove_file(&path).await;
                                swept += 1;
                            }
                        }
                    }
                }
            }
            ObjectStore::S3(s) => {
                let listed = match s
                    .client
                    .list_multipart_uploads()
                    .bucket(&s.location.bucket)
                    .prefix(format!("{}{prefix}", s.location.prefix))
                    .send()
                    .await
                {
                    Ok(listed) => listed,
                    // Some S3-compatible servers (s3s-fs) cannot list
                    // uploads. Sweeping is housekeeping, no reason to
                    // refuse a backup: such a bucket wants a lifecycle rule
                    // that aborts incomplete multipart uploads instead.
                    Err(e)
                        if e.as_service_error().and_then(|e| e.code())
                            == Some("NotImplemented") =>
                    {
                        tracing::warn!(
                            bucket = %s.location.bucket,
                            "this S3 server cannot list unfinished uploads; not sweeping them (set a lifecycle rule that aborts incomplete multipart uploads)"
                        );
                        return Ok(0);
                    }
                    Err(e) => return Err(s3_err("listing unfinished uploads".to_string())(e)),
                };
                for u in listed.uploads() {
                    s.client
                        .abort_multipart_upload()
                        .bucket(&s.location.bucket)
                        .key(u.key().unwrap_or_default())
                        .upload_id(u.upload_id().unwrap_or_default())
                        .send()
                        .await
                        .map_err(s3_err("aborting an unfinished upload".to_string()))?;
                    swept += 1;
                }
            }
        }
        Ok(swept)
    }
}

impl S3Store {
    /// Deletes every version of `key` in a locked (so versioned) bucket. A
    /// plain delete there only hides the object behind a delete marker and
    /// keeps its bytes for ever; deleting the versions frees them, and S3
    /// refuses it while a version is locked. A locked object is an error
    /// ([`BackupError::Locked`]) saying until when; nothing is deleted then.
    async fn delete_versions(&self, key: &str) -> Result<(), BackupError> {
        let full_key = format!("{}{key}", self.location.prefix);
        let listed = self
            .client
            .list_object_versions()
            .bucket(&self.location.bucket)
            .prefix(&full_key)
            .send()
            .await
            .map_err(s3_err(format!("listing the versions of {full_key}")))?;
        let versions: Vec<String> = listed
            .versions()
            .iter()
            .filter(|v| v.key() == Some(full_key.as_str()))
            .filter_map(|v| v.version_id().map(String::from))
            .chain(
                listed
                    .delete_markers()
                    .iter()
                    .filter(|m| m.key() == Some(full_key.as_str()))
                    .filter_map(|m| m.version_id().map(String::from)),
            )
            .collect();
        // Every version's lock first, so a refused delete removes nothing.
        let now = chrono::Utc::now();
        for version in &versions {
            let Ok(head) = self
                .client
                .head_object()
                .bucket(&self.location.bucket)
                .key(&full_key)
                .version_id(version)
                .send()
                .await
            else {
                continue; // a delete marker has no head
            };
            let until = head.object_lock_retain_until_date().and_then(from_s3_time);
            if until.is_some_and(|u| u > now) {
                return Err(BackupError::Locked {
                    key: key.to_string(),
                    until,
                });
            }
        }
        for version in &versions {
            self.client
                .delete_object()
                .bucket(&self.location.bucket)
                .key(&full_key)
                .version_id(version)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error().and_then(|e| e.code()) == Some("AccessDenied") {
                        BackupError::Locked {
                            key: key.to_string(),
                            until: None,
                        }
                    } else {
                        s3_err(format!("deleting a version of {full_key}"))(e)
                    }
                })?;
        }
        Ok(())
    }
}

/// An object being read, chunk by chunk.
pub enum ObjectReader {
    Local {
        file: tokio::fs::File,
        path: PathBuf,
        buf: Vec<u8>,
    },
    S3 {
        body: ByteStream,
        key: String,
    },
}

impl ObjectReader {
    /// The next chunk, `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BackupError> {
        match self {
            ObjectReader::Local { file, path, buf } => {
                use tokio::io::AsyncReadExt;
                let n = file
                    .read(buf)
                    .await
                    .map_err(io(format!("reading {}", path.display())))?;
                Ok((n > 0).then(|| buf[..n].to_vec()))
            }
            ObjectReader::S3 { body, key } => match body.next().await {
                None => Ok(None),
                Some(Ok(chunk)) => Ok(Some(chunk.to_vec())),
                Some(Err(e)) => Err(BackupError::ObjectStore {
                    what: format!("reading {key}"),
                    reason: e.to_string(),
                }),
            },
        }
    }
}

/// A streamed upload in progress. Dropping it without [`Upload::finish`]
/// leaves no object under the final key; call [`Upload::abort`] to also
/// release what was uploaded so far.
pub enum Upload {
    Local {
        tmp: PathBuf,
        path: PathBuf,
        file: tokio::fs::File,
        size: u64,
    },
    S3 {
        store: S3Store,
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
        buffer: Vec<u8>,
        size: u64,
        /// The object's lock, set when the upload began and again once it
        /// is complete (some S3-compatible servers drop a multipart
        /// upload's lock headers).
        retain_until: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Upload {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BackupError> {
        match self {
            Upload::Local {
                tmp, file, size, ..
            } => {
                file.write_all(data)
                    .await
                    .map_err(io(format!("writing {}", tmp.display())))?;
                *size += data.len() as u64;
            }
            Upload::S3 { size, .. } => {
                *size += data.len() as u64;
                let mut rest = data;
                while !rest.is_empty() {
                    let full = {
                        let Upload::S3 {
                            buffer,
                            parts,
                            store,
                            ..
                        } = &mut *self
                        else {
                            unreachable!()
                        };
                        let target = part_size(store.initial_part_size, parts.len() + 1);
                        let take = (target - buffer.len()).min(rest.len());
                        buffer.extend_from_slice(&rest[..take]);
                        rest = &rest[take..];
                        buffer.len() == target
                    };
                    if full {
                        self.flush_part().await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> Result<(), BackupError> {
        let Upload::S3 {
            store,
            key,
            upload_id,
            parts,
            buffer,
            ..
        } = self
        else {
            return Ok(());
        };
        if parts.len() >= MAX_PARTS {
            return Err(BackupError::ObjectStore {
                what: format!("uploading {key}"),
                reason: format!(
                    "more than S3's {MAX_PARTS} parts; the object exceeds S3's 5 TiB limit"
                ),
            });
        }
        let number = parts.len() as i32 + 1;
        let next = part_size(store.initial_part_size, parts.len() + 2);
        let body = std::mem::replace(buffer, Vec::with_capacity(next));
        let done = store
            .client
            .upload_part()
            .bucket(&store.location.bucket)
            .key(key.as_str())
            .upload_id(upload_id.as_str())
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(s3_err(format!("uploading part {number} of {key}")))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(done.e_tag().map(String::from))
                .build(),
        );
        Ok(())
    }

    /// Completes the object (durably) and returns its size.
    pub async fn finish(mut self) -> Result<u64, BackupError> {
        if matches!(&self, Upload::S3 { buffer, parts, .. } if !buffer.is_empty() || parts.is_empty())
        {
            self.flush_part().await?;
        }
        match self {
            Upload::Local {
                tmp,
                path,
                file,
                size,
            } => {
                file.sync_all()
                    .await
                    .map_err(io(format!("syncing {}", tmp.display())))?;
                drop(file);
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(io(format!("renaming into {}", path.display())))?;
                if let Some(dir) = path.parent() {
                    if let Ok(d) = tokio::fs::File::open(dir).await {
                        let _ = d.sync_all().await;
                    }
                }
                Ok(size)
            }
            Upload::S3 {
                store,
                key,
                upload_id,
                parts,
                size,
                retain_until,
                ..
            } => {
                store
                    .client
                    .complete_multipart_upload()
                    .bucket(&store.location.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(s3_err(format!("completing the upload of {key}")))?;
                if let (Some(lock), Some(until)) = (store.location.lock, retain_until) {
                    // The same date again: S3 takes it as it is (a lock
                    // can be kept or extended, never shortened); a server
                    // that dropped it at the upload's start has it now.
                    store
                        .client
                        .put_object_retention()
                        .bucket(&store.location.bucket)
                        .key(&key)
                        .retention(
                            aws_sdk_s3::types::ObjectLockRetention::builder()
                                .mode(lock.mode.s3().as_str().into())
                                .retain_until_date(s3_time(until))
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(s3_err(format!("locking {key}")))?;
                }
                Ok(size)
            }
        }
    }

    /// Gives up: removes the partial object or aborts the multipart upload.
    pub async fn abort(self) {
        match self {
            Upload::Local { tmp, file, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            Upload::S3 {
                store,
                key,
                upload_id,
                ..
            } => {
                if let Err(e) = store
                    .client
                    .abort_multipart_upload()
                    .bucket(&store.location.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(%key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not abort an upload; the next sweep will");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_growing_parts_hold_s3s_largest_object() {
        let held: u64 = (1..=MAX_PARTS)
            .map(|n| part_size(PART_SIZE, n) as u64)
            .sum();
        assert!(held >= 5 << 40, "10,000 parts hold only {held} bytes");
        assert_eq!(part_size(PART_SIZE, 1), PART_SIZE);
        assert_eq!(part_size(PART_SIZE, 1000), PART_SIZE);
        assert_eq!(part_size(PART_SIZE, 1001), 2 * PART_SIZE);
        assert!((1..=MAX_PARTS).all(|n| part_size(PART_SIZE, n) <= MAX_PART_SIZE));
    }
}
