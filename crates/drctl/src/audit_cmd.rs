//! `drctl audit list|verify`, and the audit rows the CLI's own mutations
//! write (a failover started from a terminal is audited like one started
//! through the API).

use chrono::Utc;
use drctl_store::{NewAudit, Store};
use serde_json::{json, Value};

use crate::cli::{AuditArgs, AuditCommand, OutputFormat};
use crate::config_cmd::open;
use crate::output::{out, outln, print_json, table};
use crate::Reported;

/// Who runs this CLI: `cli:USER@HOST` (the sudo caller when there is one,
/// since `root` says little about who acted).
fn actor() -> (String, String) {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", nix::unistd::Uid::current()));
    let host = drctl_api::auth::host_name();
    (format!("cli:{user}@{host}"), host)
}

/// Records a mutation the CLI is about to start; it does not start when
/// the record cannot be written.
pub async fn record(
    store: &Store,
    action: &str,
    target: Option<&str>,
    detail: Value,
) -> anyhow::Result<()> {
    let (actor, host) = actor();
    store
        .append_audit(&NewAudit {
            actor,
            role: None,
            source: host,
            action: action.to_string(),
            target: target.map(str::to_string),
            detail,
        })
        .await?;
    Ok(())
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let (_config, store) = open(&args.config).await?;
    match args.command {
        AuditCommand::List {
            since,
            until,
            limit,
            output,
        } => {
            let now = Utc::now();
            let parse = |t: Option<String>| {
                t.map(|t| drctl_api::parse_instant(&t, now).map_err(anyhow::Error::msg))
                    .transpose()
            };
            let rows = store
                .audit_entries(parse(since)?, parse(until)?, None, limit.max(1))
                .await?;
            match output {
                OutputFormat::Json => print_json(&json!({ "entries": rows }))?,
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = rows
                        .iter()
                        .map(|e| {
                            vec![
                                e.seq.to_string(),
                                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                e.actor.clone(),
                                e.source.clone(),
                                e.action.clone(),
                                e.target.clone().unwrap_or_default(),
                                e.detail.to_string(),
                            ]
                        })
                        .collect();
                    out!(
                        "{}",
                        table(
                            &["SEQ", "AT (UTC)", "WHO", "FROM", "ACTION", "TARGET", "DETAIL"],
                            &rows
                        )
                    )?;
                }
            }
            Ok(())
        }
        AuditCommand::Verify {
            expect_head,
            output,
        } => {
            let head = expect_head
                .as_deref()
                .map(|h| {
                    let (seq, hash) = h.split_once(':').ok_or_else(|| {
                        anyhow::anyhow!("--expect-head {h:?}: write SEQ:HASH, as `drctl audit verify` printed it")
                    })?;
                    let seq: i64 = seq.parse().map_err(|_| {
                        anyhow::anyhow!("--expect-head {h:?}: {seq:?} is not a row number")
                    })?;
                    Ok::<_, anyhow::Error>((seq, hash.to_string()))
                })
                .transpose()?;
            let report = store
                .verify_audit(head.as_ref().map(|(s, h)| (*s, h.as_str())))
                .await?;
            match output {
                OutputFormat::Json => print_json(&json!({ "verification": report }))?,
                OutputFormat::Table => match &report.broken {
                    None => {
                        outln!(
                            "audit log intact: {} rows; head {}:{} (record it to detect rows cut off later)",
                            report.rows, report.head_seq, report.head_hash
                        )?;
                        // Plain SHA-256 rows prove less: anyone who can
                        // write to the store can recompute them.
                        if report.legacy_rows == report.rows && report.rows > 0 {
                            outln!(
                                "all {} rows are legacy (plain SHA-256): set [audit] key_file or key_env to chain new rows with HMAC",
                                report.rows
                            )?;
                        } else if report.legacy_rows > 0 {
                            outln!(
                                "rows 1..{} are legacy (plain SHA-256, written before the audit key was configured); HMAC-chained from row {} on",
                                report.legacy_rows,
                                report.legacy_rows + 1
                            )?;
                        }
                    }
                    Some(b) => eprintln!(
                        "audit log BROKEN at row {} ({}): {}",
                        b.seq, b.kind, b.message
                    ),
                },
            }
            if report.broken.is_some() {
                return Err(Reported(1).into());
            }
            Ok(())
        }
    }
}
