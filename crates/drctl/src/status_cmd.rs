//! `drctl status`: each service's RPO exposure and standby figures, from the
//! daemon's API, or from the state store when the daemon is down.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::cli::{OutputFormat, StatusArgs};
use crate::config_cmd;
use crate::output::{bytes, out, outln, seconds, table};

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = match (&args.api, config_cmd::resolve_path(&args.config)) {
        (_, Ok(path)) => Some(config_cmd::load(&path)?),
        (Some(_), Err(_)) => None,
        (None, Err(e)) => return Err(e),
    };
    let api = args
        .api
        .clone()
        .or_else(|| config.as_ref().map(|c| format!("http://{}", c.api.listen)))
        .expect("either --api or a config");
    let (report, source) = match fetch(&api, args.token.as_deref()).await {
        Ok((report, leader)) => (report, format!("daemon at {api}{leader}")),
        Err(daemon_err) => {
            let Some(config) = &config else {
                return Err(daemon_err.context(format!("cannot reach the daemon at {api}")));
            };
            let report = from_store(config).await.with_context(|| {
                format!("the daemon at {api} is unreachable ({daemon_err:#}) and the state store could not be read")
            })?;
            (
                report,
                format!("state store (daemon at {api} unreachable: last stored samples)"),
            )
        }
    };
    let leases = config.as_ref().map(|c| primary_leases(c));
    let store = config.as_ref().map(|c| state_store(c));
    match args.output {
        OutputFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "source": source,
                "primary_leases": leases,
                "state_store": store,
                "report": report
            }))?
        )?,
        OutputFormat::Table => {
            print_table(&report, &source)?;
            for (what, v) in [("primary leases", &leases), ("state store", &store)] {
                if let Some(v) = v {
                    outln!("({what}: {})", v["summary"].as_str().unwrap_or_default())?;
                }
            }
        }
    }
    Ok(())
}

/// What guards against two writable primaries: etcd's primary leases
/// (`[coordination]`) for the services whose servers have agents, or, in
/// the single-site default, nothing that lets a cut-off primary fence
/// itself. Said plainly, because it decides what a partition can do.
fn primary_leases(config: &drctl_config::Config) -> Value {
    let Some(coord) = &config.coordination else {
        return json!({
            "kind": "none",
            "summary": "none ([coordination] is not set): a primary cut off from drctl cannot fence itself; \
                        an unreachable primary is fenced only by its agent or a fence hook",
        });
    };
    let uncovered: Vec<&str> = config
        .services
        .iter()
        .filter(|s| s.has_datastore() && s.nodes.values().any(|n| n.agent.is_none()))
        .map(|s| s.name.as_str())
        .collect();
    let mut summary = format!(
        "etcd ({} members, lease {}s): a primary cut off from the quorum fences itself before its lease expires",
        coord.etcd.len(),
        coord.lease_ttl.as_secs()
    );
    if !uncovered.is_empty() {
        summary.push_str(&format!(
            "; not covered (a region without an agent): {}",
            uncovered.join(", ")
        ));
    }
    json!({
        "kind": "etcd",
        "members": coord.etcd,
        "lease_s": coord.lease_ttl.as_secs(),
        "uncovered": uncovered,
        "summary": summary,
    })
}

/// Where the operation journal and its evidence live, and what losing a
/// site does to them, said plainly (README, "Where the journal lives").
/// drctl cannot see whether a PostgreSQL store fails over across sites
/// itself, so it says what that takes.
fn state_store(config: &drctl_config::Config) -> Value {
    if config.store.url.expose().starts_with("sqlite:") {
        json!({
            "kind": "sqlite",
            "summary": "one SQLite file on drctl's host: while that host's site is lost, no operation can start or resume",
        })
    } else {
        json!({
            "kind": "postgres",
            "summary": "PostgreSQL: operations outlive the loss of a site only if this store itself fails over across three sites",
        })
    }
}

