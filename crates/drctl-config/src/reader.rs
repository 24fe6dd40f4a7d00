//! Reading the TOML document with every position kept.
//!
//! Owns the *shape* of the input: which keys a table may hold, which type each
//! value must have, and where each key and value sits in the file. Wrong shape
//! becomes a located [`ConfigError`] collected in [`Cx`]; right shape comes
//! out as [`Spanned`] leaves for `validate`, which owns the meaning (what a
//! region or a tier is). It never stops at the first problem.
//!
//! Why walk a `toml_edit` document instead of deriving `Deserialize`: serde
//! stops at the first error and knows nothing about "did you mean", while an
//! operator fixing a config wants every problem, each with a position. The
//! document keeps spans for every key, value and table header.
//!
//! TOML lets the same data be written as `[table]` or `{ inline = "table" }`,
//! and `[[array]]` or `[{ … }]`; both spellings are accepted everywhere.

use std::ops::Range;
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::duration::{
    format_duration, parse_config_duration, DurationProblem, MAX_CONFIG_DURATION,
};
use crate::error::{ConfigError, LineIndex};
use crate::suggest;

/// Byte range in the source text.
pub(crate) type Span = Range<usize>;

/// A value read from the document, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A table of the document (standard, inline or array element) and how to
/// point at it.
#[derive(Clone)]
pub(crate) struct Table<'d> {
    inner: &'d dyn TableLike,
    /// The header (`[[services]]`), or the key that opened it when the table
    /// has no header of its own (dotted keys, implicit parents).
    pub span: Span,
    /// `services[0] (orders)`; empty for the root.
    pub path: String,
}

/// Something found under a key or at an array index.
#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Value(&'d Value),
}

/// One entry of a table or array, not yet type-checked.
#[derive(Clone)]
pub(crate) struct Field<'d> {
    node: Node<'d>,
    /// The key as written (empty for array elements).
    pub key: &'d str,
    /// The key, or for array elements the value.
    pub key_span: Span,
    /// The value (or table header); the key when the value has no position.
    pub span: Span,
    /// `services[0] (orders).tier`.
    pub path: String,
}

impl<'d> Node<'d> {
    fn value(self) -> Option<&'d Value> {
        match self {
            Node::Item(Item::Value(v)) | Node::Value(v) => Some(v),
            Node::Item(_) => None,
        }
    }

    fn table_like(self) -> Option<&'d dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(Value::InlineTable(t)) => Some(t),
            Node::Value(_) => None,
        }
    }

    fn span(self) -> Option<Span> {
        match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
        }
    }

    /// "an integer", for "expected a string, found an integer".
    fn describe(self) -> &'static str {
        match self {
            Node::Item(Item::None) => "nothing",
            Node::Item(Item::Table(_)) => "a table",
            Node::Item(Item::ArrayOfTables(_)) => "an array of tables",
            Node::Item(Item::Value(v)) | Node::Value(v) => match v {
                Value::String(_) => "a string",
                Value::Integer(_) => "an integer",
                Value::Float(_) => "a float",
                Value::Boolean(_) => "a boolean",
                Value::Datetime(_) => "a date-time",
                Value::Array(_) => "an array",
                Value::InlineTable(_) => "a table",
            },
        }
    }
}

/// How a key appears in a path: bare when TOML would allow it bare.
pub(crate) fn key_in_path(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key_in_path(key)
    } else {
        format!("{path}.{}", key_in_path(key))
    }
}

impl<'d> Table<'d> {
    /// The document's root table.
    pub(crate) fn root(doc: &'d toml_edit::ImDocument<&str>) -> Self {
        Table {
            inner: doc.as_table(),
            span: 0..0,
            path: String::new(),
        }
    }

    /// The entry under `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<Field<'d>> {
        let (k, item) = self.inner.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        let key_span = k.span().unwrap_or_else(|| self.span.clone());
        let node = Node::Item(item);
        Some(Field {
            node,
            key: k.get(),
            span: node.span().unwrap_or_else(|| key_span.clone()),
            key_span,
            path: join(&self.path, k.get()),
        })
    }

    /// Every entry, in document order.
    pub(crate) fn fields(&self) -> Vec<Field<'d>> {
        self.inner
            .iter()
            .filter_map(|(key, _)| self.get(key))
            .collect()
    }

    /// Renames the table in error paths, e.g. once a service's name is known.
    pub(crate) fn relabel(&mut self, path: String) {
        self.path = path;
    }
}

