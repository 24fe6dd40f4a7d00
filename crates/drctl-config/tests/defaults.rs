//! What an operator gets by not writing something.

use std::path::Path;
use std::time::Duration;

use drctl_config::{
    BackupPolicy, DnsProviderKind, FailoverPolicy, FailoverSettings, HealthCheck, KeySource,
    ObjectStoreKind, RecordType, RejoinPolicy, Retention, ServiceDns, Targets, Tier, TierTargets,
    TsigAlgorithm, TsigKey, TsigSecret, WalArchivePolicy,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_minimal_config_gets_every_default() {
    let text = r#"
[[regions]]
name = "eu-west"
"#;
    let config = drctl_config::parse("min.toml", text, Path::new("/etc/drctl")).unwrap();
    assert_eq!(
        config.store.url.expose(),
        "sqlite:///etc/drctl/drctl-state.db"
    );
    assert_eq!(config.api.listen, "127.0.0.1:7878".parse().unwrap());
    assert_eq!(config.monitor.interval, secs(1));
    assert_eq!(config.monitor.probe_timeout, secs(2));
    assert_eq!(config.monitor.breach_grace, secs(10));
    assert_eq!(config.monitor.raw_retention, secs(24 * 3600));
    assert_eq!(config.monitor.rollup_retention, secs(30 * 86_400));
    assert_eq!(config.regions.len(), 1);
    assert_eq!(config.regions[0].description, None);
    assert!(config.services.is_empty(), "zero services is allowed");
    assert!(config.object_stores.is_empty(), "backups are optional");
    assert_eq!(
        config.scratch.root, None,
        "the scratch root defaults in drctl-pg"
    );

    let t = |rpo, rto, days: u64| Targets {
        rpo: secs(rpo),
        rto: secs(rto),
        evidence_every: secs(days * 86_400),
    };
    assert_eq!(config.tiers.get(Tier::Hot), t(5, 60, 7));
    assert_eq!(config.tiers.get(Tier::Warm), t(300, 1800, 30));
    assert_eq!(config.tiers.get(Tier::Cold), t(24 * 3600, 8 * 3600, 7));
    assert_eq!(
        config.api.anonymous,
        Some(drctl_config::Role::Viewer),
        "no tokens: reads stay open"
    );
    assert!(config.api.tokens.is_empty());
    assert_eq!(config.tiers, TierTargets::default());
    assert_eq!(config.source, Path::new("min.toml"));
}

#[test]
fn a_relative_scratch_root_resolves_against_the_config_and_an_empty_one_is_refused() {
    let text = "[scratch]\nroot = \"scratch\"\n[[regions]]\nname = \"eu-west\"\n";
    let config = drctl_config::parse("s.toml", text, Path::new("/etc/drctl")).unwrap();
    assert_eq!(
        config.scratch.root.as_deref(),
        Some(Path::new("/etc/drctl/scratch"))
    );
    let text = "[scratch]\nroot = \"\"\n[[regions]]\nname = \"eu-west\"\n";
    let e = drctl_config::parse("s.toml", text, Path::new("/etc/drctl")).unwrap_err();
    assert!(e.to_string().contains("names no directory"), "{e}");
}

#[test]
fn a_service_inherits_tier_targets_and_health_defaults() {
    let text = r#"
[[regions]]
name = "eu-west"

[tiers.cold]
rto = "4h"

[[services]]
name = "reports"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
"#;
    let config = drctl_config::parse("svc.toml", text, Path::new("/srv")).unwrap();
    let reports = config.service("reports").unwrap();
    assert_eq!(reports.cluster, "reports");
    assert_eq!(
        reports.targets,
        Targets {
            rpo: secs(24 * 3600),
            rto: secs(4 * 3600),
            evidence_every: secs(7 * 86_400),
        }
    );
    assert_eq!(
        reports.health,
        HealthCheck {
            interval: secs(1),
            timeout: secs(2),
            failures: 3
        }
    );
    assert!(reports.postgres.is_empty());
    assert_eq!(reports.standby_regions().count(), 0);
}

#[test]
fn store_urls_resolve_relative_sqlite_paths_only() {
    let store = |url: &str| {
        let text = format!("[store]\nurl = {url:?}\n[[regions]]\nname = \"a\"\n");
        drctl_config::parse("s.toml", &text, Path::new("/etc/drctl"))
            .unwrap()
            .store
            .url
            .expose()
            .to_string()
    };
    assert_eq!(
        store("sqlite://state/drctl.db"),
        "sqlite:///etc/drctl/state/drctl.db"
    );
    assert_eq!(
        store("sqlite:drctl.db?mode=rwc"),
        "sqlite:///etc/drctl/drctl.db?mode=rwc"
    );
    assert_eq!(
        store("sqlite:///var/lib/drctl.db"),
        "sqlite:///var/lib/drctl.db"
    );
    assert_eq!(store("sqlite::memory:"), "sqlite://:memory:");
    assert_eq!(
        store("postgres://drctl:pw@db:5432/drctl"),
        "postgres://drctl:pw@db:5432/drctl"
    );
}

#[test]
fn inline_tables_and_arrays_are_accepted_like_headers() {
    let text = r#"
regions = [{ name = "eu-west" }, { name = "us-east", description = "DR" }]
services = [
  { name = "orders", tier = "hot", regions = ["eu-west", "us-east"], primary = "eu-west", health = { failures = 1 }, postgres = { eu-west = { dsn_env = "A" }, us-east = { dsn_file = "/run/secrets/b" } } },
]
"#;
    let config = drctl_config::parse("inline.toml", text, Path::new("/")).unwrap();
    let orders = config.service("orders").unwrap();
    assert_eq!(orders.health.failures, 1);
    assert_eq!(orders.postgres.len(), 2);
    assert_eq!(config.regions[1].description.as_deref(), Some("DR"));
}

#[test]
fn tier_names_round_trip() {
    for tier in Tier::all() {
        assert_eq!(tier.to_string().parse::<Tier>(), Ok(tier));
        assert_eq!(serde_json::to_string(&tier).unwrap(), format!("\"{tier}\""));
    }
    assert!(Tier::Hot.is_replicated() && Tier::Warm.is_replicated() && !Tier::Cold.is_replicated());
    assert_eq!(
        "hott".parse::<Tier>().unwrap_err().to_string(),
        "\"hott\" is not one of hot, warm, cold"
    );
}

#[test]
fn object_stores_and_backups_get_their_defaults() {
    let text = r#"
[[regions]]
name = "eu-west"

[[regions]]
name = "us-east"

[[object_stores]]
name = "local-backups"
kind = "local"
path = "./backups/"

[[object_stores]]
name = "archive"
kind = "local"
path = "/var/lib/drctl/archive"

[[object_stores]]
name = "dr-bucket"
kind = "s3"
bucket = "shop-backups"

[[object_stores]]
name = "minio"
kind = "s3"
bucket = "lab.backups"
prefix = "drctl/"
endpoint = "http://127.0.0.1:9000"
region = "eu-central-1"
path_style = true

[[services]]
name = "catalog"
tier = "cold"
regions = ["eu-west", "us-east"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "CATALOG_DSN" } }
backup = { store = "dr-bucket" }

[[services]]
name = "orders"
tier = "hot"
regions = ["eu-west", "us-east"]
primary = "eu-west"

[services.postgres.eu-west]
dsn_env = "ORDERS_EU_WEST_DSN"

[services.postgres.us-east]
dsn_env = "ORDERS_US_EAST_DSN"

[services.backup]
store = "minio"
from_region = "us-east"
compression_level = 19
compression_threads = 2
validation_queries = ["SELECT count(*) > 0 FROM shop.orders"]
strict = true
"#;
    let config = drctl_config::parse("backups.toml", text, Path::new("/etc/drctl")).unwrap();
    let names: Vec<&str> = config
        .object_stores
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["local-backups", "archive", "dr-bucket", "minio"]);

    // Relative to the config's directory, tidied; absolute paths kept.
    let local = |name: &str| match &config.object_store(name).unwrap().kind {
        ObjectStoreKind::Local { path } => path.clone(),
        other => panic!("expected a local store, got {other:?}"),
    };
    assert_eq!(local("local-backups"), Path::new("/etc/drctl/backups"));
    assert_eq!(local("archive"), Path::new("/var/lib/drctl/archive"));

    assert_eq!(
        config.object_store("dr-bucket").unwrap().kind,
        ObjectStoreKind::S3 {
            bucket: "shop-backups".into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            timeout: std::time::Duration::from_secs(120),
            lock: None,
        }
    );
    assert_eq!(
        config.object_store("minio").unwrap().kind,
        ObjectStoreKind::S3 {
            bucket: "lab.backups".into(),
            prefix: "drctl/".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "eu-central-1".into(),
            path_style: true,
            timeout: std::time::Duration::from_secs(120),
            lock: None,
        }
    );
    assert!(config.object_store("nope").is_none());

    // The backup is taken from the primary unless told otherwise.
    assert_eq!(
        config.service("catalog").unwrap().backup,
        Some(BackupPolicy {
            store: "dr-bucket".into(),
            from_region: "eu-west".into(),
            compression_level: 1,
            compression_threads: 0,
            validation_queries: Vec::new(),
            strict: false,
            schedule: None,
            verify_schedule: None,
            restore_test_schedule: None,
            restore_test_max_age: secs(7 * 86_400),
            retention: Retention::default(),
            offsite_store: None,
            encryption_key: None,
            // On by default, spooled beside the config file.
            wal_archive: Some(WalArchivePolicy {
                spool: "/etc/drctl/wal-spool/catalog".into(),
                ship_interval: Duration::from_millis(500),
            }),
        })
    );
    assert_eq!(
        config.service("orders").unwrap().backup,
        Some(BackupPolicy {
            store: "minio".into(),
            from_region: "us-east".into(),
            compression_level: 19,
            compression_threads: 2,
            validation_queries: vec!["SELECT count(*) > 0 FROM shop.orders".into()],
            strict: true,
            schedule: None,
            verify_schedule: None,
            restore_test_schedule: None,
            restore_test_max_age: secs(7 * 86_400),
            retention: Retention::default(),
            offsite_store: None,
            encryption_key: None,
            wal_archive: Some(WalArchivePolicy {
                spool: "/etc/drctl/wal-spool/orders".into(),
                ship_interval: Duration::from_millis(500),
            }),
        })
    );

    // Stores serialize flat, the way they are written in the config.
    let json = serde_json::to_value(&config.object_stores).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!({ "name": "local-backups", "kind": "local", "path": "/etc/drctl/backups" })
    );
    assert_eq!(
        json[2],
        serde_json::json!({
            "name": "dr-bucket", "kind": "s3", "bucket": "shop-backups", "prefix": "",
            "endpoint": null, "region": "us-east-1", "path_style": false, "timeout": "2m",
        })
    );
}