/// The report, and where the answering daemon stands among several
/// (", the leader" or ", a follower of ID at URL"; empty when unknown).
async fn fetch(api: &str, token: Option<&str>) -> anyhow::Result<(Value, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let get = |path: &str| {
        let req = client.get(format!("{api}{path}"));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    };
    let rpo: Value = get("/api/v1/rpo-rto")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let services: Value = get("/api/v1/services")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let primaries: HashMap<String, Value> = services["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["primary"].clone())))
        .collect();
    let mut rpo = rpo;
    if let Some(list) = rpo["services"].as_array_mut() {
        for s in list {
            let name = s["service"].as_str().unwrap_or_default().to_string();
            s["primary"] = primaries.get(&name).cloned().unwrap_or(Value::Null);
        }
    }
    // Best effort: the figures stand without it.
    let cluster: Option<Value> = match get("/api/v1/cluster").send().await {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        _ => None,
    };
    let standing = match cluster {
        Some(c) if c["this"]["leading"] == json!(true) => ", the leader".to_string(),
        Some(c) if c["leader"].is_object() => format!(
            ", a follower of {} at {}",
            c["leader"]["id"].as_str().unwrap_or("?"),
            c["leader"]["api_url"].as_str().unwrap_or("?")
        ),
        Some(_) => ", a follower (no daemon leads right now)".to_string(),
        None => String::new(),
    };
    Ok((rpo, standing))
}

/// The same shape as the API's report, from the newest stored samples.
async fn from_store(config: &drctl_config::Config) -> anyhow::Result<Value> {
    let store = drctl_store::Store::open(config.store.url.expose()).await?;
    let latest = store.latest_lag_samples().await?;
    let moved: HashMap<String, String> = store
        .cluster_roles()
        .await?
        .into_iter()
        .map(|r| (r.cluster, r.primary_region))
        .collect();
    store.close().await;
    let services: Vec<Value> = config
        .services
        .iter()
        .map(|svc| {
            let standbys: Vec<Value> = latest
                .iter()
                .filter(|s| s.service == svc.name)
                .map(|s| {
                    json!({
                        "region": s.standby_region, "status": s.status,
                        "exposure_s": s.rpo_exposure_us.map(|u| u as f64 / 1e6),
                        "replay_lag_s": s.replay_lag_us.map(|u| u as f64 / 1e6),
                        "byte_lag": s.byte_lag, "wal_receiver": s.wal_receiver, "error": s.error,
                        "sampled_at": s.sampled_at,
                    })
                })
                .collect();
            let best = standbys
                .iter()
                .filter(|s| s["exposure_s"].is_number())
                .min_by(|a, b| a["exposure_s"].as_f64().unwrap_or(f64::MAX).total_cmp(&b["exposure_s"].as_f64().unwrap_or(f64::MAX)));
            json!({
                "service": svc.name, "tier": svc.tier,
                "primary": moved.get(&svc.cluster).unwrap_or(&svc.primary),
                "status": best.map(|b| b["status"].clone()).unwrap_or(json!("unknown")),
                "rpo": {"target_s": svc.targets.rpo.as_secs_f64(), "exposure_s": best.map(|b| b["exposure_s"].clone()), "window_1h": {}},
                "sampled_at": best.map(|b| b["sampled_at"].clone()),
                "error": if standbys.is_empty() { json!("no samples stored") } else { Value::Null },
                "standbys": standbys,
            })
        })
        .collect();
    Ok(json!({ "services": services }))
}

/// The status table's columns. Rows are `[String; N]` of the same `N`, so a
/// row with a cell too many or too few does not compile (a repeated RTO
/// cell once pushed PRIMARY, STANDBY and the lags out from under their
/// headers).
const COLUMNS: [&str; 13] = [
    "SERVICE",
    "TIER",
    "STATUS",
    "RPO TARGET",
    "EXPOSURE",
    "P99 1H",
    "RTO / TARGET",
    "PRIMARY",
    "STANDBY",
    "BYTE LAG",
    "REPLAY LAG",
    "RECEIVER",
    "NOTE",
];

fn print_table(report: &Value, source: &str) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = status_rows(report).into_iter().map(Vec::from).collect();
    out!("{}", table(&COLUMNS, &rows))?;
    outln!("(source: {source})")
}

