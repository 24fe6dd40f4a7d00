//! Secrets that never print: DSNs, store URLs, tokens.
//!
//! Owns [`Secret`] and its redaction rule. `Debug`, `Display` and `Serialize`
//! all produce the redacted form, so a secret that slips into a log line, an
//! error message or an API response shows where it points, not how to get in.
//! [`Secret::expose`] is the one door to the raw value; grep for it to audit
//! every place a password can leave the process.
//!
//! What is kept: for URLs the scheme, user, host, port, path and query (with
//! password-like query parameters replaced); for libpq key=value strings every
//! pair except password-like ones. Anything this module cannot parse with
//! confidence is printed as `***` entirely — over-redacting is a nuisance,
//! under-redacting is an incident.

use std::fmt;

/// What a redacted value, or a whole unparseable secret, is replaced with.
const MASK: &str = "***";

/// A value that must not be printed: shown redacted by `Debug`, `Display`
/// and `Serialize`; [`Secret::expose`] returns the raw value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret {
    raw: String,
    /// Key material (a TSIG secret): nothing of it is worth showing, and
    /// base64 padding (`c2VjcmV0==`) would pass for a `key=value` pair.
    opaque: bool,
}

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Secret {
            raw: raw.into(),
            opaque: false,
        }
    }

    /// A secret that is always shown as `***` (keys, not connection strings).
    pub fn opaque(raw: impl Into<String>) -> Self {
        Secret {
            raw: raw.into(),
            opaque: true,
        }
    }

    /// The raw value, password included. Only for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The printable form: `postgres://app:***@10.0.0.5:5432/orders`.
    pub fn redacted(&self) -> String {
        if self.opaque {
            return MASK.to_string();
        }
        redact(&self.raw)
    }
}

impl From<String> for Secret {
    fn from(raw: String) -> Self {
        Secret::new(raw)
    }
}

impl From<&str> for Secret {
    fn from(raw: &str) -> Self {
        Secret::new(raw)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.redacted()).finish()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Serialized redacted, so handing a `Config` to the API cannot leak it.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// Query parameter or key=value keys whose value is secret. Matched as a
/// substring of the lower-cased key, so `sslpassword`, `api_token` and
/// `client_secret` are covered too.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token"]
        .iter()
        .any(|k| key.contains(k))
}

/// The redacted form of any secret string; see the module docs for the rule.
pub(crate) fn redact(raw: &str) -> String {
    if let Some(url) = redact_url(raw) {
        return url;
    }
    if let Some(kv) = redact_key_values(raw) {
        return kv;
    }
    MASK.to_string()
}

/// Whether `raw` reads as a PostgreSQL connection string: a `postgres://` or
/// `postgresql://` URL, or libpq key=value pairs. A shape check only; the
/// server decides whether it connects.
pub(crate) fn is_postgres_dsn(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return redact_url(raw).is_some();
    }
    redact_key_values(raw).is_some()
}

/// `scheme://[user[:password]@]host[:port][/path][?query]`, and the opaque
/// `sqlite:path` form. `None` when it is not confidently a URL.
fn redact_url(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let colon = raw.find(':')?;
    let scheme = &raw[..colon];
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let after_scheme = &raw[colon + 1..];
    let Some(rest) = after_scheme.strip_prefix("//") else {
        // Without an authority, only SQLite's `sqlite:path` is known to carry
        // no credentials; `user:password` would otherwise look like a URL.
        if scheme.eq_ignore_ascii_case("sqlite") {
            return Some(format!("{scheme}:{}", redact_query(after_scheme)));
        }
        return None;
    };
    // The *last* '@' ends the userinfo: an unencoded '@' or '/' in a password
    // then stays on the redacted side. A '@' in the query makes us redact
    // too much, which is the safe direction.
    let (userinfo, host_and_rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.find(':') {
            Some(c) => {
                out.push_str(&userinfo[..c]);
                out.push(':');
                out.push_str(MASK);
            }
            None => {
                // A userinfo with a '/' or '?' is a password with unencoded
                // characters, not a user name: hide it whole.
                if userinfo.contains(['/', '?', '#']) {
                    out.push_str(MASK);
                } else {
                    out.push_str(userinfo);
                }
            }
        }
        out.push('@');
    }
    out.push_str(&redact_query(host_and_rest));
    Some(out)
}

