//! Descriptors of the config file's tables and keys: name, type, default and
//! doc, written once beside each section's checks (`crate::section::*`).
//!
//! They are the single source of three things: the keys a table accepts (its
//! "unknown key" check reads [`Section::names`]), the defaults the checks
//! apply (a [`DefaultValue`] names the same constant the check uses), and the
//! configuration reference, `docs/config.md`, which `crate::reference`
//! renders from them. A key can therefore not be accepted without being
//! documented, nor documented with a default the code does not apply.
//!
//! It owns no checks and knows nothing of any section.

use std::time::Duration;

use crate::duration::format_duration;

/// One table of the config file (`[api]`, `[[services]]`,
/// `[services.health]`).
#[derive(Debug)]
pub(crate) struct Section {
    /// As the operator writes it: `[services.health]`, `[[webhooks]]`.
    pub header: &'static str,
    /// What the table is for; Markdown, one paragraph.
    pub doc: &'static str,
    /// In the order the reference lists them and "expected one of" names
    /// them.
    pub keys: &'static [Key],
}

impl Section {
    /// The keys the table accepts, in declared order.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}

/// One key of a table.
#[derive(Debug)]
pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    /// What it does; Markdown, one line (no `|`).
    pub doc: &'static str,
}

/// Builds a [`Key`]; short, so a section's table reads as a table.
pub(crate) const fn key(
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        doc,
    }
}

/// The TOML type a key takes, as the reference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    /// A human duration string: `"5s"`, `"30m"`, `"24h"`.
    Duration,
    Integer,
    Boolean,
    /// A path, relative ones against the config file's directory.
    Path,
    /// The name of an environment variable.
    EnvVar,
    /// A 5-field cron expression, in UTC.
    Cron,
    /// One of a fixed set of words, listed in the doc.
    Choice(&'static [&'static str]),
    Strings,
    Table,
    Tables,
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Kind::String => "string".into(),
            Kind::Duration => "duration".into(),
            Kind::Integer => "integer".into(),
            Kind::Boolean => "boolean".into(),
            Kind::Path => "path".into(),
            Kind::EnvVar => "env var name".into(),
            Kind::Cron => "cron (5 fields, UTC)".into(),
            Kind::Choice(words) => words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Kind::Strings => "array of strings".into(),
            Kind::Table => "table".into(),
            Kind::Tables => "array of tables".into(),
        }
    }
}

/// What a key is when the file does not write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultValue {
    /// The file must write it.
    Required,
    /// Absent means the feature is off or not used (no TLS, no schedule).
    Unset,
    Duration(Duration),
    Integer(i64),
    Boolean(bool),
    /// A string value, shown quoted.
    Text(&'static str),
    /// Worked out from other keys or the environment; said in words.
    Derived(&'static str),
}

impl DefaultValue {
    fn describe(self) -> String {
        match self {
            DefaultValue::Required => "**required**".into(),
            DefaultValue::Unset => "unset".into(),
            DefaultValue::Duration(d) => format!("`\"{}\"`", format_duration(d)),
            DefaultValue::Integer(n) => format!("`{n}`"),
            DefaultValue::Boolean(b) => format!("`{b}`"),
            DefaultValue::Text(t) => format!("`{t:?}`"),
            DefaultValue::Derived(words) => words.into(),
        }
    }
}

/// The Markdown of one section: a heading, its doc and a table of its keys.
pub(crate) fn render(section: &Section, out: &mut String) {
    use std::fmt::Write as _;
    if section.header.starts_with('[') {
        let _ = writeln!(out, "## `{}`\n\n{}\n", section.header, section.doc);
    } else {
        let _ = writeln!(out, "## {}\n\n{}\n", section.header, section.doc);
    }
    out.push_str("| key | type | default | description |\n|---|---|---|---|\n");
    for key in section.keys {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            key.name,
            cell(&key.kind.describe()),
            cell(&key.default.describe()),
            cell(key.doc)
        );
    }
    out.push('\n');
}

/// A table cell: a `|` would end it early.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
