//! `drctl bench monitor`: what the lag monitor costs, measured on a real lab.
//!
//! Builds a lab with one primary/standby pair under the shop workload,
//! declares N services on it, runs `drctl serve` as its own process, and
//! reports over the measured window: the daemon's CPU (share of one core,
//! from /proc), the p99 of one cluster's probe time per tick, and the state
//! store's growth per hour. `--layout shared` puts every service in one
//! cluster (one sampler); `--layout separate` makes each its own cluster
//! (N samplers, N connections per region: the worst case).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use drctl_lab::{Lab, LabService, LabSpec, REGION_A, REGION_B};
use drctl_store::states::MonitorStatus;
use serde_json::json;

use crate::cli::{BenchMonitorArgs, Layout, OutputFormat};
use crate::output::outln;

pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn store_bytes(dir: &Path) -> u64 {
    ["bench-state.db", "bench-state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// A config of `n` hot services on the lab's primary/standby pair, state
/// in `store_file` (relative to the config), the API on `api_port`.
pub(crate) fn services_config(
    n: usize,
    layout: Layout,
    primary: &drctl_lab::PgCluster,
    standby: &drctl_lab::PgCluster,
    store_file: &str,
    api_port: u16,
) -> String {
    let mut config = format!(
        "[store]\nurl = \"sqlite://{store_file}\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\
         [[regions]]\nname = \"{REGION_A}\"\n[[regions]]\nname = \"{REGION_B}\"\n"
    );
    for i in 0..n {
        let cluster = match layout {
            Layout::Shared => "bench".to_string(),
            Layout::Separate => format!("bench-{i:04}"),
        };
        config.push_str(&format!(
            "\n[[services]]\nname = \"svc-{i:04}\"\ntier = \"hot\"\ncluster = \"{cluster}\"\n\
             regions = [\"{REGION_A}\", \"{REGION_B}\"]\nprimary = \"{REGION_A}\"\n\
             [services.postgres.{REGION_A}]\ndsn = \"{}\"\n[services.postgres.{REGION_B}]\ndsn = \"{}\"\n",
            primary.dsn("bench"),
            standby.dsn("bench")
        ));
    }
    config
}

/// Writes `config` into a fresh `run_dir` and runs `drctl serve` on it (its
/// log in `run_dir/serve.log`), waiting until its API answers.
pub(crate) async fn start_serve(
    run_dir: &Path,
    config: &str,
    api_port: u16,
    extra_args: &[&str],
) -> anyhow::Result<(KillOnDrop, String, reqwest::Client)> {
    let _ = std::fs::remove_dir_all(run_dir);
    std::fs::create_dir_all(run_dir)?;
    let config_path = run_dir.join("bench.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(run_dir.join("serve.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--log-level", "warn"])
        .args(extra_args)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let daemon = KillOnDrop(child);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let api = format!("http://127.0.0.1:{api_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(format!("{api}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            bail!(
                "the daemon did not answer; see {}",
                run_dir.join("serve.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((daemon, api, client))
}

/// A `drctl serve` child, sent SIGTERM (a clean stop) when dropped.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

pub async fn run(args: BenchMonitorArgs) -> anyhow::Result<()> {
    let n = args.services;
    if n == 0 {
        bail!("--services must be at least 1");
    }
    let started = Instant::now();
    let progress = |m: &str| eprintln!("[{:>5.1}s] {m}", started.elapsed().as_secs_f64());
    let mut spec = LabSpec::for_tests(
        args.dir.join("lab"),
        vec![LabService::new("bench", "hot", "shop.orders")],
    );
    spec.max_connections = (n as u32 + 100).max(200);
    let lab = Lab::up(spec, progress)
        .await
        .context("starting the bench lab")?;
    let result = measure(&args, &lab, started).await;
    progress("stopping the bench lab");
    tokio::task::spawn_blocking(move || lab.teardown()).await??;
    result
}

async fn measure(args: &BenchMonitorArgs, lab: &Lab, started: Instant) -> anyhow::Result<()> {
    let n = args.services;
    let progress = |m: &str| eprintln!("[{:>5.1}s] {m}", started.elapsed().as_secs_f64());
    let (primary, standby) = (
        lab.cluster("bench", REGION_A),
        lab.cluster("bench", REGION_B),
    );
    let api_port = drctl_lab::free_port();
    let config = services_config(
        n,
        args.layout,
        &primary,
        &standby,
        "bench-state.db",
        api_port,
    );
    let run_dir = args.dir.join("run");
    progress(&format!(
        "starting `drctl serve` with {n} services ({:?} layout)",
        args.layout
    ));
    let (daemon, api, client) = start_serve(&run_dir, &config, api_port, &[]).await?;
    let pid = daemon.0.id();
    progress("warming up for 15s");
    tokio::time::sleep(Duration::from_secs(15)).await;

    let window: Duration = args.duration.into();
    let ticks_per_sec =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let (cpu0, bytes0, t0) = (cpu_ticks(pid)?, store_bytes(&run_dir), Instant::now());
    let since = chrono::Utc::now();
    progress(&format!(
        "measuring for {}",
        humantime::format_duration(window)
    ));
    tokio::time::sleep(window).await;
    let (cpu1, bytes1, elapsed) = (cpu_ticks(pid)?, store_bytes(&run_dir), t0.elapsed());
    let rss = rss_kib(pid);

    let report: serde_json::Value = client
        .get(format!("{api}/api/v1/rpo-rto"))
        .send()
        .await?
        .json()
        .await?;
    let services = report["services"].as_array().cloned().unwrap_or_default();
    let is_unknown = |s: &&serde_json::Value| served_status(s) == Some(MonitorStatus::Unknown);
    let unknown = services.iter().filter(is_unknown).count();
    // The most common reason, so a failed run says why.
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for s in services.iter().filter(is_unknown) {
        let e = s["error"].as_str().unwrap_or("?");
        // Drop the endpoint name so equal causes group together.
        let cause = e
            .split_once(": ")
            .map_or(e, |(_, c)| c)
            .chars()
            .take(120)
            .collect::<String>();
        *reasons.entry(cause).or_default() += 1;
    }
    let top_reason = reasons
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(r, n)| format!("{n}x {r}"));
    drop(daemon);

    // Probe latency and sample counts, from the store the daemon wrote.
    let store = drctl_store::Store::open(&format!(
        "sqlite://{}",
        run_dir.join("bench-state.db").display()
    ))
    .await?;
    let mut probe: Vec<i64> = Vec::new();
    let mut samples = 0usize;
    for i in 0..n {
        let rows = store
            .lag_samples(&format!("svc-{i:04}"), since, None, 100_000)
            .await?;
        samples += rows.len();
        // In the shared layout every member repeats the cluster's probe time.
        if args.layout == Layout::Separate || i == 0 {
            probe.extend(rows.iter().filter_map(|r| r.probe_us));
        }
    }
    store.close().await;
    probe.sort_unstable();
    let pct = |p: f64| {
        probe
            .get(((probe.len() as f64 * p).ceil() as usize).clamp(1, probe.len().max(1)) - 1)
            .copied()
    };

    let secs = elapsed.as_secs_f64();
    let cpu_share = (cpu1 - cpu0) as f64 / ticks_per_sec / secs;
    let growth_per_hour = (bytes1.saturating_sub(bytes0)) as f64 / secs * 3600.0;
    let expected = (n as f64 * secs).round();
    let result = json!({
        "services": n,
        "layout": format!("{:?}", args.layout).to_lowercase(),
        "window_s": secs,
        "daemon_cpu_share_of_one_core": cpu_share,
        "daemon_rss_mib": rss as f64 / 1024.0,
        "probe_p50_ms": pct(0.50).map(|us| us as f64 / 1000.0),
        "probe_p99_ms": pct(0.99).map(|us| us as f64 / 1000.0),
        "probe_max_ms": probe.last().map(|us| *us as f64 / 1000.0),
        "samples_stored": samples,
        "samples_expected_at_1s": expected,
        "services_unknown_at_end": unknown,
        "unknown_reason": top_reason,
        "store_growth_mib_per_hour": growth_per_hour / 1048576.0,
        "store_bytes_per_sample": if samples > 0 { (bytes1.saturating_sub(bytes0)) as f64 / samples as f64 } else { 0.0 },
    });
    match args.output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&result)?)?,
        OutputFormat::Table => {
            outln!(
                "monitor benchmark: {n} services, {:?} layout, {secs:.0}s window",
                args.layout
            )?;
            outln!(
                "  daemon CPU            {:.1}% of one core",
                cpu_share * 100.0
            )?;
            outln!("  daemon RSS            {:.0} MiB", rss as f64 / 1024.0)?;
            outln!(
                "  probe time per tick   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                result["probe_p50_ms"].as_f64().unwrap_or(f64::NAN),
                result["probe_p99_ms"].as_f64().unwrap_or(f64::NAN),
                result["probe_max_ms"].as_f64().unwrap_or(f64::NAN)
            )?;
            outln!("  samples stored        {samples} of {expected} expected at 1/s")?;
            outln!(
                "  unknown at the end    {unknown}{}",
                top_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )?;
            outln!(
                "  store growth          {:.1} MiB/hour ({:.0} bytes/sample)",
                growth_per_hour / 1048576.0,
                result["store_bytes_per_sample"].as_f64().unwrap_or(0.0)
            )?;
        }
    }
    Ok(())
}

/// A service's status as `/api/v1/rpo-rto` serves it, read back into its
/// enum (`None` when missing or unknown to this build).
pub(crate) fn served_status(service: &serde_json::Value) -> Option<MonitorStatus> {
    service["status"].as_str()?.parse().ok()
}
