//! The report's renderers. Markdown and HTML share one layout, made here
//! from the report's data as [`Block`]s (headings, paragraphs, tables of
//! plain text), and each renderer escapes the text for its own format: a
//! field may hold any character (`|`, `<`, a newline), and neither output
//! is ever parsed back. CSV is one row per record, written by the `csv`
//! crate.

mod csv;
mod html;
mod markdown;

use chrono::{DateTime, Utc};

use crate::Report;

pub use self::csv::to_csv;
pub use self::html::to_html;
pub use self::markdown::to_markdown;

/// One piece of the report's layout, holding plain (unescaped) text.
enum Block {
    Title(String),
    Heading(String),
    Paragraph(String),
    Table {
        header: Vec<&'static str>,
        rows: Vec<Row>,
    },
}

struct Row {
    cells: Vec<String>,
    /// A target was missed on this row (highlighted in HTML).
    missed: bool,
}

fn row(cells: Vec<String>) -> Row {
    let missed = cells.iter().any(|c| c == MISSED);
    Row { cells, missed }
}

const MISSED: &str = "MISSED";

fn t(d: &DateTime<Utc>) -> String {
    d.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn opt_t(d: &Option<DateTime<Utc>>) -> String {
    d.as_ref().map(t).unwrap_or_else(|| "ongoing".into())
}

fn f(s: Option<f64>) -> String {
    s.map(drctl_config::format_secs)
        .unwrap_or_else(|| "—".into())
}

fn met(m: Option<bool>) -> String {
    match m {
        Some(true) => "met",
        Some(false) => MISSED,
        None => "—",
    }
    .into()
}

/// The layout of the report, top to bottom.
fn layout(r: &Report) -> Vec<Block> {
    let mut blocks = vec![
        Block::Title("drctl compliance report".into()),
        Block::Paragraph(format!(
            "Period: {} to {} (generated {}).",
            t(&r.from),
            t(&r.to),
            t(&r.generated_at)
        )),
        Block::Paragraph(format!(
            "{} services; {} without findings; {} breaches ({} in all); {} operations; {} evidence gaps.",
            r.summary.services,
            r.summary.without_findings,
            r.summary.breaches,
            drctl_config::format_secs(r.summary.breach_s),
            r.summary.operations,
            r.summary.evidence_gaps,
        )),
    ];
    for s in &r.services {
        blocks.push(Block::Heading(format!("{} ({})", s.service, s.tier)));
        blocks.push(Block::Paragraph(format!(
            "RPO target {}, RTO target {}, proof every {}.",
            f(Some(s.rpo_target_s)),
            f(Some(s.rto_target_s)),
            f(Some(s.evidence_every_s)),
        )));
        blocks.push(Block::Paragraph(format!(
            "RPO compliance: {} of the measured time ({} measured, {} in breach, {} unmeasured; worst exposure {}). Basis: {}.",
            s.rpo
                .compliance_pct
                .map(|p| format!("{p:.3} %"))
                .unwrap_or_else(|| "not measured".into()),
            f(Some(s.rpo.measured_s)),
            f(Some(s.rpo.breach_s)),
            f(Some(s.rpo.unmeasured_s)),
            f(s.rpo.worst_exposure_s),
            s.rpo.basis,
        )));
        let mut table = |header: Vec<&'static str>, rows: Vec<Row>| {
            if !rows.is_empty() {
                blocks.push(Block::Table { header, rows });
            }
        };
        table(
            vec!["breach start", "end", "duration", "worst exposure"],
            s.breaches
                .iter()
                .map(|b| {
                    row(vec![
                        t(&b.start),
                        opt_t(&b.end),
                        f(Some(b.duration_s)),
                        f(b.worst_exposure_s),
                    ])
                })
                .collect(),
        );
        table(
            vec![
                "operation",
                "kind",
                "status",
                "started",
                "RPO",
                "",
                "RTO",
                "",
            ],
            s.operations
                .iter()
                .map(|o| {
                    row(vec![
                        o.id.clone(),
                        o.kind.to_string(),
                        o.status.to_string(),
                        t(&o.started_at),
                        f(o.rpo_s),
                        met(o.rpo_met),
                        f(o.rto_s),
                        met(o.rto_met),
                    ])
                })
                .collect(),
        );
        table(
            vec!["backup", "status", "ended", "verification"],
            s.backups
                .iter()
                .map(|b| {
                    row(vec![
                        b.id.clone(),
                        b.status.to_string(),
                        b.ended_at.as_ref().map(t).unwrap_or_default(),
                        b.verification
                            .as_deref()
                            .unwrap_or("not verified")
                            .to_string(),
                    ])
                })
                .collect(),
        );
        table(
            vec!["restore test", "backup", "status", "ready after", "RTO"],
            s.restore_tests
                .iter()
                .map(|x| {
                    row(vec![
                        x.id.clone(),
                        x.backup_id.clone(),
                        x.status.to_string(),
                        f(x.time_to_ready_s),
                        met(x.rto_met),
                    ])
                })
                .collect(),
        );
        table(
            vec!["evidence gap", "start", "end", "duration", ""],
            s.evidence_gaps
                .iter()
                .map(|g| {
                    row(vec![
                        g.kind.to_string(),
                        t(&g.start),
                        opt_t(&g.end),
                        f(Some(g.duration_s)),
                        g.detail.clone(),
                    ])
                })
                .collect(),
        );
    }
    blocks
}
