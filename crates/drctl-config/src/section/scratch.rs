//! `[scratch]`: where restore tests and drills put their scratch clusters.

use std::path::Path;

use super::common::section;
use crate::model::ScratchConfig;
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const SCRATCH: Section = Section {
    header: "[scratch]",
    doc: "Where the clusters drctl starts that are not production (restore tests, drill clones) live.",
    keys: &[key(
        "root",
        K::Path,
        D::Derived("`$DRCTL_SCRATCH`, else `drctl-scratch-UID` in the temporary directory"),
        "The scratch root; drctl creates it when missing and refuses one owned by another user or writable by others.",
    )],
};

/// `[scratch] root`: a directory, resolved against the config's directory.
pub(crate) fn scratch(cx: &mut Cx, root: &Table, base_dir: &Path) -> ScratchConfig {
    let table = section(cx, root, "scratch", &SCRATCH.names());
    let Some(field) = table.as_ref().and_then(|t| t.get("root")) else {
        return ScratchConfig::default();
    };
    match cx.string(&field) {
        Some(v) if !v.value.trim().is_empty() => ScratchConfig {
            root: Some(base_dir.join(v.value)),
        },
        Some(v) => {
            cx.error(
                &v.span,
                &field.path,
                "names no directory",
                Some("give a directory only drctl's user can write, e.g. \"/var/lib/drctl/scratch\", or leave the key out".into()),
            );
            ScratchConfig::default()
        }
        None => ScratchConfig::default(),
    }
}
