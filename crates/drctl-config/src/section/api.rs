//! `[api]` and `[[api.tokens]]`: listen address, advertised URL, TLS, anonymous
//! role and bearer tokens (whose secrets never sit in the file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::common::{
    at_most_one, declared_tables, is_credential_key, key_env_name, key_file, section, NameKind,
};
use crate::model::{ApiConfig, ApiTls, ApiToken, KeySource, Role};
use crate::reader::{Cx, Field, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::suggest;

pub(crate) const API: Section = Section {
    header: "[api]",
    doc: "The HTTP API (JSON, dashboard, `/metrics`): where it listens and who may do what.",
    keys: &[
        key("listen", K::String, D::Text(DEFAULT_LISTEN), "`IP:PORT` to listen on, e.g. `\"[::]:7878\"`."),
        key("advertise", K::String, D::Derived("`http://` and the listen address"), "The `http://` or `https://` URL clients use for this daemon's API; a follower names the leader's in its refusals."),
        key("anonymous", K::Choice(&["viewer", "none"]), D::Derived("`viewer` while no token is configured, `none` once one is"), "What a request without a token may do: `viewer` reads, `none` asks every request but `/healthz` for a token."),
        key("tokens", K::Tables, D::Unset, "Bearer tokens: see `[[api.tokens]]`."),
        key("tls_cert", K::Path, D::Unset, "PEM certificate chain, leaf first; with `tls_key`, the API serves HTTPS."),
        key("tls_key", K::Path, D::Unset, "PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`; both or neither."),
    ],
};

pub(crate) const TOKENS: Section = Section {
    header: "[[api.tokens]]",
    doc: "One API bearer token. Its secret is never written in the file: set exactly one of `secret_env` and `secret_file`.",
    keys: &[
        key("name", K::String, D::Required, "`[a-z0-9-]+`, unique; shown in the audit log as who acted."),
        key("role", K::Choice(ROLE_NAMES), D::Required, "`viewer` reads; `operator` also starts failovers, drills and backups; `admin` also reads the audit log."),
        key("secret_env", K::EnvVar, D::Unset, "An environment variable holding the token."),
        key("secret_file", K::Path, D::Unset, "A file holding the token."),
    ],
};

const ROLE_NAMES: &[&str] = &["viewer", "operator", "admin"];

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

pub(crate) fn api(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<ApiConfig> {
    let table = section(cx, root, "api", &API.names());
    let listen = match table.as_ref().and_then(|t| t.get("listen")) {
        None => DEFAULT_LISTEN.parse().ok(),
        Some(field) => listen(cx, &field),
    };
    let tokens = match &table {
        None => Some(Vec::new()),
        Some(t) => api_tokens(cx, t, base_dir),
    };
    // Without tokens nobody could do anything, so reads stay open (and
    // mutations impossible) until the first token is configured; with
    // tokens, every request needs one unless `anonymous` says otherwise.
    let anonymous = match table.as_ref().and_then(|t| t.get("anonymous")) {
        None => Some(
            tokens
                .as_ref()
                .is_some_and(Vec::is_empty)
                .then_some(Role::Viewer),
        ),
        Some(field) => anonymous_role(cx, &field),
    };
    let advertise = match table.as_ref().and_then(|t| t.get("advertise")) {
        None => Some(None),
        Some(field) => advertise(cx, &field).map(Some),
    };
    let tls = match &table {
        None => Some(None),
        Some(t) => api_tls(cx, t, base_dir),
    };
    Some(ApiConfig {
        listen: listen?,
        advertise: advertise?,
        anonymous: anonymous?,
        tokens: tokens?,
        tls: tls?,
    })
}

/// `tls_cert` and `tls_key`: both (HTTPS) or neither (plain HTTP). The
/// files are read when the daemon starts, where a bad one stops it.
fn api_tls(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<Option<ApiTls>> {
    let mut file = |key: &str, what: &str| -> Option<Option<PathBuf>> {
        let Some(field) = table.get(key) else {
            return Some(None);
        };
        let value = cx.string(&field)?;
        key_file(cx, value, &field.path, base_dir, what).map(Some)
    };
    let cert = file("tls_cert", "the API's PEM certificate chain");
    let key = file("tls_key", "the API's PEM private key");
    match (cert?, key?) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => Some(Some(ApiTls { cert, key })),
        (cert, _) => {
            let (present, missing) = if cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            let field = table.get(present)?;
            cx.error(
                &field.span,
                &field.path,
                format!("{present} is set without {missing}"),
                Some("set both tls_cert and tls_key for HTTPS, or neither for plain HTTP".into()),
            );
            None
        }
    }
}

pub(crate) fn listen(cx: &mut Cx, field: &Field) -> Option<SocketAddr> {
    let text = cx.string(field)?;
    match text.value.parse::<SocketAddr>() {
        Ok(listen) => Some(listen),
        Err(_) => {
            cx.error(
                &text.span,
                &field.path,
                format!("{:?} is not an IP address and port", text.value),
                Some(format!(
                    "write IP:PORT, e.g. \"{DEFAULT_LISTEN}\" or \"[::]:7878\""
                )),
            );
            None
        }
    }
}

/// `advertise = "http://host:port"`: the API's URL as clients reach it.
pub(crate) fn advertise(cx: &mut Cx, field: &Field) -> Option<String> {
    let text = cx.string(field)?;
    let v = text.value.trim_end_matches('/');
    let scheme_ok = v.starts_with("http://") || v.starts_with("https://");
    let host = v.split_once("://").map_or("", |(_, rest)| rest);
    if scheme_ok && !host.is_empty() && !v.chars().any(char::is_whitespace) {
        return Some(v.to_string());
    }
    cx.error(
        &text.span,
        &field.path,
        format!("{:?} is not an http:// or https:// URL", text.value),
        Some("write the URL clients use for this daemon's API, e.g. \"http://drctl-b.internal:7878\"".into()),
    );
    None
}

/// `anonymous = "viewer"` (or `"none"`): what a request without a token may
/// do. Anything above viewer is refused: an anonymous caller that can fail a
/// region over is a hole, not a convenience.
fn anonymous_role(cx: &mut Cx, field: &Field) -> Option<Option<Role>> {
    let text = cx.string(field)?;
    match text.value.as_str() {
        "none" => return Some(None),
        "viewer" => return Some(Some(Role::Viewer)),
        _ => {}
    }
    let hint = if Role::parse(&text.value).is_some() {
        "anonymous callers may only read; give operators a token ([[api.tokens]] with role = \"operator\")".to_string()
    } else {
        "write \"viewer\" (anyone who reaches the API may read it) or \"none\" (every request needs a token)".to_string()
    };
    cx.error(
        &text.span,
        &field.path,
        format!("{:?} is not \"none\" or \"viewer\"", text.value),
        Some(hint),
    );
    None
}

/// `[[api.tokens]]`: name, role and where the secret lives. A secret
/// written in the file itself is refused and never echoed.
fn api_tokens(cx: &mut Cx, api: &Table, base_dir: &Path) -> Option<Vec<ApiToken>> {
    let declared = declared_tables(
        cx,
        api,
        "tokens",
        NameKind::Token,
        "write each token as an [[api.tokens]] table",
        |cx, table| api_token(cx, table, base_dir),
        |name, (role, secret)| ApiToken { name, role, secret },
    )?;
    declared.into_iter().map(|d| d.value).collect()
}

pub(crate) fn api_token(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<(Role, KeySource)> {
    let mut inline_secret = false;
    for field in table.fields() {
        if TOKENS.names().contains(&field.key) {
            continue;
        }
        if is_credential_key(field.key) {
            inline_secret = true;
            cx.error(
                &field.key_span,
                &field.path,
                "a token's secret does not belong in the config file",
                Some("put it in a file (secret_file = \"tokens/NAME\") or an environment variable (secret_env = \"DRCTL_TOKEN_NAME\"); remove this key and rotate the token".into()),
            );
            continue;
        }
        let hint = suggest::hint(field.key, TOKENS.names())
            .unwrap_or_else(|| format!("expected one of {}", TOKENS.names().join(", ")));
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
    let role = cx
        .required(table, "role", "add role = \"viewer\", \"operator\" or \"admin\"")
        .and_then(|field| {
            let text = cx.string(&field)?;
            if let Some(role) = Role::parse(&text.value) {
                return Some(role);
            }
            let hint = suggest::hint(&text.value, ROLE_NAMES.iter().copied()).unwrap_or_else(|| {
                "viewer reads, operator also starts failovers and backups, admin also reads the audit log".into()
            });
            cx.error(
                &text.span,
                &field.path,
                format!("{:?} is not one of {}", text.value, ROLE_NAMES.join(", ")),
                Some(hint),
            );
            None
        });
    let secret = match at_most_one(
        cx,
        table,
        &["secret_env", "secret_file"],
        "keep one: the name of an environment variable holding the token, or the path of a file holding it",
    ) {
        None => None,
        Some(None) if inline_secret => None,
        Some(None) => {
            cx.error(
                &table.span,
                &table.path,
                "the token has no secret",
                Some("add secret_file = \"tokens/NAME\" (a file holding the token) or secret_env = \"DRCTL_TOKEN_NAME\"".into()),
            );
            None
        }
        Some(Some(field)) => {
            let value = cx.string(&field)?;
            if field.key == "secret_env" {
                key_env_name(cx, value, &field.path, "DRCTL_TOKEN_ONCALL").map(KeySource::Env)
            } else {
                key_file(cx, value, &field.path, base_dir, "the token").map(KeySource::File)
            }
        }
    };
    Some((role?, secret?))
}
