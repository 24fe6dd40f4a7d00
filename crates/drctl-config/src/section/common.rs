//! What every section's checks share: optional sub-tables, durations with
//! defaults, names (well-formed, unique, referenced), named arrays of tables,
//! keys of the wrong kind, secrets named by `*_env`/`*_file`, DNS names.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::format_duration;
use crate::reader::{Cx, Field, Span, Spanned, Table};
use crate::suggest;

/// Where S3 credentials come from instead of the config file.
pub(crate) const AWS_CHAIN_HINT: &str =
    "drctl takes S3 and Route 53 credentials from the standard AWS chain: \
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, a profile named by \
AWS_PROFILE, or the instance role";

/// What services may name that is declared elsewhere in the file; `None`
/// when the declarations themselves did not parse (reported), so that any
/// name is taken rather than reporting one mistake many times.
pub(crate) struct References<'a> {
    pub(crate) stores: Option<&'a [&'a str]>,
    pub(crate) dns_providers: Option<&'a [ProviderRef<'a>]>,
    /// `[agents]` is declared (a node's `agent` needs it).
    pub(crate) agents: bool,
    /// Where drctl keeps state on its host: the SQLite store's directory,
    /// else the config file's (the WAL spools' default home).
    pub(crate) state_dir: &'a std::path::Path,
}

/// An optional sub-table; `None` when absent or not a table (reported).
pub(crate) fn section<'d>(
    cx: &mut Cx,
    parent: &Table<'d>,
    key: &str,
    known: &[&str],
) -> Option<Table<'d>> {
    let table = cx.table(&parent.get(key)?)?;
    cx.unknown_keys(&table, known);
    Some(table)
}

/// The duration under `key`, or `default` when absent. Invalid values are
/// reported and replaced by the default so later checks can proceed.
pub(crate) fn duration_or(
    cx: &mut Cx,
    table: Option<&Table>,
    key: &str,
    default: Duration,
) -> Duration {
    optional_duration(cx, table, key).unwrap_or(default)
}

pub(crate) fn optional_duration(cx: &mut Cx, table: Option<&Table>, key: &str) -> Option<Duration> {
    let field = table?.get(key)?;
    cx.duration(&field).map(|d| d.value)
}

/// What kind of name is being checked, for messages and examples.
#[derive(Clone, Copy)]
pub(crate) enum NameKind {
    Region,
    Service,
    Cluster,
    ObjectStore,
    DnsProvider,
    Token,
    Webhook,
}

impl NameKind {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            NameKind::Region => "region",
            NameKind::Service => "service",
            NameKind::Cluster => "cluster",
            NameKind::ObjectStore => "object store",
            NameKind::DnsProvider => "DNS provider",
            NameKind::Token => "API token",
            NameKind::Webhook => "webhook",
        }
    }
    pub(crate) fn example(self) -> &'static str {
        match self {
            NameKind::Region => "eu-west",
            NameKind::Service => "orders",
            NameKind::Cluster => "shop-main",
            NameKind::ObjectStore => "dr-bucket",
            NameKind::DnsProvider => "public-dns",
            NameKind::Token => "oncall",
            NameKind::Webhook => "oncall-slack",
        }
    }
    /// The array of tables that declares names of this kind.
    pub(crate) fn table(self) -> &'static str {
        match self {
            NameKind::Region => "[[regions]]",
            NameKind::Service => "[[services]]",
            NameKind::Cluster => "cluster",
            NameKind::ObjectStore => "[[object_stores]]",
            NameKind::DnsProvider => "[[dns_providers]]",
            NameKind::Token => "[[api.tokens]]",
            NameKind::Webhook => "[[webhooks]]",
        }
    }
}

/// Names become DNS labels, metric labels and file names: `[a-z0-9-]+`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The valid name an invalid one was probably meant to be: `US_East` →
/// `us-east`. `None` when no valid name comes out.
fn normalized_name(name: &str) -> Option<String> {
    let normalized: String = name
        .trim()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '_' | ' ' | '.' => Some('-'),
            _ => None,
        })
        .collect();
    is_valid_name(&normalized).then_some(normalized)
}