/// A fix for the syntax errors people actually make in config files.
fn syntax_hint(message: &str) -> Option<&'static str> {
    if message.starts_with("invalid string") {
        Some("quote text values, e.g. tier = \"hot\"")
    } else if message.starts_with("invalid basic string")
        || message.starts_with("invalid literal string")
    {
        Some("close the string on the same line, or use \"\"\"…\"\"\" for several lines")
    } else if message.contains("duplicate key") {
        Some("each key may appear once per table; remove or merge the repeat")
    } else {
        None
    }
}

/// The collector of errors for one file, and the typed readers that feed it.
pub(crate) struct Cx<'s> {
    file: &'s str,
    lines: LineIndex<'s>,
    /// (byte offset, error): sorted by offset at the end so the report reads
    /// top to bottom whatever order the checks ran in.
    errors: Vec<(usize, ConfigError)>,
}

impl<'s> Cx<'s> {
    pub(crate) fn new(file: &'s str, text: &'s str) -> Self {
        Cx {
            file,
            lines: LineIndex::new(text),
            errors: Vec::new(),
        }
    }

    /// Records a problem at `span`.
    pub(crate) fn error(
        &mut self,
        span: &Span,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, column) = self.lines.position(span.start);
        self.errors.push((
            span.start,
            ConfigError {
                file: self.file.to_string(),
                line,
                column,
                path: path.to_string(),
                message: message.into(),
                hint,
            },
        ));
    }

    /// 1-based line of a span, for "first declared at line N".
    pub(crate) fn line(&self, span: &Span) -> usize {
        self.lines.line(span)
    }

    /// A TOML syntax error: the parser stops at the first, so it is alone.
    pub(crate) fn syntax(&mut self, error: &toml_edit::TomlError) {
        // The parser's message is several lines ("invalid key", "expected
        // …"); one line per error keeps the report greppable.
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let span = error.span().unwrap_or(0..0);
        let hint = syntax_hint(&message).map(str::to_string);
        self.error(&span, "", message, hint);
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors in file order (stable for errors at the same position).
    pub(crate) fn finish(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.dedup_by(|a, b| a.1 == b.1);
        self.errors.into_iter().map(|(_, e)| e).collect()
    }

    /// Reports every key of `table` not in `known`, suggesting the closest.
    pub(crate) fn unknown_keys(&mut self, table: &Table, known: &[&str]) {
        for field in table.fields() {
            if known.contains(&field.key) {
                continue;
            }
            let hint = suggest::hint(field.key, known.iter().copied())
                .unwrap_or_else(|| format!("expected one of {}", known.join(", ")));
            self.error(&field.key_span, &field.path, "unknown key", Some(hint));
        }
    }

    /// The entry under `key`, reporting its absence at the table's header.
    pub(crate) fn required<'d>(
        &mut self,
        table: &Table<'d>,
        key: &str,
        hint: &str,
    ) -> Option<Field<'d>> {
        let field = table.get(key);
        if field.is_none() {
            self.error(
                &table.span,
                &table.path,
                format!("missing `{key}`"),
                Some(hint.to_string()),
            );
        }
        field
    }

    fn wrong_type(&mut self, field: &Field, expected: &str, hint: Option<String>) {
        self.error(
            &field.span,
            &field.path,
            format!("expected {expected}, found {}", field.node.describe()),
            hint,
        );
    }

    pub(crate) fn string(&mut self, field: &Field) -> Option<Spanned<String>> {
        self.string_or(field, None)
    }

    /// A string, with a hint for when something else was written.
    pub(crate) fn string_or(
        &mut self,
        field: &Field,
        hint: Option<String>,
    ) -> Option<Spanned<String>> {
        match field.node.value() {
            Some(Value::String(s)) => Some(Spanned {
                value: s.value().clone(),
                span: field.span.clone(),
            }),
            _ => {
                self.wrong_type(field, "a string", hint);
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, field: &Field) -> Option<Spanned<i64>> {
        match field.node.value() {
            Some(Value::Integer(i)) => Some(Spanned {
                value: *i.value(),
                span: field.span.clone(),
            }),
            _ => {
                self.wrong_type(field, "an integer", None);
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, field: &Field) -> Option<Spanned<bool>> {
        match field.node.value() {
            Some(Value::Boolean(b)) => Some(Spanned {
                value: *b.value(),
                span: field.span.clone(),
            }),
            _ => {
                self.wrong_type(field, "a boolean", Some("write true or false".into()));
                None
            }
        }
    }

    /// A positive human duration (`"5s"`).
    pub(crate) fn duration(&mut self, field: &Field) -> Option<Spanned<Duration>> {
        let text = self.string_or(
            field,
            Some("write durations as strings with a unit, e.g. \"5s\", \"30m\", \"24h\"".into()),
        )?;
        match parse_config_duration(&text.value) {
            Ok(d) => Some(Spanned {
                value: d,
                span: text.span,
            }),
            Err(DurationProblem::Zero) => {
                self.error(
                    &text.span,
                    &field.path,
                    format!(
                        "{:?} is zero; durations must be greater than zero",
                        text.value
                    ),
                    Some("use a positive duration such as \"1s\"".into()),
                );
                None
            }
            Err(DurationProblem::TooLarge) => {
                self.error(
                    &text.span,
                    &field.path,
                    format!(
                        "{:?} is too long; durations are at most {} (100 years)",
                        text.value,
                        format_duration(MAX_CONFIG_DURATION)
                    ),
                    Some("use a shorter duration, e.g. \"30d\" or \"1y\"".into()),
                );
                None
            }
            Err(DurationProblem::Malformed(reason)) => {
                self.error(
                    &text.span,
                    &field.path,
                    format!("{:?} is not a duration: {reason}", text.value),
                    Some("write a number and a unit, e.g. \"500ms\", \"5s\", \"30m\", \"24h\", \"30d\"".into()),
                );
                None
            }
        }
    }

    /// A sub-table (`[api]` or `api = { … }`).
    pub(crate) fn table<'d>(&mut self, field: &Field<'d>) -> Option<Table<'d>> {
        match field.node.table_like() {
            Some(inner) => Some(Table {
                inner,
                span: field.span.clone(),
                path: field.path.clone(),
            }),
            None => {
                self.wrong_type(field, "a table", None);
                None
            }
        }
    }

    /// An array of tables (`[[services]]` or `services = [{ … }]`); `hint`
    /// says how to write one when something else was found.
    pub(crate) fn tables<'d>(&mut self, field: &Field<'d>, hint: &str) -> Option<Vec<Table<'d>>> {
        let mut tables = Vec::new();
        match field.node {
            Node::Item(Item::ArrayOfTables(array)) => {
                for (i, table) in array.iter().enumerate() {
                    tables.push(Table {
                        inner: table,
                        span: table.span().unwrap_or_else(|| field.span.clone()),
                        path: format!("{}[{i}]", field.path),
                    });
                }
            }
            _ => {
                let Some(Value::Array(array)) = field.node.value() else {
                    self.wrong_type(field, "an array of tables", Some(hint.to_string()));
                    return None;
                };
                let mut ok = true;
                for (i, value) in array.iter().enumerate() {
                    let element = Field {
                        node: Node::Value(value),
                        key: "",
                        key_span: value.span().unwrap_or_else(|| field.span.clone()),
                        span: value.span().unwrap_or_else(|| field.span.clone()),
                        path: format!("{}[{i}]", field.path),
                    };
                    match value {
                        Value::InlineTable(table) => tables.push(Table {
                            inner: table,
                            span: element.span.clone(),
                            path: element.path.clone(),
                        }),
                        _ => {
                            self.wrong_type(&element, "a table", Some(hint.to_string()));
                            ok = false;
                        }
                    }
                }
                if !ok {
                    return None;
                }
            }
        }
        Some(tables)
    }

    /// An array of values; elements are type-checked by the caller.
    pub(crate) fn array<'d>(&mut self, field: &Field<'d>, hint: &str) -> Option<Vec<Field<'d>>> {
        let Some(Value::Array(array)) = field.node.value() else {
            self.wrong_type(field, "an array", Some(hint.to_string()));
            return None;
        };
        Some(
            array
                .iter()
                .enumerate()
                .map(|(i, value)| {
                    let span = value.span().unwrap_or_else(|| field.span.clone());
                    Field {
                        node: Node::Value(value),
                        key: "",
                        key_span: span.clone(),
                        span,
                        path: format!("{}[{i}]", field.path),
                    }
                })
                .collect(),
        )
    }
}
