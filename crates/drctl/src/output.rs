//! What the CLI prints for people: tables (comfy-table), short figures, and
//! the one door to stdout ([`write_stdout`], through [`outln!`]/[`out!`]),
//! which turns a reader that went away (`drctl status | head -1`) into
//! [`StdoutClosed`] instead of the panic `println!` ends in.

use std::io::{ErrorKind, Write};

use comfy_table::{presets::NOTHING, Table};

/// Stdout was closed by its reader (a broken pipe). Not a failure of the
/// command: `main` exits quietly with 0 on it, as ripgrep does.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes to stdout, flushed, mapping a broken pipe to [`StdoutClosed`].
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

/// `println!` that returns an error (`?`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns an error (`?`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// Renders rows under a header, columns two spaces apart, without borders
/// (so a line starts with its first cell, for people and for `grep`).
///
/// Every row must have one cell per header: a longer row would shift its
/// values out from under their headers (the `drctl status` bug of a
/// repeated RTO cell), so it is a bug caught here in debug builds; build
/// rows as `[String; N]` where the column count is fixed.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    debug_assert!(
        rows.iter().all(|r| r.len() <= header.len()),
        "a table row has more cells than the header ({} columns)",
        header.len()
    );
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(header.to_vec());
    t.add_rows(rows.iter().cloned());
    let last = header.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// A table cell for a figure in seconds: drctl's one formatter for people
/// (`120ms`, `4s 500ms`, `3m 12s`), `-` when there is none.
pub fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), drctl_config::format_secs)
}

/// Bytes with a binary unit.
pub fn bytes(b: Option<i64>) -> String {
    match b {
        None => "-".into(),
        Some(b) if b < 1024 => format!("{b}B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1}KiB", b as f64 / 1024.0),
        Some(b) => format!("{:.1}MiB", b as f64 / 1048576.0),
    }
}

/// One JSON document on stdout (`-o json`).
pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_puts_every_value_under_its_header() {
        let rows = vec![
            vec!["orders".to_string(), "hot".into(), "a long note".into()],
            vec!["inventory-service".to_string(), "warm".into(), "-".into()],
        ];
        let text = table(&["SERVICE", "TIER", "NOTE"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let tier_at = lines[0].find("TIER").unwrap();
        let note_at = lines[0].find("NOTE").unwrap();
        assert_eq!(lines[1].find("hot"), Some(tier_at), "{text}");
        assert_eq!(lines[2].find("warm"), Some(tier_at), "{text}");
        assert_eq!(lines[1].find("a long note"), Some(note_at), "{text}");
        assert!(lines[0].starts_with("SERVICE"), "no border: {text}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text:?}");
    }
}
