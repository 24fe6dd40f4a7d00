//! Verification: re-read every object of a backup and prove it restores —
//! size and SHA-256 against the manifest, then decrypted and authenticated
//! (when encrypted), decompressed and walked as a tar. Catches a truncated
//! object, a flipped byte, a missing object, a manifest that lies, a backup
//! swapped for someone else's, and a backup whose key is gone.
//!
//! Anyone who can write to the bucket can write a `manifest.json` that
//! matches their own objects, so the bucket is not trusted on its own word:
//! [`Expected`] carries what the state store recorded when the backup was
//! taken, and the service's configured key. A plaintext backup of a service
//! that has a key is refused (restoring one would start PostgreSQL on files
//! of the writer's choosing).

use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crypto::{Opener, SealedObject};
use crate::{backup_prefix, BackupError, BackupKey, Manifest, ObjectStore};

/// What a backup must be, from sources the bucket's writers do not control.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// The manifest the state store recorded when the backup completed; the
    /// bucket's `manifest.json` must be the same. `None` takes the bucket's
    /// word: only for backups drctl holds no record of.
    pub manifest: Option<Manifest>,
    /// The service's backup key. With one, a plaintext backup is refused;
    /// an encrypted backup cannot be verified (nor restored) without it.
    pub key: Option<BackupKey>,
}

/// The outcome: `Ok` is verified; `Err` names the object and the fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub backup_id: String,
    pub verified: bool,
    /// Why verification failed, naming the object.
    pub reason: Option<String>,
    pub bytes_read: u64,
}

/// Why a backup's key does not fit what it is expected to be; `None`: it fits.
fn key_mismatch(manifest: &Manifest, key: Option<&BackupKey>) -> Option<String> {
    let id = &manifest.backup_id;
    match (&manifest.encryption_key_id, key) {
        (None, None) => None,
        (None, Some(k)) => Some(format!(
            "backup {id} is not encrypted, but its service has key {}: a plaintext backup is refused (was it replaced in the bucket?)",
            k.id
        )),
        (Some(kid), None) => Some(format!(
            "backup {id} is encrypted with key {kid}, which is not configured: set encryption_key_env or encryption_key_file in the service's [services.backup] to that key"
        )),
        (Some(kid), Some(k)) if *kid != k.id => Some(format!(
            "backup {id} was encrypted with key {kid}, not with the key given ({}); configure the key it was taken with",
            k.id
        )),
        (Some(_), Some(_)) => None,
    }
}

/// Opens one backup object's stored bytes (with `key` when it is
/// encrypted), decompresses them and reads the tar they hold to its end.
/// Returns the tar stream's length. Any fault is an error, never a panic:
/// the bytes come from a bucket.
pub fn check_object_contents(
    stored: impl Read,
    key: Option<&BackupKey>,
    object: &SealedObject,
) -> std::io::Result<u64> {
    struct Counted<R> {
        inner: R,
        n: u64,
    }
    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.n += n as u64;
            Ok(n)
        }
    }
    let opened = Opener::new(stored, key, object)?;
    let mut tar_stream = Counted {
        inner: zstd::stream::read::Decoder::new(opened)?,
        n: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut tar_stream);
        for entry in archive.entries()? {
            std::io::copy(&mut entry?, &mut std::io::sink())?;
        }
    }
    // The zero blocks that end a tar, and anything after them.
    std::io::copy(&mut tar_stream, &mut std::io::sink())?;
    Ok(tar_stream.n)
}

/// A blocking reader over chunks sent from the async side.
pub(crate) struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = std::io::Cursor::new(chunk),
                None => return Ok(0),
            }
        }
    }
}

/// An object as read: its size and SHA-256, and what `consume` (run on a
/// blocking thread over the same bytes) made of it.
pub(crate) struct StreamedObject<T> {
    pub size: u64,
    pub sha256: String,
    pub consumed: std::io::Result<T>,
}

