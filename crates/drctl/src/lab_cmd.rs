//! `drctl lab …`: build, run, inspect, disturb and remove the two-region lab.
//!
//! `lab up` runs the lab's link, workload and the drctl daemon in its own
//! process, so Ctrl-C (or SIGTERM from `lab down`) stops them together and
//! then stops the PostgreSQL clusters. If `lab up` itself dies, the clusters
//! it started are listed in `lab.json`, and the next `lab up` or `lab down`
//! stops them (and removes the namespaces of a namespaced lab).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use drctl_daemon::Daemon;
use drctl_lab::{
    send_control, ControlCommand, Lab, LabNetwork, LabRecord, LabSpec, Partition, Site, REGION_A,
    REGION_B,
};
use serde_json::json;

use crate::cli::{
    LabArgs, LabCommand, LabEtcdAction, LabNetworkArg, LabPartitionArg, LinkAction, OutputFormat,
    WorkloadAction,
};
use crate::config_cmd;
use crate::output::{out, outln, print_json, table};
use crate::serve_cmd::wait_for_stop_signal;

pub async fn run(args: LabArgs) -> anyhow::Result<()> {
    let dir = absolute(&args.dir)?;
    match args.command {
        LabCommand::Up {
            detach: true,
            api_port,
            base_port,
            network,
            no_coordination,
        } => up_detached(&dir, api_port, base_port, network, no_coordination).await,
        LabCommand::Up {
            detach: false,
            api_port,
            base_port,
            network,
            no_coordination,
        } => up(&dir, api_port, base_port, network, no_coordination).await,
        LabCommand::Partition { mode, lift } => partition(&dir, mode, lift).await,
        LabCommand::Down => {
            let done = tokio::task::spawn_blocking(move || Lab::down(&dir)).await??;
            if done.is_empty() {
                outln!("nothing was running; lab record removed")?;
            }
            for line in done {
                outln!("{line}")?;
            }
            Ok(())
        }
        LabCommand::Status { output } => status(&dir, output).await,
        LabCommand::Link { action } => {
            let record = LabRecord::read(&dir)?;
            let command = match action {
                LinkAction::Cut => ControlCommand::LinkCut,
                LinkAction::Restore => ControlCommand::LinkRestore,
                LinkAction::Latency { delay } => ControlCommand::LinkLatency(delay.into()),
            };
            send_control(record.control_port, &command).await?;
            outln!("region link: {}", describe_link(&command))?;
            Ok(())
        }
        LabCommand::Workload { action } => {
            let record = LabRecord::read(&dir)?;
            let command = match action {
                WorkloadAction::Pause => ControlCommand::WorkloadPause,
                WorkloadAction::Resume => ControlCommand::WorkloadResume,
            };
            send_control(record.control_port, &command).await?;
            outln!(
                "workload {}",
                if command == ControlCommand::WorkloadPause {
                    "paused"
                } else {
                    "resumed"
                }
            )?;
            Ok(())
        }
        LabCommand::Isolate { service, region } => signal_server(
            &dir,
            &service,
            &region,
            nix::sys::signal::Signal::SIGSTOP,
            "isolated",
        ),
        LabCommand::Heal { service, region } => signal_server(
            &dir,
            &service,
            &region,
            nix::sys::signal::Signal::SIGCONT,
            "healed",
        ),
        LabCommand::Stonith { service, region } => signal_server(
            &dir,
            &service,
            &region,
            nix::sys::signal::Signal::SIGKILL,
            "killed",
        ),
        LabCommand::Etcd { action } => {
            let mut record = LabRecord::read(&dir)?;
            if record.etcd.is_empty() {
                bail!("this lab runs no etcd members (it was started with --no-coordination)");
            }
            match action {
                LabEtcdAction::KillLeader => {
                    let name = drctl_lab::etcd::kill_leader(&record).await?;
                    outln!("killed the etcd leader: the member of {name}")?;
                }
                LabEtcdAction::Start { member } => {
                    drctl_lab::etcd::restart(&mut record, &member)?;
                    outln!("started the etcd member of {member}")?;
                }
            }
            Ok(())
        }
        LabCommand::Corrupt {
            service,
            rows,
            output,
        } => {
            let record = LabRecord::read(&dir)?;
            let done = drctl_lab::corrupt::corrupt(&record, &service, rows).await?;
            match output {
                OutputFormat::Json => print_json(&json!({ "corrupted": done }))?,
                OutputFormat::Table => {
                    let span = |ids: &[i64]| match (ids.first(), ids.last()) {
                        (Some(a), Some(b)) => format!("{} rows (ids {a}..={b})", ids.len()),
                        _ => "no rows".to_string(),
                    };
                    outln!(
                        "{} in {}: deleted {} and rewrote {} of {}; the data was whole at {}.\n\
                         Every replica has the damage by now. Bring the rows back with:\n  \
                         drctl restore {} --to-time {} --target /tmp/{}-restored",
                        done.service,
                        done.region,
                        span(&done.deleted),
                        span(&done.rewritten),
                        done.table,
                        done.intact_at,
                        done.service,
                        done.intact_at,
                        done.service
                    )?;
                }
            }
            Ok(())
        }
        LabCommand::KillPrimary { service } => {
            let record = LabRecord::read(&dir)?;
            let targets: Vec<String> = match service {
                Some(s) => vec![s],
                None => record
                    .services
                    .iter()
                    .filter(|s| s.replicated())
                    .map(|s| s.name.clone())
                    .collect(),
            };
            for name in targets {
                let Some(cluster) = record.cluster(&name, REGION_A) else {
                    let known: Vec<&str> =
                        record.services.iter().map(|s| s.name.as_str()).collect();
                    bail!(
                        "the lab has no service {name:?} (services: {})",
                        known.join(", ")
                    );
                };
                cluster.crash()?;
                outln!(
                    "crashed the primary of {name} ({REGION_A}, port {})",
                    cluster.port
                )?;
            }
            Ok(())
        }
    }
}

