//! Handing a connection to a PostgreSQL client program drctl starts
//! (`pg_basebackup`, `pg_rewind`) without its password on the command line,
//! where every local user reads it in `/proc/PID/cmdline`, or in the
//! child's environment, which the child hands on to its own children.
//!
//! The DSN is parsed once with sqlx's [`PgConnectOptions`] (the parser the
//! probes use, so both agree on what a DSN means); the child gets a
//! keyword connection string without the password, and the password in a
//! passfile of its own (mode 0600, in a private directory, removed when the
//! [`ChildConnection`] is dropped) named by `PGPASSFILE`.

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

use crate::os::give_to_postgres;

/// Where and as whom a connection string connects, parsed by sqlx's
/// `PgConnectOptions` as the probes parse it (sqlx 0.8 reads the
/// `postgres://` URL form only, as every drctl connection is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnLogin {
    /// The port clients connect to (PostgreSQL's default when unnamed).
    pub port: u16,
    pub database: Option<String>,
    /// `None` when the string names no user (sqlx would fill in the OS
    /// user, which a scratch clone's roles do not have).
    pub user: Option<String>,
}

/// The port, database and user `dsn` names. The error never repeats the
/// string (it may hold a password).
pub fn dsn_login(dsn: &str) -> std::result::Result<DsnLogin, String> {
    let parse = |s: &str| {
        s.parse::<PgConnectOptions>().map_err(|_| {
            "the connection string is not a postgres:// URL drctl can parse".to_string()
        })
    };
    let opts = parse(dsn)?;
    let defaults = parse("postgres://")?;
    Ok(DsnLogin {
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

use crate::{io_err, ClusterError, ClusterResult as Result};

/// A connection for one child process: its password-free connection string
/// and, when the DSN carries a password, the passfile holding it.
pub struct ChildConnection {
    conninfo: String,
    passfile: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for ChildConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildConnection")
            .field("conninfo", &self.conninfo)
            .field("passfile", &self.passfile.is_some())
            .finish()
    }
}

/// Quotes a value for a keyword connection string.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Escapes a passfile field (`:` and `\` are special there).
fn pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

impl ChildConnection {
    /// Parses `dsn` (a `postgres://` URL). `for_postgres_user`: the child
    /// runs as the postgres user (through `runuser`), who must be able to
    /// read the passfile. The error never repeats the DSN (it may hold the
    /// password).
    pub fn from_dsn(dsn: &str, for_postgres_user: bool) -> Result<Self> {
        let options = PgConnectOptions::from_str(dsn).map_err(|_| {
            ClusterError::Other(
                "the connection string is not a postgres:// URL drctl can parse (check its form; it is not repeated here because it may hold a password)"
                    .into(),
            )
        })?;
        let mut parts = Vec::new();
        match options.get_socket() {
            Some(dir) => parts.push(format!("host={}", quote(&dir.to_string_lossy()))),
            None => parts.push(format!("host={}", quote(options.get_host()))),
        }
        parts.push(format!("port={}", options.get_port()));
        parts.push(format!("user={}", quote(options.get_username())));
        if let Some(db) = options.get_database() {
            parts.push(format!("dbname={}", quote(db)));
        }
        let sslmode = match options.get_ssl_mode() {
            sqlx::postgres::PgSslMode::Disable => "disable",
            sqlx::postgres::PgSslMode::Allow => "allow",
            sqlx::postgres::PgSslMode::Prefer => "prefer",
            sqlx::postgres::PgSslMode::Require => "require",
            sqlx::postgres::PgSslMode::VerifyCa => "verify-ca",
            sqlx::postgres::PgSslMode::VerifyFull => "verify-full",
        };
        parts.push(format!("sslmode={sslmode}"));
        if let Some(name) = options.get_application_name() {
            parts.push(format!("application_name={}", quote(name)));
        }
        // libpq settings sqlx keeps no getter for (or ignores) but the
        // child needs as given: certificates, timeouts, keepalives.
        for (key, value) in passthrough_parameters(dsn) {
            parts.push(format!("{key}={}", quote(&value)));
        }
        if let Some(opts) = options.get_options() {
            parts.push(format!("options={}", quote(opts)));
        }
        // sqlx keeps the password to itself; its own URL form carries it.
        let password = options.to_url_lossy().password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let passfile = match password {
            None => None,
            Some(password) => Some(write_passfile(&password, for_postgres_user)?),
        };
        Ok(ChildConnection {
            conninfo: parts.join(" "),
            passfile,
        })
    }

    /// The connection string to pass as `-d` / `--source-server`: no
    /// password in it.
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// Points `cmd` at the passfile (and nothing else: a `PGPASSWORD` the
    /// caller's environment might hold never reaches the child, whose
    /// environment is cleared).
    pub fn apply(&self, cmd: &mut Command) {
        match &self.passfile {
            Some(dir) => cmd.env("PGPASSFILE", passfile_path(dir)),
            None => cmd.env("PGPASSFILE", "/dev/null"),
        };
    }
}

/// The query parameters of a DSN URL that pass to the child unchanged
/// (sqlx's aliases such as `ssl-root-cert` under libpq's names).
fn passthrough_parameters(dsn: &str) -> Vec<(&'static str, String)> {
    const NAMES: &[(&str, &str)] = &[
        ("sslrootcert", "sslrootcert"),
        ("ssl-root-cert", "sslrootcert"),
        ("ssl-ca", "sslrootcert"),
        ("sslcert", "sslcert"),
        ("ssl-cert", "sslcert"),
        ("sslkey", "sslkey"),
        ("ssl-key", "sslkey"),
        ("sslcrl", "sslcrl"),
        ("connect_timeout", "connect_timeout"),
        ("target_session_attrs", "target_session_attrs"),
        ("keepalives", "keepalives"),
        ("keepalives_idle", "keepalives_idle"),
        ("keepalives_interval", "keepalives_interval"),
        ("keepalives_count", "keepalives_count"),
        ("tcp_user_timeout", "tcp_user_timeout"),
    ];
    let Some((_, query)) = dsn.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let name = NAMES.iter().find(|(k, _)| *k == key)?.1;
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned();
            Some((name, value))
        })
        .collect()
}

