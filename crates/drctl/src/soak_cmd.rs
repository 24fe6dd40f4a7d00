//! `drctl bench soak`: the daemon over many services for a long while, with
//! the region link flapping under the shop workload. Not part of the test
//! run (it takes its duration, ten minutes by default); run it before a
//! release and after changes to the monitor, the guard or the store.
//!
//! It passes when, over the window:
//! - the daemon's memory is flat (resident size at the end within 10 % or
//!   16 MiB of where it stood after warm-up);
//! - no service misses a sample, except while the link is cut and shortly
//!   after (a gap of more than three intervals is a missed stretch);
//! - every warning and error the daemon logs falls in a flap (from the cut
//!   to 30 s after the link is back): anything else is unexplained;
//! - nothing fails over: a flapping link with the primary alive is not a
//!   lost region, and the guard must not act on it.
//!
//! Exit status 0 when it passes, 1 with the findings otherwise.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use drctl_lab::{Lab, LabService, LabSpec, REGION_A, REGION_B};
use drctl_store::states::MonitorStatus;
use serde_json::{json, Value};

use crate::bench_cmd::{cpu_ticks, rss_kib, served_status, services_config, start_serve};
use crate::cli::{Layout, OutputFormat, SoakArgs};
use crate::output::outln;

/// After a link comes back, warnings are still the flap's for this long
/// (the standby reconnects and catches up; breaches end).
const FLAP_TAIL: TimeDelta = TimeDelta::seconds(30);
const WARM_UP: Duration = Duration::from_secs(30);
/// Memory is flat when it grew by less than this share or this much.
const RSS_SLACK_SHARE: f64 = 0.10;
const RSS_SLACK_MIB: f64 = 16.0;

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    if args.services == 0 {
        anyhow::bail!("--services must be at least 1");
    }
    let started = Instant::now();
    let progress = |m: &str| eprintln!("[{:>6.1}s] {m}", started.elapsed().as_secs_f64());
    let mut spec = LabSpec::for_tests(
        args.dir.join("lab"),
        vec![LabService::new("bench", "hot", "shop.orders")],
    );
    spec.max_connections = (4 * args.services as u32 + 100).max(200);
    let lab = Lab::up(spec, progress)
        .await
        .context("starting the soak lab")?;
    let result = soak(&args, &lab, started).await;
    lab.link().restore();
    progress("stopping the soak lab");
    tokio::task::spawn_blocking(move || lab.teardown()).await??;
    let passed = result?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn soak(args: &SoakArgs, lab: &Lab, started: Instant) -> anyhow::Result<bool> {
    let n = args.services;
    let progress = |m: &str| eprintln!("[{:>6.1}s] {m}", started.elapsed().as_secs_f64());
    let (primary, standby) = (
        lab.cluster("bench", REGION_A),
        lab.cluster("bench", REGION_B),
    );
    let api_port = drctl_lab::free_port();
    let config = services_config(
        n,
        Layout::Separate,
        &primary,
        &standby,
        "soak-state.db",
        api_port,
    );
    let run_dir = args.dir.join("run");
    progress(&format!("starting `drctl serve` with {n} services"));
    let (daemon, api, client) = start_serve(&run_dir, &config, api_port, &["--log-json"]).await?;
    let pid = daemon.0.id();
    progress(&format!(
        "warming up for {}",
        humantime::format_duration(WARM_UP)
    ));
    tokio::time::sleep(WARM_UP).await;

    let window: Duration = args.duration.into();
    let (every, cut_for): (Duration, Duration) = (args.flap_every.into(), args.flap_for.into());
    let ticks_per_sec =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let (t0, from, cpu0) = (Instant::now(), Utc::now(), cpu_ticks(pid)?);
    let mut rss: Vec<(f64, f64)> = Vec::new();
    let mut flaps: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut next_flap = every;
    let mut next_rss = Duration::ZERO;
    progress(&format!(
        "soaking for {}: link cut for {} every {}",
        humantime::format_duration(window),
        humantime::format_duration(cut_for),
        humantime::format_duration(every)
    ));
    while t0.elapsed() < window {
        let now = t0.elapsed();
        if now >= next_rss {
            rss.push((now.as_secs_f64(), rss_kib(pid) as f64 / 1024.0));
            next_rss += Duration::from_secs(10);
        }
        // The last cut ends well before the window does, so the end is
        // measured on a healed link.
        if now >= next_flap && now + cut_for + Duration::from_secs(45) < window {
            let cut_at = Utc::now();
            lab.link().cut();
            progress(&format!("link cut ({} so far)", flaps.len() + 1));
            tokio::time::sleep(cut_for).await;
            lab.link().restore();
            flaps.push((cut_at, Utc::now()));
            next_flap += every;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let until = Utc::now();
    let secs = t0.elapsed().as_secs_f64();
    let cpu_share = (cpu_ticks(pid)? - cpu0) as f64 / ticks_per_sec / secs;
    rss.push((secs, rss_kib(pid) as f64 / 1024.0));
    let statuses: Value = client
        .get(format!("{api}/api/v1/rpo-rto"))
        .send()
        .await?
        .json()
        .await?;
    let ok_at_end = statuses["services"].as_array().map_or(0, |s| {
        s.iter()
            .filter(|s| served_status(s) == Some(MonitorStatus::Ok))
            .count()
    });
    progress("stopping the daemon (it flushes its last samples)");
    drop(daemon);

    let in_flap = |t: DateTime<Utc>| {
        flaps
            .iter()
            .any(|(a, b)| t >= *a - TimeDelta::seconds(1) && t <= *b + FLAP_TAIL)
    };
    let store = drctl_store::Store::open(&format!(
        "sqlite://{}",
        run_dir.join("soak-state.db").display()
    ))
    .await?;
    let interval = TimeDelta::seconds(1);
    let (mut samples, mut missed_in_flaps, mut missed_outside) = (0usize, 0i64, 0i64);
    let mut gaps_outside: Vec<String> = Vec::new();
    for i in 0..n {
        let service = format!("svc-{i:04}");
        let rows = store
            .lag_samples(&service, from, Some(until), 1_000_000)
            .await?;
        samples += rows.len();
        let mut times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.sampled_at).collect();
        times.sort();
        times.dedup();
        let edges = std::iter::once(from)
            .chain(times.iter().copied())
            .chain(std::iter::once(until));
        let edges: Vec<_> = edges.collect();
        for w in edges.windows(2) {
            let gap = w[1] - w[0];
            if gap <= interval * 3 {
                continue;
            }
            let missed = gap.num_milliseconds() / interval.num_milliseconds() - 1;
            if in_flap(w[0]) || in_flap(w[1]) {
                missed_in_flaps += missed;
            } else {
                missed_outside += missed;
                if gaps_outside.len() < 10 {
                    gaps_outside.push(format!(
                        "{service}: {} from {}",
                        drctl_config::format_secs(gap.num_milliseconds() as f64 / 1e3),
                        w[0].to_rfc3339()
                    ));
                }
            }
        }
    }
    let operations = store.operations(100).await?;
    let operations_in_window: Vec<String> = operations
        .iter()
        .filter(|o| o.started_at >= from)
        .map(|o| format!("{} {} {:?} ({})", o.kind, o.id, o.service, o.status))
        .collect();
    store.close().await;

    // Warnings and errors: each within a flap is explained by it.
    let log = std::fs::read_to_string(run_dir.join("serve.log")).unwrap_or_default();
    let (mut explained, mut unexplained) =
        (0usize, std::collections::BTreeMap::<String, usize>::new());
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let level = entry["level"].as_str().unwrap_or_default();
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        let at = entry["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let Some(at) = at.map(|t| t.with_timezone(&Utc)) else {
            continue;
        };
        if at < from {
            continue;
        }
        if in_flap(at) {
            explained += 1;
        } else {
            let message = entry["fields"]["message"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            *unexplained.entry(format!("{level} {message}")).or_default() += 1;
        }
    }

    let after_warm_up = rss.first().map_or(0.0, |r| r.1);
    let at_end = rss.last().map_or(0.0, |r| r.1);
    let peak = rss.iter().map(|r| r.1).fold(0.0, f64::max);
    let growth = at_end - after_warm_up;
    let memory_flat = growth <= (after_warm_up * RSS_SLACK_SHARE).max(RSS_SLACK_MIB);
    let expected = (n as f64 * secs).round() as i64;
    let passed = memory_flat
        && missed_outside == 0
        && unexplained.is_empty()
        && operations_in_window.is_empty();
    let result = json!({
        "passed": passed,
        "services": n,
        "window_s": secs,
        "flaps": flaps.len(),
        "flap_s": cut_for.as_secs_f64(),
        "daemon_cpu_share_of_one_core": cpu_share,
        "rss_mib_after_warm_up": after_warm_up,
        "rss_mib_at_end": at_end,
        "rss_mib_peak": peak,
        "rss_growth_mib": growth,
        "memory_flat": memory_flat,
        "samples_stored": samples,
        "samples_expected_at_1s": expected,
        "samples_missed_in_flaps": missed_in_flaps,
        "samples_missed_outside_flaps": missed_outside,
        "gaps_outside_flaps": gaps_outside,
        "warnings_in_flaps": explained,
        "warnings_unexplained": unexplained,
        "operations": operations_in_window,
        "services_ok_at_end": ok_at_end,
        "rss_series_mib": rss.iter().map(|(t, m)| json!([t.round(), (m * 10.0).round() / 10.0])).collect::<Vec<_>>(),
    });
    match args.output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&result)?)?,
        OutputFormat::Table => {
            let verdict = if passed { "PASSED" } else { "FAILED" };
            outln!(
                "soak {verdict}: {n} services, {secs:.0} s, {} link cuts of {:.0} s",
                flaps.len(),
                cut_for.as_secs_f64()
            )?;
            outln!("  daemon CPU         {:.1}% of one core", cpu_share * 100.0)?;
            outln!(
                "  daemon memory      {after_warm_up:.1} MiB after warm-up, {at_end:.1} MiB at the end (peak {peak:.1}): {}",
                if memory_flat { "flat" } else { "GROWING" }
            )?;
            outln!(
                "  samples            {samples} stored of {expected} expected; missed {missed_in_flaps} during flaps, {missed_outside} outside"
            )?;
            for g in &gaps_outside {
                outln!("    gap  {g}")?;
            }
            outln!(
                "  warnings/errors    {explained} during flaps, {} unexplained",
                unexplained.values().sum::<usize>()
            )?;
            for (m, c) in &unexplained {
                outln!("    {c}x {m}")?;
            }
            outln!(
                "  operations         {}",
                if operations_in_window.is_empty() {
                    "none (nothing failed over)".into()
                } else {
                    operations_in_window.join(", ")
                }
            )?;
            outln!("  services ok at end {ok_at_end} of {n}")?;
        }
    }
    Ok(passed)
}
