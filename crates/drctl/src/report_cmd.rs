//! `drctl report`: the compliance report of `GET /api/v1/report`, built
//! from the state store by the same crate (`drctl-report`), so it works
//! while the daemon is down.

use chrono::Utc;
use drctl_report as report;

use crate::cli::{ReportArgs, ReportFormat};
use crate::config_cmd::open;
use crate::output::out;

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (config, store) = open(&args.config).await?;
    let (from, to) = report::period(args.from.as_deref(), args.to.as_deref(), Utc::now())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let built = report::build(&config, &store, from, to).await?;
    let text = match args.format {
        ReportFormat::Md => report::to_markdown(&built),
        ReportFormat::Html => report::to_html(&built),
        ReportFormat::Csv => report::to_csv(&built),
        ReportFormat::Json => serde_json::to_string_pretty(&built)? + "\n",
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "report of {} services, {} to {}: {}",
                built.summary.services,
                from.format("%Y-%m-%d %H:%M"),
                to.format("%Y-%m-%d %H:%M"),
                path.display()
            );
        }
        None => out!("{text}")?,
    }
    store.close().await;
    Ok(())
}
