//! [`LocalNode`]: the node actions done on drctl's own host, with the
//! drctl-pg calls the failover engine made directly before the seam
//! (`PgCluster` start/stop, `clone_isolated`, `rewind`/`reclone`,
//! `configure_standby`, `adopt_recovered`). Process and file work runs off
//! the async runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drctl_pg::PgCluster;

use crate::node::*;

/// Where a node's restore reads a backup from, verified against the
/// manifest recorded when it was taken. drctl-backup does this
/// (`jobs::restore_recorded_backup`); it sits above this crate (it needs
/// the state store), so whoever builds a [`LocalNode`] hands it in. The
/// agent will hold the same.
#[async_trait]
pub trait BackupSource: Send + Sync {
    /// Restores `backup_id` into `target` (a new or empty directory);
    /// an unverifiable backup is refused. Returns where the backup ends,
    /// in the engine's words.
    async fn restore_verified(
        &self,
        backup_id: &str,
        target: &Path,
    ) -> Result<Option<String>, String>;
}

/// The node actions on this host.
#[derive(Clone, Default)]
pub struct LocalNode {
    /// The engine's server programs; found on first use when not given
    /// (`PG_BIN`, `pg_config`, `/usr/lib/postgresql/*/bin`).
    bin: Option<PathBuf>,
    backups: Option<Arc<dyn BackupSource>>,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("bin", &self.bin)
            .field("backups", &self.backups.is_some())
            .finish()
    }
}

/// A drill clone is ready when it answers; recovery to its consistent
/// point may take a while on a large copy.
pub const CLONE_READY: Duration = Duration::from_secs(120);

impl LocalNode {
    pub fn new() -> Self {
        LocalNode::default()
    }

    /// Uses the server programs in `bin` instead of looking for them.
    pub fn with_bin(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    /// Where [`NodeActions::restore_backup`] reads backups from; without
    /// it a restore is refused as missing.
    pub fn with_backups(mut self, backups: Arc<dyn BackupSource>) -> Self {
        self.backups = Some(backups);
        self
    }

    fn bin(&self) -> Result<PathBuf, NodeError> {
        match &self.bin {
            Some(b) => Ok(b.clone()),
            None => Ok(drctl_pg::find_pg_bin()?),
        }
    }

    fn cluster(&self, node: &NodeRef) -> Result<PgCluster, NodeError> {
        Ok(PgCluster::new(
            node.name.clone(),
            node.data_dir.clone(),
            node.port,
            self.bin()?,
        ))
    }
}

/// Runs process and file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::failed(e.to_string()))?
}

/// Where scratch copies (drill clones, restore tests) go when the config
/// names no root.
pub fn default_scratch_root() -> PathBuf {
    drctl_pg::os::scratch_root()
}