#[test]
fn a_service_without_backup_has_none() {
    let text = r#"
[[regions]]
name = "eu-west"

[[services]]
name = "reports"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "REPORTS_DSN" } }
"#;
    let config = drctl_config::parse("svc.toml", text, Path::new("/srv")).unwrap();
    assert_eq!(config.service("reports").unwrap().backup, None);
}

#[test]
fn backup_schedules_retention_offsite_and_key_get_their_defaults() {
    let text = r#"
[[regions]]
name = "eu-west"

[[object_stores]]
name = "dr-bucket"
kind = "s3"
bucket = "shop-backups"

[[object_stores]]
name = "dr-bucket-eu"
kind = "s3"
bucket = "shop-backups-eu"

[[services]]
name = "catalog"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "CATALOG_DSN" } }
backup = { store = "dr-bucket" }

[[services]]
name = "orders"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "ORDERS_DSN" } }

[services.backup]
store = "dr-bucket"
schedule = "0 * * * *"
verify_schedule = "30 * * * *"
restore_test_schedule = "0 3 * * mon-fri"
restore_test_max_age = "36h"
keep_last = 1
keep_daily = 0
keep_weekly = 0
keep_monthly = 12
offsite_store = "dr-bucket-eu"
encryption_key_file = "keys/orders-backup.key"

