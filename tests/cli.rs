//! The `drctl` binary as users run it: config validation with located
//! errors and exit codes, and the lab's whole life cycle through the CLI
//! (`lab up --detach`, `status`, link controls, `lab down`, cleanup after a
//! crash of `lab up`).

use std::path::Path;
use std::time::{Duration, Instant};

use drctl_tests::{drctl, drctl_bin, drctl_into_closed_pipe};
use serde_json::Value;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn config_validate_accepts_the_shipped_configs() {
    for file in ["config/shop.example.toml", "config/lab.toml"] {
        let (code, out, err) = drctl(&["config", "validate", &repo(file)]);
        assert_eq!(code, 0, "{file}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
    }
}

#[test]
fn config_validate_reports_every_error_located_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prod.toml");
    std::fs::write(
        &path,
        "[[regions]]\nname = \"eu-west\"\n\n[[services]]\nname = \"orders\"\ntier = \"hott\"\nregions = [\"eu-west\"]\nprimary = \"eu-east\"\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let (code, out, err) = drctl(&["config", "validate", &p]);
    assert_eq!(code, 2, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 2, "every error, not only the first: {err}");
    assert!(
        err.contains(&format!("{p}:6:8: services[0] (orders).tier: \"hott\" is not one of hot, warm, cold (did you mean \"hot\"?)")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:8:")),
        "the unknown primary is located: {err}"
    );

    let (code, out, _) = drctl(&["config", "validate", &p, "-o", "json"]);
    assert_eq!(code, 2);
    let json: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"][0]["line"], 6);
    assert_eq!(json["errors"][0]["column"], 8);
    assert_eq!(json["errors"][0]["path"], "services[0] (orders).tier");
}

#[test]
fn config_validate_of_a_missing_file_says_so() {
    let (code, _, err) = drctl(&["config", "validate", "/nonexistent/drctl.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/drctl.toml"), "{err}");
}

/// `drctl status | head -1` once panicked ("failed printing to stdout:
/// Broken pipe") with a backtrace. Every command ends quietly when its
/// reader goes away, whether before the first line or after it.
#[test]
fn commands_exit_quietly_into_a_closed_pipe() {
    let shop = repo("config/shop.example.toml");
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["config", "validate", &shop],
        &["config", "validate", &shop, "-o", "json"],
    ] {
        for lines in [0, 1] {
            let (code, err) = drctl_into_closed_pipe(args, lines);
            assert_eq!(
                code,
                Some(0),
                "`drctl {}` after {lines} line(s): {err}",
                args.join(" ")
            );
            assert!(
                err.is_empty(),
                "`drctl {}` after {lines} line(s) wrote to stderr: {err}",
                args.join(" ")
            );
        }
    }
}

/// Runs a command into a pipe closed before and after its first line: no
/// panic, no backtrace, an exit status of 0 or 141 (cut short by the pipe).
fn assert_quiet_into_a_closed_pipe(args: &[&str]) {
    for lines in [0, 1] {
        let (code, err) = drctl_into_closed_pipe(args, lines);
        let shown = format!("`drctl {}` after {lines} line(s)", args.join(" "));
        assert!(
            !err.contains("panicked") && !err.contains("backtrace") && !err.contains("Broken pipe"),
            "{shown}: {err}"
        );
        assert!(
            matches!(code, Some(0 | 141)),
            "{shown} exited {code:?}: {err}"
        );
    }
}

/// `drctl status` once printed the RTO cell twice: rows had 14 cells under
/// 13 headers, so PRIMARY showed an RTO and STANDBY the primary. Cuts every
/// row at the header's column starts and checks each value is whole and of
/// its column's kind.
fn assert_status_values_sit_under_their_headers(table: &str) {
    let lines: Vec<&str> = table.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("SERVICE"))
        .expect("a header line");
    // Headers are words joined by single spaces ("RPO TARGET"), columns
    // two or more spaces apart: a header starts after such a gap.
    let head: Vec<char> = lines[header].chars().collect();
    let starts: Vec<usize> = (0..head.len())
        .filter(|&i| {
            head[i] != ' ' && (i == 0 || (i >= 2 && head[i - 1] == ' ' && head[i - 2] == ' '))
        })
        .collect();
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(n, &at)| {
            let end = starts.get(n + 1).copied().unwrap_or(head.len());
            head[at..end].iter().collect::<String>().trim().to_string()
        })
        .collect();
    let column = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {name} header in {names:?}:\n{table}"))
    };
    assert_eq!(names.len(), 13, "{names:?}");
    let (tier, rto, primary, standby, byte_lag) = (
        column("TIER"),
        column("RTO / TARGET"),
        column("PRIMARY"),
        column("STANDBY"),
        column("BYTE LAG"),
    );
    let rows: Vec<&str> = lines[header + 1..]
        .iter()
        .copied()
        .take_while(|l| !l.starts_with("(source:"))
        .collect();
    assert!(!rows.is_empty(), "no rows:\n{table}");
    for row in &rows {
        let chars: Vec<char> = row.chars().collect();
        let cell = |i: usize| -> String {
            let end = starts.get(i + 1).copied().unwrap_or(chars.len());
            if i > 0 && starts[i] < chars.len() {
                assert_eq!(
                    chars[starts[i] - 1],
                    ' ',
                    "a value runs into {} from the column before:\n{table}",
                    names[i]
                );
            }
            chars[starts[i].min(chars.len())..end.min(chars.len())]
                .iter()
                .collect::<String>()
                .trim()
                .to_string()
        };
        let cells: Vec<String> = (0..names.len()).map(cell).collect();
        for (name, value) in names.iter().zip(&cells).take(names.len() - 1) {
            assert!(
                !value.contains("  "),
                "two values under {name} ({value:?}):\n{table}"
            );
        }
        if cells[0].is_empty() {
            continue; // a further standby region's line
        }
        assert!(
            ["hot", "warm", "cold"].contains(&cells[tier].as_str()),
            "TIER {:?}:\n{table}",
            cells[tier]
        );
        assert!(
            cells[rto].contains(" / "),
            "RTO / TARGET {:?}:\n{table}",
            cells[rto]
        );
        assert!(
            cells[primary].starts_with("region-"),
            "PRIMARY {:?}:\n{table}",
            cells[primary]
        );
        assert!(
            // A cold service's "standby" is its WAL archive.
            cells[standby].starts_with("region-")
                || cells[standby] == "-"
                || cells[standby] == "wal-archive",
            "STANDBY {:?}:\n{table}",
            cells[standby]
        );
        assert!(
            cells[byte_lag] == "-" || cells[byte_lag].ends_with('B'),
            "BYTE LAG {:?}:\n{table}",
            cells[byte_lag]
        );
        if cells[0] == "orders" {
            assert_eq!(
                (cells[primary].as_str(), cells[standby].as_str()),
                ("region-a", "region-b"),
                "{table}"
            );
        }
    }
}

