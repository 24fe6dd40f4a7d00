//! What the configuration means, and every check on it.
//!
//! Owns the schema (which tables and keys exist, their defaults) and the
//! rules that tie values together: names are unique and well-formed, services
//! name declared regions, replicated tiers have a standby, datastores cover
//! the regions that need them, services sharing a cluster agree on where it
//! lives, object stores are well-formed and hold no credentials, backups name
//! a declared store and a region they can be taken from, run on 5-field cron
//! schedules, keep at least their newest copy, copy offsite to another store
//! and name their encryption key without holding it; DNS providers are
//! reachable without DNS and sign with a key they only name (or a lab's
//! inline one); service records sit inside their provider's zone, have a
//! target of their type in every region and a drill record of their own;
//! fence hooks are argv arrays with known placeholders. It reads through
//! `reader` (which owns shapes and positions) and builds the `model` types
//! only when nothing is wrong.
//!
//! Every check runs even after an earlier one failed, so the operator sees
//! the whole list; a check is skipped only when its input is itself wrong
//! (no "primary not among regions" for a service whose regions did not
//! parse), to avoid reporting one mistake several times.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::format_duration;
use crate::model::{
    decode_base64, AlertKind, ApiConfig, ApiTls, ApiToken, AuditConfig, BackupPolicy, Config,
    DnsProviderConfig, DnsProviderKind, DsnSource, FailoverPolicy, FailoverSettings, HealthCheck,
    KeySource, MonitorConfig, ObjectStoreConfig, ObjectStoreKind, PgNode, RecordType, Region,
    Retention, Role, ScratchConfig, Service, ServiceDns, StoreConfig, Targets, Tier, TierTargets,
    TsigAlgorithm, TsigKey, TsigSecret, WebhookConfig, WebhookFormat, WebhookUrl,
};
use crate::reader::{Cx, Field, Span, Spanned, Table};
use crate::secret::{is_postgres_dsn, redact, Secret};
use crate::suggest;

const ROOT_KEYS: &[&str] = &[
    "store",
    "api",
    "monitor",
    "regions",
    "tiers",
    "object_stores",
    "failover",
    "dns_providers",
    "webhooks",
    "services",
    "scratch",
    "audit",
];
const SCRATCH_KEYS: &[&str] = &["root"];
const AUDIT_KEYS: &[&str] = &["key_env", "key_file"];
const WEBHOOK_KEYS: &[&str] = &["name", "url", "url_env", "url_file", "format", "events"];
const STORE_KEYS: &[&str] = &["url"];
const API_KEYS: &[&str] = &[
    "listen",
    "advertise",
    "anonymous",
    "tokens",
    "tls_cert",
    "tls_key",
];
const TOKEN_KEYS: &[&str] = &["name", "role", "secret_env", "secret_file"];
const ROLE_NAMES: &[&str] = &["viewer", "operator", "admin"];
const MONITOR_KEYS: &[&str] = &[
    "interval",
    "probe_timeout",
    "breach_grace",
    "raw_retention",
    "rollup_retention",
];
const REGION_KEYS: &[&str] = &["name", "description"];
const TIER_NAMES: &[&str] = &["hot", "warm", "cold"];
const TARGET_KEYS: &[&str] = &["rpo", "rto", "evidence_every"];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "tier",
    "regions",
    "primary",
    "cluster",
    "rpo",
    "rto",
    "evidence_every",
    "health",
    "postgres",
    "backup",
    "dns",
    "failover",
];
const HEALTH_KEYS: &[&str] = &["interval", "timeout", "failures"];
const DSN_KEYS: &[&str] = &["dsn", "dsn_env", "dsn_file"];
/// Keys of `[services.postgres.REGION]`: one of [`DSN_KEYS`], plus these.
const NODE_KEYS: &[&str] = &["dsn", "dsn_env", "dsn_file", "data_dir", "replication_dsn"];
const OBJECT_STORE_KEYS: &[&str] = &[
    "name",
    "kind",
    "path",
    "bucket",
    "prefix",
    "endpoint",
    "region",
    "path_style",
    "timeout",
];
const OBJECT_STORE_KINDS: &[&str] = &["local", "s3"];
/// Keys of one kind of object store, refused on the other.
const LOCAL_STORE_KEYS: &[&str] = &["path"];
const S3_STORE_KEYS: &[&str] = &[
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
const BACKUP_KEYS: &[&str] = &[
    "store",
    "from_region",
    "compression_level",
    "compression_threads",
    "validation_queries",
    "strict",
    "schedule",
    "verify_schedule",
    "restore_test_schedule",
    "restore_test_max_age",
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "offsite_store",
    "encryption_key_env",
    "encryption_key_file",
];
const FAILOVER_KEYS: &[&str] = &["lease", "automatic_limit", "automatic_window"];
const SERVICE_FAILOVER_KEYS: &[&str] = &[
    "automatic",
    "fence_hook",
    "fence_hook_timeout",
    "min_down",
    "cooldown",
];
/// What drctl replaces in each argument of a fence hook.
const FENCE_HOOK_PLACEHOLDERS: &[&str] = &["{service}", "{region}", "{operation}"];
const DNS_PROVIDER_KEYS: &[&str] = &[
    "name",
    "kind",
    "zone",
    "server",
    "tsig_key",
    "tsig_algorithm",
    "tsig_secret",
    "tsig_secret_env",
    "tsig_secret_file",
    "hosted_zone_id",
    "endpoint",
    "region",
];
const DNS_PROVIDER_KINDS: &[&str] = &["rfc2136", "route53"];
/// Keys of one kind of DNS provider, refused on the other.
const RFC2136_KEYS: &[&str] = &[
    "server",
    "tsig_key",
    "tsig_algorithm",
    "tsig_secret",
    "tsig_secret_env",
    "tsig_secret_file",
];
const ROUTE53_KEYS: &[&str] = &["hosted_zone_id", "endpoint", "region"];
/// Where an RFC 2136 provider's credentials go instead of a key of their own.
const TSIG_INSTEAD_HINT: &str = "sign updates with tsig_key and the key's secret in \
tsig_secret_file or tsig_secret_env; remove this key";
/// Exactly one of these holds the secret of a TSIG key.
const TSIG_SECRET_KEYS: &[&str] = &["tsig_secret", "tsig_secret_env", "tsig_secret_file"];
const SERVICE_DNS_KEYS: &[&str] = &[
    "provider",
    "record",
    "type",
    "ttl",
    "drill_record",
    "targets",
];
/// At most one of these says where a backup encryption key comes from.
const KEY_SOURCE_KEYS: &[&str] = &["encryption_key_env", "encryption_key_file"];
/// The fields of a schedule in order, and what each takes, for saying which
/// one is wrong.
const CRON_FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat, where 0 and 7 are Sunday"),
];
const CRON_EXAMPLES: &str = "e.g. \"0 * * * *\" = hourly, \"30 2 * * *\" = daily at 02:30 UTC";

const DEFAULT_STORE_URL: &str = "sqlite://drctl-state.db";
const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
const DEFAULT_S3_REGION: &str = "us-east-1";
/// zstd -1: on two cores it keeps a backup at the speed of pg_basebackup
/// alone (bench/results/backup-peers-zstd1.md: 0.98× against 0.65× at -3),
/// at about the same ratio on typical table data.
const DEFAULT_COMPRESSION_LEVEL: i32 = 1;
const DEFAULT_RESTORE_TEST_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// Short enough that a dead driver is replaced quickly, long enough that a
/// slow step (a fence hook, a promotion) renews it in time.
const LEASE_RANGE: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(600);
const DEFAULT_DNS_TTL: Duration = Duration::from_secs(30);
/// A record's TTL bounds how long clients keep the old region after a
/// flip; past a day, no RTO target is meaningful.
const TTL_RANGE: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(86_400);
/// zstd's regular levels; 20-22 ("ultra") need far more memory to restore.
const COMPRESSION_LEVELS: std::ops::RangeInclusive<i64> = 1..=19;
/// More zstd workers than this is a typo, not a machine.
const MAX_COMPRESSION_THREADS: u32 = 256;
/// Where S3 credentials come from instead of the config file.
const AWS_CHAIN_HINT: &str =
    "drctl takes S3 and Route 53 credentials from the standard AWS chain: \
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, a profile named by \
AWS_PROFILE, or the instance role";

/// Reads and checks the whole document; `None` when anything was reported.
pub(crate) fn config(
    cx: &mut Cx,
    root: &Table,
    source: PathBuf,
    base_dir: &Path,
) -> Option<Config> {
    cx.unknown_keys(root, ROOT_KEYS);
    let store = store(cx, root, base_dir);
    let api = api(cx, root, base_dir);
    let monitor = monitor(cx, root);
    let regions = regions(cx, root);
    let tiers = tiers(cx, root);
    let object_stores = object_stores(cx, root, base_dir);
    let store_names: Option<Vec<&str>> = object_stores.as_ref().map(|stores| {
        stores
            .iter()
            .filter_map(|s| s.reference.as_deref())
            .collect()
    });
    let failover = failover_settings(cx, root);
    let dns_providers = dns_providers(cx, root, base_dir);
    let provider_refs: Option<Vec<ProviderRef>> = dns_providers.as_ref().map(|providers| {
        providers
            .iter()
            .filter_map(|p| {
                Some(ProviderRef {
                    name: p.reference.as_deref()?,
                    zone: p.value.as_ref().and_then(DnsProviderConfig::zone),
                })
            })
            .collect()
    });
    let refs = References {
        stores: store_names.as_deref(),
        dns_providers: provider_refs.as_deref(),
    };
    let webhooks = webhooks(cx, root, base_dir);
    let scratch = scratch(cx, root, base_dir);
    let audit = audit(cx, root, base_dir);
    let services = services(cx, root, &regions, &tiers, base_dir, &refs);
    clusters(cx, &services);
    published_records(cx, &services);

    if cx.has_errors() {
        return None;
    }
    Some(Config {
        source,
        store: store?,
        api: api?,
        monitor,
        regions: regions.into_iter().map(|r| r.region).collect(),
        tiers,
        services: services.into_iter().map(|s| s.service).collect(),
        object_stores: object_stores?
            .into_iter()
            .map(|s| s.value)
            .collect::<Option<Vec<_>>>()?,
        failover: failover?,
        dns_providers: dns_providers?
            .into_iter()
            .map(|p| p.value)
            .collect::<Option<Vec<_>>>()?,
        webhooks: webhooks?
            .into_iter()
            .map(|w| w.value)
            .collect::<Option<Vec<_>>>()?,
        scratch,
        audit: audit?,
    })
}