[[services]]
name = "payments"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "PAYMENTS_DSN" } }
backup = { store = "dr-bucket", encryption_key_env = "PAYMENTS_BACKUP_KEY", keep_weekly = 8 }
"#;
    let config = drctl_config::parse("backups.toml", text, Path::new("/etc/drctl")).unwrap();
    let backup = |name: &str| config.service(name).unwrap().backup.clone().unwrap();

    // Nothing written: on demand only, 7d restore-test evidence, 7/7/4/6,
    // no offsite copy, not encrypted by drctl.
    let catalog = backup("catalog");
    assert_eq!(catalog.schedule, None);
    assert_eq!(catalog.verify_schedule, None);
    assert_eq!(catalog.restore_test_schedule, None);
    assert_eq!(catalog.restore_test_max_age, secs(7 * 86_400));
    assert_eq!(
        catalog.retention,
        Retention {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
        }
    );
    assert_eq!(catalog.retention, Retention::default());
    assert_eq!(catalog.offsite_store, None);
    assert_eq!(catalog.encryption_key, None);

    // Everything written: schedules kept as written, 0 allowed but for
    // keep_last, the key file resolved next to the config.
    let orders = backup("orders");
    assert_eq!(orders.schedule.as_deref(), Some("0 * * * *"));
    assert_eq!(orders.verify_schedule.as_deref(), Some("30 * * * *"));
    assert_eq!(
        orders.restore_test_schedule.as_deref(),
        Some("0 3 * * mon-fri")
    );
    assert_eq!(orders.restore_test_max_age, secs(36 * 3600));
    assert_eq!(
        orders.retention,
        Retention {
            keep_last: 1,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 12,
        }
    );
    assert_eq!(orders.offsite_store.as_deref(), Some("dr-bucket-eu"));
    assert_eq!(
        orders.encryption_key,
        Some(KeySource::File("/etc/drctl/keys/orders-backup.key".into()))
    );

    // Unwritten counts keep their defaults when others are set.
    let payments = backup("payments");
    assert_eq!(
        payments.retention,
        Retention {
            keep_weekly: 8,
            ..Retention::default()
        }
    );
    assert_eq!(
        payments.encryption_key,
        Some(KeySource::Env("PAYMENTS_BACKUP_KEY".into()))
    );

    // The API shows them the way the config writes them.
    let json = serde_json::to_value(&orders).unwrap();
    assert_eq!(json["schedule"], "0 * * * *");
    assert_eq!(json["restore_test_max_age"], "1d 12h");
    assert_eq!(
        json["retention"],
        serde_json::json!({ "keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 12 })
    );
    assert_eq!(json["offsite_store"], "dr-bucket-eu");
    assert_eq!(
        json["encryption_key"],
        serde_json::json!({ "file": "/etc/drctl/keys/orders-backup.key" })
    );
    let json = serde_json::to_value(&payments).unwrap();
    assert_eq!(
        json["encryption_key"],
        serde_json::json!({ "env": "PAYMENTS_BACKUP_KEY" })
    );
    let json = serde_json::to_value(&catalog).unwrap();
    assert_eq!(json["restore_test_max_age"], "7d");
    assert_eq!(json["verify_schedule"], serde_json::Value::Null);
    assert_eq!(json["encryption_key"], serde_json::Value::Null);
}

/// croner's extensions and names are accepted in 5 fields, as the cron
/// users know them.
#[test]
fn common_cron_spellings_are_accepted() {
    for schedule in [
        "*/15 * * * *",
        "0 */6 * * *",
        "30 2 * * 1-5",
        "0 0 1,15 * *",
        "0 3 * * SUN",
        "0 4 * jan,jul *",
        "0 4 L * *",
        "  5 4 * * *  ",
    ] {
        let text = format!(
            "[[regions]]\nname = \"a\"\n[[object_stores]]\nname = \"s\"\nkind = \"local\"\npath = \"b\"\n\
             [[services]]\nname = \"x\"\ntier = \"cold\"\nregions = [\"a\"]\nprimary = \"a\"\n\
             postgres = {{ a = {{ dsn_env = \"X\" }} }}\nbackup = {{ store = \"s\", schedule = {schedule:?} }}\n"
        );
        match drctl_config::parse("c.toml", &text, Path::new("/")) {
            Ok(config) => assert_eq!(
                config.services[0]
                    .backup
                    .as_ref()
                    .unwrap()
                    .schedule
                    .as_deref(),
                Some(schedule.trim())
            ),
            Err(errors) => panic!("{schedule:?} refused:\n{errors}"),
        }
    }
}

#[test]
fn failover_settings_and_policies_get_their_defaults_by_tier() {
    let text = r#"
[[regions]]
name = "eu-west"

[[regions]]
name = "us-east"

[[services]]
name = "orders"
tier = "hot"
regions = ["eu-west", "us-east"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "A" }, us-east = { dsn_env = "B" } }

[[services]]
name = "inventory"
tier = "warm"
regions = ["eu-west", "us-east"]
primary = "eu-west"
postgres = { eu-west = { dsn_env = "A" }, us-east = { dsn_env = "B" } }

[services.failover]
automatic = true
fence_hook = ["/usr/local/bin/fence-db", "--service={service}", "{region}", "{operation}"]
fence_hook_timeout = "10s"
min_down = "5s"
cooldown = "1h"
rejoin = "manual"

[[services]]
name = "catalog"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"
"#;
    let config = drctl_config::parse("f.toml", text, Path::new("/etc/drctl")).unwrap();
    assert_eq!(
        config.failover,
        FailoverSettings {
            lease: secs(15),
            automatic_limit: 3,
            automatic_window: secs(24 * 3600),
        }
    );
    assert_eq!(config.failover, FailoverSettings::default());
    assert!(config.dns_providers.is_empty(), "DNS is optional");

    let orders = config.service("orders").unwrap();
    assert_eq!(orders.failover, FailoverPolicy::for_tier(Tier::Hot));
    assert_eq!(
        orders.failover,
        FailoverPolicy {
            automatic: true,
            fence_hook: None,
            fence_hook_timeout: secs(30),
            min_down: secs(3),
            cooldown: secs(15 * 60),
            rejoin: RejoinPolicy::Auto,
        }
    );
    assert_eq!(orders.dns, None);
    assert!(!config.service("catalog").unwrap().failover.automatic);

    // Written: kept as written, placeholders and all.
    let inventory = config.service("inventory").unwrap();
    assert_eq!(
        inventory.failover,
        FailoverPolicy {
            automatic: true,
            fence_hook: Some(vec![
                "/usr/local/bin/fence-db".into(),
                "--service={service}".into(),
                "{region}".into(),
                "{operation}".into(),
            ]),
            fence_hook_timeout: secs(10),
            min_down: secs(5),
            cooldown: secs(3600),
            rejoin: RejoinPolicy::Manual,
        }
    );

    let text = r#"
[failover]
lease = "5s"
automatic_limit = 0
automatic_window = "7d"

[[regions]]
name = "eu-west"
"#;
    let config = drctl_config::parse("f.toml", text, Path::new("/")).unwrap();
    assert_eq!(
        config.failover,
        FailoverSettings {
            lease: secs(5),
            automatic_limit: 0,
            automatic_window: secs(7 * 86_400),
        }
    );
}

