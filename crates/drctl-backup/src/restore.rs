//! Restoring a backup into a directory: stream the object, check its
//! SHA-256 as it arrives, decompress and unpack. The caller starts
//! PostgreSQL on the result (a restore test) and removes it afterwards.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{backup_prefix, verify_backup, BackupError, BackupKey, Manifest, ObjectStore};

/// A `Write` end of a pipe into a blocking thread that unpacks a tar.zst.
struct Pipe(std::sync::mpsc::SyncSender<Vec<u8>>);

struct PipeReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = std::io::Read::read(&mut self.current, buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(chunk) => self.current = std::io::Cursor::new(chunk),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// Restores `backup_id` of `service` into `target` (which must not exist or
/// be empty). The backup is verified first; an unverifiable backup is never
/// restored. Returns its manifest.
pub async fn restore_backup(
    store: &ObjectStore,
    service: &str,
    backup_id: &str,
    target: &Path,
    key: Option<&BackupKey>,
) -> Result<Manifest, BackupError> {
    let (manifest, report) = verify_backup(store, service, backup_id).await?;
    if !report.verified {
        return Err(BackupError::Manifest {
            key: format!("{}manifest.json", backup_prefix(service, backup_id)),
            reason: format!(
                "refusing to restore an unverified backup: {}",
                report.reason.unwrap_or_default()
            ),
        });
    }
    // Tell a missing or wrong key apart from damaged data, before any work.
    let backup_key: Option<BackupKey> = match (&manifest.encryption_key_id, key) {
        (None, _) => None,
        (Some(id), None) => {
            return Err(BackupError::Key(format!(
                "backup {backup_id} is encrypted with key {id}; configure that key (encryption_key_env or encryption_key_file)"
            )))
        }
        (Some(id), Some(k)) if *id != k.id => {
            return Err(BackupError::Key(format!(
                "backup {backup_id} was encrypted with key {id}, not with the key given ({}); use the key it was taken with",
                k.id
            )))
        }
        (Some(_), Some(k)) => Some(k.clone()),
    };
    std::fs::create_dir_all(target).map_err(|e| BackupError::Io {
        what: format!("creating {}", target.display()),
        source: e,
    })?;
    for object in &manifest.objects {
        let key = format!("{}{}", backup_prefix(service, backup_id), object.key);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let dir = target.to_path_buf();
        let backup_key = backup_key.clone();
        let unpacker = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let reader = PipeReader {
                rx,
                current: std::io::Cursor::new(Vec::new()),
            };
            let opened = crate::crypto::Opener::new(reader, backup_key.as_ref())?;
            let decoder = zstd::stream::read::Decoder::new(opened)?;
            let mut archive = tar::Archive::new(decoder);
            archive.set_preserve_permissions(true);
            archive.unpack(&dir)
        });
        let mut hash = Sha256::new();
        let pipe = Pipe(tx);
        let mut send_failed = false;
        store
            .read(&key, |chunk| {
                hash.update(chunk);
                if !send_failed && pipe.0.send(chunk.to_vec()).is_err() {
                    send_failed = true;
                }
            })
            .await?;
        drop(pipe);
        unpacker
            .await
            .map_err(|e| BackupError::Io {
                what: format!("unpacking {key}"),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|e| BackupError::Io {
                what: format!("unpacking {key}"),
                source: e,
            })?;
        // Verified a moment ago, but the bytes just restored are the ones
        // that count: they must be the same.
        let sha = hex::encode(hash.finalize());
        if sha != object.sha256 {
            return Err(BackupError::Manifest {
                key,
                reason: format!("changed while restoring (sha256 {sha})"),
            });
        }
    }
    Ok(manifest)
}
