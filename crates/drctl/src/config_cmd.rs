//! `drctl config validate` and config loading for the other commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use drctl_config::{Config, ConfigErrors};
use serde_json::json;

use crate::cli::{ConfigArgs, ConfigCommand, ConfigPath, OutputFormat};
use crate::output::outln;
use crate::Reported;

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Validate { file, output } => validate(&file, output),
    }
}

fn errors_json(errors: &ConfigErrors) -> serde_json::Value {
    errors
        .errors
        .iter()
        .map(|e| {
            json!({
                "file": e.file, "line": e.line, "column": e.column,
                "path": e.path, "message": e.message, "hint": e.hint,
                "rendered": e.to_string(),
            })
        })
        .collect()
}

fn validate(file: &Path, output: OutputFormat) -> anyhow::Result<()> {
    match drctl_config::load(file) {
        Ok(config) => {
            match output {
                OutputFormat::Json => outln!(
                    "{}",
                    json!({"valid": true, "file": file, "regions": config.regions.len(), "services": config.services.len()})
                )?,
                OutputFormat::Table => outln!(
                    "{}: valid ({} regions, {} services)",
                    file.display(),
                    config.regions.len(),
                    config.services.len()
                )?,
            }
            Ok(())
        }
        Err(errors) => {
            match output {
                OutputFormat::Json => outln!(
                    "{}",
                    json!({"valid": false, "file": file, "errors": errors_json(&errors)})
                )?,
                OutputFormat::Table => eprintln!("{errors}"),
            }
            Err(Reported(2).into())
        }
    }
}

/// The config file a command uses: `--config`/`DRCTL_CONFIG`, else
/// `./drctl.toml`, else the config of a lab running in the default directory.
pub fn resolve_path(arg: &ConfigPath) -> anyhow::Result<PathBuf> {
    if let Some(p) = &arg.config {
        return Ok(p.clone());
    }
    let local = PathBuf::from("drctl.toml");
    if local.is_file() {
        return Ok(local);
    }
    let lab_dir = std::env::var_os("DRCTL_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/drctl-lab"));
    if let Ok(record) = drctl_lab::LabRecord::read(&lab_dir) {
        return Ok(record.config_path);
    }
    anyhow::bail!("no config: pass --config FILE (or set DRCTL_CONFIG), create ./drctl.toml, or start the lab with `drctl lab up`")
}

/// Loads and validates a config; on errors prints them all and exits 2.
pub fn load(path: &Path) -> anyhow::Result<Arc<Config>> {
    match drctl_config::load(path) {
        Ok(c) => Ok(Arc::new(c)),
        Err(errors) => {
            eprintln!("{errors}");
            Err(Reported(2).into())
        }
    }
}

/// Loads the config and opens its state store: what every command that
/// works on recorded state starts with.
pub async fn open(config: &ConfigPath) -> anyhow::Result<(Arc<Config>, drctl_store::Store)> {
    let path = resolve_path(config)?;
    let config = load(&path)?;
    let audit_key = config
        .audit
        .resolve_key()
        .context("reading the audit key ([audit])")?;
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .context("opening the state store")?
        .with_audit_key(audit_key.as_ref().map(|k| k.expose().as_bytes()));
    Ok((config, store))
}