#[test]
fn dns_providers_and_service_records_are_normalized_with_defaults() {
    let text = r#"
[[regions]]
name = "region-a"

[[regions]]
name = "region-b"

[[dns_providers]]
name = "lab-dns"
kind = "rfc2136"
server = "127.0.0.1:55353"
zone = "Shop.Lab"
tsig_key = "drctl-lab"
tsig_secret_file = "lab-dns.key"

[[dns_providers]]
name = "bind"
kind = "rfc2136"
server = "[2001:db8::53]:53"
zone = "shop.example.com."
tsig_key = "drctl."
tsig_algorithm = "HMAC-SHA512"
tsig_secret_env = "BIND_TSIG_SECRET"

[[dns_providers]]
name = "unsigned"
kind = "rfc2136"
server = "127.0.0.1:53"
zone = "lab."

[[dns_providers]]
name = "aws"
kind = "route53"
hosted_zone_id = "/hostedzone/Z0123456789"

[[dns_providers]]
name = "moto"
kind = "route53"
hosted_zone_id = "Z0123456789"
endpoint = "http://127.0.0.1:5000"
region = "us-east-1"
zone = "shop.example.com"

[[services]]
name = "orders"
tier = "hot"
regions = ["region-a", "region-b"]
primary = "region-a"
postgres = { region-a = { dsn_env = "A" }, region-b = { dsn_env = "B" } }

[services.dns]
provider = "lab-dns"
record = "Orders.shop.lab"

[services.dns.targets]
region-a = "127.0.1.1"
region-b = "127.0.2.1"

[[services]]
name = "payments"
tier = "hot"
regions = ["region-a", "region-b"]
primary = "region-a"
postgres = { region-a = { dsn_env = "A" }, region-b = { dsn_env = "B" } }
dns = { provider = "moto", record = "payments.shop.example.com.", type = "aaaa", ttl = "1m", drill_record = "drill.payments.shop.example.com.", targets = { region-a = "2001:DB8:0::1", region-b = "2001:db8::2" } }

[[services]]
name = "catalog"
tier = "cold"
regions = ["region-a", "region-b"]
primary = "region-a"
dns = { provider = "aws", record = "catalog.anywhere.example.", type = "CNAME", targets = { region-a = "lb-a.example.com", region-b = "lb-b.example.com." } }
"#;
    let config = drctl_config::parse("dns.toml", text, Path::new("/etc/drctl")).unwrap();
    let kind = |name: &str| config.dns_provider(name).unwrap().kind.clone();
    assert_eq!(
        kind("lab-dns"),
        DnsProviderKind::Rfc2136 {
            server: "127.0.0.1:55353".parse().unwrap(),
            zone: "shop.lab.".into(),
            tsig: Some(TsigKey {
                name: "drctl-lab.".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: TsigSecret::File("/etc/drctl/lab-dns.key".into()),
            }),
        }
    );
    assert_eq!(
        kind("bind"),
        DnsProviderKind::Rfc2136 {
            server: "[2001:db8::53]:53".parse().unwrap(),
            zone: "shop.example.com.".into(),
            tsig: Some(TsigKey {
                name: "drctl.".into(),
                algorithm: TsigAlgorithm::HmacSha512,
                secret: TsigSecret::Env("BIND_TSIG_SECRET".into()),
            }),
        }
    );
    assert!(matches!(
        kind("unsigned"),
        DnsProviderKind::Rfc2136 { tsig: None, .. }
    ));
    assert_eq!(
        kind("aws"),
        DnsProviderKind::Route53 {
            hosted_zone_id: "Z0123456789".into(),
            endpoint: None,
            region: None,
            zone: None,
        }
    );
    assert_eq!(
        kind("moto"),
        DnsProviderKind::Route53 {
            hosted_zone_id: "Z0123456789".into(),
            endpoint: Some("http://127.0.0.1:5000".into()),
            region: Some("us-east-1".into()),
            zone: Some("shop.example.com.".into()),
        }
    );
    assert_eq!(config.dns_provider("aws").unwrap().zone(), None);
    assert_eq!(
        config.dns_provider("lab-dns").unwrap().zone(),
        Some("shop.lab.")
    );
    assert!(config.dns_provider("nope").is_none());

    let dns = |name: &str| config.service(name).unwrap().dns.clone().unwrap();
    let orders = dns("orders");
    assert_eq!(
        orders,
        ServiceDns {
            provider: "lab-dns".into(),
            record: "orders.shop.lab.".into(),
            rtype: RecordType::A,
            ttl: secs(30),
            drill_record: "orders-drill.shop.lab.".into(),
            targets: [("region-a", "127.0.1.1"), ("region-b", "127.0.2.1")]
                .map(|(r, t)| (r.to_string(), t.to_string()))
                .into(),
        }
    );
    assert_eq!(orders.target("region-b"), Some("127.0.2.1"));
    assert_eq!(orders.target("region-c"), None);

    let payments = dns("payments");
    assert_eq!(payments.rtype, RecordType::Aaaa);
    assert_eq!(payments.ttl, secs(60));
    assert_eq!(payments.drill_record, "drill.payments.shop.example.com.");
    assert_eq!(
        payments.target("region-a"),
        Some("2001:db8::1"),
        "canonical form"
    );

    let catalog = dns("catalog");
    assert_eq!(catalog.rtype.as_str(), "CNAME");
    assert_eq!(catalog.target("region-a"), Some("lb-a.example.com."));

    // Serialized the way it is written, with the secret's source only.
    let json = serde_json::to_value(&config.dns_providers[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "lab-dns", "kind": "rfc2136", "server": "127.0.0.1:55353", "zone": "shop.lab.",
            "tsig": { "name": "drctl-lab.", "algorithm": "hmac-sha256", "secret": { "file": "/etc/drctl/lab-dns.key" } },
        })
    );
    let json = serde_json::to_value(&orders).unwrap();
    assert_eq!(json["type"], "A");
    assert_eq!(json["ttl"], "30s");
}

