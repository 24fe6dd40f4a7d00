//! Markdown, for a ticket or a wiki page: the report's layout with every
//! text escaped, so a `|` stays inside its table cell, a `<` is no HTML
//! and a newline does not end the row.

use super::{layout, Block};
use crate::Report;

/// Markdown, for a ticket or a wiki page.
pub fn to_markdown(r: &Report) -> String {
    let blocks: Vec<String> = layout(r).iter().map(block).collect();
    blocks.join("\n")
}

fn block(b: &Block) -> String {
    match b {
        Block::Title(text) => format!("# {}\n", escape(text)),
        Block::Heading(text) => format!("## {}\n", escape(text)),
        Block::Paragraph(text) => format!("{}\n", escape(text)),
        Block::Table { header, rows } => {
            let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
            let mut out = line(header.iter().map(|h| escape(h)).collect());
            out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
            for row in rows {
                out.push_str(&line(row.cells.iter().map(|c| escape(c)).collect()));
            }
            out
        }
    }
}

/// Backslash escapes (CommonMark) for what would break a table (`|`) or
/// open raw HTML (`<`), and for the backslash itself; a line break inside
/// a cell as `<br>`. Nothing else is touched, so ordinary text (`no_samples`)
/// reads as before.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        for c in line.chars() {
            if matches!(c, '\\' | '|' | '<') {
                out.push('\\');
            }
            out.push(c);
        }
        if lines.peek().is_some() {
            out.push_str("<br>");
        }
    }
    out
}