/// Reads `key` once, hashing it and handing the bytes to `consume`. A
/// consumer that stops early does not stop the read: the hash covers the
/// whole object.
pub(crate) async fn stream_object<T: Send + 'static>(
    store: &ObjectStore,
    key: &str,
    consume: impl FnOnce(ChunkReader) -> std::io::Result<T> + Send + 'static,
) -> Result<StreamedObject<T>, BackupError> {
    let mut reader = store.open_reader(key).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let consumer = tokio::task::spawn_blocking(move || {
        consume(ChunkReader {
            rx,
            current: std::io::Cursor::new(Vec::new()),
        })
    });
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut tx = Some(tx);
    let read: Result<(), BackupError> = async {
        while let Some(chunk) = reader.next_chunk().await? {
            hash.update(&chunk);
            size += chunk.len() as u64;
            if let Some(sender) = &tx {
                if sender.send(chunk).await.is_err() {
                    tx = None;
                }
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let consumed = match consumer.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(format!(
            "the reading thread failed: {e}"
        ))),
    };
    read?;
    Ok(StreamedObject {
        size,
        sha256: hex::encode(hash.finalize()),
        consumed,
    })
}

/// Verifies the backup `backup_id` of `service` in `store` against what it
/// is `expected` to be.
pub async fn verify_backup(
    store: &ObjectStore,
    service: &str,
    backup_id: &str,
    expected: &Expected,
) -> Result<(Manifest, VerifyReport), BackupError> {
    let prefix = backup_prefix(service, backup_id);
    let manifest_key = format!("{prefix}manifest.json");
    let raw = store.get(&manifest_key).await?;
    let manifest: Manifest = serde_json::from_slice(&raw).map_err(|e| BackupError::Manifest {
        key: manifest_key.clone(),
        reason: format!("unreadable: {e}"),
    })?;
    let mut report = VerifyReport {
        backup_id: backup_id.to_string(),
        verified: false,
        reason: None,
        bytes_read: 0,
    };
    let fail = |mut r: VerifyReport, reason: String| {
        r.reason = Some(reason);
        r
    };
    if let Err(lie) = manifest.check() {
        return Ok((manifest, fail(report, format!("{manifest_key}: {lie}"))));
    }
    if manifest.backup_id != backup_id || manifest.service != service {
        let reason = format!(
            "{manifest_key}: describes {}/{}, not {service}/{backup_id}",
            manifest.service, manifest.backup_id
        );
        return Ok((manifest, fail(report, reason)));
    }
    if expected.manifest.as_ref().is_some_and(|m| *m != manifest) {
        let reason = format!(
            "{manifest_key}: differs from the manifest recorded when the backup was taken (rewritten in the bucket?)"
        );
        return Ok((manifest, fail(report, reason)));
    }
    if let Some(reason) = key_mismatch(&manifest, expected.key.as_ref()) {
        return Ok((manifest, fail(report, reason)));
    }
    let key = manifest
        .encryption_key_id
        .as_ref()
        .and(expected.key.clone());
    for object in &manifest.objects {
        let key_name = format!("{prefix}{}", object.key);
        let sealed = SealedObject::new(backup_id, &object.key);
        let backup_key = key.clone();
        let streamed = match stream_object(store, &key_name, move |r| {
            check_object_contents(r, backup_key.as_ref(), &sealed)
        })
        .await
        {
            Ok(s) => s,
            Err(BackupError::MissingObject(_)) => {
                return Ok((
                    manifest.clone(),
                    fail(report, format!("{key_name}: missing")),
                ))
            }
            Err(e) => return Err(e),
        };
        report.bytes_read += streamed.size;
        let fault = if streamed.size != object.size {
            Some(format!(
                "{key_name}: {} bytes, the manifest says {}",
                streamed.size, object.size
            ))
        } else if streamed.sha256 != object.sha256 {
            Some(format!(
                "{key_name}: sha256 {} does not match the manifest's {}",
                streamed.sha256, object.sha256
            ))
        } else {
            match streamed.consumed {
                Err(e) => Some(format!("{key_name}: does not restore: {e}")),
                Ok(n) if n != object.uncompressed_size => Some(format!(
                    "{key_name}: holds {n} bytes of tar, the manifest says {}",
                    object.uncompressed_size
                )),
                Ok(_) => None,
            }
        };
        if let Some(reason) = fault {
            return Ok((manifest.clone(), fail(report, reason)));
        }
    }
    report.verified = true;
    Ok((manifest, report))
}
