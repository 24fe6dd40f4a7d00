//! The backup job: the datastore's base backup tool → zstd → SHA-256 →
//! object store, as one stream with bounded memory, then the manifest, last.
//!
//! The tool and the reading of its output come from the datastore seam
//! ([`Datastore::base_backup_command`], [`Datastore::backup_positions`]);
//! for PostgreSQL that is `pg_basebackup -D - -Ft -X fetch`, a single tar
//! on stdout with the WAL needed to make it consistent (fetched at the end
//! of the backup), so the object restores on its own. A blocking thread
//! reads, compresses and hashes; the async side uploads. Between them a
//! channel of a few chunks is all the buffering there is (plus one S3
//! part).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_node::{Datastore, Dsn, Engine, ToolCommand};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{backup_prefix, BackupError, Manifest, ManifestObject, ObjectStore, MANIFEST_FORMAT};

const CHUNK: usize = 1024 * 1024;
const DATA_OBJECT: &str = "base.tar.zst";
/// What the datastore's calls would be bounded by. A backup makes none of
/// them (it only runs the tool the datastore names), so this bounds
/// nothing today; the tool's own connection timeouts come from the DSN.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to back up and where to.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    pub service: String,
    pub region: String,
    /// A libpq connection string with replication rights (for pg_basebackup).
    /// Never logged: errors name the service and region only.
    pub dsn: String,
    /// Directory of the engine's client programs (`pg_basebackup`), where
    /// the datastore finds its base backup tool.
    pub pg_bin: PathBuf,
    pub compression_level: i32,
    /// zstd workers; 0: one per core.
    pub compression_threads: u32,
    pub store: ObjectStore,
    /// Client-side encryption; `None` stores the compressed stream as is.
    pub encryption: Option<crate::BackupKey>,
}

/// Bytes read from PostgreSQL and stored so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackupProgress {
    pub read_bytes: u64,
    pub stored_bytes: u64,
}

struct StreamResult {
    raw_size: u64,
    stored_size: u64,
    sha256: String,
    stderr: String,
    success: bool,
}

/// A `Write` that hashes what it is given and hands it on in chunks.
struct HashingSink {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    hash: Sha256,
    size: u64,
}

impl Write for HashingSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hash.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.blocking_send(chunk).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped")
            })?;
        }
        Ok(())
    }
}

/// Runs the base backup tool and compresses/hashes its output into `tx`.
fn stream_base_backup(
    req: &BackupRequest,
    tool: ToolCommand,
    object: &crate::SealedObject,
    tx: mpsc::Sender<Vec<u8>>,
    raw_progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<StreamResult, BackupError> {
    // The datastore built the command: the password in a passfile (held
    // by `keep_alive` until the child is gone), not on the command line
    // (every local user reads /proc/PID/cmdline), and the child's
    // environment empty but for what it needs: drctl's own holds other
    // secrets.
    let ToolCommand {
        mut command,
        keep_alive,
    } = tool;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            BackupError::BaseBackup(format!(
                "cannot start {}: {e}",
                Path::new(command.get_program()).display()
            ))
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let sink = HashingSink {
        tx,
        buf: Vec::with_capacity(CHUNK),
        hash: Sha256::new(),
        size: 0,
    };
    let sealer =
        crate::crypto::Sealer::new(sink, req.encryption.as_ref(), object).map_err(|e| {
            BackupError::Io {
                what: "starting encryption".into(),
                source: e,
            }
        })?;
    let mut encoder =
        zstd::stream::write::Encoder::new(sealer, req.compression_level).map_err(|e| {
            BackupError::Io {
                what: "starting zstd".into(),
                source: e,
            }
        })?;
    // zstd's own workers compress while this thread reads pg_basebackup and
    // hashes: on one thread compression caps a backup at a third of what
    // pg_basebackup alone delivers (bench/backup-peers.sh).
    let workers = match req.compression_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        n => n,
    };
    encoder.multithread(workers).map_err(|e| BackupError::Io {
        what: format!("starting {workers} zstd workers"),
        source: e,
    })?;
    let mut buf = vec![0u8; CHUNK];
    let mut raw_size = 0u64;
    let copy = (|| -> std::io::Result<()> {
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            raw_size += n as u64;
            raw_progress.store(raw_size, std::sync::atomic::Ordering::Relaxed);
            encoder.write_all(&buf[..n])?;
        }
    })();
    if let Err(e) = copy {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BackupError::Io {
            what: "streaming the base backup".into(),
            source: e,
        });
    }
    let sealer = encoder.finish().map_err(|e| BackupError::Io {
        what: "finishing zstd".into(),
        source: e,
    })?;
    let mut sink = sealer.finish().map_err(|e| BackupError::Io {
        what: "finishing encryption".into(),
        source: e,
    })?;
    sink.flush().map_err(|e| BackupError::Io {
        what: "handing on the last chunk".into(),
        source: e,
    })?;
    let status = child.wait().map_err(|e| BackupError::Io {
        what: "waiting for the base backup tool".into(),
        source: e,
    })?;
    drop(keep_alive);
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(StreamResult {
        raw_size,
        stored_size: sink.size,
        sha256: hex::encode(sink.hash.finalize()),
        stderr,
        success: status.success(),
    })
}

