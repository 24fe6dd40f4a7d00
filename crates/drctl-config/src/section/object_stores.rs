//! `[[object_stores]]`: local directories and S3 buckets, well-formed and
//! without credentials.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use super::common::{
    bounded_duration, declared_tables, is_credential_key, is_valid_name, kind_of,
    no_keys_of_other_kind, Declared, NameKind, AWS_CHAIN_HINT,
};
use crate::model::{ObjectLockConfig, ObjectLockMode, ObjectStoreConfig, ObjectStoreKind};
use crate::reader::{Cx, Spanned, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::suggest;

pub(crate) const OBJECT_STORES: Section = Section {
    header: "[[object_stores]]",
    doc: "A place backups are written to and restored from: a local directory or an S3 bucket. No credentials here: S3 ones come from the standard AWS chain (environment, profile, instance role).",
    keys: &[
        key("name", K::String, D::Required, "`[a-z0-9-]+`, unique; what `[services.backup] store` names."),
        key("kind", K::Choice(OBJECT_STORE_KINDS), D::Required, "`local` (a directory on this machine) or `s3` (AWS, MinIO, Ceph, R2, moto)."),
        key("path", K::Path, D::Unset, "`local` only, required: the directory."),
        key("bucket", K::String, D::Unset, "`s3` only, required: 3-63 characters of a-z, 0-9, '.', '-'."),
        key("prefix", K::String, D::Text(DEFAULT_S3_PREFIX), "`s3` only: key prefix inside the bucket, ending with `/`."),
        key("endpoint", K::String, D::Derived("AWS itself"), "`s3` only: `http://…` or `https://…` of an S3-compatible server."),
        key("region", K::String, D::Text(DEFAULT_S3_REGION), "`s3` only: the bucket's region."),
        key("path_style", K::Boolean, D::Boolean(DEFAULT_PATH_STYLE), "`s3` only: path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need."),
        key("timeout", K::Duration, D::Duration(DEFAULT_S3_TIMEOUT), "`s3` only: how long one attempt of one call may take before it is retried, 1s..=1h."),
        key("object_lock", K::Choice(LOCK_MODES), D::Unset, "`s3` only: lock every object drctl writes (base backups, manifests, WAL) with S3 Object Lock for `lock_retention`, so that nobody holding drctl's credentials can delete or replace it before then. `governance`: a user granted `s3:BypassGovernanceRetention` can still remove a lock; `compliance`: nobody can. The bucket must have Object Lock enabled. Unset: objects are not locked."),
        key("lock_retention", K::Duration, D::Unset, "With `object_lock`, required: how long each object stays locked after it is written, 1s..=100y (e.g. \"30d\"). Retention deletes a locked backup only once its lock has ended."),
    ],
};

const OBJECT_STORE_KINDS: &[&str] = &["local", "s3"];

const LOCK_MODES: &[&str] = &["governance", "compliance"];

/// Keys of S3 Object Lock, which a directory cannot give.
const LOCK_KEYS: &[&str] = &["object_lock", "lock_retention"];

/// Keys of one kind of object store, refused on the other.
pub(crate) const LOCAL_STORE_KEYS: &[&str] = &["path"];

pub(crate) const S3_STORE_KEYS: &[&str] = &[
    "bucket",
    "prefix",
    "endpoint",
    "region",
    "path_style",
    "timeout",
];

/// One attempt of one S3 call: long enough for a large part on a slow
/// link, short enough that a server that stopped answering is retried.
const S3_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);

const DEFAULT_S3_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) const DEFAULT_S3_REGION: &str = "us-east-1";
const DEFAULT_S3_PREFIX: &str = "";
const DEFAULT_PATH_STYLE: bool = false;

/// `[[object_stores]]`.
pub(crate) fn object_stores(
    cx: &mut Cx,
    root: &Table,
    base_dir: &Path,
) -> Option<Vec<Declared<ObjectStoreConfig>>> {
    declared_tables(
        cx,
        root,
        "object_stores",
        NameKind::ObjectStore,
        "write each object store as an [[object_stores]] table",
        |cx, table| {
            object_store_keys(cx, table);
            object_store_kind(cx, table, base_dir)
        },
        |name, kind| ObjectStoreConfig { name, kind },
    )
}

