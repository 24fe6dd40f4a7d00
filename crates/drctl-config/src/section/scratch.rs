//! `[scratch]`: where restore tests and drills put their scratch clusters.

use std::path::Path;

use super::common::section;
use crate::model::*;
use crate::reader::{Cx, Table};

pub(crate) const SCRATCH_KEYS: &[&str] = &["root"];

/// `[scratch] root`: a directory, resolved against the config's directory.
pub(crate) fn scratch(cx: &mut Cx, root: &Table, base_dir: &Path) -> ScratchConfig {
    let table = section(cx, root, "scratch", SCRATCH_KEYS);
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
