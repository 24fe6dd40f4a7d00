//! `[services.backup]`: store, source region, compression, verification,
//! retention, offsite copy and encryption key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::common::{at_most_one, check_reference, key_env_name, key_file, NameKind};
use super::schedule::optional_cron;
use crate::model::{BackupPolicy, DsnSource, KeySource, Retention, WalArchivePolicy};
use crate::reader::{Cx, Field, Spanned, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::suggest;

const DEFAULT_COMPRESSION_THREADS: u32 = 0;
const DEFAULT_STRICT: bool = false;
const DEFAULT_WAL_ARCHIVE: bool = true;
const DEFAULT_WAL_SPOOL_DIR: &str = "wal-spool";
const DEFAULT_WAL_SHIP_INTERVAL: Duration = Duration::from_millis(500);
/// Shipping more often than this is a store's request rate, not a lag.
const MIN_WAL_SHIP_INTERVAL: Duration = Duration::from_millis(100);
/// Half a year of monthly restore points without keeping every hourly
/// backup.
const DEFAULT_KEEP_LAST: u32 = 7;
const DEFAULT_KEEP_DAILY: u32 = 7;
const DEFAULT_KEEP_WEEKLY: u32 = 4;
const DEFAULT_KEEP_MONTHLY: u32 = 6;

pub(crate) const BACKUP: Section = Section {
    header: "[services.backup]",
    doc: "How a service's datastore is backed up, verified, restore-tested and pruned; only a service with `postgres` has one. Retention is grandfather-father-son: a backup is kept while any `keep_*` rule wants it.",
    keys: &[
        key("store", K::String, D::Required, "The name of one of `[[object_stores]]`."),
        key("from_region", K::String, D::Derived("the primary"), "The region whose database is copied; one of the service's regions with a connection."),
        key("compression_level", K::Integer, D::Integer(DEFAULT_COMPRESSION_LEVEL as i64), "zstd level, 1..=19 (1 keeps pace with pg_basebackup alone)."),
        key("compression_threads", K::Integer, D::Integer(DEFAULT_COMPRESSION_THREADS as i64), "zstd worker threads, up to 256; 0 means one per core."),
        key("validation_queries", K::Strings, D::Unset, "SQL run against a restored copy; each must return true for the backup to count as verified."),
        key("strict", K::Boolean, D::Boolean(DEFAULT_STRICT), "A cold service's RPO exposure counts only backups whose restore was tested."),
        key("schedule", K::Cron, D::Derived("on demand only"), "When to take a backup."),
        key("verify_schedule", K::Cron, D::Derived("on demand only"), "When to verify the newest unverified backup."),
        key("restore_test_schedule", K::Cron, D::Derived("on demand only"), "When to restore-test the newest verified backup."),
        key("restore_test_max_age", K::Duration, D::Duration(DEFAULT_RESTORE_TEST_MAX_AGE), "A service whose newest passed restore test is older than this is in breach."),
        key("keep_last", K::Integer, D::Integer(DEFAULT_KEEP_LAST as i64), "The newest backups, whatever their age; 1 or more."),
        key("keep_daily", K::Integer, D::Integer(DEFAULT_KEEP_DAILY as i64), "The newest backup of each of the last this many days (UTC)."),
        key("keep_weekly", K::Integer, D::Integer(DEFAULT_KEEP_WEEKLY as i64), "The newest backup of each of the last this many ISO weeks."),
        key("keep_monthly", K::Integer, D::Integer(DEFAULT_KEEP_MONTHLY as i64), "The newest backup of each of the last this many months."),
        key("offsite_store", K::String, D::Unset, "A second object store every backup is copied to; never `store` itself."),
        key("encryption_key_env", K::EnvVar, D::Unset, "An environment variable holding the key that encrypts backups; at most one of the two."),
        key("encryption_key_file", K::Path, D::Unset, "A file holding the key that encrypts backups."),
        key("wal_archive", K::Boolean, D::Boolean(DEFAULT_WAL_ARCHIVE), "Continuous WAL archiving, for restores to any point in time: the leading daemon streams the primary's WAL through a replication slot (`drctl_archive_SERVICE`, `pg_receivewal --synchronous`) into `wal_spool` and ships it to `store` like backups (compressed, sealed with the backup key, locked with the store's Object Lock). `false` turns it off; the slot it left on the primary then holds WAL until dropped (`SELECT pg_drop_replication_slot('drctl_archive_SERVICE')`)."),
        key("wal_spool", K::Path, D::Derived("`wal-spool/SERVICE` beside the SQLite state store, else beside the config file"), "Where the receiver writes before WAL is shipped: a directory on the daemon's host, on durable storage (not a tmpfs), one per service."),
        key("wal_ship_interval", K::Duration, D::Duration(DEFAULT_WAL_SHIP_INTERVAL), "How often the spool is shipped, at least 100ms: the archive lag's floor. Each pass that finds new WAL writes one object (a PUT request: two a second at the default while the primary writes)."),
    ],
};

/// At most one of these says where a backup encryption key comes from.
pub(crate) const KEY_SOURCE_KEYS: &[&str] = &["encryption_key_env", "encryption_key_file"];

/// zstd -1: on two cores it keeps a backup at the speed of pg_basebackup
/// alone (bench/results/backup-peers-zstd1.md: 0.98× against 0.65× at -3),
/// at about the same ratio on typical table data.
const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

const DEFAULT_RESTORE_TEST_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// zstd's regular levels; 20-22 ("ultra") need far more memory to restore.
const COMPRESSION_LEVELS: std::ops::RangeInclusive<i64> = 1..=19;

/// More zstd workers than this is a typo, not a machine.
const MAX_COMPRESSION_THREADS: u32 = 256;

/// Whose policy is read, and where relative paths start.
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    /// The service's name (`None` when it has none: reported there).
    pub service: Option<&'a str>,
    /// The config file's directory.
    pub base_dir: &'a Path,
    /// drctl's state directory ([`super::common::References::state_dir`]).
    pub state_dir: &'a Path,
}

