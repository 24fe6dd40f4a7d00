//! The validated `[api]`: where the HTTP API listens, its TLS, and who may do what.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use super::sources::{read_env, read_file, DsnError, KeySource};
use crate::secret::Secret;

/// The HTTP API: where it listens and who may do what (`[api]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The URL other daemons give clients for this one's API
    /// (`advertise = "http://drctl-b.internal:7878"`); default: `http://` and
    /// the listen address. A follower names the leader's in its refusals.
    pub advertise: Option<String>,
    /// The role of a request without a token (`anonymous = "viewer"`);
    /// `None` asks every request but `/healthz` for a token. Default: viewer
    /// while no token is configured (reads only), `None` once one is.
    pub anonymous: Option<Role>,
    /// Bearer tokens (`[[api.tokens]]`), in file order.
    pub tokens: Vec<ApiToken>,
    /// HTTPS instead of plain HTTP (`tls_cert` and `tls_key`, both or
    /// neither); `None` serves plain HTTP.
    pub tls: Option<ApiTls>,
}

/// The API's certificate and key, PEM files read when the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTls {
    /// The certificate chain, leaf first (`tls_cert`, against the config's directory).
    pub cert: std::path::PathBuf,
    /// Its private key (`tls_key`): PKCS#8, PKCS#1 or SEC1. Only its path is ever shown.
    pub key: std::path::PathBuf,
}

/// What an API caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: services, RPO/RTO, lag, backups, operations, reports.
    Viewer,
    /// Starts work: failovers, switchovers, drills, backups, verifications.
    Operator,
    /// Everything, including the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API bearer token: a name (shown in the audit log as who acted), a
/// role, and where its secret lives. The secret is never written in the
/// config; it is read when the daemon starts ([`ApiToken::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub secret: KeySource,
}

impl ApiToken {
    /// The token's secret, reading its environment variable or file now.
    pub fn resolve(&self) -> Result<Secret, DsnError> {
        let secret = match &self.secret {
            KeySource::Env(var) => read_env(
                var,
                |var| DsnError::TokenEnvNotSet { var },
                |var| DsnError::TokenEnvEmpty { var },
            ),
            KeySource::File(path) => read_file(
                path,
                |path, reason| DsnError::TokenFileUnreadable { path, reason },
                |path| DsnError::TokenFileEmpty { path },
            ),
        }?;
        Ok(Secret::opaque(secret.expose()))
    }
}
