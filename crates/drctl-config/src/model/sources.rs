//! Where secrets come from (`*_env`, `*_file`, inline DSNs) and reading them
//! on demand, with errors that name the source and never the value.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::secret::Secret;

/// How a resolver reads an environment variable: [`std::env::var`] in
/// production ([`DsnSource::resolve`], [`KeySource::resolve`]); a map in
/// tests, which run in parallel threads of one process and so must never
/// change its environment ([`DsnSource::resolve_with`]).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<String, std::env::VarError>;

/// Where a backup encryption key comes from. Like [`DsnSource`], it is read
/// only when needed ([`KeySource::resolve`]); unlike a DSN it can never be
/// written in the config itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The name of an environment variable holding the key.
    Env(String),
    /// A file holding the key (resolved against the config's directory).
    File(PathBuf),
}

impl KeySource {
    /// The key, reading the environment variable or file now. Surrounding
    /// whitespace (a trailing newline in a file) is trimmed; the key is
    /// text (e.g. base64), so a file that is not UTF-8 is unreadable.
    pub fn resolve(&self) -> Result<Secret, DsnError> {
        self.resolve_with(&|var| std::env::var(var))
    }

    /// [`KeySource::resolve`], reading environment variables through `env`.
    pub fn resolve_with(&self, env: EnvLookup<'_>) -> Result<Secret, DsnError> {
        match self {
            KeySource::Env(var) => read_env_with(
                env,
                var,
                |var| DsnError::KeyEnvNotSet { var },
                |var| DsnError::KeyEnvEmpty { var },
            ),
            KeySource::File(path) => read_file(
                path,
                |path, reason| DsnError::KeyFileUnreadable { path, reason },
                |path| DsnError::KeyFileEmpty { path },
            ),
        }
    }
}

/// Where a PostgreSQL connection string comes from. Env and file sources are
/// read only when needed ([`DsnSource::resolve`]), so validating a config
/// does not require the production secrets to be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DsnSource {
    /// Written in the config (shown redacted).
    Inline(Secret),
    /// The name of an environment variable holding the DSN.
    Env(String),
    /// A file holding the DSN (resolved against the config's directory).
    File(PathBuf),
}

/// Why a DSN ([`DsnSource::resolve`]), a backup encryption key
/// ([`KeySource::resolve`]) or a TSIG secret ([`TsigSecret::resolve_base64`])
/// could not be read. Names the variable or file,
/// never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("environment variable {var} is not set (export it with the connection string)")]
    EnvNotSet { var: String },
    /// For a DSN or a key alike.
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode { var: String },
    #[error("environment variable {var} is empty (set it to the connection string)")]
    EnvEmpty { var: String },
    #[error("cannot read DSN file {}: {reason}", path.display())]
    FileUnreadable { path: PathBuf, reason: String },
    #[error("DSN file {} is empty (write the connection string into it)", path.display())]
    FileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the backup encryption key)")]
    KeyEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the backup encryption key)")]
    KeyEnvEmpty { var: String },
    #[error("cannot read key file {}: {reason}", path.display())]
    KeyFileUnreadable { path: PathBuf, reason: String },
    #[error("key file {} is empty (write the backup encryption key into it)", path.display())]
    KeyFileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the webhook URL)")]
    WebhookEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the webhook URL)")]
    WebhookEnvEmpty { var: String },
    #[error("cannot read webhook URL file {}: {reason}", path.display())]
    WebhookFileUnreadable { path: PathBuf, reason: String },
    #[error("webhook URL file {} is empty (write the URL into it)", path.display())]
    WebhookFileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the API token)")]
    TokenEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the API token)")]
    TokenEnvEmpty { var: String },
    #[error("cannot read API token file {}: {reason}", path.display())]
    TokenFileUnreadable { path: PathBuf, reason: String },
    #[error("API token file {} is empty (write the token into it)", path.display())]
    TokenFileEmpty { path: PathBuf },
    #[error("environment variable {var} is not set (export it with the base64 TSIG secret)")]
    TsigEnvNotSet { var: String },
    #[error("environment variable {var} is empty (set it to the base64 TSIG secret)")]
    TsigEnvEmpty { var: String },
    #[error("cannot read TSIG secret file {}: {reason}", path.display())]
    TsigFileUnreadable { path: PathBuf, reason: String },
    #[error("TSIG secret file {} is empty (write the base64 secret into it)", path.display())]
    TsigFileEmpty { path: PathBuf },
    /// `origin` is "environment variable X", "file Y" or "the config".
    #[error("the TSIG secret in {origin} is not base64 (copy the secret of the server's key, e.g. from `keymgr -t NAME hmac-sha256`)")]
    TsigNotBase64 { origin: String },
}

impl DsnSource {
    /// The connection string, reading the environment variable or file now.
    /// Surrounding whitespace (a trailing newline in a file) is trimmed.
    pub fn resolve(&self) -> Result<Secret, DsnError> {
        self.resolve_with(&|var| std::env::var(var))
    }

    /// [`DsnSource::resolve`], reading environment variables through `env`.
    pub fn resolve_with(&self, env: EnvLookup<'_>) -> Result<Secret, DsnError> {
        match self {
            DsnSource::Inline(secret) => Ok(secret.clone()),
            DsnSource::Env(var) => read_env_with(
                env,
                var,
                |var| DsnError::EnvNotSet { var },
                |var| DsnError::EnvEmpty { var },
            ),
            DsnSource::File(path) => read_file(
                path,
                |path, reason| DsnError::FileUnreadable { path, reason },
                |path| DsnError::FileEmpty { path },
            ),
        }
    }
}

/// The trimmed value of environment variable `var`; the error constructors
/// say what it should have held.
pub(crate) fn read_env(
    var: &str,
    not_set: fn(String) -> DsnError,
    empty: fn(String) -> DsnError,
) -> Result<Secret, DsnError> {
    read_env_with(&|var| std::env::var(var), var, not_set, empty)
}

/// [`read_env`], reading the variable through `env`.
fn read_env_with(
    env: EnvLookup<'_>,
    var: &str,
    not_set: fn(String) -> DsnError,
    empty: fn(String) -> DsnError,
) -> Result<Secret, DsnError> {
    match env(var) {
        Ok(value) if value.trim().is_empty() => Err(empty(var.to_string())),
        Ok(value) => Ok(Secret::new(value.trim())),
        Err(std::env::VarError::NotPresent) => Err(not_set(var.to_string())),
        Err(std::env::VarError::NotUnicode(_)) => Err(DsnError::EnvNotUnicode {
            var: var.to_string(),
        }),
    }
}

/// The trimmed contents of the file at `path`; the error constructors say
/// what it should have held.
pub(crate) fn read_file(
    path: &Path,
    unreadable: fn(PathBuf, String) -> DsnError,
    empty: fn(PathBuf) -> DsnError,
) -> Result<Secret, DsnError> {
    match std::fs::read_to_string(path) {
        Ok(value) if value.trim().is_empty() => Err(empty(path.to_path_buf())),
        Ok(value) => Ok(Secret::new(value.trim())),
        // io::Error's text names the cause ("No such file or directory"),
        // never the content.
        Err(e) => Err(unreadable(
            path.to_path_buf(),
            crate::error::lower_first(&e.to_string()),
        )),
    }
}
