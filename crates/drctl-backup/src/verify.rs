//! Verification: re-read every object of a backup, recompute its size and
//! SHA-256, and check them and the manifest. Catches a truncated object, a
//! flipped byte, a missing object and a manifest that lies.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{backup_prefix, BackupError, Manifest, ObjectStore};

/// The outcome: `Ok` is verified; `Err` names the object and the fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub backup_id: String,
    pub verified: bool,
    /// Why verification failed, naming the object.
    pub reason: Option<String>,
    pub bytes_read: u64,
}

/// Verifies the backup `backup_id` of `service` in `store`.
pub async fn verify_backup(
    store: &ObjectStore,
    service: &str,
    backup_id: &str,
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
        return Ok((
            manifest.clone(),
            fail(
                report,
                format!(
                    "{manifest_key}: describes {}/{}, not {service}/{backup_id}",
                    manifest.service, manifest.backup_id
                ),
            ),
        ));
    }
    for object in &manifest.objects {
        let key = format!("{prefix}{}", object.key);
        let mut hash = Sha256::new();
        let size = match store.read(&key, |chunk| hash.update(chunk)).await {
            Ok(size) => size,
            Err(BackupError::MissingObject(_)) => {
                return Ok((manifest.clone(), fail(report, format!("{key}: missing"))))
            }
            Err(e) => return Err(e),
        };
        report.bytes_read += size;
        if size != object.size {
            return Ok((
                manifest.clone(),
                fail(
                    report,
                    format!("{key}: {size} bytes, the manifest says {}", object.size),
                ),
            ));
        }
        let sha = hex::encode(hash.finalize());
        if sha != object.sha256 {
            return Ok((
                manifest.clone(),
                fail(
                    report,
                    format!(
                        "{key}: sha256 {sha} does not match the manifest's {}",
                        object.sha256
                    ),
                ),
            ));
        }
    }
    report.verified = true;
    Ok((manifest, report))
}
