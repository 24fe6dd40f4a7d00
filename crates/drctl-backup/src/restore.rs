//! Restoring a backup into a directory: verify it first (against what it
//! is expected to be, see [`Expected`]), then stream each object, checking
//! its SHA-256 as it arrives, opening, decompressing and unpacking it. The
//! caller starts PostgreSQL on the result (a restore test) and removes it
//! afterwards.

use std::path::Path;

use crate::crypto::{Opener, SealedObject};
use crate::verify::stream_object;
use crate::{backup_prefix, verify_backup, BackupError, Expected, Manifest, ObjectStore};

/// Restores `backup_id` of `service` into `target` (which must not exist or
/// be empty). The backup is verified first; an unverifiable backup is never
/// restored. Returns its manifest.
pub async fn restore_backup(
    store: &ObjectStore,
    service: &str,
    backup_id: &str,
    target: &Path,
    expected: &Expected,
) -> Result<Manifest, BackupError> {
    let (manifest, report) = verify_backup(store, service, backup_id, expected).await?;
    if !report.verified {
        return Err(BackupError::Manifest {
            key: format!("{}manifest.json", backup_prefix(service, backup_id)),
            reason: format!(
                "refusing to restore an unverified backup: {}",
                report.reason.unwrap_or_default()
            ),
        });
    }
    // Verification made sure the key fits: the configured one when the
    // backup is encrypted, none when it is not.
    let backup_key = manifest
        .encryption_key_id
        .as_ref()
        .and(expected.key.clone());
    std::fs::create_dir_all(target).map_err(|e| BackupError::Io {
        what: format!("creating {}", target.display()),
        source: e,
    })?;
    for object in &manifest.objects {
        let key = format!("{}{}", backup_prefix(service, backup_id), object.key);
        let dir = target.to_path_buf();
        let backup_key = backup_key.clone();
        let sealed = SealedObject::new(backup_id, &object.key);
        let streamed = stream_object(store, &key, move |reader| {
            let opened = Opener::new(reader, backup_key.as_ref(), &sealed)?;
            let decoder = zstd::stream::read::Decoder::new(opened)?;
            let mut archive = tar::Archive::new(decoder);
            archive.set_preserve_permissions(true);
            archive.unpack(&dir)
        })
        .await?;
        streamed.consumed.map_err(|e| BackupError::Io {
            what: format!("unpacking {key}"),
            source: e,
        })?;
        // Verified a moment ago, but the bytes just restored are the ones
        // that count: they must be the same.
        if streamed.sha256 != object.sha256 {
            return Err(BackupError::Manifest {
                key,
                reason: format!("changed while restoring (sha256 {})", streamed.sha256),
            });
        }
    }
    Ok(manifest)
}
