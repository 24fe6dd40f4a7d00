//! `[store]`: where drctl keeps its state.

use std::path::Path;

use super::common::section;
use crate::model::StoreConfig;
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::secret::{redact, Secret};

pub(crate) const STORE: Section = Section {
    header: "[store]",
    doc: "Where drctl keeps its state: samples, backups, operations and their journals, the audit log.",
    keys: &[key(
        "url",
        K::String,
        D::Text(DEFAULT_STORE_URL),
        "`sqlite://PATH` (relative to the config file's directory; created when missing) or `postgres://USER@HOST:PORT/DB`.",
    )],
};

const DEFAULT_STORE_URL: &str = "sqlite://drctl-state.db";

pub(crate) fn store(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<StoreConfig> {
    let table = section(cx, root, "store", &STORE.names());
    let Some(field) = table.as_ref().and_then(|t| t.get("url")) else {
        return Some(StoreConfig {
            url: Secret::new(resolve_sqlite(
                &DEFAULT_STORE_URL["sqlite:".len()..],
                base_dir,
            )?),
        });
    };
    let url = cx.string(&field)?;
    let raw = url.value.as_str();
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Some(StoreConfig {
            url: Secret::new(raw),
        });
    }
    if lower.starts_with("sqlite:") {
        if let Some(resolved) = resolve_sqlite(&raw["sqlite:".len()..], base_dir) {
            return Some(StoreConfig {
                url: Secret::new(resolved),
            });
        }
        cx.error(
            &url.span,
            &field.path,
            format!("\"{}\" names no database file", redact(raw)),
            Some(format!("e.g. \"{DEFAULT_STORE_URL}\"")),
        );
        return None;
    }
    // The URL may carry a password: show it redacted, like everywhere else.
    cx.error(
        &url.span,
        &field.path,
        format!("\"{}\" is not a supported store", redact(raw)),
        Some("use \"sqlite://PATH\" or \"postgres://USER@HOST:PORT/DB\"".into()),
    );
    None
}

/// Makes the path of a `sqlite:` URL (the part after `sqlite:`) absolute
/// against the config file's directory, so the daemon finds the same
/// database whatever directory it was started from. `None` when no path.
fn resolve_sqlite(after_scheme: &str, base_dir: &Path) -> Option<String> {
    let rest = after_scheme.strip_prefix("//").unwrap_or(after_scheme);
    let (path, query) = match rest.find('?') {
        Some(q) => rest.split_at(q),
        None => (rest, ""),
    };
    if path.is_empty() {
        return None;
    }
    if path == ":memory:" || Path::new(path).is_absolute() {
        return Some(format!("sqlite://{path}{query}"));
    }
    Some(format!("sqlite://{}{query}", base_dir.join(path).display()))
}

/// The directory of a SQLite store's file (`None` for PostgreSQL or an
/// in-memory database): drctl's state directory on its host.
pub(crate) fn sqlite_dir(store: &StoreConfig) -> Option<std::path::PathBuf> {
    let url = store.url.expose();
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path).parent().map(Path::to_path_buf)
}
