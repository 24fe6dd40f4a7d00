//! `[audit]`: the audit chain's HMAC key, named, never written in the file.

use std::path::Path;

use super::common::{at_most_one, key_env_name, key_file, section};
use crate::model::{AuditConfig, KeySource};
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const AUDIT: Section = Section {
    header: "[audit]",
    doc: "The audit log's chain. With a key every row is chained with HMAC-SHA256, so someone who can write to the store cannot edit a row and recompute the chain; without one, plain SHA-256. Set at most one key; it is never written in the file.",
    keys: &[
        key("key_env", K::EnvVar, D::Unset, "An environment variable holding the key."),
        key("key_file", K::Path, D::Unset, "A file holding the key."),
    ],
};

/// `[audit]`: where the audit chain's HMAC key lives (never in the file,
/// and never in the store it protects).
pub(crate) fn audit(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<AuditConfig> {
    let Some(table) = section(cx, root, "audit", &AUDIT.names()) else {
        return Some(AuditConfig::default());
    };
    let key = match at_most_one(
        cx,
        &table,
        &AUDIT.names(),
        "keep one: the name of an environment variable holding the key, or the path of a file holding it",
    )? {
        None => None,
        Some(field) => {
            let value = cx.string(&field)?;
            Some(if field.key == "key_env" {
                KeySource::Env(key_env_name(cx, value, &field.path, "DRCTL_AUDIT_KEY")?)
            } else {
                KeySource::File(key_file(cx, value, &field.path, base_dir, "the audit key")?)
            })
        }
    };
    Some(AuditConfig { key })
}
