//! A PostgreSQL cluster drctl runs itself — the lab's clusters and the
//! scratch clusters of restore tests and drills: initdb, configuration,
//! start, stop, crash, cloning a streaming standby with `pg_basebackup`, and
//! adopting a directory restored from a backup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::conn::ChildConnection;
use crate::os::{check_postgres_can_reach, ensure_dir, give_to_postgres, pg_command, run};
use crate::{io_err, ClusterError as LabError, ClusterResult as Result};

/// Where the PostgreSQL server binaries are: `PG_BIN`, else `pg_config
/// --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_pg_bin() -> Result<PathBuf> {
    find_bin_dir(&["initdb", "pg_ctl"], "initdb/pg_ctl").map_err(LabError::PgBinMissing)
}

/// Where the PostgreSQL client programs a backup runs are
/// (`pg_basebackup`), looked for as [`find_pg_bin`] does: a host that only
/// takes backups needs the client package, not the server.
pub fn find_pg_client_bin() -> Result<PathBuf> {
    find_bin_dir(&["pg_basebackup"], "pg_basebackup").map_err(LabError::PgClientMissing)
}

/// The first directory holding all of `programs`; else why not.
fn find_bin_dir(programs: &[&str], what: &str) -> std::result::Result<PathBuf, String> {
    let has_tools = |d: &Path| programs.iter().all(|p| d.join(p).is_file());
    if let Ok(dir) = std::env::var("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(format!("PG_BIN={} has no {what}", dir.display()))
        };
    }
    let mut pg_config = crate::os::clean_command("pg_config");
    if let Some(path) = std::env::var_os("PATH") {
        pg_config.env("PATH", path);
    }
    if let Ok(out) = pg_config.arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or_else(|| {
        format!("no {what} in PG_BIN, pg_config --bindir or /usr/lib/postgresql/*/bin")
    })
}

/// Where a server recovered for the connection `dsn` listens: the DSN's
/// host when it is an IP literal, else every address (`*`).
pub fn listen_address_of(dsn: &str) -> String {
    use std::str::FromStr;
    sqlx::postgres::PgConnectOptions::from_str(dsn)
        .ok()
        .and_then(|o| o.get_host().parse::<std::net::IpAddr>().ok())
        .map_or_else(|| "*".to_string(), |ip| ip.to_string())
}

/// How a scratch cluster (a drill's clone, a restore test's copy) is reached
/// when the drctl that asked for it runs on another host, through that
/// host's agent: over TCP on `listen`, with TLS both ways and no password.
/// The copy presents the agent's own server certificate and admits a
/// client only by a certificate signed by `ca` whose common name is
/// `client_cn` (drctl's, as the agent saw it), mapped to the roles drctl
/// connects as: the same bar as the agent's own API, so that a drill
/// resumed by another daemon (another host) still gets in. No `trust`, no
/// password anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScratchTls {
    pub listen: std::net::IpAddr,
    pub client_cn: String,
    /// The server certificate and key (PEM) the copy presents.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed drctl's client certificate.
    pub ca: PathBuf,
}

/// Whether a cluster was created as a primary or cloned as a standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
}