fn passfile_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("pgpass")
}

fn write_passfile(password: &str, for_postgres_user: bool) -> Result<tempfile::TempDir> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::Builder::new()
        .prefix("drctl-pgpass-")
        .tempdir()
        .map_err(io_err("creating a private directory for a passfile"))?;
    let path = passfile_path(&dir);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("creating a passfile"))?;
    f.write_all(format!("*:*:*:*:{}\n", pgpass_field(password)).as_bytes())
        .map_err(io_err("writing a passfile"))?;
    if for_postgres_user {
        give_to_postgres(dir.path())?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_port_database_and_user() {
        let url = dsn_login("postgres://app:secret@h:5433/orders?sslmode=require").unwrap();
        assert_eq!(url.port, 5433);
        assert_eq!(url.database.as_deref(), Some("orders"));
        assert_eq!(url.user.as_deref(), Some("app"));
        let socket = dsn_login("postgres:///orders?host=/run/pg&port=6432&user=app").unwrap();
        assert_eq!(socket.port, 6432);
        assert_eq!(socket.database.as_deref(), Some("orders"));
        assert_eq!(socket.user.as_deref(), Some("app"));
        let bare = dsn_login("postgres://h/").unwrap();
        assert_eq!(bare.database, None);
        assert_eq!(bare.user, None);
        // Refused without repeating it (it may hold a password).
        let e = dsn_login("host=h password=hunter2").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_password_goes_to_a_passfile_and_never_into_the_connection_string() {
        let c = ChildConnection::from_dsn(
            "postgres://app:s%3Acret%40x@127.0.0.1:5433/orders?application_name=b&connect_timeout=3&sslrootcert=%2Fetc%2Fca.pem",
            false,
        )
        .unwrap();
        assert!(!c.conninfo().contains("cret"), "{}", c.conninfo());
        assert!(c.conninfo().contains("port=5433") && c.conninfo().contains("dbname='orders'"));
        assert!(
            c.conninfo().contains("connect_timeout='3'")
                && c.conninfo().contains("sslrootcert='/etc/ca.pem'"),
            "{}",
            c.conninfo()
        );
        let text = std::fs::read_to_string(passfile_path(c.passfile.as_ref().unwrap())).unwrap();
        assert_eq!(text, "*:*:*:*:s\\:cret@x\n");
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(passfile_path(c.passfile.as_ref().unwrap()))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unparseable_dsn_is_refused_without_repeating_it() {
        let e = ChildConnection::from_dsn("host=h password=hunter2", false).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }
}
