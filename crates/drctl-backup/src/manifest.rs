//! The backup manifest: what a backup holds and how to check it. Written
//! last; its presence is what makes a backup complete.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped when the manifest changes incompatibly; readers refuse newer ones.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Relative to the backup's prefix (e.g. `base.tar.zst`).
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the bytes stored, lower-case hex.
    pub sha256: String,
    /// Bytes before compression (the tar stream).
    pub uncompressed_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    pub service: String,
    pub region: String,
    pub timeline: Option<u32>,
    /// WAL position where the backup starts (`X/X`).
    pub start_lsn: Option<String>,
    /// WAL position the backup is consistent at: every commit before it is in.
    pub stop_lsn: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub compression: String,
    pub compression_level: i32,
    /// Client-side encryption scheme; `None`: not encrypted.
    #[serde(default)]
    pub encryption: Option<String>,
    /// Key id of client-side encryption; `None`: not encrypted.
    pub encryption_key_id: Option<String>,
    pub objects: Vec<ManifestObject>,
    pub drctl_version: String,
    pub postgres_version: Option<String>,
}

impl Manifest {
    /// Self-consistency checks that need no object: a manifest that fails
    /// them lies about the backup.
    pub fn check(&self) -> Result<(), String> {
        if self.format > MANIFEST_FORMAT {
            return Err(format!(
                "format {} is newer than this drctl understands ({MANIFEST_FORMAT})",
                self.format
            ));
        }
        if self.objects.is_empty() {
            return Err("lists no objects".into());
        }
        if self.ended_at < self.started_at {
            return Err("ends before it starts".into());
        }
        for o in &self.objects {
            if o.key.is_empty() || o.key.contains("..") || o.key.starts_with('/') {
                return Err(format!("object key {:?} is outside the backup", o.key));
            }
            if o.sha256.len() != 64 || !o.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("object {} has no valid sha256", o.key));
            }
        }
        if let (Some(a), Some(b)) = (&self.start_lsn, &self.stop_lsn) {
            match (parse_lsn(a), parse_lsn(b)) {
                (Some(a), Some(b)) if b >= a => {}
                _ => return Err(format!("stop LSN {b} is not after start LSN {a}")),
            }
        }
        Ok(())
    }
}

/// `X/Y` → bytes since 0/0.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}