/// Makes the next start of the data directory `data_dir` (restored from a
/// base backup) a point-in-time recovery: WAL files read from `wal_dir`,
/// where drctl staged them from the archive (the server needs no access to
/// the object store), along `timeline`, replay stopping as `stop` says, then
/// promotion. The settings are appended to `postgresql.auto.conf` (an
/// earlier block of drctl's replaced), the rest of the restored
/// configuration kept; `recovery.signal` is written.
pub fn write_recovery_settings(
    data_dir: &Path,
    wal_dir: &Path,
    timeline: u32,
    stop: &RecoveryStop,
) -> Result<()> {
    const BEGIN: &str = "# --- drctl point-in-time recovery ---\n";
    // Both go into a setting between single quotes and a shell command
    // between double quotes: nothing that could end either.
    let dir = wal_dir.display().to_string();
    if !dir.starts_with('/')
        || dir
            .chars()
            .any(|c| matches!(c, '\'' | '"' | '\\' | '$' | '`' | '%' | '\n'))
    {
        return Err(LabError::Other(format!(
            "{dir:?} cannot be named in restore_command: use an absolute path without quotes, '$', '`', '%' or backslashes"
        )));
    }
    let mut conf = format!(
        "{BEGIN}restore_command = 'cp \"{dir}/%f\" \"%p\"'\n\
         recovery_target_timeline = '{timeline}'\n\
         recovery_target_action = 'promote'\n"
    );
    match stop {
        RecoveryStop::Time(at) => {
            if at.is_empty()
                || !at
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | ' ' | '.' | '+'))
            {
                return Err(LabError::Other(format!(
                    "{at:?} is not a recovery target time"
                )));
            }
            conf.push_str(&format!(
                "recovery_target_time = '{at}'\nrecovery_target_inclusive = on\n"
            ));
        }
        RecoveryStop::Lsn(lsn) => conf.push_str(&format!(
            "recovery_target_lsn = '{lsn}'\nrecovery_target_inclusive = on\n"
        )),
        RecoveryStop::EndOfWal => {}
    }
    let auto = data_dir.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    if let Some(at) = text.find(BEGIN) {
        text.truncate(at);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&conf);
    std::fs::write(&auto, text).map_err(io_err(format!("writing {}", auto.display())))?;
    std::fs::write(data_dir.join("recovery.signal"), "").map_err(io_err(format!(
        "writing recovery.signal in {}",
        data_dir.display()
    )))
}

/// Where a point-in-time recovery stops ([`PgCluster::prepare_recovery`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryStop {
    /// After the last commit at or before this time on the primary's clock,
    /// as PostgreSQL reads a timestamp (`2026-12-07 14:03:11.250349+00`).
    Time(String),
    /// After the record at this position.
    Lsn(crate::Lsn),
    /// At the end of the WAL staged.
    EndOfWal,
}

/// A PostgreSQL cluster run as the `postgres` user, reached on `host`
/// (127.0.0.1 unless told otherwise: a lab region in its own network
/// namespace is reached on the region's address).
#[derive(Clone, Debug)]
pub struct PgCluster {
    pub name: String,
    pub data_dir: PathBuf,
    pub port: u16,
    pub bin: PathBuf,
    pub host: std::net::IpAddr,
}

/// Settings every lab cluster gets. Replication reacts within a second or
/// two (a lab is for watching things happen), and the socket lives beside
/// the data directory (never in /var/run/postgresql, where labs would
/// collide; never inside it, where pg_rewind would try to copy it).
fn lab_settings(port: u16, data_dir: &Path, max_connections: u32) -> String {
    format!(
        "\n# --- drctl lab ---\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         max_connections = {max_connections}\n\
         shared_buffers = 32MB\n\
         wal_level = replica\n\
         max_wal_senders = 10\n\
         max_replication_slots = 10\n\
         wal_keep_size = 512MB\n\
         hot_standby = on\n\
         hot_standby_feedback = on\n\
         # pg_rewind needs it to rejoin an old primary as a standby.\n\
         wal_log_hints = on\n\
         wal_receiver_status_interval = 1s\n\
         wal_retrieve_retry_interval = 1s\n\
         wal_sender_timeout = 10s\n\
         wal_receiver_timeout = 10s\n\
         checkpoint_timeout = 5min\n\
         # The lab's tables only grow; autovacuum's own commits would blur the\n\
         # idle-primary demonstration (a replay timestamp aging while nothing is lost).\n\
         autovacuum = off\n\
         log_min_messages = warning\n\
         log_connections = off\n",
        socket_dir(data_dir).display()
    )
}

/// Where a cluster drctl runs keeps its Unix socket: `sockets/` beside its
/// data directory (shared by a lab's clusters: the ports differ), owned by
/// the postgres user — never inside the data directory, where pg_rewind
/// would try to copy it.
pub fn socket_dir(data_dir: &Path) -> PathBuf {
    data_dir.parent().unwrap_or(data_dir).join("sockets")
}

fn ensure_socket_dir(data_dir: &Path) -> Result<()> {
    let dir = socket_dir(data_dir);
    ensure_dir(&dir)?;
    give_to_postgres(&dir)
}

