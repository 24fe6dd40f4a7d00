//! `drctl agent serve`, `drctl agent certs` and `drctl agent watchdog`: the
//! node agent beside a database server (drctl-agent's router over this
//! host's `LocalNode`, served by drctl-http with mutual TLS), its
//! certificates, and the primary lease's watchdog it starts.

use std::sync::Arc;

use anyhow::Context;
use drctl_agent::{AgentName, AgentSettings};
use drctl_node::{LocalNode, NodeActions};

use crate::cli::{AgentArgs, AgentCertsArgs, AgentCommand, AgentServeArgs, AgentWatchdogArgs};
use crate::config_cmd;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    match args.command {
        AgentCommand::Serve(a) => serve(a).await,
        AgentCommand::Certs(a) => certs(a),
        AgentCommand::Watchdog(a) => watchdog(a).await,
    }
}

async fn watchdog(args: AgentWatchdogArgs) -> anyhow::Result<()> {
    if !args.data_dir.is_absolute() {
        anyhow::bail!("{} is not an absolute path", args.data_dir.display());
    }
    let node: Arc<dyn NodeActions> = Arc::new(local_node(&args.pg_bin));
    let exit = drctl_agent::watchdog::run(args.data_dir.clone(), node, args.parent)
        .await
        .with_context(|| format!("the lease watchdog of {}", args.data_dir.display()))?;
    tracing::info!(data_dir = %args.data_dir.display(), ?exit, "lease watchdog exits");
    Ok(())
}

/// This host's node actions, with the server programs of `--pg-bin`.
fn local_node(pg_bin: &Option<std::path::PathBuf>) -> LocalNode {
    let node = LocalNode::new();
    match pg_bin {
        Some(bin) => node.with_bin(bin.clone()),
        None => node,
    }
}

async fn serve(args: AgentServeArgs) -> anyhow::Result<()> {
    for dir in args.data_dirs.iter().chain([&args.scratch_root]) {
        if !dir.is_absolute() {
            anyhow::bail!(
                "{} is not an absolute path: the agent's --data-dir and --scratch-root must be",
                dir.display()
            );
        }
    }
    let tls = drctl_agent::agent_acceptor(&args.cert, &args.key, &args.ca)?;
    let mut node = local_node(&args.pg_bin);
    // With drctl's config the agent restores the backups its store
    // recorded, as the engine does on its own host.
    let mut lease_holders = Vec::new();
    if let Some(path) = &args.config {
        let config = config_cmd::load(path)?;
        if let Some(coord) = &config.coordination {
            let specs = drctl_agent::lease::leases_for(&config, &args.data_dirs);
            let etcd = drctl_coord::Etcd::new(&coord.etcd, coord.request_timeout)?;
            let timings =
                drctl_agent::lease::LeaseTimings::for_ttl(coord.lease_ttl, coord.request_timeout);
            lease_holders = specs
                .into_iter()
                .map(|spec| (etcd.clone(), spec, timings))
                .collect();
        }
        let store = drctl_store::Store::open(config.store.url.expose())
            .await
            .with_context(|| format!("opening the state store of {}", path.display()))?;
        let backups = drctl_backup::RecordedBackups::new(config, store);
        node = node.with_backups(Arc::new(backups));
    }
    let settings = AgentSettings {
        data_dirs: args.data_dirs.clone(),
        scratch_root: args.scratch_root.clone(),
        host: drctl_node::this_host(),
        restores: args.config.is_some(),
        // Its scratch copies present its own certificate to drctl.
        scratch_tls: Some(drctl_agent::ScratchTlsFiles {
            cert: args.cert.clone(),
            key: args.key.clone(),
            ca: args.ca.clone(),
        }),
    };
    let node: Arc<dyn NodeActions> = Arc::new(node);
    // The primary leases ([coordination]): held while each server is a
    // writable primary, its server fenced when they cannot be renewed.
    // Each with its watchdog, a second process that fences the server at
    // the lease deadline should this agent die or hang.
    let launcher = match std::env::current_exe() {
        Ok(program) => Some(drctl_agent::watchdog::Launcher {
            program,
            pg_bin: args.pg_bin.clone(),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot find this program to start the lease watchdogs: only the agent fences its servers");
            None
        }
    };
    for (etcd, spec, timings) in lease_holders {
        tokio::spawn(drctl_agent::lease::hold(
            etcd,
            spec,
            node.clone(),
            timings,
            settings.host.clone(),
            launcher.clone(),
        ));
    }
    let router = drctl_agent::router(node, settings);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (another agent running? change --listen)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    // Before the ready line: a SIGTERM sent as soon as it is seen must
    // find its handler, not the default action.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(drctl_http::serve(
        listener,
        router,
        Some(tls),
        drctl_http::Limits::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    // The one line tests and scripts wait for.
    eprintln!(
        "drctl agent listening on https://{addr} (data dirs: {}; scratch root {})",
        args.data_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.scratch_root.display()
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        ended = &mut server => return Ok(ended??),
    }
    tracing::info!("agent stopping: finishing the requests in flight");
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

fn certs(args: AgentCertsArgs) -> anyhow::Result<()> {
    let agents = args
        .agents
        .iter()
        .map(|spec| AgentName::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let pki = drctl_agent::issue_pki(&args.out, &agents, args.days)?;
    let mut out = String::new();
    out.push_str(&format!(
        "{} CA {}\n",
        if pki.ca_reused { "kept" } else { "new" },
        pki.ca.display()
    ));
    for a in &pki.agents {
        out.push_str(&format!(
            "agent {}: {} {}\n",
            a.name,
            a.cert.display(),
            a.key.display()
        ));
    }
    out.push_str(&format!(
        "drctl (client): {} {}\n",
        pki.client.cert.display(),
        pki.client.key.display()
    ));
    crate::output::write_stdout(format_args!("{out}"))?;
    Ok(())
}