/// This host's name (what a rejoin's plan records).
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The database system identifier in `data_dir`'s `global/pg_control`:
/// its first field, a 64-bit number in the host's byte order. `None` when
/// there is no control file.
pub fn local_system_identifier(data_dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(data_dir.join("global/pg_control")).ok()?;
    Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The claim a restore leaves beside the data directory, naming its
/// operation: a rerun after a crash may wipe what that operation began,
/// never a directory someone else filled.
pub fn restore_claim_path(dir: &Path) -> PathBuf {
    beside_data_dir(dir, ".drctl-recover")
}

/// The mark of a resync (a rewind or a fresh clone) under way, beside the
/// data directory: still there on the next attempt, it says the earlier one
/// died part-way.
pub fn resync_mark_path(dir: &Path) -> PathBuf {
    beside_data_dir(dir, ".drctl-resync")
}

/// Which primary a resync went onto, for its mark: a hash of the
/// connection string (the mark never holds a password).
fn source_key(dsn: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dsn.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Kills what an interrupted resync of `dir` left running: a `pg_rewind`
/// or `pg_basebackup` naming the directory (an agent killed with SIGKILL
/// does not take its children along), so the next attempt is the only one
/// writing there.
fn stop_leftover_copies(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let dir = dir.as_os_str().as_encoded_bytes();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let program = argv
            .first()
            .map(|a| a.rsplit(|b| *b == b'/').next().unwrap_or(a))
            .unwrap_or_default();
        let copies = program == b"pg_rewind" || program == b"pg_basebackup";
        if copies && argv.contains(&dir) {
            tracing::warn!(pid, "stopping what an interrupted resync left running");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The hard fence's mark of a data directory, beside it (inside, a
/// rewind or a copy would carry it to another server): it names the
/// operation that fenced the server, and while it is there
/// [`NodeActions::start`] refuses to start it.
pub fn fence_mark_path(dir: &Path) -> PathBuf {
    beside_data_dir(dir, ".drctl-fenced")
}

/// A file beside data directory `dir`: its name with `suffix` appended
/// (`/var/lib/postgresql/15/main` → `main.drctl-fenced`). Beside, not
/// inside: a rewind or a copy would carry it to another server.
pub fn beside_data_dir(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn read_mark(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|c| c.trim().to_string())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// pg_rewind's own words for a divergence it cannot mend, the only case a
/// fresh clone (which replaces the data directory) is the answer for.
pub fn rewind_diverged(error: &str) -> bool {
    const DIVERGED: &[&str] = &[
        "wal_log_hints",
        "could not find previous WAL record",
        "could not find common ancestor",
        "could not find WAL file",
    ];
    DIVERGED.iter().any(|d| error.contains(d))
        || (error.contains("could not open file")
            && error.contains("pg_wal")
            && error.contains("No such file"))
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[async_trait]
impl NodeActions for LocalNode {
    async fn status(&self, node: &NodeRef) -> Result<NodeStatus, NodeError> {
        // No server programs are needed to look.
        let cluster = PgCluster::new(
            node.name.clone(),
            node.data_dir.clone(),
            node.port,
            PathBuf::new(),
        );
        blocking(move || {
            let pid = cluster.postmaster_pid();
            let dir = &cluster.data_dir;
            Ok(NodeStatus {
                host: this_host(),
                running: pid.is_some(),
                pid,
                initialized: dir.join("PG_VERSION").exists(),
                empty: is_empty_dir(dir),
                dataset_id: local_system_identifier(dir).map(|i| i.to_string()),
                restore_claim: read_mark(&restore_claim_path(dir)),
                fenced_by: read_mark(&fence_mark_path(dir)),
            })
        })
        .await
    }

    async fn stop(&self, node: &NodeRef, mode: StopMode) -> Result<Stopped, NodeError> {
        let cluster = self.cluster(node)?;
        blocking(move || {
            let was_running = cluster.is_running();
            cluster.stop(match mode {
                StopMode::Fast => "fast",
                StopMode::Immediate => "immediate",
            })?;
            Ok(Stopped { was_running })
        })
        .await
    }

    async fn start(&self, req: &StartRequest) -> Result<Started, NodeError> {
        let cluster = self.cluster(&req.node)?;
        let req = req.clone();
        let started = Instant::now();
        blocking(move || {
            let already_running = cluster.is_running();
            let mark = fence_mark_path(&cluster.data_dir);
            if let Some(by) = read_mark(&mark) {
                if !req.unfence {
                    return Err(NodeError::refused(format!(
                        "{} is hard-fenced by operation {by}: it may be an old primary, so only a rejoin (as a standby of the current primary) or a recovery starts it again (`drctl rejoin`)",
                        req.node.name
                    )));
                }
            }
            if !already_running {
                if let Some(r) = &req.recovered {
                    cluster.adopt_recovered_listening(&r.listen)?;
                }
                cluster.start()?;
            }
            if let Some(ms) = req.wait_ready_ms {
                cluster.wait_ready(Duration::from_millis(ms))?;
            }
            let _ = std::fs::remove_file(restore_claim_path(&cluster.data_dir));
            // Lifted only once the server runs as the caller configured it.
            let _ = std::fs::remove_file(&mark);
            let _ = std::fs::remove_file(resync_mark_path(&cluster.data_dir));
            Ok(Started {
                already_running,
                took_ms: started.elapsed().as_millis() as u64,
            })
        })
        .await
    }

    async fn rewind_or_reclone(&self, req: &ResyncRequest) -> Result<Resynced, NodeError> {
        let c = self.cluster(&req.node)?;
        let (source, clone_source) = (req.source.clone(), req.clone_source.clone());
        let started = Instant::now();
        let out = blocking(move || {
            // An earlier resync of this directory that never finished (its
            // agent or drctl killed, the host rebooted) may have left its
            // program running, and a half-rewound directory is nothing to
            // rewind again: stop what is left, then copy afresh.
            let marker = resync_mark_path(&c.data_dir);
            // Resynced onto this same primary already, and not started
            // since (the caller died before it heard): done. A second
            // pg_rewind of a rewound directory would first run crash
            // recovery on it and leave a standby that cannot replay.
            let done_mark = format!("done {} {}", source_key(source.expose()), "{method}");
            if let Some(mark) = read_mark(&marker) {
                for method in [ResyncMethod::Rewind, ResyncMethod::Clone] {
                    if mark == done_mark.replace("{method}", &method.to_string()) {
                        return Ok((method, None));
                    }
                }
            }
            let interrupted = read_mark(&marker).is_some();
            if interrupted {
                stop_leftover_copies(&c.data_dir);
            }
            write_mark(&marker, "resync")?;
            // A clone that stopped half-way left no control file: clone again.
            let half_cloned = !c.data_dir.join("global/pg_control").exists();
            if !half_cloned {
                c.save_config()?;
            }
            let rewound = if half_cloned {
                Err(
                    "the data directory has no control file (a fresh clone stopped half-way)"
                        .to_string(),
                )
            } else if interrupted {
                Err(
                    "an earlier rewind or clone of this directory did not finish: its content is not trusted"
                        .to_string(),
                )
            } else {
                c.rewind(source.expose())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            let (method, rewind_error) = match rewound {
                Ok(()) => (ResyncMethod::Rewind, None),
                Err(e) if half_cloned || interrupted || rewind_diverged(&e) => {
                    // Diverged beyond what pg_rewind can mend (no
                    // wal_log_hints or checksums, missing WAL): start over
                    // from a copy; the old directory is moved aside.
                    c.reclone(clone_source.expose()).map_err(|e2| {
                        NodeError::failed(format!(
                            "pg_rewind failed ({e}) and so did a fresh clone: {e2}"
                        ))
                    })?;
                    (ResyncMethod::Clone, Some(e))
                }
                // Anything else (the primary unreachable, a permission, a
                // full disk) may pass. Refused before it touched anything
                // (no connection to the source): the directory is as it
                // was. Otherwise it may be half-rewound: the mark stays,
                // and the next attempt copies afresh.
                Err(e) => {
                    let untouched = e.contains("could not connect");
                    if untouched {
                        let _ = std::fs::remove_file(&marker);
                    }
                    return Err(NodeError::failed(format!(
                        "pg_rewind failed ({e}); {}: fix the cause and resume",
                        if untouched {
                            "the data directory is untouched"
                        } else {
                            "the directory may be half-rewound, so the next attempt makes a fresh clone (the old directory moved aside)"
                        }
                    )));
                }
            };
            c.restore_config()?;
            // Done, until the server starts (a start removes the mark).
            write_mark(&marker, &done_mark.replace("{method}", &method.to_string()))?;
            Ok((method, rewind_error))
        })
        .await?;
        Ok(Resynced {
            method: out.0,
            rewind_error: out.1,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn configure_standby(
        &self,
        req: &StandbyRequest,
    ) -> Result<StandbyConfigured, NodeError> {
        let c = self.cluster(&req.node)?;
        let primary = req.primary.clone();
        blocking(move || {
            let auto = std::fs::read_to_string(c.data_dir.join("postgresql.auto.conf"))
                .unwrap_or_default();
            let fence_lifted = auto
                .lines()
                .any(|l| l.trim_start().starts_with("default_transaction_read_only"));
            c.configure_standby(primary.expose())?;
            c.forget_saved_config();
            Ok(StandbyConfigured { fence_lifted })
        })
        .await
    }

    async fn restore_backup(&self, req: &RestoreRequest) -> Result<Restored, NodeError> {
        let backups = self.backups.clone().ok_or_else(|| {
            NodeError::new(
                NodeErrorKind::Missing,
                "this node has no backup source to restore from",
            )
        })?;
        let dir = req.node.data_dir.clone();
        let mark = restore_claim_path(&dir);
        let started = Instant::now();
        // A rerun: this operation's own partial restore is wiped and redone.
        if std::fs::read_to_string(&mark).is_ok_and(|m| m.trim() == req.operation_id) {
            let _ = std::fs::remove_dir_all(&dir);
        } else if !is_empty_dir(&dir) {
            return Err(NodeError::refused(format!(
                "{} is not empty",
                dir.display()
            )));
        }
        std::fs::write(&mark, &req.operation_id)
            .map_err(|e| NodeError::failed(format!("writing {}: {e}", mark.display())))?;
        let _ = std::fs::remove_dir(&dir);
        let stop_position = backups
            .restore_verified(&req.backup_id, &dir)
            .await
            .map_err(NodeError::failed)?;
        Ok(Restored {
            backup_id: req.backup_id.clone(),
            stop_position,
            data_dir: dir,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn clone_scratch(&self, req: &CloneRequest) -> Result<ScratchClone, NodeError> {
        let bin = self.bin()?;
        let req = req.clone();
        let started = Instant::now();
        let (data_dir, port) = (req.dir.join("data"), drctl_pg::os::free_port());
        blocking(move || {
            let d = &req.dir;
            // An earlier attempt that died half-way leaves a partial copy:
            // start over (a rerun is a fresh clone).
            let old = PgCluster::new("drill clone", data_dir.clone(), port, bin.clone());
            let _ = old.stop("immediate");
            let _ = std::fs::remove_dir_all(d);
            let root = d.parent().unwrap_or(Path::new("/"));
            drctl_pg::os::prepare_scratch_root(root)?;
            drctl_pg::os::private_run_dir(d)?;
            let cluster = PgCluster::new("drill clone", data_dir.clone(), port, bin);
            let roles: Vec<&str> = req.roles.iter().map(String::as_str).collect();
            cluster.clone_isolated(
                req.source.expose(),
                &req.settings.0,
                &roles,
                req.tls.as_ref(),
            )?;
            Ok(ScratchClone {
                bytes: dir_size(&data_dir),
                dir: req.dir.clone(),
                data_dir,
                port,
                took_ms: started.elapsed().as_millis() as u64,
                tcp: req
                    .tls
                    .as_ref()
                    .map(|t| std::net::SocketAddr::new(t.listen, port)),
            })
        })
        .await
    }

    async fn restore_scratch(
        &self,
        req: &ScratchRestoreRequest,
    ) -> Result<ScratchClone, NodeError> {
        let backups = self.backups.clone().ok_or_else(|| {
            NodeError::new(
                NodeErrorKind::Missing,
                "this node has no backup source to restore from",
            )
        })?;
        let bin = self.bin()?;
        let started = Instant::now();
        let (dir, port) = (req.dir.clone(), drctl_pg::os::free_port());
        let data_dir = dir.join("data");
        let cluster = PgCluster::new("restore test", data_dir.clone(), port, bin);
        let (c, d) = (cluster.clone(), dir.clone());
        blocking(move || {
            // A rerun starts over from a fresh private directory.
            let _ = c.stop("immediate");
            let _ = std::fs::remove_dir_all(&d);
            let root = d.parent().unwrap_or(Path::new("/"));
            drctl_pg::os::prepare_scratch_root(root)?;
            drctl_pg::os::private_run_dir(&d)?;
            Ok(())
        })
        .await?;
        backups
            .restore_verified(&req.backup_id, &data_dir)
            .await
            .map_err(NodeError::failed)?;
        let (c, tls) = (cluster.clone(), req.tls.clone());
        blocking(move || Ok(c.adopt_restored_for(tls.as_ref())?)).await?;
        Ok(ScratchClone {
            bytes: dir_size(&data_dir),
            dir,
            data_dir,
            port,
            took_ms: started.elapsed().as_millis() as u64,
            tcp: req
                .tls
                .as_ref()
                .map(|t| std::net::SocketAddr::new(t.listen, port)),
        })
    }

    async fn teardown_scratch(&self, req: &TeardownRequest) -> Result<TornDown, NodeError> {
        let dir = req.dir.clone();
        if !dir.exists() {
            return Ok(TornDown { removed: false });
        }
        let bin = self.bin()?;
        let port = req.port;
        blocking(move || {
            let cluster = PgCluster::new("drill clone", dir.join("data"), port, bin);
            cluster.stop("immediate")?;
            std::fs::remove_dir_all(&dir).map_err(|e| {
                NodeError::failed(format!("removing the drill clone {}: {e}", dir.display()))
            })?;
            Ok(TornDown { removed: true })
        })
        .await
    }

    async fn hard_fence(&self, req: &HardFenceRequest) -> Result<HardFenced, NodeError> {
        if let Some(node) = &req.node {
            if node.data_dir.join("PG_VERSION").exists() {
                // The mark first: a crash between the two leaves a server
                // that no plain start brings back, never a running one
                // without a mark.
                let mark = fence_mark_path(&node.data_dir);
                if read_mark(&mark).is_none() {
                    write_mark(&mark, &req.operation_id)?;
                }
                let stopped = self.stop(node, req.mode).await?;
                return Ok(HardFenced {
                    method: HardFenceMethod::Stopped,
                    was_running: Some(stopped.was_running),
                    hook: None,
                    host: Some(this_host()),
                });
            }
        }
        match &req.hook {
            Some(argv) => {
                let run = crate::hook::run(
                    argv,
                    &req.service,
                    &req.region,
                    &req.operation_id,
                    Duration::from_millis(req.hook_timeout_ms),
                )
                .await
                .map_err(NodeError::failed)?;
                Ok(HardFenced {
                    method: HardFenceMethod::Hook,
                    was_running: None,
                    hook: Some(run),
                    host: None,
                })
            }
            None => Ok(HardFenced {
                method: HardFenceMethod::None,
                was_running: None,
                hook: None,
                host: None,
            }),
        }
    }
}

/// Writes a mark durably (the fence must survive a power loss of the host).
fn write_mark(path: &Path, content: &str) -> Result<(), NodeError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write()
        .map_err(|e| NodeError::failed(format!("writing the fence mark {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::rewind_diverged;

    #[test]
    fn only_a_divergence_pg_rewind_cannot_mend_leads_to_a_fresh_clone() {
        // pg_rewind 15's own words.
        for diverged in [
            "pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\"",
            "pg_rewind: error: could not find previous WAL record at 0/3000028",
            "pg_rewind: error: could not find common ancestor of the source and target cluster's timelines",
            "pg_rewind: error: could not open file \"/d/pg_wal/000000010000000000000002\": No such file or directory",
        ] {
            assert!(rewind_diverged(diverged), "{diverged}");
        }
        for transient in [
            "pg_rewind: error: could not connect to server: connection refused",
            "pg_rewind: error: source and target clusters are from different systems",
            "pg_rewind: error: could not write file \"/d/base/1/1259\": No space left on device",
            "pg_rewind: error: target server must be shut down cleanly",
            "pg_rewind: error: could not open file \"/d/pg_wal/000000010000000000000002\": Permission denied",
        ] {
            assert!(!rewind_diverged(transient), "{transient}");
        }
    }
}