#[test]
fn agents_are_read_with_their_mutual_tls_files() {
    let text = r#"
[agents]
ca = "pki/ca.pem"
cert = "pki/drctl.pem"
key = "/etc/drctl/pki/drctl.key"

[[regions]]
name = "eu-west"

[[regions]]
name = "eu-central"

[[services]]
name = "orders"
tier = "hot"
regions = ["eu-west", "eu-central"]
primary = "eu-west"

[services.postgres.eu-west]
dsn_env = "ORDERS_WEST_DSN"
data_dir = "/var/lib/postgresql/15/main"
agent = "https://db1.eu-west.internal:7450/"

[services.postgres.eu-central]
dsn_env = "ORDERS_CENTRAL_DSN"
"#;
    let config = drctl_config::parse("f.toml", text, Path::new("/etc/drctl")).unwrap();
    let tls = config.agents.as_ref().expect("[agents] is read");
    assert_eq!(tls.ca, Path::new("/etc/drctl/pki/ca.pem"));
    assert_eq!(tls.key, Path::new("/etc/drctl/pki/drctl.key"));
    let orders = config.service("orders").unwrap();
    assert_eq!(
        orders.nodes["eu-west"].agent.as_deref(),
        Some("https://db1.eu-west.internal:7450"),
        "kept without the trailing slash"
    );
    assert_eq!(orders.nodes["eu-central"].agent, None, "drctl's own host");
    assert_eq!(orders.failover.rejoin, RejoinPolicy::Auto, "the default");
}