/// Reports an invalid name, suggesting its normalized form when that helps.
pub(crate) fn check_name(cx: &mut Cx, name: &Spanned<String>, path: &str, kind: NameKind) -> bool {
    if is_valid_name(&name.value) {
        return true;
    }
    let hint = match normalized_name(&name.value) {
        Some(normalized) => format!("did you mean \"{normalized}\"?"),
        None => format!("e.g. \"{}\"", kind.example()),
    };
    cx.error(
        &name.span,
        path,
        format!(
            "{:?} is not a valid {} name; names use only a-z, 0-9 and '-'",
            name.value,
            kind.noun()
        ),
        Some(hint),
    );
    false
}

/// The `name` of one element of `[[regions]]`, `[[object_stores]]` or
/// `[[dns_providers]]`, put in the table's path (`object_stores[1]
/// (dr-bucket)`) when valid, so every later error of the table says which
/// one it is. `None` when absent or not a string (reported).
pub(crate) fn element_name(
    cx: &mut Cx,
    table: &mut Table,
    kind: NameKind,
) -> Option<(Spanned<String>, String)> {
    let index_path = table.path.clone();
    let hint = format!("add name = \"…\", e.g. name = \"{}\"", kind.example());
    let field = cx.required(table, "name", &hint)?;
    let name = cx.string(&field)?;
    if is_valid_name(&name.value) {
        table.relabel(format!("{index_path} ({})", name.value));
    }
    Some((name, field.path))
}

/// Checks a declared name; returns whether it is valid and the name
/// references must use: the name when valid, else the name its error
/// suggests (so fixing the declaration per the hint fixes references too,
/// and a reference to the suggested name is not reported a second time).
pub(crate) fn declared_name(
    cx: &mut Cx,
    name: &Spanned<String>,
    path: &str,
    kind: NameKind,
) -> (bool, Option<String>) {
    if check_name(cx, name, path, kind) {
        (true, Some(name.value.clone()))
    } else {
        (false, normalized_name(&name.value))
    }
}

/// Reports a second declaration of a name first declared at `first`.
pub(crate) fn already_declared(
    cx: &mut Cx,
    name: &Spanned<String>,
    path: &str,
    first: &Span,
    kind: NameKind,
) {
    let line = cx.line(first);
    cx.error(
        &name.span,
        path,
        format!(
            "{} {:?} is already declared at line {line}",
            kind.noun(),
            name.value
        ),
        Some(format!(
            "{} names must be unique; rename or remove one",
            kind.noun()
        )),
    );
}

/// Whether `name` is one of the `declared` names of `kind`, reporting it
/// (with the closest one) if not. `declared` is `None` when the declarations
/// themselves did not parse (reported): then any name is taken, to report
/// one mistake once.
pub(crate) fn check_reference(
    cx: &mut Cx,
    name: &Spanned<String>,
    path: &str,
    declared: Option<&[&str]>,
    kind: NameKind,
) -> bool {
    let Some(names) = declared else {
        return true;
    };
    if names.contains(&name.value.as_str()) {
        return true;
    }
    let noun = kind.noun();
    let hint = suggest::hint(&name.value, names.iter().copied()).unwrap_or_else(|| {
        if names.is_empty() {
            format!(
                "no {noun} is declared; add {} with name = {:?}",
                kind.table(),
                name.value
            )
        } else {
            format!("declared {noun}s are {}", names.join(", "))
        }
    });
    cx.error(
        &name.span,
        path,
        format!("{:?} is not a declared {noun}", name.value),
        Some(hint),
    );
    false
}

/// One element of `[[object_stores]]` or `[[dns_providers]]` as read, with
/// the position of its name for duplicates.
pub(crate) struct Declared<T> {
    pub(crate) name: String,
    pub(crate) name_span: Span,
    /// The name references must use: as for regions, the suggested name
    /// when the written one is invalid, so one mistake is reported once.
    pub(crate) reference: Option<String>,
    /// `None` when anything about the element is wrong (reported).
    pub(crate) value: Option<T>,
}

