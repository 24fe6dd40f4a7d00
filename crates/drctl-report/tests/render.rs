//! The renderers against text that broke them when the HTML was made by
//! re-parsing the Markdown and the CSV by hand: a field holding `|`, `,`,
//! `"`, `<` and a newline stays one field, verbatim, in every format.

use chrono::{DateTime, Utc};
use drctl_report::{
    to_csv, to_html, to_markdown, BackupEntry, EvidenceGap, Report, ReportRpo, ReportSummary,
    ServiceReport,
};

const NASTY: &str = "a|b, \"c\" <d>\ne";

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn report() -> Report {
    Report {
        generated_at: at(100),
        from: at(0),
        to: at(100),
        summary: ReportSummary {
            services: 1,
            without_findings: 0,
            breaches: 0,
            breach_s: 0.0,
            operations: 0,
            evidence_gaps: 1,
        },
        services: vec![ServiceReport {
            service: "orders".into(),
            tier: "hot".into(),
            rpo_target_s: 5.0,
            rto_target_s: 60.0,
            evidence_every_s: 86_400.0,
            rpo: ReportRpo {
                basis: "lag samples".into(),
                ..ReportRpo::default()
            },
            breaches: vec![],
            operations: vec![],
            backups: vec![BackupEntry {
                id: "bk-1".into(),
                status: "succeeded".into(),
                started_at: at(10),
                ended_at: Some(at(20)),
                stored_bytes: Some(1),
                verification: Some(NASTY.into()),
                verified_at: None,
            }],
            restore_tests: vec![],
            evidence_gaps: vec![EvidenceGap {
                kind: "proof_overdue".into(),
                start: at(0),
                end: None,
                duration_s: 100.0,
                detail: NASTY.into(),
            }],
        }],
        note: None,
    }
}

#[test]
fn a_field_with_pipes_commas_quotes_angles_and_a_newline_renders_in_csv() {
    let csv = to_csv(&report());
    let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(header.len(), 11);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3, "compliance, backup, gap: {csv}");
    assert!(rows.iter().all(|r| r.len() == 11), "{csv}");
    let gap = rows.iter().find(|r| &r[2] == "evidence_gap").unwrap();
    assert_eq!(&gap[10], NASTY, "read back verbatim");
    let backup = rows.iter().find(|r| &r[2] == "backup").unwrap();
    assert_eq!(&backup[10], format!("succeeded; {NASTY}"));
}

#[test]
fn a_field_with_pipes_commas_quotes_angles_and_a_newline_renders_in_markdown() {
    let md = to_markdown(&report());
    let escaped = r#"a\|b, "c" \<d><br>e"#;
    assert!(
        md.contains(&format!(
            "| bk-1 | succeeded | 2027-01-15 08:00:20Z | {escaped} |\n"
        )),
        "{md}"
    );
    assert!(md.contains(&format!(" | {escaped} |\n")), "{md}");
    // Every table row has as many cells as its header: no `|` leaked.
    for table in md.split("\n\n").filter(|b| b.starts_with('|')) {
        let cells = |line: &str| line.replace(r"\|", "").matches('|').count();
        let mut lines = table.lines();
        let header = cells(lines.next().unwrap());
        assert!(lines.all(|l| cells(l) == header), "{table}");
    }
}

#[test]
fn a_field_with_pipes_commas_quotes_angles_and_a_newline_renders_in_html() {
    let html = to_html(&report());
    assert!(
        html.contains("<td>a|b, &quot;c&quot; &lt;d&gt;<br>e</td>"),
        "{html}"
    );
    assert!(!html.contains("<d>"), "no markup from the data: {html}");
    let rows = html.matches("<tr").count();
    // Backups: header and one row; gaps: header and one row.
    assert_eq!(rows, 4, "{html}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
}