/// `[audit]`: where the audit chain's HMAC key lives (never in the file,
/// and never in the store it protects).
fn audit(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<AuditConfig> {
    let Some(table) = section(cx, root, "audit", AUDIT_KEYS) else {
        return Some(AuditConfig::default());
    };
    let key = match at_most_one(
        cx,
        &table,
        AUDIT_KEYS,
        "keep one: the name of an environment variable holding the key, or the path of a file holding it",
    )? {
        None => None,
        Some(field) => {
            let value = cx.string(&field)?;
            Some(if field.key == "key_env" {
                KeySource::Env(key_env_name(cx, value, &field.path, "DRCTL_AUDIT_KEY")?)
            } else {
                KeySource::File(key_file(cx, value, &field.path, base_dir, "the audit key")?)
            })
        }
    };
    Some(AuditConfig { key })
}

/// `[[webhooks]]`: where alerts go.
fn webhooks(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<Vec<Declared<WebhookConfig>>> {
    declared_tables(
        cx,
        root,
        "webhooks",
        NameKind::Webhook,
        "write each webhook as a [[webhooks]] table",
        |cx, table| webhook(cx, table, base_dir),
        |name, (url, format, events)| WebhookConfig {
            name,
            url,
            format,
            events,
        },
    )
}

fn webhook(
    cx: &mut Cx,
    table: &Table,
    base_dir: &Path,
) -> Option<(WebhookUrl, WebhookFormat, Vec<AlertKind>)> {
    cx.unknown_keys(table, WEBHOOK_KEYS);
    let url = match at_most_one(
        cx,
        table,
        &["url", "url_env", "url_file"],
        "keep one: the URL, the name of an environment variable holding it, or a file holding it",
    ) {
        None => None,
        Some(None) => {
            cx.error(
                &table.span,
                &table.path,
                "the webhook has no URL",
                Some("add url_file = \"secrets/slack-webhook\" (a Slack URL is a secret), url_env = \"DRCTL_WEBHOOK_URL\" or url = \"https://…\"".into()),
            );
            None
        }
        Some(Some(field)) => {
            let value = cx.string(&field)?;
            match field.key {
                "url" => {
                    let ok =
                        value.value.starts_with("https://") || value.value.starts_with("http://");
                    if ok {
                        Some(WebhookUrl::Inline(Secret::opaque(value.value)))
                    } else {
                        cx.error(
                            &value.span,
                            &field.path,
                            "the URL does not start with https:// or http://",
                            Some(
                                "write the whole URL, e.g. \"https://hooks.example.com/drctl\""
                                    .into(),
                            ),
                        );
                        None
                    }
                }
                "url_env" => key_env_name(cx, value, &field.path, "DRCTL_WEBHOOK_URL")
                    .map(|v| WebhookUrl::Source(KeySource::Env(v))),
                _ => key_file(cx, value, &field.path, base_dir, "the webhook URL")
                    .map(|p| WebhookUrl::Source(KeySource::File(p))),
            }
        }
    };
    let format = match table.get("format") {
        None => Some(WebhookFormat::Json),
        Some(field) => {
            let text = cx.string(&field)?;
            match text.value.as_str() {
                "json" => Some(WebhookFormat::Json),
                "slack" => Some(WebhookFormat::Slack),
                other => {
                    let hint = suggest::hint(other, ["json", "slack"])
                        .unwrap_or_else(|| "json sends drctl's event as JSON; slack sends {\"text\": …} (Slack, Mattermost, Rocket.Chat)".into());
                    cx.error(
                        &text.span,
                        &field.path,
                        format!("{other:?} is not json or slack"),
                        Some(hint),
                    );
                    None
                }
            }
        }
    };
    let events = match table.get("events") {
        None => Some(Vec::new()),
        Some(field) => {
            let names = AlertKind::ALL.map(AlertKind::as_str);
            let list = cx.array(&field, "e.g. events = [\"breach\", \"operation\"]")?;
            let mut kinds = Vec::new();
            let mut ok = true;
            for element in list {
                let Some(item) = cx.string(&element) else {
                    ok = false;
                    continue;
                };
                match AlertKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == item.value)
                {
                    Some(k) => kinds.push(k),
                    None => {
                        ok = false;
                        let hint = suggest::hint(&item.value, names)
                            .unwrap_or_else(|| format!("the kinds are {}", names.join(", ")));
                        cx.error(
                            &item.span,
                            &element.path,
                            format!("{:?} is not a kind of alert", item.value),
                            Some(hint),
                        );
                    }
                }
            }
            ok.then_some(kinds)
        }
    };
    Some((url?, format?, events?))
}

/// What services may name that is declared elsewhere in the file; `None`
/// when the declarations themselves did not parse (reported), so that any
/// name is taken rather than reporting one mistake many times.
struct References<'a> {
    stores: Option<&'a [&'a str]>,
    dns_providers: Option<&'a [ProviderRef<'a>]>,
}

/// An optional sub-table; `None` when absent or not a table (reported).
fn section<'d>(cx: &mut Cx, parent: &Table<'d>, key: &str, known: &[&str]) -> Option<Table<'d>> {
    let table = cx.table(&parent.get(key)?)?;
    cx.unknown_keys(&table, known);
    Some(table)
}

/// The duration under `key`, or `default` when absent. Invalid values are
/// reported and replaced by the default so later checks can proceed.
fn duration_or(cx: &mut Cx, table: Option<&Table>, key: &str, default: Duration) -> Duration {
    optional_duration(cx, table, key).unwrap_or(default)
}

fn optional_duration(cx: &mut Cx, table: Option<&Table>, key: &str) -> Option<Duration> {
    let field = table?.get(key)?;
    cx.duration(&field).map(|d| d.value)
}

fn store(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<StoreConfig> {
    let table = section(cx, root, "store", STORE_KEYS);
    let Some(field) = table.as_ref().and_then(|t| t.get("url")) else {
        return Some(StoreConfig {
            url: Secret::new(resolve_sqlite("//drctl-state.db", base_dir)?),
        });
    };
    let url = cx.string(&field)?;
    let raw = url.value.as_str();
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Some(StoreConfig {
            url: Secret::new(raw),
        });
    }
    if lower.starts_with("sqlite:") {
        if let Some(resolved) = resolve_sqlite(&raw["sqlite:".len()..], base_dir) {
            return Some(StoreConfig {
                url: Secret::new(resolved),
            });
        }
        cx.error(
            &url.span,
            &field.path,
            format!("\"{}\" names no database file", redact(raw)),
            Some(format!("e.g. \"{DEFAULT_STORE_URL}\"")),
        );
        return None;
    }
    // The URL may carry a password: show it redacted, like everywhere else.
    cx.error(
        &url.span,
        &field.path,
        format!("\"{}\" is not a supported store", redact(raw)),
        Some("use \"sqlite://PATH\" or \"postgres://USER@HOST:PORT/DB\"".into()),
    );
    None
}

/// Makes the path of a `sqlite:` URL (the part after `sqlite:`) absolute
/// against the config file's directory, so the daemon finds the same
/// database whatever directory it was started from. `None` when no path.
fn resolve_sqlite(after_scheme: &str, base_dir: &Path) -> Option<String> {
    let rest = after_scheme.strip_prefix("//").unwrap_or(after_scheme);
    let (path, query) = match rest.find('?') {
        Some(q) => rest.split_at(q),
        None => (rest, ""),
    };
    if path.is_empty() {
        return None;
    }
    if path == ":memory:" || Path::new(path).is_absolute() {
        return Some(format!("sqlite://{path}{query}"));
    }
    Some(format!("sqlite://{}{query}", base_dir.join(path).display()))
}

fn api(cx: &mut Cx, root: &Table, base_dir: &Path) -> Option<ApiConfig> {
    let table = section(cx, root, "api", API_KEYS);
    let listen = match table.as_ref().and_then(|t| t.get("listen")) {
        None => DEFAULT_LISTEN.parse().ok(),
        Some(field) => listen(cx, &field),
    };
    let tokens = match &table {
        None => Some(Vec::new()),
        Some(t) => api_tokens(cx, t, base_dir),
    };
    // Without tokens nobody could do anything, so reads stay open (and
    // mutations impossible) until the first token is configured; with
    // tokens, every request needs one unless `anonymous` says otherwise.
    let anonymous = match table.as_ref().and_then(|t| t.get("anonymous")) {
        None => Some(
            tokens
                .as_ref()
                .is_some_and(Vec::is_empty)
                .then_some(Role::Viewer),
        ),
        Some(field) => anonymous_role(cx, &field),
    };
    let advertise = match table.as_ref().and_then(|t| t.get("advertise")) {
        None => Some(None),
        Some(field) => advertise(cx, &field).map(Some),
    };
    let tls = match &table {
        None => Some(None),
        Some(t) => api_tls(cx, t, base_dir),
    };
    Some(ApiConfig {
        listen: listen?,
        advertise: advertise?,
        anonymous: anonymous?,
        tokens: tokens?,
        tls: tls?,
    })
}

/// `tls_cert` and `tls_key`: both (HTTPS) or neither (plain HTTP). The
/// files are read when the daemon starts, where a bad one stops it.
fn api_tls(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<Option<ApiTls>> {
    let mut file = |key: &str, what: &str| -> Option<Option<PathBuf>> {
        let Some(field) = table.get(key) else {
            return Some(None);
        };
        let value = cx.string(&field)?;
        key_file(cx, value, &field.path, base_dir, what).map(Some)
    };
    let cert = file("tls_cert", "the API's PEM certificate chain");
    let key = file("tls_key", "the API's PEM private key");
    match (cert?, key?) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => Some(Some(ApiTls { cert, key })),
        (cert, _) => {
            let (present, missing) = if cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            let field = table.get(present)?;
            cx.error(
                &field.span,
                &field.path,
                format!("{present} is set without {missing}"),
                Some("set both tls_cert and tls_key for HTTPS, or neither for plain HTTP".into()),
            );
            None
        }
    }
}

fn listen(cx: &mut Cx, field: &Field) -> Option<SocketAddr> {
    let text = cx.string(field)?;
    match text.value.parse::<SocketAddr>() {
        Ok(listen) => Some(listen),
        Err(_) => {
            cx.error(
                &text.span,
                &field.path,
                format!("{:?} is not an IP address and port", text.value),
                Some(format!(
                    "write IP:PORT, e.g. \"{DEFAULT_LISTEN}\" or \"[::]:7878\""
                )),
            );
            None
        }
    }
}

/// `advertise = "http://host:port"`: the API's URL as clients reach it.
fn advertise(cx: &mut Cx, field: &Field) -> Option<String> {
    let text = cx.string(field)?;
    let v = text.value.trim_end_matches('/');
    let scheme_ok = v.starts_with("http://") || v.starts_with("https://");
    let host = v.split_once("://").map_or("", |(_, rest)| rest);
    if scheme_ok && !host.is_empty() && !v.chars().any(char::is_whitespace) {
        return Some(v.to_string());
    }
    cx.error(
        &text.span,
        &field.path,
        format!("{:?} is not an http:// or https:// URL", text.value),
        Some("write the URL clients use for this daemon's API, e.g. \"http://drctl-b.internal:7878\"".into()),
    );
    None
}

