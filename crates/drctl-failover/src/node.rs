//! Every call the engine makes into a database server's processes, files
//! or connections (`drctl-pg`) starts here, so the node-actions and
//! datastore seams replace one module. Errors are plain text: the caller
//! decides what they mean for the operation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drctl_config::Service;
use drctl_pg::{NodeState, PgCluster, PgEndpoint};

/// A region's server's role and positions, or why it could not be read
/// (one connection, closed after).
pub(crate) async fn read_state(
    service: Option<&Service>,
    region: &str,
    timeout: Duration,
) -> Result<NodeState, String> {
    let ep = endpoint(service.ok_or("unknown service")?, region, timeout)?;
    let r = ep.node_state().await.map_err(|e| e.to_string());
    ep.close().await;
    r
}

/// A connection to the service's server in `region`.
pub(crate) fn endpoint(
    service: &Service,
    region: &str,
    timeout: Duration,
) -> Result<PgEndpoint, String> {
    let dsn = dsn(service, region)?;
    PgEndpoint::new(format!("{}@{region}", service.cluster), &dsn, timeout)
        .map_err(|e| e.to_string())
}

/// The service's connection string for `region`, secrets resolved.
pub(crate) fn dsn(service: &Service, region: &str) -> Result<String, String> {
    let source = service.postgres.get(region).ok_or_else(|| {
        format!(
            "service {} has no PostgreSQL connection for region {region}",
            service.name
        )
    })?;
    Ok(source
        .resolve()
        .map_err(|e| e.to_string())?
        .expose()
        .to_string())
}

/// The PostgreSQL binaries.
pub(crate) fn pg_bin() -> Result<std::path::PathBuf, String> {
    drctl_pg::find_pg_bin().map_err(|e| e.to_string())
}

/// Where and as whom a connection string connects, parsed by sqlx's
/// `PgConnectOptions` as the probes parse it (sqlx 0.8 reads the
/// `postgres://` URL form only, as every drctl connection is written).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DsnParts {
    /// The port clients connect to (PostgreSQL's default when unnamed).
    pub port: u16,
    pub database: Option<String>,
    /// `None` when the string names no user (sqlx would fill in the OS
    /// user, which a scratch clone's roles do not have).
    pub user: Option<String>,
}

pub(crate) fn dsn_parts(dsn: &str) -> Result<DsnParts, String> {
    use sqlx::postgres::PgConnectOptions;
    let parse = |s: &str| {
        s.parse::<PgConnectOptions>()
            // Not repeated: it may hold a password.
            .map_err(|_| {
                "the connection string is not a postgres:// URL drctl can parse".to_string()
            })
    };
    let opts = parse(dsn)?;
    let defaults = parse("postgres://")?;
    Ok(DsnParts {
        port: opts.get_port(),
        database: opts
            .get_database()
            .filter(|d| !d.is_empty() && Some(*d) != defaults.get_database())
            .map(str::to_string),
        user: Some(opts.get_username())
            .filter(|u| !u.is_empty() && *u != defaults.get_username())
            .map(str::to_string),
    })
}