/// One row per service (its first standby region), then one row per
/// further standby region with only the standby's cells filled.
fn status_rows(report: &Value) -> Vec<[String; COLUMNS.len()]> {
    let mut rows = Vec::new();
    for s in report["services"].as_array().into_iter().flatten() {
        let standbys = s["standbys"].as_array().cloned().unwrap_or_default();
        let first = standbys.first().cloned().unwrap_or(Value::Null);
        let note = s["error"].as_str().unwrap_or_default();
        let lower_bound = s["rpo"]["exposure_is_lower_bound"].as_bool() == Some(true);
        rows.push([
            s["service"].as_str().unwrap_or("?").to_string(),
            s["tier"].as_str().unwrap_or("?").to_string(),
            s["status"].as_str().unwrap_or("?").to_string(),
            seconds(s["rpo"]["target_s"].as_f64()),
            format!(
                "{}{}",
                if lower_bound { ">=" } else { "" },
                seconds(s["rpo"]["exposure_s"].as_f64())
            ),
            seconds(s["rpo"]["window_1h"]["p99_s"].as_f64()),
            format!(
                "{} / {}",
                seconds(s["rto"]["measured_s"].as_f64()),
                seconds(s["rto"]["target_s"].as_f64())
            ),
            s["primary"].as_str().unwrap_or("-").to_string(),
            first["region"].as_str().unwrap_or("-").to_string(),
            bytes(first["byte_lag"].as_i64()),
            seconds(first["replay_lag_s"].as_f64()),
            first["wal_receiver"].as_str().unwrap_or("-").to_string(),
            note.chars().take(100).collect(),
        ]);
        // Further standby regions on their own lines.
        for sb in standbys.iter().skip(1) {
            rows.push([
                String::new(),
                String::new(),
                sb["status"].as_str().unwrap_or("?").to_string(),
                String::new(),
                seconds(sb["exposure_s"].as_f64()),
                String::new(),
                String::new(),
                String::new(),
                sb["region"].as_str().unwrap_or("-").to_string(),
                bytes(sb["byte_lag"].as_i64()),
                seconds(sb["replay_lag_s"].as_f64()),
                sb["wal_receiver"].as_str().unwrap_or("-").to_string(),
                sb["error"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        // A replicated service's WAL archive on a line of its own (a cold
        // service's stands in its standby's place already): its lag is
        // what a restore to a point could reach.
        let archive = &s["wal_archive"];
        let shown = standbys
            .iter()
            .any(|sb| sb["region"] == drctl_monitor::ARCHIVE_STANDBY);
        if archive.is_object() && !shown {
            rows.push([
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                seconds(archive["archive_lag_s"].as_f64()),
                String::new(),
                String::new(),
                String::new(),
                drctl_monitor::ARCHIVE_STANDBY.to_string(),
                String::new(),
                String::new(),
                archive["receiver"].as_str().unwrap_or("-").to_string(),
                archive["last_error"]
                    .as_str()
                    .or(archive["receiver_error"].as_str())
                    .unwrap_or_default()
                    .chars()
                    .take(100)
                    .collect(),
            ]);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str, store: &str) -> drctl_config::Config {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("config/lab.toml"))
            .unwrap()
            .replace(
                "url = \"sqlite://drctl-state.db\"",
                &format!("url = \"{store}\""),
            );
        drctl_config::parse(
            "lab.toml",
            &format!("{text}\n{extra}"),
            &root.join("config"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn status_says_what_guards_against_two_primaries_and_where_the_journal_lives() {
        let single = config("", "sqlite://drctl-state.db");
        let leases = primary_leases(&single);
        assert_eq!(leases["kind"], "none");
        assert!(leases["summary"]
            .as_str()
            .unwrap()
            .contains("cannot fence itself"));
        assert_eq!(state_store(&single)["kind"], "sqlite");

        let leased = config(
            "[coordination]\netcd = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"]\n",
            "postgres://drctl@store.internal/drctl",
        );
        let leases = primary_leases(&leased);
        assert_eq!(leases["kind"], "etcd");
        assert_eq!(leases["lease_s"], 10);
        assert_eq!(state_store(&leased)["kind"], "postgres");
    }

    /// The regression of the repeated RTO cell: each value sits under its
    /// own header, PRIMARY and STANDBY included.
    #[test]
    fn status_table_puts_primary_and_standby_under_their_headers() {
        let report = json!({"services": [{
            "service": "orders", "tier": "hot", "status": "ok",
            "rpo": {"target_s": 5.0, "exposure_s": 0.25, "window_1h": {"p99_s": 1.5}},
            "rto": {"target_s": 60.0, "measured_s": 3.5},
            "primary": "region-a", "error": null,
            "standbys": [
                {"region": "region-b", "status": "ok", "byte_lag": 2048, "replay_lag_s": 0.5, "wal_receiver": "streaming"},
                {"region": "region-c", "status": "lagging", "exposure_s": 9.0, "byte_lag": 10, "wal_receiver": "streaming", "error": "slow"}
            ]
        }]});
        let text = table(
            &COLUMNS,
            &status_rows(&report)
                .into_iter()
                .map(Vec::from)
                .collect::<Vec<_>>(),
        );
        let lines: Vec<&str> = text.lines().collect();
        let at = |h: &str| lines[0].find(h).unwrap();
        assert_eq!(lines[1].find("region-a"), Some(at("PRIMARY")), "{text}");
        assert_eq!(lines[1].find("region-b"), Some(at("STANDBY")), "{text}");
        assert_eq!(lines[1].find("2.0KiB"), Some(at("BYTE LAG")), "{text}");
        assert_eq!(
            lines[1].find("3s 500ms / 1m"),
            Some(at("RTO / TARGET")),
            "{text}"
        );
        assert_eq!(lines[2].find("region-c"), Some(at("STANDBY")), "{text}");
        assert_eq!(lines[2].find("slow"), Some(at("NOTE")), "{text}");
    }
}