/// `[services.backup]`. `datastore` is `None` when the service has no
/// `postgres` table, `Some(None)` when it has one that is wrong (reported).
/// `None` when anything is wrong.
pub(crate) fn backup(
    cx: &mut Cx,
    field: &Field,
    stores: Option<&[&str]>,
    regions: Option<&[Spanned<String>]>,
    primary: Option<&Spanned<String>>,
    datastore: Option<Option<&BTreeMap<String, DsnSource>>>,
    at: Origin<'_>,
) -> Option<BackupPolicy> {
    let Origin {
        service,
        base_dir,
        state_dir,
    } = at;
    let table = cx.table(field)?;
    backup_keys(cx, &table);
    let mut ok = true;

    if datastore.is_none() {
        let region = primary.map_or("REGION", |p| p.value.as_str());
        cx.error(
            &table.span,
            &table.path,
            "a backup needs a datastore, and this service has no `postgres` table",
            Some(format!(
                "add [services.postgres.{region}] with dsn_env = \"…\", or remove [services.backup]"
            )),
        );
        ok = false;
    }

    let store_hint = match stores {
        Some(names) if !names.is_empty() => {
            format!("name one of the object stores: store = {:?}", names[0])
        }
        _ => "declare an [[object_stores]] table and name it here".to_string(),
    };
    let store = cx.required(&table, "store", &store_hint).and_then(|f| {
        let store = cx.string(&f)?;
        check_reference(cx, &store, &f.path, stores, NameKind::ObjectStore).then_some(store)
    });

    let from_region = match table.get("from_region") {
        None => primary.map(|p| p.value.clone()),
        Some(f) => cx.string(&f).and_then(|region| {
            check_from_region(cx, &region, &f.path, regions, datastore.flatten())
                .then_some(region.value)
        }),
    };

    let compression_level = match table.get("compression_level") {
        None => Some(DEFAULT_COMPRESSION_LEVEL),
        Some(f) => cx.integer(&f).and_then(|level| {
            let in_range = COMPRESSION_LEVELS
                .contains(&level.value)
                .then(|| i32::try_from(level.value).ok())
                .flatten();
            if in_range.is_none() {
                cx.error(
                    &level.span,
                    &f.path,
                    format!("compression level {} is out of range", level.value),
                    Some(format!(
                        "use 1 to 19: zstd levels go from fastest to smallest; the default is {DEFAULT_COMPRESSION_LEVEL}"
                    )),
                );
            }
            in_range
        }),
    };

    let compression_threads = match table.get("compression_threads") {
        None => Some(0),
        Some(f) => cx.integer(&f).and_then(|threads| {
            let in_range = u32::try_from(threads.value)
                .ok()
                .filter(|t| *t <= MAX_COMPRESSION_THREADS);
            if in_range.is_none() {
                cx.error(
                    &threads.span,
                    &f.path,
                    format!("{} compression threads is out of range", threads.value),
                    Some(format!(
                        "use 1 to {MAX_COMPRESSION_THREADS}, or 0 (the default) for one per core"
                    )),
                );
            }
            in_range
        }),
    };

    let validation_queries = match table.get("validation_queries") {
        None => Some(Vec::new()),
        Some(f) => validation_queries(cx, &f),
    };

    let strict = match table.get("strict") {
        None => Some(false),
        Some(f) => cx.boolean(&f).map(|b| b.value),
    };

    let schedule = optional_cron(cx, &table, "schedule");
    let verify_schedule = optional_cron(cx, &table, "verify_schedule");
    let restore_test_schedule = optional_cron(cx, &table, "restore_test_schedule");
    let restore_test_max_age = match table.get("restore_test_max_age") {
        None => Some(DEFAULT_RESTORE_TEST_MAX_AGE),
        Some(f) => cx.duration(&f).map(|d| d.value),
    };
    let retention = retention(cx, &table);

    let offsite_store = match table.get("offsite_store") {
        None => Some(None),
        Some(f) => cx.string(&f).and_then(|offsite| {
            check_offsite_store(cx, &offsite, &f.path, store.as_ref(), stores)
                .then_some(Some(offsite.value))
        }),
    };

    let encryption_key = encryption_key(cx, &table, base_dir);
    let wal_archive = wal_archive(cx, &table, service, base_dir, state_dir);

    let policy = BackupPolicy {
        store: store?.value,
        from_region: from_region?,
        compression_level: compression_level?,
        compression_threads: compression_threads?,
        validation_queries: validation_queries?,
        strict: strict?,
        schedule: schedule?,
        verify_schedule: verify_schedule?,
        restore_test_schedule: restore_test_schedule?,
        restore_test_max_age: restore_test_max_age?,
        retention: retention?,
        offsite_store: offsite_store?,
        encryption_key: encryption_key?,
        wal_archive: wal_archive?,
    };
    ok.then_some(policy)
}

