//! `[agents]`: how drctl authenticates to the node agents
//! (`[services.postgres.REGION] agent`) and checks them: one CA and drctl's
//! own client certificate, for mutual TLS. No secret ever crosses the wire:
//! each side proves itself with a key it never sends.

use std::path::{Path, PathBuf};

use super::common::{key_file, section};
use crate::model::AgentsTls;
use crate::reader::{Cx, Spanned, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const AGENTS: Section = Section {
    header: "[agents]",
    doc: "Mutual TLS with the node agents (`drctl agent serve`), required once any `[services.postgres.REGION]` names an `agent`. `drctl agent certs` issues all three files.",
    keys: &[
        key("ca", K::Path, D::Required, "PEM certificate of the CA that signed the agents' certificates (and drctl's); only agents it signed are trusted."),
        key("cert", K::Path, D::Required, "drctl's PEM client certificate (signed by `ca`, for client authentication)."),
        key("key", K::Path, D::Required, "The PEM private key of `cert`."),
    ],
};

/// `[agents]`, when present. `Some(None)` when absent; `None` when wrong
/// (reported).
pub(crate) fn agents(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<Option<AgentsTls>> {
    let Some(table) = section(cx, root, "agents", &AGENTS.names()) else {
        return Some(None);
    };
    let mut file = |name: &str, what: &str| -> Option<PathBuf> {
        let Some(field) = table.get(name) else {
            cx.error(
                &table.span,
                &table.path,
                format!("no {name}"),
                Some(format!(
                    "set {name} = \"…\" ({what}); `drctl agent certs --out DIR …` writes ca.pem, drctl.pem and drctl.key"
                )),
            );
            return None;
        };
        let value = cx.string(&field)?;
        key_file(cx, value, &field.path, base_dir, what)
    };
    let ca = file("ca", "the agents' CA certificate");
    let cert = file("cert", "drctl's client certificate");
    let key = file("key", "drctl's client key");
    Some(Some(AgentsTls {
        ca: ca?,
        cert: cert?,
        key: key?,
    }))
}

/// An agent's address: `https://HOST:PORT`, nothing after the port (the
/// agent's paths are its own). `None` when wrong (reported).
pub(crate) fn agent_url(cx: &mut Cx, value: &Spanned<String>, path: &str) -> Option<String> {
    let example = "e.g. agent = \"https://db1.region-a.internal:7450\"";
    let parsed = url::Url::parse(&value.value);
    let problem = match &parsed {
        Err(e) => Some(format!("{:?} is not a URL ({e})", value.value)),
        Ok(u) if u.scheme() != "https" => Some(format!(
            "an agent is reached over mutual TLS only, not {}://",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("names no host".to_string()),
        Ok(u) if u.port().is_none() => {
            Some("names no port (the agent's `--listen` port, 7450 by default)".to_string())
        }
        Ok(u) if u.path() != "/" || u.query().is_some() || !u.username().is_empty() => {
            Some("has more than `https://HOST:PORT`".to_string())
        }
        Ok(_) => None,
    };
    match problem {
        Some(message) => {
            cx.error(&value.span, path, message, Some(example.to_string()));
            None
        }
        None => Some(value.value.trim_end_matches('/').to_string()),
    }
}