fn signal_server(
    dir: &Path,
    service: &str,
    region: &str,
    sig: nix::sys::signal::Signal,
    what: &str,
) -> anyhow::Result<()> {
    let record = LabRecord::read(dir)?;
    let Some(cluster) = record.cluster(service, region) else {
        bail!("the lab has no server of {service:?} in {region:?}");
    };
    let n = cluster.signal_all(sig);
    // A fence of a server that is already down is done (as powering off a
    // dead machine is): the failover that runs it as its fence hook goes on.
    if n == 0 && sig == nix::sys::signal::Signal::SIGKILL {
        outln!("{service} in {region} is not running: nothing to kill")?;
        return Ok(());
    }
    if n == 0 {
        bail!("{service} in {region} is not running");
    }
    outln!(
        "{what} {service} in {region} ({n} processes, port {})",
        cluster.port
    )?;
    Ok(())
}

/// `drctl lab partition`: in the router of a namespaced lab, or, for `a-b`
/// and `heal` on a loopback lab, the region link's switch.
async fn partition(dir: &Path, mode: LabPartitionArg, lift: bool) -> anyhow::Result<()> {
    let record = LabRecord::read(dir)?;
    let chosen = match mode {
        LabPartitionArg::RegionA => Some(Partition::Isolate(Site::RegionA)),
        LabPartitionArg::RegionB => Some(Partition::Isolate(Site::RegionB)),
        LabPartitionArg::Witness => Some(Partition::Isolate(Site::Witness)),
        LabPartitionArg::CtlA => Some(Partition::Cut(Site::Ctl, Site::RegionA)),
        LabPartitionArg::CtlB => Some(Partition::Cut(Site::Ctl, Site::RegionB)),
        LabPartitionArg::AB => Some(Partition::Cut(Site::RegionA, Site::RegionB)),
        LabPartitionArg::Heal => None,
    };
    let Some(net) = record.network.clone() else {
        let command = match (chosen, lift) {
            (Some(Partition::Cut(Site::RegionA, Site::RegionB)), false) => ControlCommand::LinkCut,
            (None, _) | (Some(Partition::Cut(Site::RegionA, Site::RegionB)), true) => {
                ControlCommand::LinkRestore
            }
            (Some(p), _) => bail!(
                "partition {p} needs a namespaced lab, and this one runs on loopback; \
                 restart it as root with `drctl lab up --network namespaces`"
            ),
        };
        send_control(record.control_port, &command).await?;
        outln!("region link: {} (loopback lab)", describe_link(&command))?;
        return Ok(());
    };
    let described = chosen.map(|p| {
        Partition::MODES
            .iter()
            .find(|(m, _)| *m == p.mode())
            .map_or_else(|| p.mode(), |(_, what)| (*what).to_string())
    });
    let line = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        Ok(match (chosen, lift) {
            (Some(p), false) => {
                net.partition(p)?;
                format!("partitioned: {}", described.unwrap_or_default())
            }
            (Some(p), true) => {
                net.lift(p)?;
                format!("lifted: {}", described.unwrap_or_default())
            }
            (None, _) => {
                net.heal()?;
                "healed: every partition lifted".to_string()
            }
        })
    })
    .await??;
    outln!("{line}")?;
    Ok(())
}

