//! Small operating-system helpers: running as the `postgres` user with a
//! clean environment, free ports, checking recorded pids before signalling
//! them, and the private scratch root of restore tests and drills.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io_err, ClusterError as LabError, ClusterResult as Result};

/// True when running as root: PostgreSQL refuses root, so its commands run
/// as the `postgres` user through `runuser`.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The only environment a PostgreSQL program drctl starts gets: drctl's
/// own holds AWS keys, API token secrets and DSN passwords, and a
/// postmaster would hand them on to every backend (readable by any
/// superuser in `/proc/PID/environ`). Callers add what a child needs
/// (`PGPASSFILE`, a test's `LD_PRELOAD`) by name.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A command for `program` with an empty environment but `PATH` and the C
/// locale (see [`CHILD_PATH`] for why).
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_clear().env("PATH", CHILD_PATH).env("LC_ALL", "C");
    c
}

/// A command that runs `program` as the user PostgreSQL runs as, with a
/// clean environment ([`clean_command`]).
pub fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = clean_command("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        clean_command(program)
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
    let mut c = clean_command("chown");
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
    let mut c = clean_command("runuser");
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

/// Where restore tests and drills put their scratch clusters when nothing
/// says otherwise: `DRCTL_SCRATCH`, else `drctl-scratch-UID` in the system's
/// temporary directory. Its owner and mode are checked before use
/// ([`prepare_scratch_root`]): a name in /tmp can be taken first by anyone.
pub fn scratch_root() -> PathBuf {
    std::env::var_os("DRCTL_SCRATCH")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("drctl-scratch-{}", nix::unistd::geteuid()))
        })
}

/// Makes sure `root` is drctl's private scratch root, creating it (mode
/// 0711: the postgres user may pass through to its own run directories,
/// nobody may list or add to it) when missing. An existing one must be a
/// real directory (not a symlink), owned by drctl's user and writable by
/// no one else: another local user who made it first could otherwise swap
/// a scratch cluster's files or read them.
pub fn prepare_scratch_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o711).create(root) {
        Ok(()) => {
            // The umask may have taken bits away; set them exactly.
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
                .map_err(io_err(format!("chmod of {}", root.display())))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(LabError::Io {
                what: format!(
                    "creating the scratch root {} (its parent must exist)",
                    root.display()
                ),
                source: e,
            })
        }
    }
    let meta =
        std::fs::symlink_metadata(root).map_err(io_err(format!("reading {}", root.display())))?;
    let me = nix::unistd::geteuid().as_raw();
    let problem = if !meta.file_type().is_dir() {
        Some("is not a directory (a symlink or file)".to_string())
    } else if meta.uid() != me {
        Some(format!(
            "is owned by uid {}, not by drctl's uid {me}",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by others (mode {:o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(LabError::Other(format!(
            "the scratch root {} {problem}; remove it, or point DRCTL_SCRATCH (or --scratch) at a directory only drctl's user can write",
            root.display()
        )));
    }
    check_postgres_can_reach(root)
}

/// Creates a fresh run directory below a checked scratch root, private to
/// the postgres user (mode 0700): a scratch cluster's data, socket and log
/// live in it.
pub fn private_run_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("chmod of {}", dir.display())))?;
    give_to_postgres(dir)
}