/// The tool's `--version` line (`pg_basebackup (PostgreSQL) 15.10`), for
/// the manifest: the program the datastore's command runs, asked with a
/// clean environment.
fn tool_version(program: &std::ffi::OsStr) -> Option<String> {
    let out = std::process::Command::new(program)
        .env_clear()
        .env("LC_ALL", "C")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The server a backup reads from, through the datastore seam. Nothing is
/// dialled: only the tool's command and the reading of its output come
/// from here.
fn backup_source(req: &BackupRequest) -> Result<Box<dyn Datastore>, BackupError> {
    // Errors name the service and region only, never the DSN.
    let label = format!("{}/{}", req.service, req.region);
    Engine::Postgres
        .connect(label, &Dsn::new(req.dsn.clone()), SOURCE_TIMEOUT)
        .map_err(|e| BackupError::BaseBackup(e.to_string()))
}

/// Takes one backup into `req.store` under `backup_id`. On any failure the
/// upload is aborted and no manifest is written, so the backup is never
/// listed as complete.
pub async fn run_backup(
    req: &BackupRequest,
    backup_id: &str,
    started_at: DateTime<Utc>,
    mut progress: impl FnMut(BackupProgress),
) -> Result<Manifest, BackupError> {
    let source = backup_source(req)?;
    let tool = source
        .base_backup_command(&req.pg_bin)
        .map_err(|e| BackupError::BaseBackup(e.to_string()))?;
    let program = tool.command.get_program().to_os_string();
    let prefix = backup_prefix(&req.service, backup_id);
    let mut upload = req
        .store
        .begin_upload(&format!("{prefix}{DATA_OBJECT}"))
        .await?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let raw = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producer = {
        let req = req.clone();
        let raw = raw.clone();
        let object = crate::SealedObject::new(backup_id, DATA_OBJECT);
        tokio::task::spawn_blocking(move || stream_base_backup(&req, tool, &object, tx, raw))
    };
    let mut stored = 0u64;
    let mut upload_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = upload.write(&chunk).await {
            upload_error = Some(e);
            break;
        }
        stored += chunk.len() as u64;
        progress(BackupProgress {
            read_bytes: raw.load(std::sync::atomic::Ordering::Relaxed),
            stored_bytes: stored,
        });
    }
    drop(rx); // a failed upload stops the producer (its sends fail)
    let produced = producer
        .await
        .map_err(|e| BackupError::BaseBackup(format!("the backup thread failed: {e}")));
    let result = match (upload_error, produced) {
        (Some(e), _) => Err(e),
        (None, Err(e)) | (None, Ok(Err(e))) => Err(e),
        (None, Ok(Ok(r))) if !r.success => {
            let tail: Vec<&str> = r.stderr.lines().rev().take(3).collect();
            Err(BackupError::BaseBackup(format!(
                "{}/{}: {}",
                req.service,
                req.region,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )))
        }
        (None, Ok(Ok(r))) => Ok(r),
    };
    let streamed = match result {
        Ok(r) => r,
        Err(e) => {
            upload.abort().await;
            return Err(e);
        }
    };
    let size = upload.finish().await?;
    debug_assert_eq!(size, streamed.stored_size);
    let positions = source.backup_positions(&streamed.stderr);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        backup_id: backup_id.to_string(),
        service: req.service.clone(),
        region: req.region.clone(),
        timeline: positions.history,
        start_lsn: positions.start,
        stop_lsn: positions.stop,
        started_at,
        ended_at: Utc::now(),
        compression: "zstd".into(),
        compression_level: req.compression_level,
        encryption: req
            .encryption
            .as_ref()
            .map(|_| crate::ENCRYPTION_SCHEME.to_string()),
        encryption_key_id: req.encryption.as_ref().map(|k| k.id.clone()),
        objects: vec![ManifestObject {
            key: DATA_OBJECT.into(),
            size,
            sha256: streamed.sha256,
            uncompressed_size: streamed.raw_size,
        }],
        drctl_version: env!("CARGO_PKG_VERSION").into(),
        postgres_version: tool_version(&program),
    };
    let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    req.store
        .put(&format!("{prefix}manifest.json"), body)
        .await?;
    Ok(manifest)
}