/// `anonymous = "viewer"` (or `"none"`): what a request without a token may
/// do. Anything above viewer is refused: an anonymous caller that can fail a
/// region over is a hole, not a convenience.
fn anonymous_role(cx: &mut Cx, field: &Field) -> Option<Option<Role>> {
    let text = cx.string(field)?;
    match text.value.as_str() {
        "none" => return Some(None),
        "viewer" => return Some(Some(Role::Viewer)),
        _ => {}
    }
    let hint = if Role::parse(&text.value).is_some() {
        "anonymous callers may only read; give operators a token ([[api.tokens]] with role = \"operator\")".to_string()
    } else {
        "write \"viewer\" (anyone who reaches the API may read it) or \"none\" (every request needs a token)".to_string()
    };
    cx.error(
        &text.span,
        &field.path,
        format!("{:?} is not \"none\" or \"viewer\"", text.value),
        Some(hint),
    );
    None
}

/// `[[api.tokens]]`: name, role and where the secret lives. A secret
/// written in the file itself is refused and never echoed.
fn api_tokens(cx: &mut Cx, api: &Table, base_dir: &Path) -> Option<Vec<ApiToken>> {
    let declared = declared_tables(
        cx,
        api,
        "tokens",
        NameKind::Token,
        "write each token as an [[api.tokens]] table",
        |cx, table| api_token(cx, table, base_dir),
        |name, (role, secret)| ApiToken { name, role, secret },
    )?;
    declared.into_iter().map(|d| d.value).collect()
}

fn api_token(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<(Role, KeySource)> {
    let mut inline_secret = false;
    for field in table.fields() {
        if TOKEN_KEYS.contains(&field.key) {
            continue;
        }
        if is_credential_key(field.key) {
            inline_secret = true;
            cx.error(
                &field.key_span,
                &field.path,
                "a token's secret does not belong in the config file",
                Some("put it in a file (secret_file = \"tokens/NAME\") or an environment variable (secret_env = \"DRCTL_TOKEN_NAME\"); remove this key and rotate the token".into()),
            );
            continue;
        }
        let hint = suggest::hint(field.key, TOKEN_KEYS.iter().copied())
            .unwrap_or_else(|| format!("expected one of {}", TOKEN_KEYS.join(", ")));
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
    let role = cx
        .required(table, "role", "add role = \"viewer\", \"operator\" or \"admin\"")
        .and_then(|field| {
            let text = cx.string(&field)?;
            if let Some(role) = Role::parse(&text.value) {
                return Some(role);
            }
            let hint = suggest::hint(&text.value, ROLE_NAMES.iter().copied()).unwrap_or_else(|| {
                "viewer reads, operator also starts failovers and backups, admin also reads the audit log".into()
            });
            cx.error(
                &text.span,
                &field.path,
                format!("{:?} is not one of {}", text.value, ROLE_NAMES.join(", ")),
                Some(hint),
            );
            None
        });
    let secret = match at_most_one(
        cx,
        table,
        &["secret_env", "secret_file"],
        "keep one: the name of an environment variable holding the token, or the path of a file holding it",
    ) {
        None => None,
        Some(None) if inline_secret => None,
        Some(None) => {
            cx.error(
                &table.span,
                &table.path,
                "the token has no secret",
                Some("add secret_file = \"tokens/NAME\" (a file holding the token) or secret_env = \"DRCTL_TOKEN_NAME\"".into()),
            );
            None
        }
        Some(Some(field)) => {
            let value = cx.string(&field)?;
            if field.key == "secret_env" {
                key_env_name(cx, value, &field.path, "DRCTL_TOKEN_ONCALL").map(KeySource::Env)
            } else {
                key_file(cx, value, &field.path, base_dir, "the token").map(KeySource::File)
            }
        }
    };
    Some((role?, secret?))
}

/// `[scratch] root`: a directory, resolved against the config's directory.
fn scratch(cx: &mut Cx, root: &Table, base_dir: &Path) -> ScratchConfig {
    let table = section(cx, root, "scratch", SCRATCH_KEYS);
    let Some(field) = table.as_ref().and_then(|t| t.get("root")) else {
        return ScratchConfig::default();
    };
    match cx.string(&field) {
        Some(v) if !v.value.trim().is_empty() => ScratchConfig {
            root: Some(base_dir.join(v.value)),
        },
        Some(v) => {
            cx.error(
                &v.span,
                &field.path,
                "names no directory",
                Some("give a directory only drctl's user can write, e.g. \"/var/lib/drctl/scratch\", or leave the key out".into()),
            );
            ScratchConfig::default()
        }
        None => ScratchConfig::default(),
    }
}

fn monitor(cx: &mut Cx, root: &Table) -> MonitorConfig {
    let table = section(cx, root, "monitor", MONITOR_KEYS);
    let t = table.as_ref();
    let secs = Duration::from_secs;
    MonitorConfig {
        interval: duration_or(cx, t, "interval", secs(1)),
        probe_timeout: duration_or(cx, t, "probe_timeout", secs(2)),
        breach_grace: duration_or(cx, t, "breach_grace", secs(10)),
        raw_retention: duration_or(cx, t, "raw_retention", secs(24 * 3600)),
        rollup_retention: duration_or(cx, t, "rollup_retention", secs(30 * 86_400)),
    }
}

/// What kind of name is being checked, for messages and examples.
#[derive(Clone, Copy)]
enum NameKind {
    Region,
    Service,
    Cluster,
    ObjectStore,
    DnsProvider,
    Token,
    Webhook,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Region => "region",
            NameKind::Service => "service",
            NameKind::Cluster => "cluster",
            NameKind::ObjectStore => "object store",
            NameKind::DnsProvider => "DNS provider",
            NameKind::Token => "API token",
            NameKind::Webhook => "webhook",
        }
    }
    fn example(self) -> &'static str {
        match self {
            NameKind::Region => "eu-west",
            NameKind::Service => "orders",
            NameKind::Cluster => "shop-main",
            NameKind::ObjectStore => "dr-bucket",
            NameKind::DnsProvider => "public-dns",
            NameKind::Token => "oncall",
            NameKind::Webhook => "oncall-slack",
        }
    }
    /// The array of tables that declares names of this kind.
    fn table(self) -> &'static str {
        match self {
            NameKind::Region => "[[regions]]",
            NameKind::Service => "[[services]]",
            NameKind::Cluster => "cluster",
            NameKind::ObjectStore => "[[object_stores]]",
            NameKind::DnsProvider => "[[dns_providers]]",
            NameKind::Token => "[[api.tokens]]",
            NameKind::Webhook => "[[webhooks]]",
        }
    }
}

/// Names become DNS labels, metric labels and file names: `[a-z0-9-]+`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The valid name an invalid one was probably meant to be: `US_East` →
/// `us-east`. `None` when no valid name comes out.
fn normalized_name(name: &str) -> Option<String> {
    let normalized: String = name
        .trim()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '_' | ' ' | '.' => Some('-'),
            _ => None,
        })
        .collect();
    is_valid_name(&normalized).then_some(normalized)
}

/// Reports an invalid name, suggesting its normalized form when that helps.
fn check_name(cx: &mut Cx, name: &Spanned<String>, path: &str, kind: NameKind) -> bool {
    if is_valid_name(&name.value) {
        return true;
    }
    let hint = match normalized_name(&name.value) {
        Some(normalized) => format!("did you mean \"{normalized}\"?"),
        None => format!("e.g. \"{}\"", kind.example()),
    };
    cx.error(
        &name.span,
        path,
        format!(
            "{:?} is not a valid {} name; names use only a-z, 0-9 and '-'",
            name.value,
            kind.noun()
        ),
        Some(hint),
    );
    false
}

/// The `name` of one element of `[[regions]]`, `[[object_stores]]` or
/// `[[dns_providers]]`, put in the table's path (`object_stores[1]
/// (dr-bucket)`) when valid, so every later error of the table says which
/// one it is. `None` when absent or not a string (reported).
fn element_name(
    cx: &mut Cx,
    table: &mut Table,
    kind: NameKind,
) -> Option<(Spanned<String>, String)> {
    let index_path = table.path.clone();
    let hint = format!("add name = \"…\", e.g. name = \"{}\"", kind.example());
    let field = cx.required(table, "name", &hint)?;
    let name = cx.string(&field)?;
    if is_valid_name(&name.value) {
        table.relabel(format!("{index_path} ({})", name.value));
    }
    Some((name, field.path))
}

/// Checks a declared name; returns whether it is valid and the name
/// references must use: the name when valid, else the name its error
/// suggests (so fixing the declaration per the hint fixes references too,
/// and a reference to the suggested name is not reported a second time).
fn declared_name(
    cx: &mut Cx,
    name: &Spanned<String>,
    path: &str,
    kind: NameKind,
) -> (bool, Option<String>) {
    if check_name(cx, name, path, kind) {
        (true, Some(name.value.clone()))
    } else {
        (false, normalized_name(&name.value))
    }
}

/// Reports a second declaration of a name first declared at `first`.
fn already_declared(cx: &mut Cx, name: &Spanned<String>, path: &str, first: &Span, kind: NameKind) {
    let line = cx.line(first);
    cx.error(
        &name.span,
        path,
        format!(
            "{} {:?} is already declared at line {line}",
            kind.noun(),
            name.value
        ),
        Some(format!(
            "{} names must be unique; rename or remove one",
            kind.noun()
        )),
    );
}

/// Whether `name` is one of the `declared` names of `kind`, reporting it
/// (with the closest one) if not. `declared` is `None` when the declarations
/// themselves did not parse (reported): then any name is taken, to report
/// one mistake once.
fn check_reference(
    cx: &mut Cx,
    name: &Spanned<String>,
    path: &str,
    declared: Option<&[&str]>,
    kind: NameKind,
) -> bool {
    let Some(names) = declared else {
        return true;
    };
    if names.contains(&name.value.as_str()) {
        return true;
    }
    let noun = kind.noun();
    let hint = suggest::hint(&name.value, names.iter().copied()).unwrap_or_else(|| {
        if names.is_empty() {
            format!(
                "no {noun} is declared; add {} with name = {:?}",
                kind.table(),
                name.value
            )
        } else {
            format!("declared {noun}s are {}", names.join(", "))
        }
    });
    cx.error(
        &name.span,
        path,
        format!("{:?} is not a declared {noun}", name.value),
        Some(hint),
    );
    false
}

/// A region as read, with the position of its name for later references.
struct DeclaredRegion {
    region: Region,
    name_span: Span,
    /// The name services must use: the name when valid, else the name its
    /// error suggests (so fixing the region per the hint fixes references
    /// too, and a service naming `us-east` is not reported a second time).
    reference: Option<String>,
}

fn regions(cx: &mut Cx, root: &Table) -> Vec<DeclaredRegion> {
    let missing_hint = "declare at least one region: [[regions]] with name = \"eu-west\"";
    let Some(field) = root.get("regions") else {
        cx.error(
            &(0..0),
            "regions",
            "no region is declared",
            Some(missing_hint.into()),
        );
        return Vec::new();
    };
    let Some(tables) = cx.tables(&field, "write each region as a [[regions]] table") else {
        return Vec::new();
    };
    if tables.is_empty() {
        cx.error(
            &field.span,
            &field.path,
            "no region is declared",
            Some(missing_hint.into()),
        );
    }
    let mut declared: Vec<DeclaredRegion> = Vec::new();
    for mut table in tables {
        let name = element_name(cx, &mut table, NameKind::Region);
        cx.unknown_keys(&table, REGION_KEYS);
        let description = table
            .get("description")
            .and_then(|f| cx.string(&f))
            .map(|s| s.value);
        let Some((name, name_path)) = name else {
            continue;
        };
        let (_, reference) = declared_name(cx, &name, &name_path, NameKind::Region);
        if let Some(first) = declared.iter().find(|r| r.region.name == name.value) {
            already_declared(cx, &name, &name_path, &first.name_span, NameKind::Region);
            continue;
        }
        declared.push(DeclaredRegion {
            region: Region {
                name: name.value,
                description,
            },
            name_span: name.span,
            reference,
        });
    }
    declared
}

