//! The lease's dead man's switch: `drctl agent watchdog`, a second process
//! beside the agent that fences the server at the deadline the lease
//! holder last wrote, so a dead or hung agent cannot leave a writable
//! primary behind once its lease may have expired.
//!
//! Why a second process: the holder ([`crate::lease`]) fences its server
//! when it cannot renew, but only while it runs. An agent killed (OOM, a
//! crash loop, a bad upgrade) stops renewing, etcd expires the lease, and
//! the engine may promote another region while the old primary, cut off
//! from drctl, still takes its region's writes. Patroni closes the same
//! hole with the kernel's `/dev/watchdog`; this needs no device and no
//! reboot: it stops only the server.
//!
//! **The deadline file** `<data_dir>.drctl-lease-deadline`, beside the data
//! directory like the fence mark, is one JSON line the holder replaces
//! (write, then rename) after every answered renewal: `armed` with the
//! deadline on `CLOCK_BOOTTIME` in milliseconds and the boot's id (the clock
//! starts again after a reboot), or `released` when the server is no
//! longer a writable primary. `CLOCK_BOOTTIME`, not the wall
//! clock: a wall-clock step moves neither this clock nor the holder's, and
//! unlike `CLOCK_MONOTONIC` it also counts a suspended VM's sleep, so a
//! host resumed after the deadline fences at once.
//!
//! **The watchdog** reads the file every [`POLL`]; once the deadline plus
//! [`GRACE`] (the holder fences itself at the deadline; the grace lets a
//! live holder do it) has passed and the server is still a writable
//! primary, it hard-fences it as the holder would. The holder's margin
//! (at least a second) is what remains before etcd can expire the lease.
//! One watchdog per data directory: it holds an exclusive `flock` on
//! `<data_dir>.drctl-watchdog.lock`, and a second one exits at once. The
//! agent starts it and starts it again whenever the lock is free (it died).
//! It outlives a killed agent on purpose (its own process, not killed with
//! the agent's); it exits when the agent that started it is gone and it has
//! nothing left to guard: the file says `released`, or the deadline passed
//! and the server is no longer a writable primary; or when the data
//! directory is gone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drctl_node::{NodeActions, NodeRef};
use serde::{Deserialize, Serialize};

/// How often the watchdog reads the deadline file.
pub const POLL: Duration = Duration::from_millis(100);
/// How long after the deadline the watchdog fences, so a live holder does
/// it itself (well within the holder's margin of at least a second).
pub const GRACE: Duration = Duration::from_millis(250);

/// What the holder last wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Deadline {
    /// The server must be fenced by then (`CLOCK_BOOTTIME`, ms, of the
    /// boot `boot_id`: the clock starts again at 0 after a reboot, so a
    /// deadline of another boot counts as passed).
    Armed {
        until_boottime_ms: u64,
        boot_id: String,
    },
    /// The server is not a writable primary: nothing to guard.
    Released,
}

impl Deadline {
    /// Armed `left` from now, on this boot.
    pub fn armed_in(left: Duration) -> Deadline {
        Deadline::Armed {
            until_boottime_ms: boottime_ms() + left.as_millis() as u64,
            boot_id: boot_id(),
        }
    }

    /// How long ago the deadline passed (`Some(0)` at it), or `None` while
    /// it is ahead or when released.
    pub fn passed_by(&self) -> Option<Duration> {
        match self {
            Deadline::Armed {
                until_boottime_ms,
                boot_id: of_boot,
            } => {
                if *of_boot != boot_id() {
                    return Some(Duration::ZERO);
                }
                boottime_ms()
                    .checked_sub(*until_boottime_ms)
                    .map(Duration::from_millis)
            }
            Deadline::Released => None,
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty when unreadable.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `<data_dir>.drctl-lease-deadline`.
pub fn deadline_path(data_dir: &Path) -> PathBuf {
    drctl_node::beside_data_dir(data_dir, ".drctl-lease-deadline")
}

/// `<data_dir>.drctl-watchdog.lock`.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    drctl_node::beside_data_dir(data_dir, ".drctl-watchdog.lock")
}

/// Milliseconds on `CLOCK_BOOTTIME` (monotonic, counts suspend).
pub fn boottime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000)
        // Linux always has it; were it missing, "now = 0" would never
        // reach a deadline written as 0 + something, so the holder's own
        // fence stays the only one, as without a watchdog.
        .unwrap_or(0)
}

/// Writes `deadline` for `data_dir` atomically (a reader sees the old or the
/// new line, never half of one).
pub fn write_deadline(data_dir: &Path, deadline: &Deadline) -> std::io::Result<()> {
    let path = deadline_path(data_dir);
    let tmp = path.with_extension("tmp");
    let line = serde_json::to_string(deadline).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, line)?;
    std::fs::rename(&tmp, &path)
}

