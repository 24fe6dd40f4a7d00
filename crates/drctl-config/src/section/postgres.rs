//! `[services.postgres.REGION]`: each region's connection, data directory and
//! replication connection.

use std::collections::BTreeMap;
use std::path::Path;

use super::common::{at_most_one, is_env_var_name};
use crate::model::{DsnSource, PgNode, Tier};
use crate::reader::{Cx, Field, Spanned};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::secret::{is_postgres_dsn, Secret};
use crate::suggest;

/// Exactly one of these says where a region's connection string comes from.
pub(crate) const DSN_KEYS: &[&str] = &["dsn", "dsn_env", "dsn_file"];

pub(crate) const NODE: Section = Section {
    header: "[services.postgres.REGION]",
    doc: "A region's PostgreSQL server, one table per region of the service (`[services.postgres.eu-west]`). Hot and warm services need one for every region, cold ones at least for the primary. Set exactly one of `dsn`, `dsn_env` and `dsn_file`; env and file are read only when needed, so `drctl config validate` works without production secrets.",
    keys: &[
        key("dsn", K::String, D::Unset, "The connection string, written in the file (shown redacted)."),
        key("dsn_env", K::EnvVar, D::Unset, "An environment variable holding the connection string."),
        key("dsn_file", K::Path, D::Unset, "A file holding the connection string."),
        key("data_dir", K::Path, D::Unset, "The server's data directory on its host: where its agent (or, without one, `drctl rejoin` on that host) stops, fences, rewinds and starts it."),
        key("agent", K::String, D::Unset, "`https://HOST:PORT` of the node agent beside this server (`drctl agent serve`), reached with mutual TLS (`[agents]`): hard fence, rejoin, recovery, drill clones and restore tests then run on that host. Without it they run on drctl's own host."),
        key("replication_dsn", K::String, D::Derived("the connection string"), "How a standby in another region connects to this server for replication (`primary_conninfo`)."),
    ],
};

/// `[services.postgres.REGION]` tables. `None` when anything is wrong.
pub(crate) fn postgres(
    cx: &mut Cx,
    field: &Field,
    tier: Option<Tier>,
    regions: Option<&[Spanned<String>]>,
    primary: Option<&Spanned<String>>,
    base_dir: &Path,
    agents_declared: bool,
) -> Option<(BTreeMap<String, DsnSource>, BTreeMap<String, PgNode>)> {
    let table = cx.table(field)?;
    let listed: Option<Vec<&str>> = regions.map(|r| r.iter().map(|r| r.value.as_str()).collect());
    let mut ok = true;
    let mut connections = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    for entry in table.fields() {
        if !is_service_region(cx, &entry, listed.as_deref(), "connection") {
            ok = false;
            continue;
        }
        let node = pg_node(cx, &entry, base_dir, agents_declared);
        match (dsn_source(cx, &entry, base_dir), node) {
            (Some(source), Some(node)) => {
                connections.insert(entry.key.to_string(), source);
                nodes.insert(entry.key.to_string(), node);
            }
            _ => ok = false,
        }
    }

    // Which regions need a connection depends on the recovery action:
    // promotion needs every replica reachable; a restore starts from the
    // primary's backups.
    if let (Some(tier), Some(regions), Some(primary)) = (tier, regions, primary) {
        let needed: Vec<&str> = if tier.is_replicated() {
            regions.iter().map(|r| r.value.as_str()).collect()
        } else {
            vec![primary.value.as_str()]
        };
        for region in needed {
            if table.get(region).is_some() {
                continue;
            }
            let why = if tier.is_replicated() {
                format!("a {tier} service needs one in every region")
            } else {
                format!("a {tier} service needs one in its primary region")
            };
            cx.error(
                &table.span,
                &table.path,
                format!("no connection for region {region:?}; {why}"),
                Some(format!(
                    "add [services.postgres.{region}] with dsn_env = \"…\""
                )),
            );
            ok = false;
        }
    }
    ok.then_some((connections, nodes))
}

/// Whether the key of a per-region entry (a connection, a DNS target) is
/// one of the service's regions `listed`, reporting it if not. `listed` is
/// `None` when the regions did not parse (reported): any key is taken then.
pub(crate) fn is_service_region(
    cx: &mut Cx,
    entry: &Field,
    listed: Option<&[&str]>,
    what: &str,
) -> bool {
    let Some(listed) = listed else {
        return true;
    };
    if listed.contains(&entry.key) {
        return true;
    }
    let hint = suggest::hint(entry.key, listed.iter().copied())
        .unwrap_or_else(|| format!("add the region to `regions`, or remove this {what}"));
    cx.error(
        &entry.key_span,
        &entry.path,
        format!(
            "{:?} is not one of the service's regions {}",
            entry.key,
            listed.join(", ")
        ),
        Some(hint),
    );
    false
}