/// The network `lab up` builds: as asked, else namespaces when this
/// process can build them (as root, with iproute2: the lab then shows what
/// a partition really does), else loopback with a line saying what that lab
/// cannot show.
fn choose_network(asked: Option<LabNetworkArg>) -> anyhow::Result<LabNetwork> {
    match (asked, drctl_lab::netns::available()) {
        (Some(LabNetworkArg::Loopback), _) => Ok(LabNetwork::Loopback),
        (Some(LabNetworkArg::Namespaces), Err(why)) => bail!("--network namespaces: {why}"),
        (Some(LabNetworkArg::Namespaces) | None, Ok(())) => Ok(LabNetwork::Namespaces),
        (None, Err(why)) => {
            eprintln!("network: loopback ({why})");
            Ok(LabNetwork::Loopback)
        }
    }
}

fn absolute(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    Ok(if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    })
}

fn describe_link(c: &ControlCommand) -> String {
    match c {
        ControlCommand::LinkCut => "cut (regions partitioned)".into(),
        ControlCommand::LinkRestore => "restored".into(),
        ControlCommand::LinkLatency(d) => format!("latency {}", humantime::format_duration(*d)),
        _ => String::new(),
    }
}

async fn up(
    dir: &Path,
    api_port: u16,
    base_port: u16,
    network: Option<LabNetworkArg>,
    no_coordination: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut spec = LabSpec::standard(dir.to_path_buf());
    spec.api_port = api_port;
    spec.base_port = Some(base_port);
    spec.network = choose_network(network)?;
    // The lab's STONITH fences a primary drctl cannot reach, as a fence
    // hook must in production: without one, automatic failover holds.
    let drctl = std::env::current_exe().context("locating the drctl binary")?;
    spec.fence_hook = Some(vec![
        drctl.display().to_string(),
        "lab".into(),
        "stonith".into(),
        "{service}".into(),
        "--region".into(),
        "{region}".into(),
        "--dir".into(),
        dir.display().to_string(),
    ]);
    // One node agent per region, beside its servers, as in production.
    spec.agents = Some(drctl.clone());
    // Three etcd members (region-a, region-b, witness) and the primary
    // leases the agents hold through them.
    spec.coordination = !no_coordination;
    let progress = |msg: &str| eprintln!("[{:>5.1}s] {msg}", started.elapsed().as_secs_f64());
    let lab = match Lab::up(spec, progress).await {
        Ok(lab) => lab,
        Err(e) => {
            // Stop whatever got started before the failure.
            let dir = dir.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || Lab::down(&dir)).await;
            return Err(e).context("the lab did not start");
        }
    };
    let config = config_cmd::load(lab.config_path())?;
    // In a namespaced lab the daemon runs in the control-plane site (its
    // API on that site's address): a partition of `ctl` and a region cuts
    // drctl off that region, as it would in production.
    let ctl_runtime = match lab.network() {
        Some(net) => Some(
            net.runtime_with_workers(Site::Ctl, 2)
                .context("starting drctl's runtime in the control-plane site")?,
        ),
        None => None,
    };
    let daemon_started = match &ctl_runtime {
        Some(rt) => rt
            .run(Daemon::start(config))
            .await
            .context("starting the daemon in the control-plane site")?,
        None => Daemon::start(config).await,
    };
    let daemon = match daemon_started {
        Ok(d) => d,
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || lab.teardown()).await;
            return Err(e).context("the drctl daemon did not start");
        }
    };
    let mut url = daemon.api_url();
    // The dashboard where a browser (or an SSH tunnel) on this machine
    // looks for it: in a namespaced lab, 127.0.0.1 of this namespace
    // forwards to the daemon in the control-plane site. Not a lab address:
    // nothing of the lab's own traffic goes through it.
    let _local_api = match lab.network() {
        Some(_) => {
            let local = std::net::SocketAddr::from(([127, 0, 0, 1], api_port));
            let forward =
                drctl_lab::LinkProxy::spawn(local, daemon.api_addr, Default::default()).await;
            match forward {
                Ok(proxy) => {
                    url = url.replace(&daemon.api_addr.to_string(), &local.to_string());
                    Some(proxy)
                }
                Err(e) => {
                    eprintln!("the API is on {url} only: 127.0.0.1:{api_port} is taken ({e})");
                    None
                }
            }
        }
        None => None,
    };
    let cfg = lab.config_path().display().to_string();
    let dns = format!("{} on {}", lab.record.dns_zone, lab.record.dns_server);
    let network = match lab.network() {
        Some(t) => format!(
            "each region its own network namespace ({}-*, {})",
            t.prefix,
            t.network()
        ),
        None => "loopback (run as root for each region its own network namespace)".to_string(),
    };
    eprintln!("[{:>5.1}s] lab ready", started.elapsed().as_secs_f64());
    outln!(
        "\nThe drctl lab is running in {dir}.\n\
         \n  dashboard    {url}/\n  API          {url}/api/v1/rpo-rto\n  metrics      {url}/metrics\
         \n  DNS          {dns}\n  network      {network}\n  config       {cfg}\n\
         \nTry, in another terminal:\n\
         \n  drctl status                      RPO exposure per service, both regions\
         \n  drctl lab link cut                partition the regions; watch exposure grow\
         \n  drctl lab link restore            heal it; exposure falls back under a second\
         \n  drctl lab link latency 200ms      a slow link\
         \n  drctl lab partition a-b           (namespaced lab) the regions lose each other's packets\
         \n  drctl lab partition heal          lift every partition\
         \n  drctl lab workload pause          an idle primary: exposure stays at zero\
         \n  drctl lab kill-primary orders     lose region A's orders database\
         \n  drctl lab down                    stop everything\
         \n\nCtrl-C here stops the lab.",
        dir = dir.display()
    )?;
    wait_for_stop_signal().await;
    eprintln!("stopping the lab…");
    daemon.stop().await;
    drop(ctl_runtime);
    tokio::task::spawn_blocking(move || lab.teardown()).await??;
    eprintln!("lab stopped");
    Ok(())
}

