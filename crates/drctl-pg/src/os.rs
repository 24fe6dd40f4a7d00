//! Small operating-system helpers: running as the `postgres` user, free
//! ports, and checking recorded pids before signalling them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io_err, ClusterError as LabError, ClusterResult as Result};

/// True when running as root: PostgreSQL refuses root, so its commands run
/// as the `postgres` user through `runuser`.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command that runs `program` as the user PostgreSQL runs as.
pub fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs a command to completion; a non-zero exit becomes an error carrying
/// the tail of its output.
pub fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(io_err(format!("starting {what}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        Err(LabError::Command {
            what: what.to_string(),
            detail: format!(
                "{} ({})",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                out.status
            ),
        })
    }
}

/// Makes `dir` (and its parents up to the first existing one) owned by the
/// PostgreSQL user when running as root.
pub fn give_to_postgres(dir: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let mut c = Command::new("chown");
    c.arg("-R").arg("postgres:postgres").arg(dir);
    run(c, &format!("chown of {}", dir.display()))?;
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// Ports come from 20000–32767, below Linux's ephemeral range (32768–60999),
/// so the source port of some outgoing connection cannot take the port
/// between this check and the caller's bind; the kernel's port-0 choice can,
/// and did (tests start many labs and clients side by side). Within one
/// process a counter hands out each port once; processes start at different
/// offsets.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Whether `pid` is alive and its command line mentions `needle` (so a pid
/// recycled by an unrelated process is never signalled).
pub fn process_alive(pid: u32, needle: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle)
        }
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// The direct children of `pid` (from /proc).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                // "pid (comm) state ppid …": comm may hold spaces, so split
                // after its closing parenthesis.
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))
}

/// Fails early, with the fix, when the `postgres` user cannot reach `dir`
/// (e.g. a lab directory under /root).
pub fn check_postgres_can_reach(dir: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", "test", "-x"]).arg(dir);
    if c.status().map(|s| s.success()).unwrap_or(false) {
        Ok(())
    } else {
        Err(LabError::Other(format!(
            "the postgres user cannot enter {}; choose a lab directory it can reach (e.g. --dir /tmp/drctl-lab)",
            dir.display()
        )))
    }
}

/// Where restore tests and drills put their scratch clusters:
/// `DRCTL_SCRATCH`, else `/tmp/drctl-restore-tests` (the postgres user must
/// reach it).
pub fn scratch_root() -> PathBuf {
    std::env::var_os("DRCTL_SCRATCH")
        .map(Into::into)
        .unwrap_or_else(|| PathBuf::from("/tmp/drctl-restore-tests"))
}