/// The database system identifier in `data_dir`'s `global/pg_control`:
/// its first field, a 64-bit number in the host's byte order. `None` when
/// there is no control file.
pub(crate) fn local_system_identifier(data_dir: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(data_dir.join("global/pg_control")).ok()?;
    Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// A connection to a server by its DSN (a scratch clone's).
pub(crate) fn connect(label: &str, dsn: &str, timeout: Duration) -> Result<PgEndpoint, String> {
    PgEndpoint::new(label, dsn, timeout).map_err(|e| e.to_string())
}

/// The PostgreSQL server whose data directory `dir` is on this host
/// (`port` 0: pg_ctl reads it from the server's own configuration).
pub(crate) fn local_server(label: String, dir: PathBuf, port: u16, bin: PathBuf) -> PgCluster {
    PgCluster::new(label, dir, port, bin)
}

// ------------------------------------------------------ scratch clones

/// A scratch clone's PostgreSQL server (drill clones).
fn scratch(data_dir: &Path, port: u16, bin: PathBuf) -> PgCluster {
    PgCluster::new("drill clone", data_dir.to_path_buf(), port, bin)
}

/// Where scratch copies go when the config names no root.
pub(crate) fn default_scratch_root() -> PathBuf {
    drctl_pg::os::scratch_root()
}

/// A free local port for a scratch server.
pub(crate) fn free_port() -> u16 {
    drctl_pg::os::free_port()
}

/// The settings a hot standby needs at least as high as its primary's,
/// read from `source`.
pub(crate) async fn standby_parity(source: &PgEndpoint) -> Result<Vec<(String, String)>, String> {
    source
        .settings(drctl_pg::STANDBY_PARITY_SETTINGS)
        .await
        .map_err(|e| e.to_string())
}

/// The DSN of a scratch clone: `user` and `database` over its private
/// socket (no TCP listener; only drctl's own OS user is admitted).
pub(crate) fn scratch_dsn(data_dir: &Path, port: u16, user: &str, database: &str) -> String {
    scratch(data_dir, port, PathBuf::new()).scratch_dsn(user, database)
}

/// Clones `dsn`'s server into `dir` (its data in `dir/data`), isolated (a
/// standby of nothing, admitting `roles` over its socket); returns the
/// bytes copied. A partial copy an earlier attempt left is wiped first.
/// Blocking.
pub(crate) fn clone_scratch(
    dir: &Path,
    port: u16,
    bin: PathBuf,
    dsn: &str,
    parity: &[(String, String)],
    roles: &[&str],
) -> Result<u64, String> {
    let data_dir = dir.join("data");
    let _ = scratch(&data_dir, port, bin.clone()).stop("immediate");
    let _ = std::fs::remove_dir_all(dir);
    let root = dir.parent().unwrap_or(Path::new("/"));
    drctl_pg::os::prepare_scratch_root(root).map_err(|e| e.to_string())?;
    drctl_pg::os::private_run_dir(dir).map_err(|e| e.to_string())?;
    scratch(&data_dir, port, bin)
        .clone_isolated(dsn, parity, roles)
        .map_err(|e| e.to_string())?;
    Ok(dir_size(&data_dir))
}

/// Starts a scratch clone (if it is not running) and waits until it
/// answers. Blocking.
pub(crate) fn start_scratch(
    data_dir: &Path,
    port: u16,
    bin: PathBuf,
    ready: Duration,
) -> Result<(), String> {
    let c = scratch(data_dir, port, bin);
    if !c.is_running() {
        c.start().map_err(|e| e.to_string())?;
    }
    c.wait_ready(ready).map_err(|e| e.to_string())
}

/// Stops a scratch clone and removes its directory. Blocking.
pub(crate) fn remove_scratch(dir: &Path, port: u16, bin: PathBuf) -> Result<(), String> {
    scratch(&dir.join("data"), port, bin)
        .stop("immediate")
        .map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(dir)
        .map_err(|e| format!("removing the drill clone {}: {e}", dir.display()))
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

#[cfg(test)]
mod tests {
    use super::dsn_parts;

    #[test]
    fn a_url_names_port_database_and_user() {
        let url = dsn_parts("postgres://app:secret@h:5433/orders?sslmode=require").unwrap();
        assert_eq!(url.port, 5433);
        assert_eq!(url.database.as_deref(), Some("orders"));
        assert_eq!(url.user.as_deref(), Some("app"));
        let socket = dsn_parts("postgres:///orders?host=/run/pg&port=6432&user=app").unwrap();
        assert_eq!(socket.port, 6432);
        assert_eq!(socket.database.as_deref(), Some("orders"));
        assert_eq!(socket.user.as_deref(), Some("app"));
        let bare = dsn_parts("postgres://h/").unwrap();
        assert_eq!(bare.database, None);
        assert_eq!(bare.user, None);
        // Refused without repeating it (it may hold a password).
        let e = dsn_parts("host=h password=hunter2").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