/// What the file says; `None` when it is missing or unreadable.
pub fn read_deadline(data_dir: &Path) -> Option<Deadline> {
    let text = std::fs::read_to_string(deadline_path(data_dir)).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Whether a watchdog holds `data_dir`'s lock now.
pub fn running(data_dir: &Path) -> bool {
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .open(lock_path(data_dir))
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        // Cannot even open the lock file: starting one would fail alike.
        Err(_) => return true,
    };
    matches!(
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

/// The pid of `data_dir`'s watchdog, as it wrote it into its lock file
/// (`None`: none runs, or it is not written yet).
pub fn pid(data_dir: &Path) -> Option<u32> {
    if !running(data_dir) {
        return None;
    }
    std::fs::read_to_string(lock_path(data_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The exclusive lock of `data_dir`'s watchdog; `None` when another holds it.
fn lock(data_dir: &Path) -> std::io::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(data_dir))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(held)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(std::io::Error::from(e)),
    }
}

/// How the agent starts watchdogs: this program with `agent watchdog`.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The drctl binary (the agent's own).
    pub program: PathBuf,
    /// `--pg-bin`, passed on.
    pub pg_bin: Option<PathBuf>,
}

impl Launcher {
    /// Starts `data_dir`'s watchdog unless one runs. Its output goes where
    /// the agent's does.
    pub fn ensure(&self, data_dir: &Path) {
        if running(data_dir) {
            return;
        }
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(["agent", "watchdog", "--data-dir"])
            .arg(data_dir)
            .arg("--parent")
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::null());
        if let Some(bin) = &self.pg_bin {
            cmd.arg("--pg-bin").arg(bin);
        }
        match cmd.spawn() {
            Ok(child) => {
                tracing::info!(data_dir = %data_dir.display(), pid = child.id(), "lease watchdog started");
                // Reaped by a thread, so it leaves no zombie when it exits
                // while the agent runs.
                std::thread::spawn(move || {
                    let mut child = child;
                    let _ = child.wait();
                });
            }
            Err(e) => {
                tracing::error!(data_dir = %data_dir.display(), error = %e, "cannot start the lease watchdog")
            }
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Another watchdog holds the lock.
    AlreadyRunning,
    /// The agent is gone and nothing is left to guard.
    NothingToGuard,
    /// The data directory is gone.
    DataDirGone,
}

/// The watchdog's loop for `data_dir` (see the module doc). `parent`: the
/// agent that started it.
pub async fn run(
    data_dir: PathBuf,
    node: Arc<dyn NodeActions>,
    parent: u32,
) -> std::io::Result<Exit> {
    let Some(mut held) = lock(&data_dir)? else {
        return Ok(Exit::AlreadyRunning);
    };
    {
        // Who runs, for `lab down` and for people: the pid in the lock file.
        use std::io::{Seek, Write};
        held.set_len(0)?;
        held.rewind()?;
        write!(held, "{}", std::process::id())?;
    }
    let node_ref = NodeRef::new(data_dir.display().to_string(), &data_dir, 0);
    tracing::info!(data_dir = %data_dir.display(), parent, "lease watchdog guarding");
    loop {
        if !data_dir.exists() {
            return Ok(Exit::DataDirGone);
        }
        let deadline = read_deadline(&data_dir);
        let agent_gone = std::os::unix::process::parent_id() != parent;
        match deadline.as_ref().and_then(Deadline::passed_by) {
            Some(late) if late >= GRACE => {
                if crate::lease::is_writable_primary(node.as_ref(), &node_ref).await {
                    let reason = crate::lease::FenceReason::Watchdog { late };
                    crate::lease::fence_now(node.as_ref(), &node_ref, "lease watchdog", &reason)
                        .await;
                } else if agent_gone {
                    return Ok(Exit::NothingToGuard);
                }
            }
            Some(_) => {}
            None => {
                let armed = matches!(deadline, Some(Deadline::Armed { .. }));
                if agent_gone && !armed {
                    return Ok(Exit::NothingToGuard);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_file_round_trips_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("main");
        std::fs::create_dir(&data).unwrap();
        assert_eq!(read_deadline(&data), None);
        let armed = Deadline::armed_in(Duration::from_secs(8));
        write_deadline(&data, &armed).unwrap();
        assert_eq!(read_deadline(&data), Some(armed.clone()));
        assert_eq!(armed.passed_by(), None);
        let Deadline::Armed {
            until_boottime_ms, ..
        } = armed
        else {
            unreachable!()
        };
        let of_another_boot = Deadline::Armed {
            until_boottime_ms,
            boot_id: "another".into(),
        };
        assert_eq!(
            of_another_boot.passed_by(),
            Some(Duration::ZERO),
            "a deadline of another boot has passed"
        );
        assert!(Deadline::armed_in(Duration::ZERO).passed_by().is_some());
        write_deadline(&data, &Deadline::Released).unwrap();
        assert_eq!(read_deadline(&data), Some(Deadline::Released));
        assert_eq!(
            std::fs::read_to_string(deadline_path(&data)).unwrap(),
            r#"{"state":"released"}"#
        );
        assert!(deadline_path(&data).ends_with("main.drctl-lease-deadline"));
    }

    #[test]
    fn one_watchdog_per_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("main");
        std::fs::create_dir(&data).unwrap();
        assert!(!running(&data));
        let held = lock(&data).unwrap().expect("the lock is free");
        assert!(running(&data));
        assert!(lock(&data).unwrap().is_none());
        drop(held);
        assert!(!running(&data));
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(boottime_ms() >= a + 20);
    }
}
