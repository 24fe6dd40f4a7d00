//! CSV for a spreadsheet: one row per finding and record, written by the
//! `csv` crate (quoting as RFC 4180 wants it).

use chrono::{DateTime, Utc};

use crate::Report;

const HEADER: [&str; 11] = [
    "service",
    "tier",
    "record",
    "id",
    "start",
    "end",
    "duration_s",
    "value_s",
    "target_s",
    "met",
    "detail",
];

/// CSV: one row per finding and record, for a spreadsheet.
pub fn to_csv(r: &Report) -> String {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail; a failure would be a bug in the rows.
    out.write_record(HEADER).expect("a CSV row in memory");
    for row in rows(r) {
        out.write_record(&row).expect("a CSV row in memory");
    }
    let bytes = out.into_inner().expect("a CSV buffer in memory");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

/// Every row of the report, `HEADER`'s columns in order.
fn rows(r: &Report) -> Vec<[String; 11]> {
    let o = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let b = |v: Option<bool>| v.map(|v| v.to_string()).unwrap_or_default();
    let at = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut all = Vec::new();
    for s in &r.services {
        // record, id, start, end, duration, value, target, met, detail
        let mut rows: Vec<[String; 9]> = vec![[
            "rpo_compliance".into(),
            String::new(),
            at(Some(r.from)),
            at(Some(r.to)),
            o(Some(s.rpo.measured_s)),
            o(s.rpo.compliance_pct),
            String::new(),
            String::new(),
            s.rpo.basis.clone(),
        ]];
        rows.extend(s.breaches.iter().map(|x| {
            [
                "breach".into(),
                String::new(),
                at(Some(x.start)),
                at(x.end),
                o(Some(x.duration_s)),
                o(x.worst_exposure_s),
                o(Some(s.rpo_target_s)),
                "false".into(),
                String::new(),
            ]
        }));
        rows.extend(s.operations.iter().map(|x| {
            [
                "operation".into(),
                x.id.clone(),
                at(Some(x.started_at)),
                at(x.ended_at),
                String::new(),
                o(x.rto_s),
                o(Some(s.rto_target_s)),
                b(x.rto_met),
                format!(
                    "{} {}; RPO {} ({})",
                    x.kind,
                    x.status,
                    o(x.rpo_s),
                    b(x.rpo_met)
                ),
            ]
        }));
        rows.extend(s.backups.iter().map(|x| {
            [
                "backup".into(),
                x.id.clone(),
                at(Some(x.started_at)),
                at(x.ended_at),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!(
                    "{}; {}",
                    x.status,
                    x.verification.as_deref().unwrap_or("not verified")
                ),
            ]
        }));
        rows.extend(s.restore_tests.iter().map(|x| {
            [
                "restore_test".into(),
                x.id.clone(),
                String::new(),
                at(x.ended_at),
                String::new(),
                o(x.time_to_ready_s),
                o(Some(s.rto_target_s)),
                b(x.rto_met),
                format!("{} (backup {})", x.status, x.backup_id),
            ]
        }));
        rows.extend(s.evidence_gaps.iter().map(|x| {
            [
                "evidence_gap".into(),
                x.kind.to_string(),
                at(Some(x.start)),
                at(x.end),
                o(Some(x.duration_s)),
                String::new(),
                String::new(),
                String::new(),
                x.detail.clone(),
            ]
        }));
        for row in rows {
            let [a, b2, c, d, e, f, g, h, i] = row;
            all.push([
                s.service.clone(),
                s.tier.to_string(),
                a,
                b2,
                c,
                d,
                e,
                f,
                g,
                h,
                i,
            ]);
        }
    }
    all
}