/// A scratch cluster's only door: its Unix socket (in a 0700 directory),
/// for drctl's own OS user mapped to the roles it uses (`pg_ident.conf`).
const SCRATCH_HBA: &str = "local all all peer map=drctl\n";

/// The name of the OS user drctl runs as (what `peer` authentication sees).
fn drctl_os_user() -> Result<String> {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| {
            LabError::Other(format!(
                "uid {uid} has no user name; run drctl as a named user"
            ))
        })
}

/// Who may connect to a recovered server whose backup had no pg_hba.conf:
/// local peers, and password (SCRAM) authentication over TCP.
const RECOVERED_DEFAULT_HBA: &str = "local all all peer\n\
host all all 0.0.0.0/0 scram-sha-256\n\
host all all ::/0 scram-sha-256\n\
host replication all 0.0.0.0/0 scram-sha-256\n";

const LAB_HBA: &str = "local all all trust\n\
host all all 127.0.0.1/32 trust\n\
host replication all 127.0.0.1/32 trust\n";

impl PgCluster {
    pub fn new(name: impl Into<String>, data_dir: PathBuf, port: u16, bin: PathBuf) -> Self {
        PgCluster {
            name: name.into(),
            data_dir,
            port,
            bin,
            host: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// The same cluster, reached on `host`.
    pub fn on_host(mut self, host: std::net::IpAddr) -> Self {
        self.host = host;
        self
    }

    /// `postgres://postgres@HOST:PORT/DB` (trust authentication: a lab's
    /// servers are reached only from inside the lab).
    pub fn dsn(&self, database: &str) -> String {
        let at = std::net::SocketAddr::new(self.host, self.port);
        format!("postgres://postgres@{at}/{database}")
    }

    pub fn log_file(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// Creates a fresh primary cluster with the lab settings.
    pub fn init_primary(&self, max_connections: u32) -> Result<()> {
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        ensure_dir(parent)?;
        give_to_postgres(parent)?;
        check_postgres_can_reach(parent)?;
        let mut c = pg_command(&self.bin.join("initdb"));
        c.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(c, &format!("initdb of {}", self.name))?;
        self.write_settings(max_connections)
    }

    fn write_settings(&self, max_connections: u32) -> Result<()> {
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(io_err(format!("reading {}", conf.display())))?;
        if let Some(at) = text.find("\n# --- drctl lab ---\n") {
            text.truncate(at);
        }
        text.push_str(&lab_settings(self.port, &self.data_dir, max_connections));
        std::fs::write(&conf, text).map_err(io_err(format!("writing {}", conf.display())))?;
        let hba = self.data_dir.join("pg_hba.conf");
        std::fs::write(&hba, LAB_HBA).map_err(io_err(format!("writing {}", hba.display())))?;
        ensure_socket_dir(&self.data_dir)?;
        give_to_postgres(&self.data_dir)
    }

    /// Clones a streaming standby of the primary reachable at `source_port`
    /// (the link proxy's port, so replication crosses the region link).
    pub fn clone_standby(
        &self,
        source_port: u16,
        application_name: &str,
        max_connections: u32,
    ) -> Result<()> {
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        ensure_dir(parent)?;
        give_to_postgres(parent)?;
        let mut c = pg_command(&self.bin.join("pg_basebackup"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &source_port.to_string(),
            "-U",
            "postgres",
        ])
        .arg("-D")
        .arg(&self.data_dir)
        .args(["-X", "stream", "-R", "--no-sync", "-c", "fast"]);
        run(c, &format!("pg_basebackup of {}", self.name))?;
        self.drop_socket_locks();
        // -R wrote primary_conninfo; name the standby so pg_stat_replication
        // on the primary says which region is streaming.
        let auto = self.data_dir.join("postgresql.auto.conf");
        let text =
            std::fs::read_to_string(&auto).map_err(io_err("reading postgresql.auto.conf"))?;
        let text = text.replace(
            "primary_conninfo = '",
            &format!("primary_conninfo = 'application_name={application_name} "),
        );
        std::fs::write(&auto, text).map_err(io_err("writing postgresql.auto.conf"))?;
        self.write_settings(max_connections)
    }

    /// Clones the server at `dsn` (a standby, for a drill) into an isolated
    /// standby: a base backup with the WAL to make it consistent, then
    /// [`PgCluster::isolate_scratch`] with `standby.signal` and nothing to
    /// stream from. Only `parity` (what a hot standby needs at least as high
    /// as its primary, read from the source) is carried over. `roles`: the
    /// roles drctl will connect to the clone as.
    pub fn clone_isolated(
        &self,
        dsn: &str,
        parity: &[(String, String)],
        roles: &[&str],
        tls: Option<&ScratchTls>,
    ) -> Result<()> {
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        ensure_dir(parent)?;
        give_to_postgres(parent)?;
        check_postgres_can_reach(parent)?;
        let conn = ChildConnection::from_dsn(dsn, crate::os::is_root())?;
        let mut c = pg_command(&self.bin.join("pg_basebackup"));
        conn.apply(&mut c);
        c.arg("-d")
            .arg(conn.conninfo())
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-X", "stream", "--no-sync", "-c", "fast"]);
        run(c, &format!("pg_basebackup of {}", self.name))?;
        self.isolate_scratch(parity, roles, true, tls)
    }

    /// The one isolation routine of every cluster drctl starts that is not
    /// production (restore tests, drill clones): drctl writes the whole
    /// configuration itself and keeps nothing of the copied server's. A
    /// backup is only as trustworthy as the bucket it came from: a planted
    /// `postgresql.auto.conf` could set `archive_command` (a shell command
    /// the server runs), `shared_preload_libraries`, `restore_command`, or
    /// production's `port` and archive, and a copied `include` could pull in
    /// anything. So: postgresql.conf from scratch (no TCP listener; a Unix
    /// socket in a directory only the postgres user can enter; archiving,
    /// recovery commands, replication and preloading off), an empty
    /// postgresql.auto.conf, and a pg_hba.conf that admits only drctl's own
    /// OS user (`peer`, mapped to `roles`) on that socket — no `trust`
    /// anywhere. `standby`: start as a standby of nothing (a drill clone);
    /// else recover to the copy's consistent point and open read-write.
    /// With `tls`, the copy also listens on `tls.listen` for `tls.peer`
    /// only, over TLS with client certificates ([`ScratchTls`]).
    pub fn isolate_scratch(
        &self,
        parity: &[(String, String)],
        roles: &[&str],
        standby: bool,
        tls: Option<&ScratchTls>,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod of {}", self.data_dir.display())))?;
        for signal in ["standby.signal", "recovery.signal", "postmaster.pid"] {
            let _ = std::fs::remove_file(self.data_dir.join(signal));
        }
        self.drop_socket_locks();
        // Settings left out take PostgreSQL's built-in defaults; the ones
        // below are spelled out where the default is not safe or not
        // obviously so.
        let mut conf = format!(
            "# Written by drctl for an isolated scratch cluster (restore test or drill\n\
             # clone); nothing of the copied server's configuration is used.\n\
             port = {}\n\
             listen_addresses = '{}'\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n\
             hba_file = '{}'\n\
             ident_file = '{}'\n\
             max_connections = 20\n\
             shared_buffers = 32MB\n\
             hot_standby = on\n\
             archive_mode = off\n\
             archive_command = ''\n\
             archive_library = ''\n\
             restore_command = ''\n\
             archive_cleanup_command = ''\n\
             recovery_end_command = ''\n\
             primary_conninfo = ''\n\
             primary_slot_name = ''\n\
             shared_preload_libraries = ''\n\
             session_preload_libraries = ''\n\
             local_preload_libraries = ''\n\
             dynamic_library_path = '$libdir'\n\
             ssl_passphrase_command = ''\n\
             default_transaction_read_only = off\n\
             logging_collector = off\n\
             log_min_messages = warning\n",
            self.port,
            tls.map(|t| t.listen.to_string()).unwrap_or_default(),
            socket_dir(&self.data_dir).display(),
            self.data_dir.join("pg_hba.conf").display(),
            self.data_dir.join("pg_ident.conf").display(),
        );
        let mut hba = SCRATCH_HBA.to_string();
        match tls {
            None => conf.push_str("ssl = off\n"),
            Some(t) => {
                let files = self.scratch_tls_files(t)?;
                conf.push_str(&format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n\
                     ssl_min_protocol_version = 'TLSv1.2'\n",
                    files[0].display(),
                    files[1].display(),
                    files[2].display()
                ));
                // `cert` checks the whole chain and maps the certificate's
                // CN through pg_ident: drctl's roles and nothing else.
                hba.push_str("hostssl all all all cert map=drctl_cert\n");
            }
        }
        for (name, value) in parity {
            // Only the known parity settings, and only their digits: the
            // values were read from a server, not from drctl.
            if crate::STANDBY_PARITY_SETTINGS.contains(&name.as_str()) {
                let value: String = value.chars().filter(|c| c.is_ascii_digit()).collect();
                if !value.is_empty() {
                    conf.push_str(&format!("{name} = {value}\n"));
                }
            }
        }
        let os_user = drctl_os_user()?;
        let mut ident = String::new();
        for role in roles {
            let role: String = role
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if !role.is_empty() {
                ident.push_str(&format!("drctl {os_user} \"{role}\"\n"));
                if let Some(t) = tls {
                    let cn: String = t
                        .client_cn
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                        .collect();
                    ident.push_str(&format!("drctl_cert \"{cn}\" \"{role}\"\n"));
                }
            }
        }
        for (file, text) in [
            ("postgresql.conf", conf.as_str()),
            ("postgresql.auto.conf", ""),
            ("pg_hba.conf", hba.as_str()),
            ("pg_ident.conf", ident.as_str()),
        ] {
            std::fs::write(self.data_dir.join(file), text)
                .map_err(io_err(format!("writing {file} of {}", self.name)))?;
        }
        if standby {
            std::fs::write(self.data_dir.join("standby.signal"), "")
                .map_err(io_err(format!("writing standby.signal of {}", self.name)))?;
        }
        let sockets = socket_dir(&self.data_dir);
        ensure_dir(&sockets)?;
        std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod of {}", sockets.display())))?;
        give_to_postgres(&sockets)?;
        give_to_postgres(&self.data_dir)
    }

    /// Copies the scratch copy's certificate, key and CA beside its data
    /// directory, owned by the postgres user with the modes PostgreSQL
    /// demands of a key; returns their paths (cert, key, CA).
    fn scratch_tls_files(&self, tls: &ScratchTls) -> Result<[PathBuf; 3]> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.data_dir.parent().unwrap_or(&self.data_dir).join("tls");
        ensure_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod of {}", dir.display())))?;
        let files = [
            (&tls.cert, dir.join("server.crt")),
            (&tls.key, dir.join("server.key")),
            (&tls.ca, dir.join("ca.crt")),
        ];
        for (from, to) in &files {
            std::fs::copy(from, to).map_err(io_err(format!(
                "copying {} for the scratch copy's TLS",
                from.display()
            )))?;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("chmod of {}", to.display())))?;
        }
        give_to_postgres(&dir)?;
        Ok(files.map(|(_, to)| to))
    }

    /// How drctl connects to an isolated scratch cluster as `role`: over its
    /// private Unix socket (it has no TCP listener).
    pub fn scratch_dsn(&self, role: &str, database: &str) -> String {
        format!(
            "postgres://{role}@localhost/{database}?host={}&port={}",
            socket_dir(&self.data_dir).display(),
            self.port
        )
    }

    /// The files a server's own configuration lives in when it is kept in
    /// the data directory: pg_rewind and pg_basebackup replace them with the
    /// source's, so a rejoin saves and restores them.
    pub const CONFIG_FILES: &'static [&'static str] = &[
        "postgresql.conf",
        "postgresql.auto.conf",
        "pg_hba.conf",
        "pg_ident.conf",
    ];

    /// Where a rejoin keeps this server's own configuration while its data
    /// directory is rewound or re-cloned.
    pub fn saved_config_dir(&self) -> PathBuf {
        let mut name = self.data_dir.file_name().unwrap_or_default().to_os_string();
        name.push(".drctl-config");
        self.data_dir.with_file_name(name)
    }

    /// Saves the configuration files once (a rerun after a crash keeps the
    /// first, true copy).
    pub fn save_config(&self) -> Result<()> {
        let saved = self.saved_config_dir();
        if saved.join("saved").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&saved).map_err(io_err(format!("creating {}", saved.display())))?;
        for f in Self::CONFIG_FILES {
            let from = self.data_dir.join(f);
            if from.exists() {
                std::fs::copy(&from, saved.join(f)).map_err(io_err(format!("saving {f}")))?;
            }
        }
        std::fs::write(saved.join("saved"), "")
            .map_err(io_err("marking the saved configuration"))?;
        Ok(())
    }

    /// Puts the saved configuration back (and keeps the copy until
    /// [`PgCluster::forget_saved_config`]).
    pub fn restore_config(&self) -> Result<()> {
        let saved = self.saved_config_dir();
        for f in Self::CONFIG_FILES {
            let from = saved.join(f);
            if from.exists() {
                std::fs::copy(&from, self.data_dir.join(f))
                    .map_err(io_err(format!("restoring {f}")))?;
            }
        }
        give_to_postgres(&self.data_dir)
    }

    pub fn forget_saved_config(&self) {
        let _ = std::fs::remove_dir_all(self.saved_config_dir());
    }

    /// `pg_rewind` of this (stopped) server onto the timeline of the server
    /// at `source_dsn`; it finishes crash recovery first if the server was
    /// not shut down cleanly.
    pub fn rewind(&self, source_dsn: &str) -> Result<String> {
        let conn = ChildConnection::from_dsn(source_dsn, crate::os::is_root())?;
        let mut c = pg_command(&self.bin.join("pg_rewind"));
        conn.apply(&mut c);
        c.arg("--target-pgdata")
            .arg(&self.data_dir)
            .arg("--source-server")
            .arg(conn.conninfo());
        run(c, &format!("pg_rewind of {}", self.name))
    }

    /// Replaces the data directory with a fresh base backup of the server
    /// at `source_dsn` (what a rejoin falls back on when pg_rewind cannot
    /// do it). The old directory is moved aside (`DIR.drctl-replaced-SECS`),
    /// never deleted: should this be the wrong server, or the clone fail,
    /// its data is still there for a person to look at or remove.
    pub fn reclone(&self, source_dsn: &str) -> Result<()> {
        if self.data_dir.exists() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut aside = self.data_dir.clone().into_os_string();
            aside.push(format!(".drctl-replaced-{secs}"));
            std::fs::rename(&self.data_dir, &aside).map_err(io_err(format!(
                "moving {} aside before a fresh clone",
                self.data_dir.display()
            )))?;
        }
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        ensure_dir(parent)?;
        give_to_postgres(parent)?;
        let conn = ChildConnection::from_dsn(source_dsn, crate::os::is_root())?;
        let mut c = pg_command(&self.bin.join("pg_basebackup"));
        conn.apply(&mut c);
        c.arg("-d")
            .arg(conn.conninfo())
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-X", "stream", "-c", "fast"]);
        run(c, &format!("pg_basebackup of {}", self.name))?;
        Ok(())
    }

    /// Makes the (stopped) server a standby streaming from `primary_conninfo`:
    /// `standby.signal`, the connection in postgresql.auto.conf, and no
    /// leftover fence (`default_transaction_read_only`, which a later
    /// promotion would otherwise inherit) or slot of another server.
    pub fn configure_standby(&self, primary_conninfo: &str) -> Result<()> {
        self.drop_socket_locks();
        self.rewrite_auto_conf(
            &[
                "primary_conninfo",
                "primary_slot_name",
                "default_transaction_read_only",
            ],
            &[format!(
                "primary_conninfo = '{}'",
                primary_conninfo.replace('\'', "''")
            )],
        )?;
        std::fs::write(self.data_dir.join("standby.signal"), "")
            .map_err(io_err("writing standby.signal"))?;
        let _ = std::fs::remove_file(self.data_dir.join("recovery.signal"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod of {}", self.data_dir.display())))?;
        give_to_postgres(&self.data_dir)
    }

    /// Rewrites postgresql.auto.conf without the settings named in `drop`
    /// (whatever their value), then with the lines `add`.
    fn rewrite_auto_conf(&self, drop: &[&str], add: &[String]) -> Result<()> {
        let auto = self.data_dir.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).unwrap_or_default();
        let mut kept: Vec<String> = text
            .lines()
            .filter(|l| {
                let key = l.trim_start();
                !drop.iter().any(|k| {
                    key.strip_prefix(k)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
            })
            .map(str::to_string)
            .collect();
        kept.extend(add.iter().cloned());
        std::fs::write(&auto, kept.join("\n") + "\n")
            .map_err(io_err("writing postgresql.auto.conf"))
    }

    /// A source that keeps its Unix sockets in its data directory (labs made
    /// by older drctl versions) has their lock files copied by
    /// pg_basebackup (plain files): a clone would refuse to start on the
    /// port its source had.
    fn drop_socket_locks(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.data_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".s.PGSQL.") && name.ends_with(".lock") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Takes over a data directory restored from a base backup as a
    /// production server (a cold-tier recovery): owned by the PostgreSQL
    /// user, mode 0700, no standby or recovery signal (it recovers to the
    /// backup's consistent point and opens read-write). The server starts
    /// with drctl's own postgresql.conf and an empty postgresql.auto.conf,
    /// never the backed-up ones: whoever can write to the bucket could have
    /// planted `archive_command`, `shared_preload_libraries` or an
    /// `include` there (code the server would run), and production's
    /// replication connection, fence and port do not belong here either.
    /// It listens on `dsn`'s port (and address, when that is an IP literal;
    /// else on all addresses). The backup's pg_hba.conf and pg_ident.conf
    /// stay (they name who may connect, and run nothing); a backup without
    /// them (configuration kept in /etc) gets password authentication only.
    pub fn adopt_recovered(&self, dsn: &str) -> Result<()> {
        self.adopt_recovered_listening(&listen_address_of(dsn))
    }

    /// [`PgCluster::adopt_recovered`] listening on `listen`
    /// (`listen_addresses`: an address, or `*`), for a caller that has no
    /// DSN to hand (a node action carries only the address).
    pub fn adopt_recovered_listening(&self, listen: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        // Written into postgresql.conf: addresses only, never a quote that
        // could end the value and add a setting.
        if listen.is_empty()
            || !listen
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*' | ',' | ' '))
        {
            return Err(LabError::Other(format!(
                "{listen:?} is not a list of addresses to listen on (IP literals or *)"
            )));
        }
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod of {}", self.data_dir.display())))?;
        for signal in ["standby.signal", "recovery.signal", "postmaster.pid"] {
            let _ = std::fs::remove_file(self.data_dir.join(signal));
        }
        self.drop_socket_locks();
        let conf = format!(
            "# Written by drctl for a server recovered from a backup; the backed-up\n\
             # configuration is not used (see `drctl recover` in the README).\n\
             port = {}\n\
             listen_addresses = '{listen}'\n\
             unix_socket_directories = '{}'\n\
             hba_file = '{}'\n\
             ident_file = '{}'\n\
             wal_level = replica\n\
             wal_log_hints = on\n\
             hot_standby = on\n\
             archive_mode = off\n\
             shared_preload_libraries = ''\n\
             session_preload_libraries = ''\n\
             local_preload_libraries = ''\n\
             dynamic_library_path = '$libdir'\n\
             logging_collector = off\n",
            self.port,
            socket_dir(&self.data_dir).display(),
            self.data_dir.join("pg_hba.conf").display(),
            self.data_dir.join("pg_ident.conf").display(),
        );
        let write = |file: &str, text: &str| {
            std::fs::write(self.data_dir.join(file), text)
                .map_err(io_err(format!("writing {file} of {}", self.name)))
        };
        write("postgresql.conf", &conf)?;
        write("postgresql.auto.conf", "")?;
        if !self.data_dir.join("pg_hba.conf").exists() {
            write("pg_hba.conf", RECOVERED_DEFAULT_HBA)?;
        }
        if !self.data_dir.join("pg_ident.conf").exists() {
            write("pg_ident.conf", "")?;
        }
        ensure_socket_dir(&self.data_dir)?;
        give_to_postgres(&self.data_dir)
    }

    /// Takes over a data directory restored from a base backup for a
    /// restore test: [`PgCluster::isolate_scratch`] (drctl's configuration
    /// only, never the backup's) and no standby signal, so it recovers to
    /// the backup's consistent point and opens read-write. drctl connects
    /// as `postgres` ([`PgCluster::scratch_dsn`]).
    pub fn adopt_restored(&self) -> Result<()> {
        self.adopt_restored_for(None)
    }

    /// [`PgCluster::adopt_restored`], reached over TCP with TLS as `tls`
    /// says when given.
    pub fn adopt_restored_for(&self, tls: Option<&ScratchTls>) -> Result<()> {
        self.isolate_scratch(&[], &["postgres"], false, tls)
    }

    /// Makes the next start an archive recovery (point-in-time recovery)
    /// of a data directory restored from a base backup and isolated
    /// ([`PgCluster::isolate_scratch`], [`PgCluster::adopt_restored`]): WAL
    /// files are read from `wal_dir`, where drctl staged them from the
    /// archive (so the server needs no access to the object store), along
    /// `timeline`; replay stops as `stop` says and the server is promoted,
    /// on a new timeline, open for writes.
    pub fn prepare_recovery(
        &self,
        wal_dir: &Path,
        timeline: u32,
        stop: &RecoveryStop,
    ) -> Result<()> {
        write_recovery_settings(&self.data_dir, wal_dir, timeline, stop)?;
        give_to_postgres(wal_dir)?;
        give_to_postgres(&self.data_dir)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        self.start_with_env(&[])
    }

    /// Starts the server with extra environment variables for postgres
    /// (a test runs a primary under libfaketime to give it its own clock).
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Result<()> {
        let log = self.log_file();
        let _ = std::fs::File::create(&log);
        give_to_postgres(&log)?;
        let mut c = pg_command(&self.bin.join("pg_ctl"));
        c.envs(env.iter().copied());
        c.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run(c, &format!("starting {}", self.name)).map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            LabError::Other(format!(
                "{e}; server log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        })?;
        Ok(())
    }

    /// Stops the server: `fast` for a clean shutdown, `immediate` for what a
    /// crash leaves behind (no shutdown checkpoint).
    pub fn stop(&self, mode: &str) -> Result<()> {
        if self.postmaster_pid().is_none() {
            return Ok(());
        }
        let mut c = pg_command(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-t", "30", "stop"]);
        match run(c, &format!("stopping {}", self.name)) {
            Ok(_) => Ok(()),
            Err(e) => {
                // pg_ctl could not do it (e.g. the data dir is damaged):
                // fall back on the recorded pid.
                if let Some(pid) = self.postmaster_pid() {
                    crate::os::signal(pid, nix::sys::signal::Signal::SIGKILL);
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Simulates the loss of this server: immediate shutdown, no checkpoint.
    pub fn crash(&self) -> Result<()> {
        self.stop("immediate")
    }

    /// The postmaster's pid, when one is recorded and alive.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        crate::os::process_alive(pid, "postgres").then_some(pid)
    }

    /// Sends `sig` to the postmaster and every process it started: SIGSTOP
    /// cuts the server off from everyone at once (a partition no TCP reset
    /// announces), SIGCONT heals it, SIGKILL is what a STONITH fence does.
    /// Returns how many processes were signalled.
    pub fn signal_all(&self, sig: nix::sys::signal::Signal) -> usize {
        let Some(pid) = self.postmaster_pid() else {
            return 0;
        };
        let mut all = crate::os::children(pid);
        all.push(pid);
        for p in &all {
            crate::os::signal(*p, sig);
        }
        all.len()
    }

    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some()
    }

    /// Waits until the server accepts TCP connections.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Over the socket: a scratch cluster has no TCP listener.
            let mut c = crate::os::clean_command(self.bin.join("pg_isready"));
            c.arg("-h")
                .arg(socket_dir(&self.data_dir))
                .args(["-p", &self.port.to_string(), "-q"]);
            if c.status().map(|s| s.success()).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Other(format!(
                    "{} not ready after {timeout:?}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