/// A base port for a CLI lab that does not collide with other tests' labs.
fn base_port(slot: u16) -> u16 {
    // Below the kernel's ephemeral range (32768-60999), where bind(0) never lands.
    20000 + (std::process::id() % 100) as u16 * 100 + slot * 50
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `drctl lab down` on drop, so a test that fails half-way never
/// leaves a detached lab running (its directory is removed with the test's).
struct LabDownOnDrop(String);

impl Drop for LabDownOnDrop {
    fn drop(&mut self) {
        if Path::new(&format!("{}/lab.json", self.0)).exists() {
            let _ = drctl(&["lab", "--dir", &self.0, "down"]);
        }
    }
}

/// `drctl lab up --detach` in a fresh directory on the port slot given;
/// the guard stops it when the test ends, passed or failed.
fn detached_lab(slot: u16) -> (tempfile::TempDir, String, LabDownOnDrop) {
    let tmp = tempfile::Builder::new()
        .prefix("drctl-test-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("lab").display().to_string();
    let base = base_port(slot).to_string();
    let api_port = drctl_lab::free_port().to_string();
    let (code, out, err) = drctl(&[
        "lab",
        "--dir",
        &dir,
        "up",
        "--detach",
        "--base-port",
        &base,
        "--api-port",
        &api_port,
    ]);
    assert_eq!(code, 0, "lab up failed:\n{out}\n{err}");
    let down = LabDownOnDrop(dir.clone());
    (tmp, dir, down)
}

/// The lab's servers: where each listens as seen from here (127.0.0.1, or
/// its region's own address when `lab up`, as root, gave the regions
/// network namespaces), and the cluster, to find its postmaster.
struct LabServers(Vec<(std::net::SocketAddr, drctl_lab::PgCluster)>);

impl LabServers {
    fn of(dir: &str) -> LabServers {
        let record = drctl_lab::LabRecord::read(Path::new(dir)).expect("lab.json");
        LabServers(
            record
                .clusters
                .iter()
                .map(|c| {
                    let at = std::net::SocketAddr::new(record.cluster_host(&c.region), c.port);
                    (at, record.cluster(&c.service, &c.region).unwrap())
                })
                .collect(),
        )
    }

    /// How many accept connections; only while the lab (and so its
    /// network) is up: a namespaced lab's addresses are nobody's after.
    fn answering(&self) -> usize {
        self.0
            .iter()
            .filter(|(at, _)| {
                std::net::TcpStream::connect_timeout(at, Duration::from_secs(2)).is_ok()
            })
            .count()
    }

    /// How many still have a live postmaster.
    fn running(&self) -> usize {
        self.0
            .iter()
            .filter(|(_, c)| c.postmaster_pid().is_some())
            .count()
    }
}

#[test]
fn lab_up_status_link_and_down_through_the_cli() {
    let (_tmp, dir, _down) = detached_lab(0);
    let config = format!("{dir}/drctl.toml");

    // `drctl status` shows both regions' figures once sampling has begun.
    let table = wait_until(
        "status to show orders' exposure",
        Duration::from_secs(60),
        || {
            let (code, out, _) = drctl(&["status", "--config", &config]);
            let orders = out.lines().find(|l| l.starts_with("orders"))?.to_string();
            // SERVICE TIER STATUS RPO-TARGET EXPOSURE …: the exposure column has a figure.
            let exposure = orders.split_whitespace().nth(4).unwrap_or("-");
            (code == 0
                && orders.contains("region-a")
                && orders.contains("region-b")
                && exposure != "-")
                .then_some(out)
        },
    );
    eprintln!("{table}");
    assert!(table.contains("SERVICE"), "a header: {table}");
    assert_status_values_sit_under_their_headers(&table);
    assert_quiet_into_a_closed_pipe(&["status", "--config", &config]);
    assert_quiet_into_a_closed_pipe(&["lab", "--dir", &dir, "status"]);
    for service in ["orders", "inventory", "catalog"] {
        assert!(
            table.lines().any(|l| l.starts_with(service)),
            "{service} missing:\n{table}"
        );
    }
    let (code, out, _) = drctl(&["status", "--config", &config, "-o", "json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).expect("status -o json");
    let orders = &json["report"]["services"][0];
    assert_eq!(orders["service"], "orders");
    assert_eq!(orders["primary"], "region-a");
    assert_eq!(orders["standbys"][0]["region"], "region-b");
    assert!(orders["rpo"]["exposure_s"].is_number(), "{orders}");
    // The lab's one daemon leads, and status says which daemon answered.
    assert!(
        json["source"].as_str().unwrap().ends_with(", the leader"),
        "{}",
        json["source"]
    );

    // Link controls reach the running lab.
    let (code, out, err) = drctl(&["lab", "--dir", &dir, "link", "latency", "100ms"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = drctl(&["lab", "--dir", &dir, "status", "-o", "json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["link"]["latency_ms"], 100);
    assert_eq!(status["owner_running"], true);
    assert!(
        status["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["running"] == true),
        "{status}"
    );
    assert_eq!(drctl(&["lab", "--dir", &dir, "link", "cut"]).0, 0);
    assert_eq!(drctl(&["lab", "--dir", &dir, "link", "restore"]).0, 0);
    assert_eq!(drctl(&["lab", "--dir", &dir, "workload", "pause"]).0, 0);

    // With the daemon gone, status falls back on the state store.
    let servers = LabServers::of(&dir);
    let (code, out, err) = drctl(&["lab", "--dir", &dir, "down"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        servers.running(),
        0,
        "a PostgreSQL of the lab still runs after lab down"
    );
    assert!(!Path::new(&format!("{dir}/lab.json")).exists());
    let (code, out, err) = drctl(&["status", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("state store"),
        "status names its source: {out}"
    );
    assert!(out.lines().any(|l| l.starts_with("orders")), "{out}");
}

#[test]
fn lab_down_cleans_up_after_lab_up_was_killed() {
    let (_tmp, dir, _down) = detached_lab(1);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/lab.json")).unwrap()).unwrap();
    let owner = record["owner_pid"].as_u64().unwrap() as i32;
    let servers = LabServers::of(&dir);
    assert_eq!(servers.answering(), servers.0.len());

    // A crash of `lab up`: no teardown runs, the clusters keep running.
    std::process::Command::new("kill")
        .args(["-9", &owner.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(servers.answering() > 0, "clusters outlive a crashed lab up");
    let (code, out, _) = drctl(&["lab", "--dir", &dir, "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("not running"),
        "lab status notices the dead owner: {out}"
    );

    let (code, out, err) = drctl(&["lab", "--dir", &dir, "down"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stopped PostgreSQL"), "{out}");
    assert_eq!(
        servers.running(),
        0,
        "lab down stopped every cluster of the crashed lab"
    );
    let (code, _, err) = drctl(&["lab", "--dir", &dir, "down"]);
    assert_ne!(code, 0, "a second down has no lab to stop");
    assert!(err.contains("no lab at"), "{err}");
    let _ = drctl_bin();
}

#[test]
fn lab_up_in_the_foreground_tears_down_on_ctrl_c() {
    let tmp = tempfile::Builder::new()
        .prefix("drctl-test-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("lab").display().to_string();
    let base = base_port(2).to_string();
    let api_port = drctl_lab::free_port().to_string();
    let log = tmp.path().join("up.log");
    let mut child = std::process::Command::new(drctl_bin())
        .args([
            "lab",
            "--dir",
            &dir,
            "up",
            "--base-port",
            &base,
            "--api-port",
            &api_port,
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("drctl lab up");
    let _down = LabDownOnDrop(dir.clone());
    let text = wait_until("the lab to be ready", Duration::from_secs(120), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("Ctrl-C here stops the lab").then_some(text)
    });
    // Also in a namespaced lab, whose daemon lives in the control-plane
    // site: 127.0.0.1 here forwards to it.
    assert!(
        text.contains(&format!("http://127.0.0.1:{api_port}/api/v1/rpo-rto")),
        "{text}"
    );
    assert!(
        text.contains("drctl lab link cut"),
        "next commands to try: {text}"
    );
    let servers = LabServers::of(&dir);
    assert_eq!(servers.answering(), servers.0.len());

    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "lab up did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "lab up exits 0 after Ctrl-C: {status}");
    assert!(
        servers.running() == 0,
        "Ctrl-C left a PostgreSQL of the lab running"
    );
    assert!(
        !Path::new(&format!("{dir}/lab.json")).exists(),
        "the lab record is removed"
    );
}