/// `wal_archive` (on unless set to false) and `wal_spool` (by default
/// `wal-spool/SERVICE` in drctl's state directory: beside the SQLite
/// store, else beside the config file).
fn wal_archive(
    cx: &mut Cx,
    table: &Table,
    service: Option<&str>,
    base_dir: &Path,
    state_dir: &Path,
) -> Option<Option<WalArchivePolicy>> {
    let on = match table.get("wal_archive") {
        None => DEFAULT_WAL_ARCHIVE,
        Some(f) => cx.boolean(&f)?.value,
    };
    let ship_interval = match table.get("wal_ship_interval") {
        None => DEFAULT_WAL_SHIP_INTERVAL,
        Some(f) => {
            let d = cx.duration(&f)?;
            if d.value < MIN_WAL_SHIP_INTERVAL {
                cx.error(
                    &d.span,
                    &f.path,
                    format!(
                        "{} is shorter than {}",
                        crate::format_duration(d.value),
                        crate::format_duration(MIN_WAL_SHIP_INTERVAL)
                    ),
                    Some("e.g. wal_ship_interval = \"500ms\"".into()),
                );
                return None;
            }
            d.value
        }
    };
    let spool = match table.get("wal_spool") {
        None => None,
        Some(f) => {
            let path = cx.string(&f)?;
            if path.value.trim().is_empty() {
                cx.error(
                    &path.span,
                    &f.path,
                    "names no directory",
                    Some("e.g. wal_spool = \"/var/lib/drctl/wal/orders\"".into()),
                );
                return None;
            }
            Some((f, base_dir.join(&path.value)))
        }
    };
    match (on, spool) {
        (false, None) => Some(None),
        (true, Some((_, spool))) => Some(Some(WalArchivePolicy {
            spool: spool.components().collect(),
            ship_interval,
        })),
        // A service without a name is reported where the name is.
        (true, None) => service.map(|name| {
            Some(WalArchivePolicy {
                spool: state_dir.join(DEFAULT_WAL_SPOOL_DIR).join(name),
                ship_interval,
            })
        }),
        (false, Some((f, _))) => {
            cx.error(
                &f.key_span,
                &f.path,
                "wal_spool with wal_archive = false archives nothing",
                Some("remove wal_archive = false, or remove wal_spool".into()),
            );
            None
        }
    }
}

