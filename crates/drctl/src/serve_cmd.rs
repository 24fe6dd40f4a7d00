//! `drctl serve`: the daemon (`drctl-daemon`: monitor, election, the
//! leader's duties) and its HTTP API (`drctl-api`) in the foreground until
//! SIGINT or SIGTERM.

use drctl_daemon::Daemon;

use crate::cli::ServeArgs;
use crate::config_cmd;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let path = config_cmd::resolve_path(&args.config)?;
    let config = config_cmd::load(&path)?;
    let daemon = Daemon::start(config).await?;
    eprintln!(
        "drctl serving {} (config {})",
        daemon.api_url(),
        path.display()
    );
    wait_for_stop_signal().await;
    daemon.stop().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what `lab down`, systemd and Docker send).
pub async fn wait_for_stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