/// Starts `lab up` in a new session with its output in `DIR/lab-up.log`, and
/// returns once its API answers.
async fn up_detached(
    dir: &Path,
    api_port: u16,
    base_port: u16,
    network: Option<LabNetworkArg>,
    no_coordination: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let log_path = dir.join("lab-up.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("lab").arg("--dir").arg(dir).arg("up");
    cmd.arg("--api-port")
        .arg(api_port.to_string())
        .arg("--base-port")
        .arg(base_port.to_string());
    match network {
        Some(LabNetworkArg::Loopback) => {
            cmd.args(["--network", "loopback"]);
        }
        Some(LabNetworkArg::Namespaces) => {
            cmd.args(["--network", "namespaces"]);
        }
        None => {}
    }
    if no_coordination {
        cmd.arg("--no-coordination");
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A new session: closing this terminal must not stop the lab.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the lab in the background")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("`drctl lab up` exited ({status}) before the lab was ready; its log:\n{log}");
        }
        if let Ok(record) = LabRecord::read(dir) {
            if record.owner_pid == pid
                && client
                    .get(format!("{}/healthz", record.api_url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                outln!(
                    "lab running in the background (pid {pid}); API {}",
                    record.api_url
                )?;
                outln!("log: {}; stop it with `drctl lab down`", log_path.display())?;
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the lab was not ready after 300s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn status(dir: &Path, output: OutputFormat) -> anyhow::Result<()> {
    let record = LabRecord::read(dir)?;
    let owner_alive = drctl_lab::process_alive(record.owner_pid, "drctl");
    let control = if owner_alive {
        send_control(record.control_port, &ControlCommand::Status)
            .await
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    } else {
        None
    };
    let clusters: Vec<serde_json::Value> = record
        .clusters
        .iter()
        .map(|c| {
            let running = record.cluster(&c.service, &c.region).is_some_and(|pg| pg.is_running());
            json!({"service": c.service, "region": c.region, "role": c.role, "port": c.port, "running": running,
                   "data_dir": c.data_dir, "via_link_port": c.via_link_port})
        })
        .collect();
    let fronts: Vec<serde_json::Value> = record
        .fronts
        .iter()
        .map(|f| {
            let addresses: Vec<serde_json::Value> = [REGION_A, REGION_B]
                .iter()
                .map(|r| json!({"region": r, "address": record.front(&f.service, r)}))
                .collect();
            json!({"service": f.service, "record": f.record, "front_port": f.front_port,
                   "addresses": addresses})
        })
        .collect();
    let network = match &record.network {
        Some(net) => {
            let net = net.clone();
            let rules = tokio::task::spawn_blocking(move || net.partition_rules())
                .await?
                .unwrap_or_default();
            let t = record.network.as_ref().expect("checked above");
            json!({"kind": "namespaces", "prefix": t.prefix, "network": t.network(),
                   "router": t.router_namespace(),
                   "sites": Site::ALL.iter().map(|s| json!({"site": s.name(), "namespace": t.namespace(*s), "address": t.addr(*s)})).collect::<Vec<_>>(),
                   "partition_rules": rules})
        }
        None => json!({"kind": "loopback"}),
    };
    let report = json!({
        "network": network,
        "dir": record.dir, "owner_pid": record.owner_pid, "owner_running": owner_alive,
        "api_url": record.api_url, "config": record.config_path, "clusters": clusters,
        "dns": {"server": record.dns_server, "zone": record.dns_zone, "key_file": record.dns_key_file},
        "fronts": fronts,
        "etcd": drctl_lab::etcd::member_status(&record).await,
        "link": control.as_ref().map(|c| c["link"].clone()),
        "workload": control.as_ref().map(|c| c["workload"].clone()),
    });
    match output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?)?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = clusters
                .iter()
                .map(|c| {
                    vec![
                        c["service"].as_str().unwrap_or_default().into(),
                        c["region"].as_str().unwrap_or_default().into(),
                        c["role"].as_str().unwrap_or_default().into(),
                        c["port"].to_string(),
                        if c["running"].as_bool() == Some(true) {
                            "running".into()
                        } else {
                            "stopped".into()
                        },
                        c["via_link_port"]
                            .as_u64()
                            .map(|p| format!("via link :{p}"))
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table(
                    &["SERVICE", "REGION", "ROLE", "PORT", "STATE", "REPLICATION"],
                    &rows
                )
            )?;
            outln!(
                "lab process {} ({}); API {}; config {}",
                record.owner_pid,
                if owner_alive {
                    "running"
                } else {
                    "not running: run `drctl lab down` to clean up"
                },
                record.api_url,
                record.config_path.display()
            )?;
            if let Some(c) = control {
                outln!("link: {}; workload: {}", c["link"], c["workload"])?;
            }
            if let Some(t) = &record.network {
                outln!(
                    "network: namespaces {}-* on {} (region-a {}, region-b {}, ctl {}); partitions: {}",
                    t.prefix,
                    t.network(),
                    t.addr(Site::RegionA),
                    t.addr(Site::RegionB),
                    t.addr(Site::Ctl),
                    match network["partition_rules"].as_array() {
                        Some(r) if !r.is_empty() => format!("{} router rules", r.len()),
                        _ => "none".into(),
                    }
                )?;
            } else {
                outln!("network: loopback (a partition resets connections; run as root for namespaces)")?;
            }
            if !record.dns_zone.is_empty() {
                outln!(
                    "DNS: zone {} on {} (key {})",
                    record.dns_zone,
                    record.dns_server,
                    record.dns_key_file.display()
                )?;
            }
            for f in &record.fronts {
                let at = |r| {
                    record
                        .front(&f.service, r)
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                };
                outln!(
                    "front of {}: resolve {}, then connect to {} ({REGION_A}) or {} ({REGION_B})",
                    f.service,
                    f.record,
                    at(REGION_A),
                    at(REGION_B)
                )?;
            }
        }
    }
    Ok(())
}