/// The named tables under `key` (`[[object_stores]]`, `[[dns_providers]]`):
/// each one's name checked and unique, the rest read by `read` and made
/// into a `T` by `make` when all is right. `None` when the key holds
/// something else than tables (reported), so references to them are not
/// all reported a second time.
pub(crate) fn declared_tables<K, T>(
    cx: &mut Cx,
    root: &Table,
    key: &str,
    kind: NameKind,
    hint: &str,
    mut read: impl FnMut(&mut Cx, &Table) -> Option<K>,
    make: impl Fn(String, K) -> T,
) -> Option<Vec<Declared<T>>> {
    let Some(field) = root.get(key) else {
        return Some(Vec::new());
    };
    let tables = cx.tables(&field, hint)?;
    let mut declared: Vec<Declared<T>> = Vec::new();
    for mut table in tables {
        let name = element_name(cx, &mut table, kind);
        let value = read(cx, &table);
        let Some((name, name_path)) = name else {
            continue;
        };
        let (valid, reference) = declared_name(cx, &name, &name_path, kind);
        if let Some(first) = declared.iter().find(|s| s.name == name.value) {
            already_declared(cx, &name, &name_path, &first.name_span, kind);
            continue;
        }
        declared.push(Declared {
            value: value
                .filter(|_| valid)
                .map(|value| make(name.value.clone(), value)),
            name: name.value,
            name_span: name.span,
            reference,
        });
    }
    Some(declared)
}

/// `access_key`, `aws_secret_access_key`, `session-token`, `password`…
pub(crate) fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    [
        "access_key",
        "accesskey",
        "key_id",
        "secret",
        "token",
        "password",
        "credential",
    ]
    .iter()
    .any(|k| key.contains(k))
}

/// The `kind` of an object store or DNS provider: one of `kinds` (two of
/// them), with `fallback` as the hint when no kind is close to what was
/// written. `None` when missing or wrong (reported); per-kind checks are
/// then skipped, since they could only guess.
pub(crate) fn kind_of(
    cx: &mut Cx,
    table: &Table,
    kinds: &[&str],
    fallback: &str,
) -> Option<String> {
    let choice = kinds
        .iter()
        .map(|k| format!("kind = {k:?}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let field = cx.required(table, "kind", &format!("add {choice}"))?;
    let kind = cx.string_or(&field, Some(format!("write {choice}")))?;
    if kinds.contains(&kind.value.as_str()) {
        return Some(kind.value);
    }
    let hint =
        suggest::hint(&kind.value, kinds.iter().copied()).unwrap_or_else(|| fallback.to_string());
    cx.error(
        &kind.span,
        &field.path,
        format!("{:?} is not one of {}", kind.value, kinds.join(", ")),
        Some(hint),
    );
    None
}

/// Reports each of `keys` (which belong to `other_kind`) present in `table`;
/// true when there is none.
pub(crate) fn no_keys_of_other_kind(
    cx: &mut Cx,
    table: &Table,
    keys: &[&str],
    other_kind: &str,
    hint: &str,
) -> bool {
    let mut ok = true;
    for key in keys {
        if let Some(f) = table.get(key) {
            cx.error(
                &f.key_span,
                &f.path,
                format!("only for kind = \"{other_kind}\""),
                Some(hint.to_string()),
            );
            ok = false;
        }
    }
    ok
}

/// The one of `keys` set in `table`, for settings that have several
/// spellings of which only one may be used (`dsn`, `dsn_env`, `dsn_file`):
/// `Some(None)` when none is set; `None` when several are (reported at the
/// second, in file order, with `hint`).
pub(crate) fn at_most_one<'d>(
    cx: &mut Cx,
    table: &Table<'d>,
    keys: &[&str],
    hint: &str,
) -> Option<Option<Field<'d>>> {
    let mut present: Vec<Field> = keys.iter().filter_map(|k| table.get(k)).collect();
    present.sort_by_key(|f| f.key_span.start);
    match present.as_slice() {
        [] => Some(None),
        [_] => Some(present.pop()),
        [first, second, ..] => {
            let message = if present.len() == 2 {
                format!("{} and {} are both set", first.key, second.key)
            } else {
                let keys: Vec<&str> = present.iter().map(|f| f.key).collect();
                format!("{} are all set", keys.join(", "))
            };
            cx.error(
                &second.key_span,
                &table.path,
                message,
                Some(hint.to_string()),
            );
            None
        }
    }
}

/// What a shell would take as a variable name: letters, digits and '_', not
/// starting with a digit.
pub(crate) fn is_env_var_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name of an environment variable holding key material. A value that
/// is no variable name, or looks like the key itself, is refused and never
/// echoed. `example` is a good name for the variable.
pub(crate) fn key_env_name(
    cx: &mut Cx,
    value: Spanned<String>,
    path: &str,
    example: &str,
) -> Option<String> {
    let message = if !is_env_var_name(&value.value) {
        "the value is not an environment variable name"
    } else if looks_like_key(&value.value) {
        "the value looks like a key, not an environment variable name"
    } else {
        return Some(value.value);
    };
    cx.error(
        &value.span,
        path,
        message,
        Some(format!(
            "name the variable that holds the key, e.g. \"{example}\"; if this is the key itself, move it out of this file and rotate it"
        )),
    );
    None
}