fn tiers(cx: &mut Cx, root: &Table) -> TierTargets {
    let mut targets = TierTargets::default();
    let Some(table) = section(cx, root, "tiers", TIER_NAMES) else {
        return targets;
    };
    for tier in Tier::all() {
        let Some(field) = table.get(tier.as_str()) else {
            continue;
        };
        let Some(tier_table) = cx.table(&field) else {
            continue;
        };
        cx.unknown_keys(&tier_table, TARGET_KEYS);
        let slot = match tier {
            Tier::Hot => &mut targets.hot,
            Tier::Warm => &mut targets.warm,
            Tier::Cold => &mut targets.cold,
        };
        if let Some(rpo) = optional_duration(cx, Some(&tier_table), "rpo") {
            slot.rpo = rpo;
        }
        if let Some(rto) = optional_duration(cx, Some(&tier_table), "rto") {
            slot.rto = rto;
        }
        if let Some(every) = optional_duration(cx, Some(&tier_table), "evidence_every") {
            slot.evidence_every = every;
        }
    }
    targets
}

/// One element of `[[object_stores]]` or `[[dns_providers]]` as read, with
/// the position of its name for duplicates.
struct Declared<T> {
    name: String,
    name_span: Span,
    /// The name references must use: as for regions, the suggested name
    /// when the written one is invalid, so one mistake is reported once.
    reference: Option<String>,
    /// `None` when anything about the element is wrong (reported).
    value: Option<T>,
}

/// The named tables under `key` (`[[object_stores]]`, `[[dns_providers]]`):
/// each one's name checked and unique, the rest read by `read` and made
/// into a `T` by `make` when all is right. `None` when the key holds
/// something else than tables (reported), so references to them are not
/// all reported a second time.
fn declared_tables<K, T>(
    cx: &mut Cx,
    root: &Table,
    key: &str,
    kind: NameKind,
    hint: &str,
    mut read: impl FnMut(&mut Cx, &Table) -> Option<K>,
    make: impl Fn(String, K) -> T,
) -> Option<Vec<Declared<T>>> {
    let Some(field) = root.get(key) else {
        return Some(Vec::new());
    };
    let tables = cx.tables(&field, hint)?;
    let mut declared: Vec<Declared<T>> = Vec::new();
    for mut table in tables {
        let name = element_name(cx, &mut table, kind);
        let value = read(cx, &table);
        let Some((name, name_path)) = name else {
            continue;
        };
        let (valid, reference) = declared_name(cx, &name, &name_path, kind);
        if let Some(first) = declared.iter().find(|s| s.name == name.value) {
            already_declared(cx, &name, &name_path, &first.name_span, kind);
            continue;
        }
        declared.push(Declared {
            value: value
                .filter(|_| valid)
                .map(|value| make(name.value.clone(), value)),
            name: name.value,
            name_span: name.span,
            reference,
        });
    }
    Some(declared)
}

