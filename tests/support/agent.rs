//! A real `drctl agent serve` process for the tests: a PKI issued into a
//! directory, the agent spawned from the built binary, its URL read from
//! the one line it prints when ready. Dropped, it gets SIGTERM (the
//! graceful stop it does under systemd) and is waited for.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drctl_agent::{AgentName, ClientTls, Pki, RemoteNode};

/// A PKI in `dir` with one agent, `name`, reachable at 127.0.0.1 and
/// localhost.
pub fn issue_test_pki(dir: &Path, name: &str) -> Pki {
    drctl_agent::issue_pki(
        dir,
        &[AgentName {
            name: name.into(),
            hosts: vec!["127.0.0.1".into(), "localhost".into()],
        }],
        30,
    )
    .unwrap_or_else(|e| panic!("issuing the test PKI in {}: {e}", dir.display()))
}

/// A running agent.
pub struct AgentProcess {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Every line of its log so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AgentProcess {
    /// Starts `drctl agent serve` on a free port of 127.0.0.1 with the
    /// first agent certificate of `pki`, serving `data_dirs` and scratch
    /// copies under `scratch_root`; returns once it says it listens.
    pub fn start(pki: &Pki, data_dirs: &[PathBuf], scratch_root: &Path) -> AgentProcess {
        let files = pki.agents.first().expect("a PKI with an agent");
        AgentProcess::start_as(pki, files, data_dirs, scratch_root)
    }

    /// As [`AgentProcess::start`], with the certificate `files` of `pki`.
    pub fn start_as(
        pki: &Pki,
        files: &drctl_agent::AgentFiles,
        data_dirs: &[PathBuf],
        scratch_root: &Path,
    ) -> AgentProcess {
        AgentProcess::start_on(pki, files, data_dirs, scratch_root, "127.0.0.1:0")
    }

    /// As [`AgentProcess::start_as`], listening on `listen` (a restarted
    /// agent keeps its address).
    pub fn start_on(
        pki: &Pki,
        files: &drctl_agent::AgentFiles,
        data_dirs: &[PathBuf],
        scratch_root: &Path,
        listen: &str,
    ) -> AgentProcess {
        AgentProcess::start_reading(pki, files, data_dirs, scratch_root, listen, None)
    }

    /// As [`AgentProcess::start_on`]; with `config`, the agent reads the
    /// recorded backups through it (`--config`) and can restore them.
    pub fn start_reading(
        pki: &Pki,
        files: &drctl_agent::AgentFiles,
        data_dirs: &[PathBuf],
        scratch_root: &Path,
        listen: &str,
        config: Option<&Path>,
    ) -> AgentProcess {
        let mut cmd = Command::new(crate::drctl_bin());
        cmd.args(["agent", "serve", "--listen", listen])
            .arg("--ca")
            .arg(&pki.ca)
            .arg("--cert")
            .arg(&files.cert)
            .arg("--key")
            .arg(&files.key)
            .arg("--scratch-root")
            .arg(scratch_root);
        for d in data_dirs {
            cmd.arg("--data-dir").arg(d);
        }
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let mut child = cmd
            .env("DRCTL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning drctl agent serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        // Reads the agent's log for the whole run: the ready line goes to
        // the test, every line to the test's output and to `log`.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                kept.lock().unwrap().push(line.clone());
                if let Some(at) = line.find("listening on ") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("drctl agent serve did not say it listens (its log is above)")
            });
        AgentProcess { child, url, log }
    }

    /// Its log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The agent process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// drctl's client of this agent with `tls`.
    pub fn client(&self, tls: &ClientTls) -> RemoteNode {
        RemoteNode::new(&self.url, tls).expect("a RemoteNode for the test agent")
    }
}

impl AgentProcess {
    /// SIGKILL, as a crash of the agent or its host would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd stops it; waits for it to exit and returns how.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // Only a child not yet reaped is signalled: a reaped one's pid may
        // belong to another process by now.
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().expect("waiting for the agent")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A raw HTTPS client of an agent trusting `ca`, presenting `identity`
/// (certificate and key PEM files) when given: for requests RemoteNode
/// would never send.
pub fn raw_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}