/// The path of a file holding key material (`what`), against `base_dir`.
pub(crate) fn key_file(
    cx: &mut Cx,
    value: Spanned<String>,
    path: &str,
    base_dir: &Path,
    what: &str,
) -> Option<PathBuf> {
    if value.value.trim().is_empty() {
        cx.error(
            &value.span,
            path,
            "names no file",
            Some(format!("give the path of a file holding {what}")),
        );
        return None;
    }
    Some(base_dir.join(value.value))
}

/// A valid variable name that is more likely key material (hex, base64
/// without padding): long, with letters and digits, and none of the '_'
/// that separates the words of real names. It would be shown wherever the
/// variable is named (errors, the API), so it is refused.
fn looks_like_key(name: &str) -> bool {
    name.len() >= 20
        && !name.contains('_')
        && name.chars().any(|c| c.is_ascii_digit())
        && name.chars().any(|c| c.is_ascii_alphabetic())
}

/// Unknown keys of a table, with a better hint for the keys that belong in
/// another table (`elsewhere`, explained by `hint`) than "did you mean".
pub(crate) fn keys_here_or_elsewhere(
    cx: &mut Cx,
    table: &Table,
    known: &[&str],
    elsewhere: &[&str],
    hint: &str,
) {
    for field in table.fields() {
        if known.contains(&field.key) {
            continue;
        }
        let hint = if elsewhere.contains(&field.key) {
            hint.to_string()
        } else {
            suggest::hint(field.key, known.iter().copied())
                .unwrap_or_else(|| format!("expected one of {}", known.join(", ")))
        };
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

/// The duration under `key`, `default` when absent, within `range`.
pub(crate) fn bounded_duration(
    cx: &mut Cx,
    table: &Table,
    key: &str,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Option<Duration> {
    let Some(field) = table.get(key) else {
        return Some(default);
    };
    let d = cx.duration(&field)?;
    if range.contains(&d.value) {
        return Some(d.value);
    }
    let (min, max) = (
        format_duration(*range.start()),
        format_duration(*range.end()),
    );
    let side = if d.value < *range.start() {
        "shorter"
    } else {
        "longer"
    };
    cx.error(
        &d.span,
        &field.path,
        format!(
            "{} is {side} than {}",
            format_duration(d.value),
            if side == "shorter" { &min } else { &max }
        ),
        Some(format!(
            "use {min} to {max}; the default is {}",
            format_duration(default)
        )),
    );
    None
}

/// What services see of a declared DNS provider.
pub(crate) struct ProviderRef<'a> {
    pub(crate) name: &'a str,
    /// The zone records must be inside, when known and valid.
    pub(crate) zone: Option<&'a str>,
}

/// `name` lower case and absolute (`Orders.Shop.Example.COM` →
/// `orders.shop.example.com.`), or why it is no domain name. Labels are
/// letters, digits, '-' and '_' (for `_service` names), 1-63 characters,
/// not beginning or ending with '-'; 253 characters at most.
pub(crate) fn normalize_dns_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let relative = lower.strip_suffix('.').unwrap_or(&lower);
    if relative.is_empty() {
        return Err(if name.is_empty() {
            "it is empty"
        } else {
            "it is the root"
        }
        .to_string());
    }
    if relative.len() > 253 {
        return Err(format!(
            "it is {} characters long; 253 at most",
            relative.len()
        ));
    }
    for label in relative.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (\"..\")".to_string());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "label {label:?} has {c:?}; labels use a-z, 0-9, '-' and '_'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} begins or ends with '-'"));
        }
    }
    Ok(format!("{relative}."))
}

/// A domain name at a config position, normalized; reported when invalid.
pub(crate) fn dns_name_at(
    cx: &mut Cx,
    text: &Spanned<String>,
    path: &str,
    example: &str,
) -> Option<String> {
    match normalize_dns_name(&text.value) {
        Ok(name) => Some(name),
        Err(why) => {
            cx.error(
                &text.span,
                path,
                format!("{:?} is not a domain name: {why}", text.value),
                Some(format!("e.g. \"{example}\"")),
            );
            None
        }
    }
}

/// Whether absolute `name` is `zone` or below it.
pub(crate) fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}
