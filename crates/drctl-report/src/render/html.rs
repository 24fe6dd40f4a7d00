//! A standalone HTML page (print it to PDF for the auditor), rendered by
//! `maud` from the report's layout: every text is escaped by the template
//! engine, and a line break inside a field is a `<br>`.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{layout, Block};
use crate::Report;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2433}\
table{border-collapse:collapse;margin:.5em 0 1em}\
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left}th{background:#eef1f6}\
tr.missed td{background:#fde8e8}h2{margin-top:1.6em;border-bottom:1px solid #ccd}";

/// A standalone HTML page (print it to PDF for the auditor).
pub fn to_html(r: &Report) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "drctl compliance report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                @for b in layout(r) {
                    (block(&b))
                    "\n"
                }
            }
        }
    };
    page.into_string() + "\n"
}

fn block(b: &Block) -> Markup {
    match b {
        Block::Title(text) => html! { h1 { (lines(text)) } },
        Block::Heading(text) => html! { h2 { (lines(text)) } },
        Block::Paragraph(text) => html! { p { (lines(text)) } },
        Block::Table { header, rows } => html! {
            table {
                tr { @for h in header { th { (h) } } }
                @for row in rows {
                    tr class=[row.missed.then_some("missed")] {
                        @for c in &row.cells { td { (lines(c)) } }
                    }
                }
            }
        },
    }
}

/// The text, its line breaks as `<br>`.
fn lines(text: &str) -> Markup {
    html! {
        @for (i, line) in text.lines().enumerate() {
            @if i > 0 { br; }
            (line)
        }
    }
}
