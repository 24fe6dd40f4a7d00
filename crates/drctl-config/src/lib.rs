//! The drctl configuration model: parsing TOML into validated types, with
//! located errors.
//!
//! This crate owns the edge between the operator's config file and the rest
//! of drctl. [`load`] / [`parse`] read the file once, check everything, and
//! return either a [`Config`] whose invariants inner code can rely on, or
//! [`ConfigErrors`] listing *every* problem with file, line, column, the path
//! of the offending key and a hint. It does not connect to anything: DSNs in
//! environment variables or files are read later, on demand
//! ([`DsnSource::resolve`]), so `drctl config validate` works on a laptop
//! without production secrets. Backup encryption keys and TSIG secrets
//! likewise ([`KeySource::resolve`], [`TsigSecret::resolve_base64`]).
//!
//! Modules: `reader` (the document's shape and positions), `section` (one
//! module per table: its keys, defaults, docs and checks), `schema` (the key
//! descriptors sections declare), `reference` (`docs/config.md`, rendered
//! from them: [`config_reference`]), `model` (the validated types), `error`
//! (located errors), `secret` (redaction), `duration` (human durations),
//! `suggest` ("did you mean").

mod duration;
mod error;
mod model;
mod reader;
mod reference;
mod schema;
mod secret;
mod section;
mod suggest;

use std::path::{Path, PathBuf};

pub use crate::duration::{
    format_duration, format_duration_short, format_secs, secs_from_ms, secs_from_us,
    MAX_CONFIG_DURATION,
};
pub use crate::error::{ConfigError, ConfigErrors};
pub use crate::model::{
    AgentsTls, AlertKind, ApiConfig, ApiTls, ApiToken, AuditConfig, BackupPolicy, Config,
    CoordinationConfig, DnsProviderConfig, DnsProviderKind, DsnError, DsnSource, EnvLookup,
    FailoverPolicy, FailoverSettings, HealthCheck, KeySource, MonitorConfig, ObjectLockConfig,
    ObjectLockMode, ObjectStoreConfig, ObjectStoreKind, PgNode, RecordType, Region, RejoinPolicy,
    Retention, Role, ScratchConfig, Service, ServiceDns, StoreConfig, Targets, Tier, TierTargets,
    TsigAlgorithm, TsigKey, TsigSecret, UnknownTier, WalArchivePolicy, WebhookConfig,
    WebhookFormat, WebhookUrl,
};
pub use crate::reference::config_reference;
pub use crate::secret::Secret;

/// Reads and validates the config file at `path`.
///
/// Errors name the file as given (`config/prod.toml`), the way the operator
/// typed it; relative paths inside the file (a SQLite store, a DSN file, a
/// local object store) are resolved against the file's own directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            file: source_name.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!(
                "cannot read the config file: {}",
                error::lower_first(&e.to_string())
            ),
            hint: (e.kind() == std::io::ErrorKind::NotFound)
                .then(|| "check the path, or pass another with --config".to_string()),
        }],
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut config = parse(&source_name, &text, base_dir)?;
    config.source = absolute(path);
    Ok(config)
}

/// Parses and validates config text. `source_name` is used in error
/// locations and as [`Config::source`]; `base_dir` is what relative paths in
/// the config are relative to (normally the file's directory).
pub fn parse(source_name: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = reader::Cx::new(source_name, text);
    let config = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => {
            let root = reader::Table::root(&doc);
            section::root::config(
                &mut cx,
                &root,
                PathBuf::from(source_name),
                &absolute(base_dir),
            )
        }
        Err(e) => {
            cx.syntax(&e);
            None
        }
    };
    match config {
        Some(config) if !cx.has_errors() => Ok(config),
        _ => {
            let mut errors = cx.finish();
            if errors.is_empty() {
                // Unreachable by construction (validate returns None only
                // after reporting), but never return an empty error list.
                errors.push(ConfigError {
                    file: source_name.to_string(),
                    line: 0,
                    column: 0,
                    path: String::new(),
                    message: "invalid configuration".to_string(),
                    hint: None,
                });
            }
            Err(ConfigErrors { errors })
        }
    }
}

/// `path` made absolute against the current directory, without touching the
/// file system (no symlink resolution); unchanged if that fails.
fn absolute(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