/// The WAL spool's default home is drctl's state directory: the SQLite
/// store's (writable, as /var/lib/drctl under systemd or a container's
/// state volume, where the config directory is read-only), else the
/// config file's; a spool written out is taken as given.
#[test]
fn the_wal_spool_defaults_beside_the_state_store() {
    let spool = |store: &str, backup_extra: &str| {
        let text = format!(
            r#"
{store}
[[regions]]
name = "eu-west"

[[object_stores]]
name = "dr-bucket"
kind = "local"
path = "backups"

[[services]]
name = "orders"
tier = "cold"
regions = ["eu-west"]
primary = "eu-west"

[services.postgres.eu-west]
dsn = "postgres://app@127.0.0.1:5432/orders"

[services.backup]
store = "dr-bucket"
{backup_extra}
"#
        );
        let config = drctl_config::parse("s.toml", &text, Path::new("/etc/drctl")).unwrap();
        let policy = config.service("orders").unwrap().backup.clone().unwrap();
        policy.wal_archive.map(|w| w.spool)
    };
    let at = |p: &str| Some(std::path::PathBuf::from(p));
    assert_eq!(
        spool(
            "[store]\nurl = \"sqlite:///var/lib/drctl/drctl-state.db\"",
            ""
        ),
        at("/var/lib/drctl/wal-spool/orders")
    );
    assert_eq!(spool("", ""), at("/etc/drctl/wal-spool/orders"));
    assert_eq!(
        spool("[store]\nurl = \"postgres://drctl@db:5432/drctl\"", ""),
        at("/etc/drctl/wal-spool/orders")
    );
    assert_eq!(
        spool("", "wal_spool = \"/srv/spool/orders\""),
        at("/srv/spool/orders")
    );
    assert_eq!(spool("", "wal_archive = false"), None);
}