/// `[[object_stores]]`.
fn object_stores(
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
        if OBJECT_STORE_KEYS.contains(&field.key) {
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
        let hint = suggest::hint(field.key, OBJECT_STORE_KEYS.iter().copied())
            .unwrap_or_else(|| format!("expected one of {}", OBJECT_STORE_KEYS.join(", ")));
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

/// `access_key`, `aws_secret_access_key`, `session-token`, `password`…
fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    [
        "access_key",
        "accesskey",
        "key_id",
        "secret",
        "token",
        "password",
        "credential",
    ]
    .iter()
    .any(|k| key.contains(k))
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

/// The `kind` of an object store or DNS provider: one of `kinds` (two of
/// them), with `fallback` as the hint when no kind is close to what was
/// written. `None` when missing or wrong (reported); per-kind checks are
/// then skipped, since they could only guess.
fn kind_of(cx: &mut Cx, table: &Table, kinds: &[&str], fallback: &str) -> Option<String> {
    let choice = kinds
        .iter()
        .map(|k| format!("kind = {k:?}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let field = cx.required(table, "kind", &format!("add {choice}"))?;
    let kind = cx.string_or(&field, Some(format!("write {choice}")))?;
    if kinds.contains(&kind.value.as_str()) {
        return Some(kind.value);
    }
    let hint =
        suggest::hint(&kind.value, kinds.iter().copied()).unwrap_or_else(|| fallback.to_string());
    cx.error(
        &kind.span,
        &field.path,
        format!("{:?} is not one of {}", kind.value, kinds.join(", ")),
        Some(hint),
    );
    None
}

/// Reports each of `keys` (which belong to `other_kind`) present in `table`;
/// true when there is none.
fn no_keys_of_other_kind(
    cx: &mut Cx,
    table: &Table,
    keys: &[&str],
    other_kind: &str,
    hint: &str,
) -> bool {
    let mut ok = true;
    for key in keys {
        if let Some(f) = table.get(key) {
            cx.error(
                &f.key_span,
                &f.path,
                format!("only for kind = \"{other_kind}\""),
                Some(hint.to_string()),
            );
            ok = false;
        }
    }
    ok
}

fn local_store(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<ObjectStoreKind> {
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
        None => Some(String::new()),
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
        None => Some(false),
        Some(f) => cx.boolean(&f).map(|b| b.value),
    };
    let timeout = bounded_duration(cx, table, "timeout", DEFAULT_S3_TIMEOUT, S3_TIMEOUT_RANGE);
    Some(ObjectStoreKind::S3 {
        bucket: bucket?,
        prefix: prefix?,
        endpoint: endpoint?,
        region: region?,
        path_style: path_style?,
        timeout: timeout?,
    })
}

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
fn check_endpoint(cx: &mut Cx, endpoint: &Spanned<String>, path: &str) -> bool {
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

/// A validated service with the positions the cluster check points at.
struct CheckedService {
    service: Service,
    path: String,
    regions_span: Span,
    primary_span: Span,
    published: Option<PublishedRecords>,
}

fn services(
    cx: &mut Cx,
    root: &Table,
    regions: &[DeclaredRegion],
    tiers: &TierTargets,
    base_dir: &Path,
    refs: &References,
) -> Vec<CheckedService> {
    let Some(field) = root.get("services") else {
        return Vec::new();
    };
    let Some(tables) = cx.tables(&field, "write each service as a [[services]] table") else {
        return Vec::new();
    };
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut checked = Vec::new();
    for table in tables {
        if let Some(service) = service(cx, table, regions, tiers, base_dir, refs, &mut names) {
            checked.push(service);
        }
    }
    checked
}

fn service(
    cx: &mut Cx,
    mut table: Table,
    declared: &[DeclaredRegion],
    tiers: &TierTargets,
    base_dir: &Path,
    refs: &References,
    names: &mut HashMap<String, Span>,
) -> Option<CheckedService> {
    let index_path = table.path.clone();

    // The name first: every other error of this service is labelled with it.
    let name = cx
        .required(&table, "name", "add name = \"…\", e.g. name = \"orders\"")
        .and_then(|f| cx.string(&f).map(|s| (s, f.path)));
    let mut name_ok = false;
    if let Some((name, name_path)) = &name {
        name_ok = check_name(cx, name, name_path, NameKind::Service);
        if let Some(first_span) = names.get(&name.value) {
            already_declared(cx, name, name_path, first_span, NameKind::Service);
            name_ok = false;
        } else {
            names.insert(name.value.clone(), name.span.clone());
        }
        if is_valid_name(&name.value) {
            table.relabel(format!("{index_path} ({})", name.value));
        }
    }
    let path = table.path.clone();
    cx.unknown_keys(&table, SERVICE_KEYS);

    let tier = cx
        .required(&table, "tier", "add tier = \"hot\", \"warm\" or \"cold\"")
        .and_then(|f| tier(cx, &f));

    let region_names: Vec<&str> = declared
        .iter()
        .filter_map(|r| r.reference.as_deref())
        .collect();
    let example_regions = region_names
        .iter()
        .take(2)
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let regions_field = cx.required(
        &table,
        "regions",
        &format!("add regions = [{example_regions}]"),
    );
    let regions = regions_field
        .as_ref()
        .and_then(|f| service_regions(cx, f, &region_names, &example_regions));

    let primary = cx
        .required(
            &table,
            "primary",
            &format!(
                "add primary = {:?}",
                regions
                    .as_ref()
                    .and_then(|r| r.first())
                    .map_or("eu-west", |r| r.value.as_str())
            ),
        )
        .and_then(|f| cx.string(&f).map(|s| (s, f.path)));
    if let (Some((primary, primary_path)), Some(regions)) = (&primary, &regions) {
        if !regions.iter().any(|r| r.value == primary.value) {
            primary_not_among_regions(cx, primary, primary_path, regions, &region_names);
        }
    }

    let cluster = match table.get("cluster") {
        Some(f) => cx
            .string(&f)
            .filter(|c| check_name(cx, c, &f.path, NameKind::Cluster))
            .map(|c| c.value),
        None => name.as_ref().map(|(n, _)| n.value.clone()),
    };

    let rpo = optional_duration(cx, Some(&table), "rpo");
    let evidence_every = optional_duration(cx, Some(&table), "evidence_every");
    let rto = optional_duration(cx, Some(&table), "rto");
    let health = health(cx, &table);

    // A replicated tier fails over to a running standby, which must live in
    // another region than the primary.
    if let (Some(tier), Some(regions)) = (tier, &regions) {
        if tier.is_replicated() && regions.len() == 1 {
            cx.error(
                &table.span,
                &path,
                format!(
                    "a {tier} service needs a standby region; `regions` lists only {:?}",
                    regions[0].value
                ),
                Some("add a second region".into()),
            );
        }
    }

    let postgres = match table.get("postgres") {
        Some(f) => postgres(
            cx,
            &f,
            tier,
            regions.as_deref(),
            primary.as_ref().map(|p| &p.0),
            base_dir,
        ),
        None => Some((BTreeMap::new(), BTreeMap::new())),
    };

    let backup = match table.get("backup") {
        Some(f) => backup(
            cx,
            &f,
            refs.stores,
            regions.as_deref(),
            primary.as_ref().map(|p| &p.0),
            table
                .get("postgres")
                .is_some()
                .then_some(postgres.as_ref().map(|(c, _)| c)),
            base_dir,
        )
        .map(Some),
        None => Some(None),
    };

    let dns = match table.get("dns") {
        Some(f) => service_dns(
            cx,
            &f,
            refs.dns_providers,
            name.as_ref().map(|(n, _)| n.value.as_str()),
            regions.as_deref(),
        )
        .map(|(dns, published)| (Some(dns), Some(published))),
        None => Some((None, None)),
    };
    let failover = service_failover(cx, &table, tier);

    let (name, _) = name?;
    if !name_ok {
        return None;
    }
    let (dns, published) = dns?;
    let tier = tier?;
    let regions = regions?;
    let regions_span = regions_field?.span;
    let (primary, _) = primary?;
    let postgres = postgres?;
    let tier_targets = tiers.get(tier);
    Some(CheckedService {
        service: Service {
            name: name.value,
            tier,
            regions: regions.into_iter().map(|r| r.value).collect(),
            primary: primary.value,
            cluster: cluster?,
            targets: Targets {
                rpo: rpo.unwrap_or(tier_targets.rpo),
                rto: rto.unwrap_or(tier_targets.rto),
                evidence_every: evidence_every.unwrap_or(tier_targets.evidence_every),
            },
            health: health?,
            postgres: postgres.0,
            nodes: postgres.1,
            backup: backup?,
            dns,
            failover: failover?,
        },
        path,
        regions_span,
        primary_span: primary.span,
        published,
    })
}

fn tier(cx: &mut Cx, field: &Field) -> Option<Tier> {
    let text = cx.string_or(
        field,
        Some("write tier = \"hot\", \"warm\" or \"cold\"".into()),
    )?;
    match text.value.parse::<Tier>() {
        Ok(tier) => Some(tier),
        Err(unknown) => {
            cx.error(
                &text.span,
                &field.path,
                unknown.to_string(),
                suggest::hint(&text.value, TIER_NAMES.iter().copied()),
            );
            None
        }
    }
}

/// The service's `regions`: declared, no repeats, at least one. `None` when
/// any element is wrong, so checks that depend on the list are skipped.
fn service_regions(
    cx: &mut Cx,
    field: &Field,
    declared: &[&str],
    example: &str,
) -> Option<Vec<Spanned<String>>> {
    let elements = cx.array(field, &format!("e.g. regions = [{example}]"))?;
    if elements.is_empty() {
        cx.error(
            &field.span,
            &field.path,
            "lists no region",
            Some(format!(
                "list the regions the service runs in, e.g. [{example}]"
            )),
        );
        return None;
    }
    let mut ok = true;
    let mut seen: Vec<Spanned<String>> = Vec::new();
    for element in elements {
        let Some(region) = cx.string(&element) else {
            ok = false;
            continue;
        };
        if !declared.contains(&region.value.as_str()) {
            let hint = suggest::hint(&region.value, declared.iter().copied())
                .unwrap_or_else(|| format!("declared regions are {}", declared.join(", ")));
            cx.error(
                &region.span,
                &element.path,
                format!("{:?} is not a declared region", region.value),
                Some(hint),
            );
            ok = false;
        } else if seen.iter().any(|r| r.value == region.value) {
            cx.error(
                &region.span,
                &element.path,
                format!("{:?} is listed twice", region.value),
                Some("remove the repeat".into()),
            );
            ok = false;
        } else {
            seen.push(region);
        }
    }
    ok.then_some(seen)
}

fn primary_not_among_regions(
    cx: &mut Cx,
    primary: &Spanned<String>,
    path: &str,
    regions: &[Spanned<String>],
    declared: &[&str],
) {
    let listed: Vec<&str> = regions.iter().map(|r| r.value.as_str()).collect();
    let hint = if declared.contains(&primary.value.as_str()) {
        format!(
            "add {:?} to `regions`, or choose one of them",
            primary.value
        )
    } else {
        suggest::hint(&primary.value, listed.iter().copied())
            .unwrap_or_else(|| "choose one of the service's regions".into())
    };
    cx.error(
        &primary.span,
        path,
        format!(
            "{:?} is not one of the service's regions {}",
            primary.value,
            listed.join(", ")
        ),
        Some(hint),
    );
}

fn health(cx: &mut Cx, service: &Table) -> Option<HealthCheck> {
    let mut health = HealthCheck::default();
    let Some(table) = section(cx, service, "health", HEALTH_KEYS) else {
        // Absent, or not a table (reported): defaults either way.
        return Some(health);
    };
    if let Some(d) = optional_duration(cx, Some(&table), "interval") {
        health.interval = d;
    }
    if let Some(d) = optional_duration(cx, Some(&table), "timeout") {
        health.timeout = d;
    }
    if let Some(field) = table.get("failures") {
        let failures = cx.integer(&field)?;
        if failures.value < 1 {
            cx.error(
                &failures.span,
                &field.path,
                format!("{} failed checks can never be reached", failures.value),
                Some("use 1 or more".into()),
            );
            return None;
        }
        match u32::try_from(failures.value) {
            Ok(n) => health.failures = n,
            Err(_) => {
                cx.error(
                    &failures.span,
                    &field.path,
                    format!("{} is too large", failures.value),
                    Some("a handful of consecutive failures is typical, e.g. 3".into()),
                );
                return None;
            }
        }
    }
    Some(health)
}

/// `[services.postgres.REGION]` tables. `None` when anything is wrong.
fn postgres(
    cx: &mut Cx,
    field: &Field,
    tier: Option<Tier>,
    regions: Option<&[Spanned<String>]>,
    primary: Option<&Spanned<String>>,
    base_dir: &Path,
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
        let node = pg_node(cx, &entry, base_dir);
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
fn is_service_region(cx: &mut Cx, entry: &Field, listed: Option<&[&str]>, what: &str) -> bool {
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
fn pg_node(cx: &mut Cx, entry: &Field, base_dir: &Path) -> Option<PgNode> {
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
    ok.then_some(PgNode {
        data_dir,
        replication_dsn,
    })
}

/// One `[services.postgres.REGION]` table: exactly one of dsn, dsn_env, dsn_file.
fn dsn_source(cx: &mut Cx, entry: &Field, base_dir: &Path) -> Option<DsnSource> {
    let table = cx.table(entry)?;
    cx.unknown_keys(&table, NODE_KEYS);
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

/// The one of `keys` set in `table`, for settings that have several
/// spellings of which only one may be used (`dsn`, `dsn_env`, `dsn_file`):
/// `Some(None)` when none is set; `None` when several are (reported at the
/// second, in file order, with `hint`).
fn at_most_one<'d>(
    cx: &mut Cx,
    table: &Table<'d>,
    keys: &[&str],
    hint: &str,
) -> Option<Option<Field<'d>>> {
    let mut present: Vec<Field> = keys.iter().filter_map(|k| table.get(k)).collect();
    present.sort_by_key(|f| f.key_span.start);
    match present.as_slice() {
        [] => Some(None),
        [_] => Some(present.pop()),
        [first, second, ..] => {
            let message = if present.len() == 2 {
                format!("{} and {} are both set", first.key, second.key)
            } else {
                let keys: Vec<&str> = present.iter().map(|f| f.key).collect();
                format!("{} are all set", keys.join(", "))
            };
            cx.error(
                &second.key_span,
                &table.path,
                message,
                Some(hint.to_string()),
            );
            None
        }
    }
}

/// What a shell would take as a variable name: letters, digits and '_', not
/// starting with a digit.
fn is_env_var_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[services.backup]`. `datastore` is `None` when the service has no
/// `postgres` table, `Some(None)` when it has one that is wrong (reported).
/// `None` when anything is wrong.
fn backup(
    cx: &mut Cx,
    field: &Field,
    stores: Option<&[&str]>,
    regions: Option<&[Spanned<String>]>,
    primary: Option<&Spanned<String>>,
    datastore: Option<Option<&BTreeMap<String, DsnSource>>>,
    base_dir: &Path,
) -> Option<BackupPolicy> {
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
    };
    ok.then_some(policy)
}

/// Unknown keys of `[services.backup]`. The model's own names, which the API
/// shows (`retention`, `encryption_key`), point at the keys that set them.
fn backup_keys(cx: &mut Cx, table: &Table) {
    for field in table.fields() {
        if BACKUP_KEYS.contains(&field.key) {
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
            key => suggest::hint(key, BACKUP_KEYS.iter().copied())
                .unwrap_or_else(|| format!("expected one of {}", BACKUP_KEYS.join(", "))),
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

/// An optional schedule: `Some(None)` when absent, `None` when wrong
/// (reported).
fn optional_cron(cx: &mut Cx, table: &Table, key: &str) -> Option<Option<String>> {
    let Some(field) = table.get(key) else {
        return Some(None);
    };
    let text = cx.string_or(
        &field,
        Some(format!(
            "write the schedule as a string, e.g. {key} = \"0 * * * *\" (hourly)"
        )),
    )?;
    // Kept as written but for surrounding blanks, for whoever parses it next.
    check_cron(cx, &text, &field.path).then(|| Some(text.value.trim().to_string()))
}

/// Standard 5-field cron, checked with `croner`. Forms with seconds (and a
/// year) are refused rather than guessed at: "0 0 * * * *" means hourly to
/// one cron and every midnight to another, and a backup schedule that is
/// off by that much is found only when a restore is needed.
fn check_cron(cx: &mut Cx, text: &Spanned<String>, path: &str) -> bool {
    let fields: Vec<&str> = text.value.split_whitespace().collect();
    let (message, hint) = match fields.len() {
        5 => match cron_parser().parse(&text.value) {
            Ok(_) => return true,
            Err(e) => {
                let (reason, hint) = match wrong_cron_field(&fields) {
                    Some((i, e)) => {
                        let (name, takes) = CRON_FIELDS[i];
                        (
                            format!("{name} field {:?}: {}", fields[i], cron_error_text(&e)),
                            format!("the {name} field takes {takes}; {CRON_EXAMPLES}"),
                        )
                    }
                    None => (cron_error_text(&e), cron_hint()),
                };
                (
                    format!("{:?} is not a valid cron expression: {reason}", text.value),
                    hint,
                )
            }
        },
        0 => (
            "the schedule is empty".to_string(),
            format!("{}; or remove the key to run only on demand", cron_hint()),
        ),
        n @ (6 | 7) => {
            let (what, drop) = if n == 6 {
                ("seconds", "drop the seconds field")
            } else {
                ("seconds and year", "drop the seconds and year fields")
            };
            // Seconds come first and the year last in these forms.
            let five = fields[1..6].join(" ");
            let hint = if cron_parser().parse(&five).is_ok() {
                format!("{drop}: \"{five}\"")
            } else {
                format!("{drop}; {}", cron_hint())
            };
            (
                format!(
                    "{:?} has {n} fields; schedules are 5-field cron, without {what}",
                    text.value
                ),
                hint,
            )
        }
        n => {
            let hint = match cron_nickname(&text.value) {
                Some(five) => format!("write \"{five}\", its 5-field form"),
                None => cron_hint(),
            };
            let fields = if n == 1 { "field" } else { "fields" };
            (
                format!("{:?} has {n} {fields}; a cron expression has 5", text.value),
                hint,
            )
        }
    };
    cx.error(&text.span, path, message, Some(hint));
    false
}

/// How a schedule is written.
fn cron_hint() -> String {
    format!("5 fields: minute hour day-of-month month day-of-week; {CRON_EXAMPLES}")
}

/// The parser of schedules: exactly 5 fields.
fn cron_parser() -> croner::parser::CronParser {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// The first field that is wrong on its own, and croner's error for it:
/// croner's messages do not say which field they are about.
fn wrong_cron_field(fields: &[&str]) -> Option<(usize, croner::errors::CronError)> {
    let parser = cron_parser();
    (0..CRON_FIELDS.len()).find_map(|i| {
        let mut alone = ["*"; 5];
        alone[i] = fields[i];
        parser.parse(&alone.join(" ")).err().map(|e| (i, e))
    })
}

/// croner's message, lower case, without its own type names and full stop.
fn cron_error_text(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let text = match error {
        E::InvalidPattern(m) | E::ComponentError(m) => m.clone(),
        E::IllegalCharacters(m) => m.strip_prefix("CronPattern ").unwrap_or(m).to_string(),
        other => other.to_string(),
    };
    crate::error::lower_first(text.trim_end_matches('.'))
}

/// The 5-field form of cron's `@hourly`-style nicknames.
fn cron_nickname(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "@hourly" => Some("0 * * * *"),
        "@daily" | "@midnight" => Some("0 0 * * *"),
        "@weekly" => Some("0 0 * * 0"),
        "@monthly" => Some("0 0 1 * *"),
        "@yearly" | "@annually" => Some("0 0 1 1 *"),
        _ => None,
    }
}

/// `keep_last`, `keep_daily`, `keep_weekly`, `keep_monthly`. `None` when
/// any is wrong (reported).
fn retention(cx: &mut Cx, table: &Table) -> Option<Retention> {
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
fn encryption_key(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<Option<KeySource>> {
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

/// The name of an environment variable holding key material. A value that
/// is no variable name, or looks like the key itself, is refused and never
/// echoed. `example` is a good name for the variable.
fn key_env_name(cx: &mut Cx, value: Spanned<String>, path: &str, example: &str) -> Option<String> {
    let message = if !is_env_var_name(&value.value) {
        "the value is not an environment variable name"
    } else if looks_like_key(&value.value) {
        "the value looks like a key, not an environment variable name"
    } else {
        return Some(value.value);
    };
    cx.error(
        &value.span,
        path,
        message,
        Some(format!(
            "name the variable that holds the key, e.g. \"{example}\"; if this is the key itself, move it out of this file and rotate it"
        )),
    );
    None
}

/// The path of a file holding key material (`what`), against `base_dir`.
fn key_file(
    cx: &mut Cx,
    value: Spanned<String>,
    path: &str,
    base_dir: &Path,
    what: &str,
) -> Option<PathBuf> {
    if value.value.trim().is_empty() {
        cx.error(
            &value.span,
            path,
            "names no file",
            Some(format!("give the path of a file holding {what}")),
        );
        return None;
    }
    Some(base_dir.join(value.value))
}

/// A valid variable name that is more likely key material (hex, base64
/// without padding): long, with letters and digits, and none of the '_'
/// that separates the words of real names. It would be shown wherever the
/// variable is named (errors, the API), so it is refused.
fn looks_like_key(name: &str) -> bool {
    name.len() >= 20
        && !name.contains('_')
        && name.chars().any(|c| c.is_ascii_digit())
        && name.chars().any(|c| c.is_ascii_alphabetic())
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
fn validation_queries(cx: &mut Cx, field: &Field) -> Option<Vec<String>> {
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

/// Services naming the same cluster share one PostgreSQL cluster and fail
/// over together, so they must agree on where it lives: same regions (as a
/// set) and same primary. Each disagreeing member is compared with the first
/// member of its cluster.
fn clusters(cx: &mut Cx, services: &[CheckedService]) {
    let mut first_of: HashMap<&str, &CheckedService> = HashMap::new();
    for member in services {
        let cluster = member.service.cluster.as_str();
        let Some(first) = first_of.get(cluster) else {
            first_of.insert(cluster, member);
            continue;
        };
        let (a, b) = (&first.service, &member.service);
        let hint = |what: &str| {
            Some(format!(
                "services in one cluster fail over together; give them the same {what}"
            ))
        };
        let mut regions_a = a.regions.clone();
        let mut regions_b = b.regions.clone();
        regions_a.sort();
        regions_b.sort();
        if regions_a != regions_b {
            let line = cx.line(&first.regions_span);
            cx.error(
                &member.regions_span,
                &format!("{}.regions", member.path),
                format!(
                    "{:?} differ from {:?} of {} at line {line}, which shares cluster {cluster:?}",
                    b.regions, a.regions, first.path
                ),
                hint("regions"),
            );
        }
        if a.primary != b.primary {
            let line = cx.line(&first.primary_span);
            cx.error(
                &member.primary_span,
                &format!("{}.primary", member.path),
                format!(
                    "{:?} differs from primary {:?} of {} at line {line}, which shares cluster {cluster:?}",
                    b.primary, a.primary, first.path
                ),
                hint("primary"),
            );
        }
    }
}

/// `[failover]`: the lease of operation drivers and the global brake on
/// automatic failover. `None` when anything is wrong (reported).
fn failover_settings(cx: &mut Cx, root: &Table) -> Option<FailoverSettings> {
    let defaults = FailoverSettings::default();
    let Some(field) = root.get("failover") else {
        return Some(defaults);
    };
    let table = cx.table(&field)?;
    keys_here_or_elsewhere(
        cx,
        &table,
        FAILOVER_KEYS,
        SERVICE_FAILOVER_KEYS,
        "this is set per service, in [services.failover]",
    );
    let lease = bounded_duration(cx, &table, "lease", defaults.lease, LEASE_RANGE);
    let automatic_limit = match table.get("automatic_limit") {
        None => Some(defaults.automatic_limit),
        Some(f) => cx.integer(&f).and_then(|limit| {
            let n = u32::try_from(limit.value).ok();
            if n.is_none() {
                cx.error(
                    &limit.span,
                    &f.path,
                    format!("{} is not a count of failovers", limit.value),
                    Some(format!(
                        "use 0 to turn automatic failover off everywhere, or a small count; the default is {}",
                        defaults.automatic_limit
                    )),
                );
            }
            n
        }),
    };
    let automatic_window = table
        .get("automatic_window")
        .map_or(Some(defaults.automatic_window), |f| {
            cx.duration(&f).map(|d| d.value)
        });
    Some(FailoverSettings {
        lease: lease?,
        automatic_limit: automatic_limit?,
        automatic_window: automatic_window?,
    })
}

/// Unknown keys of a table, with a better hint for the keys that belong in
/// another table (`elsewhere`, explained by `hint`) than "did you mean".
fn keys_here_or_elsewhere(
    cx: &mut Cx,
    table: &Table,
    known: &[&str],
    elsewhere: &[&str],
    hint: &str,
) {
    for field in table.fields() {
        if known.contains(&field.key) {
            continue;
        }
        let hint = if elsewhere.contains(&field.key) {
            hint.to_string()
        } else {
            suggest::hint(field.key, known.iter().copied())
                .unwrap_or_else(|| format!("expected one of {}", known.join(", ")))
        };
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

/// The duration under `key`, `default` when absent, within `range`.
fn bounded_duration(
    cx: &mut Cx,
    table: &Table,
    key: &str,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Option<Duration> {
    let Some(field) = table.get(key) else {
        return Some(default);
    };
    let d = cx.duration(&field)?;
    if range.contains(&d.value) {
        return Some(d.value);
    }
    let (min, max) = (
        format_duration(*range.start()),
        format_duration(*range.end()),
    );
    let side = if d.value < *range.start() {
        "shorter"
    } else {
        "longer"
    };
    cx.error(
        &d.span,
        &field.path,
        format!(
            "{} is {side} than {}",
            format_duration(d.value),
            if side == "shorter" { &min } else { &max }
        ),
        Some(format!(
            "use {min} to {max}; the default is {}",
            format_duration(default)
        )),
    );
    None
}

/// What services see of a declared DNS provider.
struct ProviderRef<'a> {
    name: &'a str,
    /// The zone records must be inside, when known and valid.
    zone: Option<&'a str>,
}

/// `[[dns_providers]]`.
fn dns_providers(
    cx: &mut Cx,
    root: &Table,
    base_dir: &Path,
) -> Option<Vec<Declared<DnsProviderConfig>>> {
    declared_tables(
        cx,
        root,
        "dns_providers",
        NameKind::DnsProvider,
        "write each DNS provider as a [[dns_providers]] table",
        |cx, table| dns_provider_kind(cx, table, base_dir),
        |name, kind| DnsProviderConfig { name, kind },
    )
}

/// The kind, its keys and their values. `None` when anything is wrong.
fn dns_provider_kind(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<DnsProviderKind> {
    let kind = kind_of(
        cx,
        table,
        DNS_PROVIDER_KINDS,
        "use \"rfc2136\" for a server taking dynamic updates (BIND, Knot, PowerDNS) or \"route53\"",
    );
    dns_provider_keys(cx, table, kind.as_deref());
    let kind = kind?;
    let ok = if kind == "rfc2136" {
        no_keys_of_other_kind(
            cx,
            table,
            ROUTE53_KEYS,
            "route53",
            "this provider is kind = \"rfc2136\"; remove it, or set kind = \"route53\"",
        )
    } else {
        no_keys_of_other_kind(
            cx,
            table,
            RFC2136_KEYS,
            "rfc2136",
            "this provider is kind = \"route53\", which signs with AWS credentials; remove it",
        )
    };
    let provider = if kind == "rfc2136" {
        rfc2136_provider(cx, table, base_dir)
    } else {
        route53_provider(cx, table)
    };
    provider.filter(|_| ok)
}

/// Unknown keys of a DNS provider, and credentials under any other name,
/// which are refused without echoing the value.
fn dns_provider_keys(cx: &mut Cx, table: &Table, kind: Option<&str>) {
    for field in table.fields() {
        if DNS_PROVIDER_KEYS.contains(&field.key) {
            continue;
        }
        if is_credential_key(field.key) {
            let hint = match kind {
                Some("route53") => format!("{AWS_CHAIN_HINT}; remove this key"),
                _ => TSIG_INSTEAD_HINT.to_string(),
            };
            cx.error(
                &field.key_span,
                &field.path,
                "credentials do not belong in the config file",
                Some(hint),
            );
            continue;
        }
        let hint = suggest::hint(field.key, DNS_PROVIDER_KEYS.iter().copied())
            .unwrap_or_else(|| format!("expected one of {}", DNS_PROVIDER_KEYS.join(", ")));
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

fn rfc2136_provider(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<DnsProviderKind> {
    let server = cx
        .required(
            table,
            "server",
            "add server = \"IP:PORT\" of the primary authoritative server, e.g. \"192.0.2.53:53\"",
        )
        .and_then(|f| {
            let text = cx.string(&f)?;
            dns_server(cx, &text, &f.path)
        });
    let zone = cx
        .required(
            table,
            "zone",
            "add zone = \"…\", the zone the server is authoritative for, e.g. \"shop.example.com.\"",
        )
        .and_then(|f| {
            let text = cx.string(&f)?;
            dns_name_at(cx, &text, &f.path, "shop.example.com.")
        });
    let tsig = tsig(cx, table, base_dir);
    Some(DnsProviderKind::Rfc2136 {
        server: server?,
        zone: zone?,
        tsig: tsig?,
    })
}

/// The server's address. A host name is refused: resolving the DNS server
/// through DNS fails exactly when a failover needs it.
fn dns_server(cx: &mut Cx, text: &Spanned<String>, path: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.value.parse::<SocketAddr>() {
        return Some(addr);
    }
    let hint = if let Ok(ip) = text.value.parse::<std::net::IpAddr>() {
        format!("add the port: \"{}\"", SocketAddr::new(ip, 53))
    } else if text.value.chars().any(|c| c.is_ascii_alphabetic()) && !text.value.contains("::") {
        "use the server's IP address: drctl must reach DNS without DNS; e.g. \"192.0.2.53:53\""
            .to_string()
    } else {
        "write IP:PORT, e.g. \"192.0.2.53:53\" or \"[2001:db8::53]:53\"".to_string()
    };
    cx.error(
        &text.span,
        path,
        format!("{:?} is not an IP address and port", text.value),
        Some(hint),
    );
    None
}

/// `tsig_key` with its algorithm and exactly one secret source;
/// `Some(None)` when the provider signs nothing. `None` when wrong.
fn tsig(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<Option<TsigKey>> {
    let secret = at_most_one(
        cx,
        table,
        TSIG_SECRET_KEYS,
        "keep exactly one of tsig_secret, tsig_secret_env, tsig_secret_file",
    );
    let algorithm_field = table.get("tsig_algorithm");
    let Some(key_field) = table.get("tsig_key") else {
        // A secret or algorithm without a key name signs nothing: say so
        // rather than silently sending unsigned updates.
        let stray = secret.flatten().or(algorithm_field);
        if let Some(f) = stray {
            cx.error(
                &f.key_span,
                &f.path,
                format!("{} without tsig_key", f.key),
                Some("name the key as the server knows it, e.g. tsig_key = \"drctl.\"".into()),
            );
            return None;
        }
        return Some(None);
    };
    let name = cx
        .string(&key_field)
        .and_then(|name| dns_name_at(cx, &name, &key_field.path, "drctl."));
    let algorithm = match &algorithm_field {
        None => Some(TsigAlgorithm::HmacSha256),
        Some(f) => cx
            .string(f)
            .and_then(|text| tsig_algorithm(cx, &text, &f.path)),
    };
    let secret = match secret? {
        None => {
            cx.error(
                &key_field.key_span,
                &key_field.path,
                "the key has no secret",
                Some(
                    "add tsig_secret_file = \"…\" (a file holding the base64 secret) \
                     or tsig_secret_env = \"…\""
                        .into(),
                ),
            );
            None
        }
        Some(f) => tsig_secret(cx, &f, base_dir),
    };
    Some(Some(TsigKey {
        name: name?,
        algorithm: algorithm?,
        secret: secret?,
    }))
}

fn tsig_algorithm(cx: &mut Cx, text: &Spanned<String>, path: &str) -> Option<TsigAlgorithm> {
    let lower = text.value.to_ascii_lowercase();
    if let Some(algorithm) = TsigAlgorithm::all()
        .into_iter()
        .find(|a| a.as_str() == lower)
    {
        return Some(algorithm);
    }
    let names: Vec<&str> = TsigAlgorithm::all().iter().map(|a| a.as_str()).collect();
    let hint = if lower.starts_with("hmac-md5") || lower == "hmac-sha1" || lower == "hmac-sha224" {
        "drctl signs with SHA-2 of 256 bits or more; make a new key, e.g. `keymgr -t drctl. hmac-sha256`"
            .to_string()
    } else {
        suggest::hint(&lower, names.iter().copied())
            .unwrap_or_else(|| "the default is hmac-sha256".to_string())
    };
    cx.error(
        &text.span,
        path,
        format!("{:?} is not one of {}", text.value, names.join(", ")),
        Some(hint),
    );
    None
}

/// One of tsig_secret (inline base64, checked now), tsig_secret_env,
/// tsig_secret_file. The value is never echoed.
fn tsig_secret(cx: &mut Cx, field: &Field, base_dir: &Path) -> Option<TsigSecret> {
    let value = cx.string(field)?;
    match field.key {
        "tsig_secret" => {
            if decode_base64(&value.value).is_some() {
                return Some(TsigSecret::Inline(Secret::opaque(value.value.trim())));
            }
            cx.error(
                &value.span,
                &field.path,
                "the secret is not base64",
                Some(
                    "copy the secret exactly as the server's key file has it; better, move it to a file and name it with tsig_secret_file"
                        .into(),
                ),
            );
            None
        }
        "tsig_secret_env" => {
            key_env_name(cx, value, &field.path, "DRCTL_TSIG_SECRET").map(TsigSecret::Env)
        }
        _ => key_file(cx, value, &field.path, base_dir, "the base64 TSIG secret")
            .map(TsigSecret::File),
    }
}

fn route53_provider(cx: &mut Cx, table: &Table) -> Option<DnsProviderKind> {
    let hosted_zone_id = cx
        .required(
            table,
            "hosted_zone_id",
            "add hosted_zone_id = \"Z…\" (`aws route53 list-hosted-zones` shows it)",
        )
        .and_then(|f| {
            let id = cx.string(&f)?;
            hosted_zone_id(cx, &id, &f.path)
        });
    let endpoint = match table.get("endpoint") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|e| check_endpoint(cx, &e, &f.path).then_some(Some(e.value))),
    };
    let region = match table.get("region") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|r| aws_region(cx, &r, &f.path).then_some(Some(r.value))),
    };
    let zone = match table.get("zone") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|z| dns_name_at(cx, &z, &f.path, "shop.example.com."))
            .map(Some),
    };
    Some(DnsProviderKind::Route53 {
        hosted_zone_id: hosted_zone_id?,
        endpoint: endpoint?,
        region: region?,
        zone: zone?,
    })
}

/// `Z0123456789ABC`, also accepted as the API writes it
/// (`/hostedzone/Z0123456789ABC`) and kept without the prefix.
fn hosted_zone_id(cx: &mut Cx, id: &Spanned<String>, path: &str) -> Option<String> {
    let bare = id.value.strip_prefix("/hostedzone/").unwrap_or(&id.value);
    if !bare.is_empty()
        && bare.len() <= 32
        && bare
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Some(bare.to_string());
    }
    cx.error(
        &id.span,
        path,
        format!("{:?} is not a Route 53 hosted zone id", id.value),
        Some(
            "hosted zone ids are upper-case letters and digits, e.g. \"Z0123456789ABCDEFGHIJ\""
                .into(),
        ),
    );
    None
}

/// An AWS region name such as `eu-central-1` (shape only).
fn aws_region(cx: &mut Cx, region: &Spanned<String>, path: &str) -> bool {
    if is_valid_name(&region.value) {
        return true;
    }
    cx.error(
        &region.span,
        path,
        format!("{:?} is not an AWS region", region.value),
        Some(format!(
            "e.g. \"eu-central-1\"; compatible servers usually accept \"{DEFAULT_S3_REGION}\""
        )),
    );
    false
}

/// `name` lower case and absolute (`Orders.Shop.Example.COM` →
/// `orders.shop.example.com.`), or why it is no domain name. Labels are
/// letters, digits, '-' and '_' (for `_service` names), 1-63 characters,
/// not beginning or ending with '-'; 253 characters at most.
fn normalize_dns_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let relative = lower.strip_suffix('.').unwrap_or(&lower);
    if relative.is_empty() {
        return Err(if name.is_empty() {
            "it is empty"
        } else {
            "it is the root"
        }
        .to_string());
    }
    if relative.len() > 253 {
        return Err(format!(
            "it is {} characters long; 253 at most",
            relative.len()
        ));
    }
    for label in relative.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (\"..\")".to_string());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "label {label:?} has {c:?}; labels use a-z, 0-9, '-' and '_'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} begins or ends with '-'"));
        }
    }
    Ok(format!("{relative}."))
}

/// A domain name at a config position, normalized; reported when invalid.
fn dns_name_at(cx: &mut Cx, text: &Spanned<String>, path: &str, example: &str) -> Option<String> {
    match normalize_dns_name(&text.value) {
        Ok(name) => Some(name),
        Err(why) => {
            cx.error(
                &text.span,
                path,
                format!("{:?} is not a domain name: {why}", text.value),
                Some(format!("e.g. \"{example}\"")),
            );
            None
        }
    }
}

/// Whether absolute `name` is `zone` or below it.
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// Where a service's records sit, for the check that no two services (or a
/// service and a drill) publish the same name.
struct PublishedRecords {
    provider: String,
    record: (String, Span),
    drill: (String, Span),
}

/// `[services.dns]`. `None` when anything is wrong (reported).
fn service_dns(
    cx: &mut Cx,
    field: &Field,
    providers: Option<&[ProviderRef]>,
    service_name: Option<&str>,
    regions: Option<&[Spanned<String>]>,
) -> Option<(ServiceDns, PublishedRecords)> {
    let table = cx.table(field)?;
    cx.unknown_keys(&table, SERVICE_DNS_KEYS);
    let names: Option<Vec<&str>> = providers.map(|p| p.iter().map(|p| p.name).collect());
    let provider_hint = match names.as_deref() {
        Some([first, ..]) => format!("name one of the DNS providers: provider = {first:?}"),
        _ => "declare a [[dns_providers]] table and name it here".to_string(),
    };
    let provider = cx
        .required(&table, "provider", &provider_hint)
        .and_then(|f| {
            let name = cx.string(&f)?;
            check_reference(cx, &name, &f.path, names.as_deref(), NameKind::DnsProvider)
                .then_some(name.value)
        });
    // Records are checked against the zone only when the provider is known
    // and its zone valid: otherwise that is the one mistake to report.
    let zone = provider
        .as_deref()
        .and_then(|p| providers?.iter().find(|r| r.name == p)?.zone);

    let rtype = match table.get("type") {
        None => Some(RecordType::A),
        Some(f) => cx
            .string(&f)
            .and_then(|text| match text.value.parse::<RecordType>() {
                Ok(t) => Some(t),
                Err(message) => {
                    let hint = match text.value.to_ascii_uppercase().as_str() {
                        "ALIAS" | "ANAME" => {
                            "use CNAME to a load balancer's name, or A/AAAA with its addresses"
                                .to_string()
                        }
                        _ => "use A for IPv4 targets, AAAA for IPv6, CNAME for host names"
                            .to_string(),
                    };
                    cx.error(&text.span, &f.path, message, Some(hint));
                    None
                }
            }),
    };

    let example = format!("{}.shop.example.com.", service_name.unwrap_or("orders"));
    let record = cx
        .required(
            &table,
            "record",
            &format!("add record = {example:?}, the name clients resolve"),
        )
        .and_then(|f| {
            let text = cx.string(&f)?;
            let name = dns_name_at(cx, &text, &f.path, &example)?;
            check_record_placement(cx, &name, &text.span, &f.path, zone, rtype)
                .then_some((name, text.span))
        });

    let ttl = bounded_duration(cx, &table, "ttl", DEFAULT_DNS_TTL, TTL_RANGE).and_then(|ttl| {
        if ttl.subsec_nanos() == 0 {
            return Some(ttl);
        }
        let f = table.get("ttl")?;
        cx.error(
            &f.span,
            &f.path,
            format!("{} is not whole seconds", format_duration(ttl)),
            Some("DNS counts TTLs in seconds, e.g. \"30s\"".into()),
        );
        None
    });

    let drill = match table.get("drill_record") {
        Some(f) => cx.string(&f).and_then(|text| {
            let name = dns_name_at(cx, &text, &f.path, "orders-drill.shop.example.com.")?;
            if record.as_ref().is_some_and(|(r, _)| *r == name) {
                cx.error(
                    &text.span,
                    &f.path,
                    format!("{name:?} is the service's own record"),
                    Some(
                        "drills must never touch the production record; \
                         name another, e.g. with a \"-drill\" label"
                            .into(),
                    ),
                );
                return None;
            }
            check_record_placement(cx, &name, &text.span, &f.path, zone, rtype)
                .then_some((name, text.span))
        }),
        None => record.as_ref().and_then(|(record, span)| {
            let drill = default_drill_record(record)
                .filter(|d| zone.is_none() || zone.is_some_and(|z| in_zone(d, z)));
            if let Some(drill) = drill {
                return Some((drill, span.clone()));
            }
            cx.error(
                span,
                &format!("{}.drill_record", table.path),
                format!(
                    "no default drill record for {record:?}: its first label with \"-drill\" \
                     would leave the zone or the length limits"
                ),
                Some("set drill_record = \"…\" in this table".into()),
            );
            None
        }),
    };

    let targets = cx
        .required(
            &table,
            "targets",
            "add [services.dns.targets] with the record's value in each region, \
             e.g. eu-west = \"192.0.2.10\"",
        )
        .and_then(|f| dns_targets(cx, &f, rtype, regions));

    let (record, record_span) = record?;
    let provider = provider?;
    let drill = drill?;
    Some((
        ServiceDns {
            provider: provider.clone(),
            record: record.clone(),
            rtype: rtype?,
            ttl: ttl?,
            drill_record: drill.0.clone(),
            targets: targets?,
        },
        PublishedRecords {
            provider,
            record: (record, record_span),
            drill,
        },
    ))
}

/// `orders.shop.example.com.` → `orders-drill.shop.example.com.`; `None`
/// when the label would grow too long.
fn default_drill_record(record: &str) -> Option<String> {
    let (first, rest) = record.split_once('.')?;
    normalize_dns_name(&format!("{first}-drill.{rest}")).ok()
}

/// A record must be inside its provider's zone (when known), and a CNAME
/// cannot sit at the zone's apex, beside its SOA and NS records.
fn check_record_placement(
    cx: &mut Cx,
    name: &str,
    span: &Span,
    path: &str,
    zone: Option<&str>,
    rtype: Option<RecordType>,
) -> bool {
    let Some(zone) = zone else {
        return true;
    };
    if !in_zone(name, zone) {
        let first = name.split('.').next().unwrap_or("orders");
        cx.error(
            span,
            path,
            format!("{name:?} is not inside the provider's zone {zone:?}"),
            Some(format!(
                "e.g. \"{first}.{zone}\"; or name a provider for its zone"
            )),
        );
        return false;
    }
    if name == zone && rtype == Some(RecordType::Cname) {
        cx.error(
            span,
            path,
            format!("a CNAME cannot be the zone's apex {zone:?}"),
            Some("publish the service under a name inside the zone, or use type = \"A\"".into()),
        );
        return false;
    }
    true
}

/// `[services.dns.targets]`: exactly one value per region of the service,
/// each of the record's type. `None` when wrong (reported).
fn dns_targets(
    cx: &mut Cx,
    field: &Field,
    rtype: Option<RecordType>,
    regions: Option<&[Spanned<String>]>,
) -> Option<BTreeMap<String, String>> {
    let table = cx.table(field)?;
    let listed: Option<Vec<&str>> = regions.map(|r| r.iter().map(|r| r.value.as_str()).collect());
    let mut ok = true;
    let mut targets = BTreeMap::new();
    for entry in table.fields() {
        if !is_service_region(cx, &entry, listed.as_deref(), "target") {
            ok = false;
            continue;
        }
        let Some(value) = cx.string(&entry) else {
            ok = false;
            continue;
        };
        match rtype.map(|t| dns_target(&value.value, t)) {
            Some(Ok(target)) => {
                targets.insert(entry.key.to_string(), target);
            }
            Some(Err((why, hint))) => {
                cx.error(&value.span, &entry.path, why, Some(hint));
                ok = false;
            }
            // The type itself is wrong (reported): nothing to check against.
            None => ok = false,
        }
    }
    for region in listed.unwrap_or_default() {
        if table.get(region).is_none() {
            cx.error(
                &table.span,
                &table.path,
                format!(
                    "no target for region {region:?}; a failover there would have nothing to publish"
                ),
                Some(format!("add {region} = \"…\" to this table")),
            );
            ok = false;
        }
    }
    ok.then_some(targets)
}

/// One target, normalized (IPv6 in its canonical form, host names
/// absolute), or why not and a hint.
fn dns_target(value: &str, rtype: RecordType) -> Result<String, (String, String)> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    match rtype {
        RecordType::A => value.parse::<Ipv4Addr>().map(|ip| ip.to_string()).map_err(|_| {
            let hint = if value.parse::<Ipv6Addr>().is_ok() {
                "this is an IPv6 address: set type = \"AAAA\""
            } else if value.parse::<SocketAddr>().is_ok() {
                "a record holds no port: drop it"
            } else {
                "an A record holds an IPv4 address, e.g. \"192.0.2.10\"; for a host name set type = \"CNAME\""
            };
            (format!("{value:?} is not an IPv4 address"), hint.to_string())
        }),
        RecordType::Aaaa => value.parse::<Ipv6Addr>().map(|ip| ip.to_string()).map_err(|_| {
            let hint = if value.parse::<Ipv4Addr>().is_ok() {
                "this is an IPv4 address: set type = \"A\""
            } else {
                "an AAAA record holds an IPv6 address, e.g. \"2001:db8::10\""
            };
            (format!("{value:?} is not an IPv6 address"), hint.to_string())
        }),
        RecordType::Cname => {
            if value.parse::<std::net::IpAddr>().is_ok() {
                return Err((
                    format!("{value:?} is an address, not a host name"),
                    "a CNAME points at a name; for addresses set type = \"A\" or \"AAAA\"".to_string(),
                ));
            }
            normalize_dns_name(value).map_err(|why| {
                (
                    format!("{value:?} is not a host name: {why}"),
                    "e.g. \"shop-lb.eu-west.example.com.\"".to_string(),
                )
            })
        }
    }
}

/// `[services.failover]`, with the tier's defaults. `None` when wrong.
fn service_failover(cx: &mut Cx, service: &Table, tier: Option<Tier>) -> Option<FailoverPolicy> {
    let defaults = FailoverPolicy::for_tier(tier.unwrap_or(Tier::Warm));
    let Some(field) = service.get("failover") else {
        return Some(defaults);
    };
    let table = cx.table(&field)?;
    keys_here_or_elsewhere(
        cx,
        &table,
        SERVICE_FAILOVER_KEYS,
        FAILOVER_KEYS,
        "this is global: set it in the top-level [failover] table",
    );
    let automatic = table
        .get("automatic")
        .map_or(Some(defaults.automatic), |f| {
            cx.boolean(&f).map(|b| b.value)
        });
    let fence_hook = match table.get("fence_hook") {
        None => Some(None),
        Some(f) => fence_hook(cx, &f).map(Some),
    };
    let durations = [
        ("fence_hook_timeout", defaults.fence_hook_timeout),
        ("min_down", defaults.min_down),
        ("cooldown", defaults.cooldown),
    ]
    .map(|(key, default)| {
        table
            .get(key)
            .map_or(Some(default), |f| cx.duration(&f).map(|d| d.value))
    });
    let [fence_hook_timeout, min_down, cooldown] = durations;
    Some(FailoverPolicy {
        automatic: automatic?,
        fence_hook: fence_hook?,
        fence_hook_timeout: fence_hook_timeout?,
        min_down: min_down?,
        cooldown: cooldown?,
    })
}

/// The fence hook's argv: not empty, a program first, and only the
/// placeholders drctl fills in.
fn fence_hook(cx: &mut Cx, field: &Field) -> Option<Vec<String>> {
    let example = "e.g. fence_hook = [\"/usr/local/bin/fence-db\", \"{service}\", \"{region}\"]";
    let elements = cx.array(
        field,
        &format!("write the command as an argv array, run without a shell: {example}"),
    )?;
    if elements.is_empty() {
        cx.error(
            &field.span,
            &field.path,
            "the command is empty",
            Some(format!(
                "name a program and its arguments, {example}; or remove the key"
            )),
        );
        return None;
    }
    let mut ok = true;
    let mut argv = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        let Some(arg) = cx.string(element) else {
            ok = false;
            continue;
        };
        if i == 0 && arg.value.trim().is_empty() {
            cx.error(
                &arg.span,
                &element.path,
                "names no program",
                Some(example.to_string()),
            );
            ok = false;
            continue;
        }
        if let Some(unknown) = unknown_placeholder(&arg.value) {
            let known = FENCE_HOOK_PLACEHOLDERS.join(", ");
            let hint = suggest::hint(&unknown, FENCE_HOOK_PLACEHOLDERS.iter().copied())
                .unwrap_or_else(|| format!("drctl fills in {known}"));
            cx.error(
                &arg.span,
                &element.path,
                format!("{unknown} is not a placeholder drctl fills in ({known})"),
                Some(hint),
            );
            ok = false;
            continue;
        }
        argv.push(arg.value);
    }
    ok.then_some(argv)
}

/// The first `{…}` in `arg` that is not one of [`FENCE_HOOK_PLACEHOLDERS`].
fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}')?;
        let placeholder = &after[..=close];
        if !FENCE_HOOK_PLACEHOLDERS.contains(&placeholder) {
            return Some(placeholder.to_string());
        }
        rest = &after[close + 1..];
    }
    None
}

/// No two services publish the same name through the same provider, and no
/// drill record is another service's production record: a drill or a
/// failover of one would overwrite the other.
fn published_records(cx: &mut Cx, services: &[CheckedService]) {
    let mut first_of: HashMap<(&str, &str), (&str, &Span)> = HashMap::new();
    for service in services {
        let Some(published) = &service.published else {
            continue;
        };
        for (name, span) in [&published.record, &published.drill] {
            let key = (published.provider.as_str(), name.as_str());
            match first_of.get(&key) {
                None => {
                    first_of.insert(key, (service.path.as_str(), span));
                }
                Some((path, first_span)) => {
                    let line = cx.line(first_span);
                    cx.error(
                        span,
                        &format!("{}.dns", service.path),
                        format!("{name:?} is already published by {path} at line {line}"),
                        Some("each service needs its own record and drill record".into()),
                    );
                }
            }
        }
    }
}
