//! The validated `[[webhooks]]`: where alerts go and which kinds.

use serde::Serialize;

use super::sources::{read_env, read_file, DsnError, KeySource};
use crate::secret::Secret;

/// One alert destination: a URL that takes a POST per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    pub name: String,
    /// The URL (a Slack incoming-webhook URL is itself a secret: shown as
    /// `***`; [`WebhookConfig::host`] is what logs and errors show).
    pub url: WebhookUrl,
    /// `json` (drctl's event as JSON) or `slack` (`{"text": …}`).
    pub format: WebhookFormat,
    /// The kinds of event sent; empty means all.
    pub events: Vec<AlertKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookUrl {
    Inline(Secret),
    Source(KeySource),
}

impl WebhookConfig {
    /// The URL, reading its environment variable or file now.
    pub fn resolve_url(&self) -> Result<Secret, DsnError> {
        match &self.url {
            WebhookUrl::Inline(s) => Ok(s.clone()),
            WebhookUrl::Source(KeySource::Env(var)) => read_env(
                var,
                |var| DsnError::WebhookEnvNotSet { var },
                |var| DsnError::WebhookEnvEmpty { var },
            ),
            WebhookUrl::Source(KeySource::File(path)) => read_file(
                path,
                |path, reason| DsnError::WebhookFileUnreadable { path, reason },
                |path| DsnError::WebhookFileEmpty { path },
            ),
        }
        .map(|s| Secret::opaque(s.expose()))
    }

    /// Whether events of `kind` go to this webhook.
    pub fn wants(&self, kind: AlertKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    Json,
    Slack,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// RPO breach started / ended.
    Breach,
    /// The tier's proof (drill, restore test) became stale / fresh again.
    Evidence,
    /// A backup, verification or restore test failed; the WAL archive
    /// stalled / resumed.
    Backup,
    /// A failover, switchover, drill, rejoin or recover started / ended.
    Operation,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Breach,
        AlertKind::Evidence,
        AlertKind::Backup,
        AlertKind::Operation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Breach => "breach",
            AlertKind::Evidence => "evidence",
            AlertKind::Backup => "backup",
            AlertKind::Operation => "operation",
        }
    }
}