/// The optional `data_dir` and `replication_dsn` of a
/// `[services.postgres.REGION]` table.
fn pg_node(cx: &mut Cx, entry: &Field, base_dir: &Path, agents_declared: bool) -> Option<PgNode> {
    let table = cx.table(entry)?;
    let mut ok = true;
    let data_dir = match table.get("data_dir") {
        None => None,
        Some(f) => {
            match cx.string(&f) {
                Some(v) if !v.value.trim().is_empty() => Some(base_dir.join(v.value)),
                Some(v) => {
                    cx.error(&v.span, &f.path, "names no directory", Some("give the server's data directory, e.g. \"/var/lib/postgresql/15/main\"".into()));
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            }
        }
    };
    let replication_dsn = match table.get("replication_dsn") {
        None => None,
        Some(f) => match cx.string(&f) {
            Some(v) if is_postgres_dsn(&v.value) => Some(Secret::new(v.value)),
            Some(v) => {
                cx.error(
                    &v.span,
                    &f.path,
                    "not a PostgreSQL connection string",
                    Some("write how a standby reaches this server, e.g. \"postgres://replicator@HOST:5432/postgres\"".into()),
                );
                ok = false;
                None
            }
            None => {
                ok = false;
                None
            }
        },
    };
    let agent = match table.get("agent") {
        None => None,
        Some(f) => {
            let value = cx.string(&f);
            let url = value
                .as_ref()
                .and_then(|v| super::agents::agent_url(cx, v, &f.path));
            match (url, value) {
                (Some(_), Some(v)) if !agents_declared => {
                    cx.error(
                        &v.span,
                        &f.path,
                        "an agent is reached with mutual TLS, but there is no [agents] table",
                        Some("add [agents] with ca, cert and key (`drctl agent certs --out DIR …` writes them)".into()),
                    );
                    ok = false;
                    None
                }
                (Some(url), _) => Some(url),
                _ => {
                    ok = false;
                    None
                }
            }
        }
    };
    if agent.is_some() && data_dir.is_none() {
        if let Some(f) = table.get("agent") {
            cx.error(
                &f.span,
                &f.path,
                "an agent acts on a data directory, and this region names none",
                Some(
                    "add data_dir = \"…\" (the server's data directory on the agent's host)".into(),
                ),
            );
            ok = false;
        }
    }
    ok.then_some(PgNode {
        data_dir,
        replication_dsn,
        agent,
    })
}

/// One `[services.postgres.REGION]` table: exactly one of dsn, dsn_env, dsn_file.
fn dsn_source(cx: &mut Cx, entry: &Field, base_dir: &Path) -> Option<DsnSource> {
    let table = cx.table(entry)?;
    cx.unknown_keys(&table, &NODE.names());
    let Some(field) = at_most_one(
        cx,
        &table,
        DSN_KEYS,
        "keep exactly one of dsn, dsn_env, dsn_file",
    )?
    else {
        cx.error(
            &table.span,
            &table.path,
            "no connection string",
            Some("set one of dsn, dsn_env, dsn_file".into()),
        );
        return None;
    };
    let field = &field;
    let value = cx.string(field)?;
    match field.key {
        "dsn" => {
            // Never echo the value: it is the password's home.
            if !is_postgres_dsn(&value.value) {
                cx.error(
                    &value.span,
                    &field.path,
                    "not a PostgreSQL connection string",
                    Some(
                        "write \"postgres://USER@HOST:5432/DB\" or \"host=HOST user=USER dbname=DB\""
                            .into(),
                    ),
                );
                return None;
            }
            Some(DsnSource::Inline(Secret::new(value.value)))
        }
        "dsn_env" => {
            if !is_env_var_name(&value.value) {
                // Someone may have pasted the DSN itself here: echo the value
                // only when it cannot be one.
                let harmless = value
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                let message = if harmless {
                    format!("{:?} is not an environment variable name", value.value)
                } else {
                    "the value is not an environment variable name".to_string()
                };
                let hint = if is_postgres_dsn(&value.value) {
                    "this looks like a connection string; use dsn = \"…\", or put it in an environment variable and name that"
                } else {
                    "use letters, digits and '_', e.g. \"ORDERS_DSN\""
                };
                cx.error(&value.span, &field.path, message, Some(hint.into()));
                return None;
            }
            Some(DsnSource::Env(value.value))
        }
        _ => {
            if value.value.trim().is_empty() {
                cx.error(
                    &value.span,
                    &field.path,
                    "names no file",
                    Some("give the path of a file holding the connection string".into()),
                );
                return None;
            }
            Some(DsnSource::File(base_dir.join(value.value)))
        }
    }
}
