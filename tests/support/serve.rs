//! `drctl serve` as a real process (so it can be killed with SIGKILL, paused
//! with SIGSTOP, or made to abort at a step boundary through
//! `DRCTL_FAULT_CRASH_AT`), in this namespace or inside a lab site.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drctl_lab::netns::{NetnsTopology, Site};
use serde_json::{json, Value};

use crate::{drctl_bin, process_stopped, wait_for};

/// One `drctl serve` process; killed on drop.
pub struct Serve {
    child: Child,
    /// The API's base URL, as the daemon logged it.
    pub api: String,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `drctl serve --config CONFIG` in this namespace, its log
    /// beside the config as `NAME.log`, and waits until it serves.
    pub async fn start(config: &Path, name: &str, env: &[(&str, &str)]) -> Serve {
        Serve::start_in(None, config, name, env).await
    }

    /// As [`Serve::start`], inside `site` of `net` when given (its API is
    /// then reachable only from that site).
    pub async fn start_in(
        site: Option<(&NetnsTopology, Site)>,
        config: &Path,
        name: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        let log = config.with_file_name(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match site {
            Some((net, site)) => net
                .command(site, drctl_bin())
                .unwrap_or_else(|e| panic!("drctl serve in {}: {e}", site.name())),
            None => Command::new(drctl_bin()),
        };
        let child = cmd
            .args(["serve", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .env("DRCTL_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting drctl serve");
        let mut serve = Serve {
            child,
            api: String::new(),
            log,
        };
        serve.api = wait_for(&format!("{name} to serve"), Duration::from_secs(30), || {
            let text = serve.log_text();
            async move {
                text.lines()
                    .find_map(|l| l.strip_prefix("drctl serving "))
                    .and_then(|l| l.split_whitespace().next())
                    .map(str::to_string)
            }
        })
        .await;
        serve
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /api/v1/cluster` as this daemon answers it.
    pub async fn cluster(&self) -> Option<Value> {
        reqwest::get(format!("{}/api/v1/cluster", self.api))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// Whether it leads now, as its API says (from this namespace only).
    pub async fn leading(&self) -> bool {
        self.cluster()
            .await
            .is_some_and(|c| c["this"]["leading"] == json!(true))
    }

    /// Whether it has taken up the leader's duties, as its log says (any
    /// namespace).
    pub fn took_up_leading(&self) -> bool {
        self.log_text().contains("taking up the leader's duties")
    }

    /// Waits (polling every 20 ms, for the instant) until it has aborted
    /// at `crash` (`DRCTL_FAULT_CRASH_AT`), which its log must say; when.
    pub async fn aborted_at(&mut self, crash: &str, timeout: Duration) -> std::time::Instant {
        let deadline = std::time::Instant::now() + timeout;
        while !self.exited() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for the daemon to die at {crash}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let died = std::time::Instant::now();
        assert!(
            self.log_text().contains(&format!("aborting at {crash}")),
            "{crash}: {}",
            self.log_text()
        );
        died
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Whether the kernel has the process stopped (state `T`).
    pub fn stopped(&self) -> bool {
        process_stopped(self.pid())
    }

    /// SIGTERM and wait: a clean stop gives the lease back.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
