//! Located configuration errors and how they are shown.
//!
//! Owns [`ConfigError`] (one problem, with file, line, column, the dotted path
//! of the offending key and an optional hint), [`ConfigErrors`] (every problem
//! of one file, sorted by position) and the byte-offset → line:column
//! conversion. It does not decide what is wrong; `reader` and `validate` do.
//!
//! The rendering follows ripgrep's style so an editor or a terminal can jump
//! to the spot: `file:line:column: path: message (hint)`. Hints are always in
//! parentheses at the end, so a reader learns one shape.

use std::fmt;
use std::ops::Range;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the operator named it (e.g. `config/prod.toml`).
    pub file: String,
    /// 1-based line of the offending key or value; 0 when the problem concerns
    /// the whole file (it could not be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 together with `line == 0`.
    pub column: usize,
    /// Where in the document: `services[0] (orders).tier`. Empty for syntax
    /// errors and whole-file problems.
    pub path: String,
    /// What is wrong, lower case, naming the thing.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, " {}:", self.path)?;
        }
        write!(f, " {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file, in file order.
///
/// Validation does not stop at the first problem: an operator fixing a config
/// should see all of them at once, not one per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// Never empty when returned by [`crate::load`] or [`crate::parse`].
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there is no error (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Converts byte offsets of the source text to 1-based line and column.
///
/// Columns count characters, not bytes, so a non-ASCII description earlier on
/// the line does not shift the caret an editor shows.
pub(crate) struct LineIndex<'s> {
    text: &'s str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based (line, column) of a byte offset; offsets past the end are clamped.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        let column = match self.text.get(start..offset) {
            Some(prefix) => prefix.chars().count(),
            // Not on a character boundary (never from the parser's spans);
            // bytes are the best we can say without panicking.
            None => offset - start,
        };
        (line + 1, column + 1)
    }

    pub(crate) fn line(&self, span: &Range<usize>) -> usize {
        self.position(span.start).0
    }
}

/// "No such file…" → "no such file…": OS messages are capitalized, ours are
/// not, and a report should read as one voice.
pub(crate) fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