/// Unknown keys of `[services.backup]`. The model's own names, which the API
/// shows (`retention`, `encryption_key`), point at the keys that set them.
fn backup_keys(cx: &mut Cx, table: &Table) {
    for field in table.fields() {
        if BACKUP.names().contains(&field.key) {
            continue;
        }
        let hint = match field.key {
            "retention" => {
                "set retention with keep_last, keep_daily, keep_weekly and keep_monthly in this table"
                    .to_string()
            }
            // Its value may be the key itself: never shown.
            "encryption_key" => "the key never goes in this file; name where it is with \
encryption_key_env = \"…\" or encryption_key_file = \"…\""
                .to_string(),
            key => suggest::hint(key, BACKUP.names())
                .unwrap_or_else(|| format!("expected one of {}", BACKUP.names().join(", "))),
        };
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

/// The offsite copy is the one that survives losing the first store, so it
/// must be another declared store. `store` is the backup's own store when it
/// is valid.
fn check_offsite_store(
    cx: &mut Cx,
    offsite: &Spanned<String>,
    path: &str,
    store: Option<&Spanned<String>>,
    stores: Option<&[&str]>,
) -> bool {
    if !check_reference(cx, offsite, path, stores, NameKind::ObjectStore) {
        return false;
    }
    let Some(store) = store.filter(|s| s.value == offsite.value) else {
        return true;
    };
    let others: Vec<&str> = stores
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|s| *s != store.value)
        .collect();
    let hint = if others.is_empty() {
        "declare a second [[object_stores]], in another region, and name it here".to_string()
    } else {
        format!("name another store, e.g. offsite_store = {:?}", others[0])
    };
    let line = cx.line(&store.span);
    cx.error(
        &offsite.span,
        path,
        format!(
            "{:?} is already the backup's store (line {line}); an offsite copy must go elsewhere",
            offsite.value
        ),
        Some(hint),
    );
    false
}

/// `keep_last`, `keep_daily`, `keep_weekly`, `keep_monthly`. `None` when
/// any is wrong (reported).
pub(crate) fn retention(cx: &mut Cx, table: &Table) -> Option<Retention> {
    let d = Retention::default();
    let keep_last = keep_count(cx, table, "keep_last", d.keep_last, "");
    let keep_daily = keep_count(cx, table, "keep_daily", d.keep_daily, "daily");
    let keep_weekly = keep_count(cx, table, "keep_weekly", d.keep_weekly, "weekly");
    let keep_monthly = keep_count(cx, table, "keep_monthly", d.keep_monthly, "monthly");
    Some(Retention {
        keep_last: keep_last?,
        keep_daily: keep_daily?,
        keep_weekly: keep_weekly?,
        keep_monthly: keep_monthly?,
    })
}

/// One retention count, `default` when absent. `what` is "daily", "weekly",
/// "monthly", or empty for `keep_last`, which must keep at least the newest
/// backup.
fn keep_count(cx: &mut Cx, table: &Table, key: &str, default: u32, what: &str) -> Option<u32> {
    let Some(field) = table.get(key) else {
        return Some(default);
    };
    let count = cx.integer(&field)?;
    let usage = if what.is_empty() {
        format!("use 1 or more; the default is {default}")
    } else {
        format!("use 0 to keep no {what} backups, or a count; the default is {default}")
    };
    let message = if count.value < 0 {
        format!("{} is negative", count.value)
    } else if count.value == 0 && what.is_empty() {
        "0 would let pruning delete every backup, the newest included".to_string()
    } else {
        match u32::try_from(count.value) {
            Ok(n) => return Some(n),
            Err(_) => format!("{} is too large", count.value),
        }
    };
    cx.error(&count.span, &field.path, message, Some(usage));
    None
}

/// `encryption_key_env` or `encryption_key_file`: `Some(None)` when neither
/// is set, `None` when wrong (reported). A key is never written in the
/// config, and a value that looks like one is never echoed.
pub(crate) fn encryption_key(
    cx: &mut Cx,
    table: &Table,
    base_dir: &Path,
) -> Option<Option<KeySource>> {
    let Some(field) = at_most_one(
        cx,
        table,
        KEY_SOURCE_KEYS,
        "keep one: the name of an environment variable holding the key, or the path of a file holding it",
    )?
    else {
        return Some(None);
    };
    let field = &field;
    let value = cx.string(field)?;
    if field.key == "encryption_key_env" {
        return key_env_name(cx, value, &field.path, "DRCTL_BACKUP_KEY")
            .map(|var| Some(KeySource::Env(var)));
    }
    key_file(
        cx,
        value,
        &field.path,
        base_dir,
        "the backup encryption key",
    )
    .map(|path| Some(KeySource::File(path)))
}

/// A backup is taken over a connection, so its region must be one of the
/// service's and have one. Checks that depend on input already reported as
/// wrong are skipped.
fn check_from_region(
    cx: &mut Cx,
    region: &Spanned<String>,
    path: &str,
    regions: Option<&[Spanned<String>]>,
    connections: Option<&BTreeMap<String, DsnSource>>,
) -> bool {
    if let Some(regions) = regions {
        if !regions.iter().any(|r| r.value == region.value) {
            let listed: Vec<&str> = regions.iter().map(|r| r.value.as_str()).collect();
            let hint = suggest::hint(&region.value, listed.iter().copied())
                .unwrap_or_else(|| "choose one of the service's regions".into());
            cx.error(
                &region.span,
                path,
                format!(
                    "{:?} is not one of the service's regions {}",
                    region.value,
                    listed.join(", ")
                ),
                Some(hint),
            );
            return false;
        }
    }
    let Some(connections) = connections else {
        return true;
    };
    if connections.contains_key(&region.value) {
        return true;
    }
    let add = format!(
        "add [services.postgres.{}] with dsn_env = \"…\"",
        region.value
    );
    let hint = if connections.is_empty() {
        add
    } else {
        let others: Vec<String> = connections.keys().map(|r| format!("{r:?}")).collect();
        format!("{add}, or back up from {}", others.join(" or "))
    };
    cx.error(
        &region.span,
        path,
        format!(
            "region {:?} has no postgres connection to back up from",
            region.value
        ),
        Some(hint),
    );
    false
}

/// SQL run on a restored copy; an empty one would verify nothing.
pub(crate) fn validation_queries(cx: &mut Cx, field: &Field) -> Option<Vec<String>> {
    let elements = cx.array(
        field,
        "e.g. validation_queries = [\"SELECT count(*) > 0 FROM shop.orders\"]",
    )?;
    let mut ok = true;
    let mut queries = Vec::new();
    for element in elements {
        let Some(query) = cx.string(&element) else {
            ok = false;
            continue;
        };
        if query.value.trim().is_empty() {
            cx.error(
                &query.span,
                &element.path,
                "the query is empty",
                Some(
                    "write SQL that returns true when the restored data looks right, or remove the empty string"
                        .into(),
                ),
            );
            ok = false;
            continue;
        }
        queries.push(query.value);
    }
    ok.then_some(queries)
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: DEFAULT_KEEP_LAST,
            keep_daily: DEFAULT_KEEP_DAILY,
            keep_weekly: DEFAULT_KEEP_WEEKLY,
            keep_monthly: DEFAULT_KEEP_MONTHLY,
        }
    }
}