/// Unknown keys of an object store, and credentials, which are refused
/// whatever their name so that nobody keeps a key in a config file that gets
/// committed, copied and shown. The value is never echoed.
fn object_store_keys(cx: &mut Cx, table: &Table) {
    for field in table.fields() {
        if OBJECT_STORES.names().contains(&field.key) {
            continue;
        }
        if is_credential_key(field.key) {
            cx.error(
                &field.key_span,
                &field.path,
                "credentials do not belong in the config file",
                Some(format!("{AWS_CHAIN_HINT}; remove this key")),
            );
            continue;
        }
        let hint = suggest::hint(field.key, OBJECT_STORES.names())
            .unwrap_or_else(|| format!("expected one of {}", OBJECT_STORES.names().join(", ")));
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

/// The kind and the kind's own keys. `None` when anything is wrong; an
/// unknown kind skips the per-kind checks, which could only guess.
fn object_store_kind(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<ObjectStoreKind> {
    let kind = kind_of(
        cx,
        table,
        OBJECT_STORE_KINDS,
        "use \"local\" for a directory or \"s3\" for a bucket",
    )?;
    let ok = if kind == "local" {
        no_keys_of_other_kind(
            cx,
            table,
            S3_STORE_KEYS,
            "s3",
            "this store is kind = \"local\"; remove it, or set kind = \"s3\"",
        )
    } else {
        no_keys_of_other_kind(
            cx,
            table,
            LOCAL_STORE_KEYS,
            "local",
            "this store is kind = \"s3\"; remove it; for a folder inside the bucket use prefix = \"…/\"",
        )
    };
    let store = if kind == "local" {
        local_store(cx, table, base_dir)
    } else {
        s3_store(cx, table)
    };
    store.filter(|_| ok)
}

fn local_store(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<ObjectStoreKind> {
    let mut lockable = true;
    for key in LOCK_KEYS {
        if let Some(f) = table.get(key) {
            cx.error(
                &f.key_span,
                &f.path,
                "a directory cannot be made immutable: whoever can write to it can delete from it",
                Some("for backups nobody can delete, use an S3 bucket with Object Lock: kind = \"s3\", object_lock = \"compliance\"; else remove this key".into()),
            );
            lockable = false;
        }
    }
    if !lockable {
        return None;
    }
    let field = cx.required(
        table,
        "path",
        "a local store needs path = \"…\", e.g. path = \"backups\", relative to this file's directory",
    )?;
    let path = cx.string(&field)?;
    if path.value.trim().is_empty() {
        cx.error(
            &path.span,
            &field.path,
            "names no directory",
            Some("e.g. path = \"backups\", relative to this file's directory".into()),
        );
        return None;
    }
    // Resolved now, like the SQLite store, so the daemon writes to the same
    // directory whatever its working directory; collecting the components
    // drops `./` and doubled or trailing slashes.
    Some(ObjectStoreKind::Local {
        path: base_dir.join(&path.value).components().collect(),
    })
}

fn s3_store(cx: &mut Cx, table: &Table) -> Option<ObjectStoreKind> {
    let bucket = cx
        .required(
            table,
            "bucket",
            "an s3 store needs bucket = \"…\", e.g. bucket = \"shop-backups\"",
        )
        .and_then(|f| {
            let bucket = cx.string(&f)?;
            check_bucket(cx, &bucket, &f.path).then_some(bucket.value)
        });
    let prefix = match table.get("prefix") {
        None => Some(DEFAULT_S3_PREFIX.to_string()),
        Some(f) => cx.string(&f).and_then(|prefix| {
            if prefix.value.is_empty() || prefix.value.ends_with('/') {
                return Some(prefix.value);
            }
            cx.error(
                &prefix.span,
                &f.path,
                format!("{:?} does not end with \"/\"", prefix.value),
                Some(format!("add the slash: prefix = \"{}/\"", prefix.value)),
            );
            None
        }),
    };
    let endpoint = match table.get("endpoint") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|e| check_endpoint(cx, &e, &f.path).then_some(Some(e.value))),
    };
    let region = match table.get("region") {
        None => Some(DEFAULT_S3_REGION.to_string()),
        Some(f) => cx.string(&f).and_then(|region| {
            if is_valid_name(&region.value) {
                return Some(region.value);
            }
            cx.error(
                &region.span,
                &f.path,
                format!("{:?} is not an S3 region", region.value),
                Some(format!(
                    "e.g. \"eu-central-1\"; S3-compatible servers usually accept \"{DEFAULT_S3_REGION}\""
                )),
            );
            None
        }),
    };
    let path_style = match table.get("path_style") {
        None => Some(DEFAULT_PATH_STYLE),
        Some(f) => cx.boolean(&f).map(|b| b.value),
    };
    let timeout = bounded_duration(cx, table, "timeout", DEFAULT_S3_TIMEOUT, S3_TIMEOUT_RANGE);
    let lock = object_lock(cx, table);
    Some(ObjectStoreKind::S3 {
        bucket: bucket?,
        prefix: prefix?,
        endpoint: endpoint?,
        region: region?,
        path_style: path_style?,
        timeout: timeout?,
        lock: lock?,
    })
}

/// `object_lock` and `lock_retention`: both or neither.
fn object_lock(cx: &mut Cx, table: &Table) -> Option<Option<ObjectLockConfig>> {
    let mode = match table.get("object_lock") {
        None => None,
        Some(f) => {
            let text = cx.string(&f)?;
            match text.value.as_str() {
                "governance" => Some(ObjectLockMode::Governance),
                "compliance" => Some(ObjectLockMode::Compliance),
                other => {
                    let hint = suggest::hint(other, LOCK_MODES.iter().copied()).unwrap_or_else(|| {
                        "write \"compliance\" (nobody can remove a lock) or \"governance\" (a user granted s3:BypassGovernanceRetention can)".into()
                    });
                    cx.error(
                        &text.span,
                        &f.path,
                        format!("{other:?} is not \"governance\" or \"compliance\""),
                        Some(hint),
                    );
                    return None;
                }
            }
        }
    };
    let retention = match table.get("lock_retention") {
        None => None,
        Some(_) => Some(bounded_duration(
            cx,
            table,
            "lock_retention",
            DEFAULT_LOCK_RETENTION_HINT,
            LOCK_RETENTION_RANGE,
        )?),
    };
    match (mode, retention) {
        (None, None) => Some(None),
        (Some(mode), Some(retention)) => Some(Some(ObjectLockConfig { mode, retention })),
        (Some(_), None) => {
            let f = table.get("object_lock").expect("object_lock is set");
            cx.error(
                &f.key_span,
                &f.path,
                "object_lock needs lock_retention: how long each object stays locked",
                Some("add e.g. lock_retention = \"30d\", longer than the backups you must be able to restore".into()),
            );
            None
        }
        (None, Some(_)) => {
            let f = table.get("lock_retention").expect("lock_retention is set");
            cx.error(
                &f.key_span,
                &f.path,
                "lock_retention without object_lock locks nothing",
                Some(
                    "add object_lock = \"compliance\" or \"governance\", or remove lock_retention"
                        .into(),
                ),
            );
            None
        }
    }
}

/// Any retention S3 takes: a retain-until date may be any time.
const LOCK_RETENTION_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(100 * 365 * 86_400 + 25 * 86_400);

/// Named in the range error's hint as "the default"; there is none (the
/// key is required with `object_lock`), so the hint shows a sensible one.
const DEFAULT_LOCK_RETENTION_HINT: Duration = Duration::from_secs(30 * 86_400);

/// S3's bucket naming rules, so a typo fails here rather than at 3 a.m. on
/// the first backup.
fn check_bucket(cx: &mut Cx, bucket: &Spanned<String>, path: &str) -> bool {
    let name = bucket.value.as_str();
    let upper = name.chars().any(|c| c.is_ascii_uppercase());
    let underscore = name.contains('_');
    let why = if upper || underscore {
        match (upper, underscore) {
            (true, true) => "it has uppercase letters and '_'".to_string(),
            (true, false) => "it has uppercase letters".to_string(),
            _ => "it has '_'".to_string(),
        }
    } else if !(3..=63).contains(&name.len()) {
        format!("it is {} characters long", name.len())
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        "it has characters other than a-z, 0-9, '.' and '-'".to_string()
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        "it does not begin and end with a letter or digit".to_string()
    } else if name.contains("..") {
        "it has two periods in a row".to_string()
    } else {
        return true;
    };
    let rules = "S3 bucket names are 3 to 63 characters of a-z, 0-9, '.' and '-', \
beginning and ending with a letter or digit";
    let suggestion: String = name
        .to_ascii_lowercase()
        .replace(['_', ' '], "-")
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    let hint = if suggestion != name && is_valid_bucket(&suggestion) {
        format!("{rules}; did you mean \"{suggestion}\"?")
    } else {
        format!("{rules}, e.g. \"shop-backups\"")
    };
    cx.error(
        &bucket.span,
        path,
        format!("{name:?} is not a valid S3 bucket name: {why}"),
        Some(hint),
    );
    false
}

fn is_valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// `http://` or `https://` and a host, without credentials in it.
pub(crate) fn check_endpoint(cx: &mut Cx, endpoint: &Spanned<String>, path: &str) -> bool {
    let raw = endpoint.value.as_str();
    let lower = raw.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let authority = rest
        .unwrap_or_else(|| lower.split_once("://").map_or(lower.as_str(), |(_, r)| r))
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    // `http://KEY:SECRET@host`: never echo it.
    if authority.contains('@') {
        cx.error(
            &endpoint.span,
            path,
            "the endpoint carries credentials",
            Some(format!(
                "{AWS_CHAIN_HINT}; keep only the scheme, host and port"
            )),
        );
        return false;
    }
    let Some(rest) = rest else {
        let hint = if raw.contains("://") {
            "e.g. endpoint = \"http://127.0.0.1:9000\"".to_string()
        } else {
            format!("add the scheme, e.g. \"http://{raw}\"")
        };
        cx.error(
            &endpoint.span,
            path,
            format!("{raw:?} is not an http:// or https:// URL"),
            Some(hint),
        );
        return false;
    };
    if authority.is_empty() || rest.chars().any(char::is_whitespace) {
        cx.error(
            &endpoint.span,
            path,
            format!("{raw:?} names no host"),
            Some("e.g. endpoint = \"http://127.0.0.1:9000\"".into()),
        );
        return false;
    }
    true
}