/// Replaces the values of secret query parameters in `path?query#fragment`.
fn redact_query(s: &str) -> String {
    let Some(q) = s.find('?') else {
        return s.to_string();
    };
    let (head, query) = (&s[..q], &s[q + 1..]);
    let (query, fragment) = match query.find('#') {
        Some(h) => (&query[..h], &query[h..]),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}={MASK}"),
            _ => param.to_string(),
        })
        .collect();
    format!("{head}?{}{fragment}", params.join("&"))
}

/// libpq's `key=value key='quoted value'` form. `None` unless the whole
/// string parses as such pairs.
fn redact_key_values(raw: &str) -> Option<String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut rest = raw.trim_start();
    while !rest.is_empty() {
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if key_len == 0 {
            return None;
        }
        let key = &rest[..key_len];
        rest = rest[key_len..].trim_start().strip_prefix('=')?.trim_start();
        let value_len = if let Some(quoted) = rest.strip_prefix('\'') {
            1 + quoted_len(quoted)?
        } else {
            unquoted_len(rest)
        };
        if value_len == 0 {
            // `password=` followed by nothing: libpq allows an empty value
            // only quoted; treat as not a DSN.
            return None;
        }
        pairs.push((key, &rest[..value_len]));
        rest = rest[value_len..].trim_start();
    }
    if pairs.is_empty() {
        return None;
    }
    let shown: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            if is_secret_key(k) {
                format!("{k}={MASK}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    Some(shown.join(" "))
}

/// Length of a single-quoted value after its opening quote, closing quote
/// included; backslash escapes the next character.
fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '\'' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Length of an unquoted value: up to unescaped whitespace.
fn unquoted_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            if chars.next().is_none() {
                return s.len();
            }
        } else if c.is_whitespace() {
            return i;
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls_keep_everything_but_the_password() {
        for (raw, shown) in [
            (
                "postgres://app:secret@10.0.0.5:5432/orders",
                "postgres://app:***@10.0.0.5:5432/orders",
            ),
            ("postgres://app@db/orders", "postgres://app@db/orders"),
            ("postgres://db:5432/orders", "postgres://db:5432/orders"),
            ("postgres://app:p@ss/w0rd@db/x", "postgres://app:***@db/x"),
            ("postgres://a/b@db/x", "postgres://***@db/x"),
            (
                "postgresql://u@h/db?sslmode=require&password=secret",
                "postgresql://u@h/db?sslmode=require&password=***",
            ),
            (
                "postgres://h1:5432,h2:5432/db?target_session_attrs=read-write",
                "postgres://h1:5432,h2:5432/db?target_session_attrs=read-write",
            ),
            ("sqlite://drctl-state.db", "sqlite://drctl-state.db"),
            (
                "sqlite:///var/lib/drctl/state.db",
                "sqlite:///var/lib/drctl/state.db",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redact(raw), shown, "{raw}");
        }
    }

    #[test]
    fn key_value_dsns_hide_password() {
        assert_eq!(
            redact("host=10.0.0.5 port=5432 user=app password=secret dbname=orders"),
            "host=10.0.0.5 port=5432 user=app password=*** dbname=orders"
        );
        assert_eq!(
            redact("host = db password = 'it''s \\' secret' user=app"),
            "***",
            "a malformed quoted value is not parsed with confidence"
        );
        assert_eq!(
            redact("host=db password='two words \\' here' user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(redact("host=db sslpassword=k"), "host=db sslpassword=***");
    }

    #[test]
    fn anything_else_is_masked_whole() {
        for raw in [
            "hunter2",
            "app:secret",
            "",
            "  ",
            "not a dsn",
            "password=",
            "=x",
        ] {
            assert_eq!(redact(raw), "***", "{raw:?}");
        }
    }
}
