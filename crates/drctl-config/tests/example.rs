//! The reference example `config/shop.example.toml` parses, and means what
//! its comments say.

use std::path::Path;
use std::time::Duration;

use drctl_config::{
    BackupPolicy, DsnSource, KeySource, ObjectLockConfig, ObjectLockMode, ObjectStoreKind,
    Retention, Tier, WalArchivePolicy,
};

const EXAMPLE: &str = "../../config/shop.example.toml";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn shop_example_parses_cleanly() {
    let config = match drctl_config::load(Path::new(EXAMPLE)) {
        Ok(config) => config,
        Err(errors) => panic!("the reference example must be valid:\n{errors}"),
    };
    assert!(config.source.is_absolute());
    assert!(config.source.ends_with("config/shop.example.toml"));
    assert_eq!(
        config.scratch.root.as_deref(),
        Some(Path::new("/var/lib/drctl/scratch"))
    );

    let names: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["eu-west", "us-east"]);

    let tiers: Vec<(&str, Tier)> = config
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.tier))
        .collect();
    assert_eq!(
        tiers,
        [
            ("orders", Tier::Hot),
            ("payments", Tier::Hot),
            ("inventory", Tier::Warm),
            ("customer-identity", Tier::Warm),
            ("catalog", Tier::Cold),
            ("clickstream", Tier::Cold),
        ]
    );

    // The SQLite store is resolved next to the config file, not the cwd.
    let config_dir = config.source.parent().unwrap();
    assert_eq!(
        config.store.url.expose(),
        format!("sqlite://{}", config_dir.join("drctl-state.db").display())
    );

    let orders = config.service("orders").unwrap();
    assert_eq!(orders.cluster, "shop-main");
    assert_eq!(
        (orders.targets.rpo, orders.targets.rto),
        (secs(2), secs(30))
    );
    assert_eq!(orders.standby_regions().collect::<Vec<_>>(), ["us-east"]);
    assert_eq!(
        orders.postgres["us-east"],
        DsnSource::Env("SHOP_MAIN_US_EAST_DSN".into())
    );
    assert_eq!(
        config
            .cluster_members("shop-main")
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["orders", "payments"]
    );

    let payments = config.service("payments").unwrap();
    assert_eq!(
        payments.targets, config.tiers.hot,
        "no override: the tier's targets"
    );

    let inventory = config.service("inventory").unwrap();
    assert_eq!(
        inventory.cluster, "inventory",
        "cluster defaults to the service name"
    );
    match &inventory.postgres["us-east"] {
        DsnSource::File(path) => {
            assert_eq!(path, &config_dir.join("secrets/inventory-us-east.dsn"))
        }
        other => panic!("expected a file DSN, got {other:?}"),
    }

    let identity = config.service("customer-identity").unwrap();
    assert_eq!(identity.primary, "us-east");
    assert_eq!(identity.standby_regions().collect::<Vec<_>>(), ["eu-west"]);
    assert_eq!(identity.health.failures, 5);
    assert_eq!(identity.targets.rto, secs(15 * 60));
    assert_eq!(identity.targets.rpo, secs(5 * 60));

    let catalog = config.service("catalog").unwrap();
    assert_eq!(catalog.targets.rpo, secs(12 * 3600));
    assert_eq!(catalog.postgres.keys().collect::<Vec<_>>(), ["eu-west"]);
    assert!(catalog.has_datastore());

    let clickstream = config.service("clickstream").unwrap();
    assert!(!clickstream.has_datastore());
    assert!(clickstream.backup.is_none(), "nothing to back up");
    assert!(config.service("nope").is_none());
}

#[test]
fn shop_example_backs_up_to_the_dr_bucket_and_offsite() {
    let config = drctl_config::load(Path::new(EXAMPLE)).unwrap();
    let config_dir = config.source.parent().unwrap();

    let names: Vec<&str> = config
        .object_stores
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["local-backups", "dr-bucket", "dr-bucket-eu"]);
    assert_eq!(
        config.object_store("local-backups").unwrap().kind,
        ObjectStoreKind::Local {
            path: config_dir.join("backups")
        },
        "resolved next to the config file, not the cwd"
    );
    assert_eq!(
        config.object_store("dr-bucket").unwrap().kind,
        ObjectStoreKind::S3 {
            bucket: "shop-backups".into(),
            prefix: "drctl/".into(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            timeout: std::time::Duration::from_secs(120),
            lock: None,
        }
    );
    assert_eq!(
        config.object_store("dr-bucket-eu").unwrap().kind,
        ObjectStoreKind::S3 {
            bucket: "shop-backups-eu".into(),
            prefix: "drctl/".into(),
            endpoint: None,
            region: "eu-west-1".into(),
            path_style: false,
            timeout: std::time::Duration::from_secs(120),
            lock: Some(ObjectLockConfig {
                mode: ObjectLockMode::Compliance,
                retention: secs(35 * 86_400),
            }),
        }
    );

    // Serialized flat, as written.
    let eu = serde_json::to_value(config.object_store("dr-bucket-eu").unwrap()).unwrap();
    assert_eq!(eu["object_lock"], "compliance");
    assert_eq!(eu["lock_retention"], "35d");

    let backup = |name: &str| config.service(name).unwrap().backup.clone();
    // WAL archiving is on by default, spooled beside the config file.
    let spool = |name: &str| {
        Some(WalArchivePolicy {
            spool: std::env::current_dir()
                .unwrap()
                .join(EXAMPLE)
                .parent()
                .unwrap()
                .join("wal-spool")
                .join(name),
            ship_interval: Duration::from_millis(500),
        })
    };
    assert_eq!(
        backup("orders"),
        Some(BackupPolicy {
            store: "dr-bucket".into(),
            from_region: "us-east".into(),
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
            encryption_key: Some(KeySource::Env("SHOP_MAIN_BACKUP_KEY".into())),
            wal_archive: spool("orders"),
        })
    );
    assert_eq!(
        backup("inventory"),
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
            wal_archive: spool("inventory"),
        })
    );
    assert_eq!(
        backup("catalog"),
        Some(BackupPolicy {
            store: "dr-bucket".into(),
            from_region: "eu-west".into(),
            compression_level: 9,
            compression_threads: 0,
            validation_queries: vec!["SELECT count(*) > 0 FROM catalog.products".into()],
            strict: true,
            schedule: Some("0 * * * *".into()),
            verify_schedule: Some("30 * * * *".into()),
            restore_test_schedule: Some("0 3 * * *".into()),
            restore_test_max_age: secs(2 * 86_400),
            retention: Retention {
                keep_last: 24,
                keep_daily: 14,
                keep_weekly: 8,
                keep_monthly: 12,
            },
            offsite_store: Some("dr-bucket-eu".into()),
            encryption_key: None,
            wal_archive: spool("catalog"),
        })
    );
    for name in ["payments", "customer-identity", "clickstream"] {
        assert_eq!(backup(name), None, "{name}");
    }
}

#[test]
fn shop_example_serializes_without_its_password() {
    let config = drctl_config::load(Path::new(EXAMPLE)).unwrap();
    let json = serde_json::to_value(&config).unwrap();
    let text = json.to_string();
    assert!(!text.contains("lab-only-password"), "{text}");
    assert!(
        text.contains("postgres://inventory:***@10.0.1.5:5432/inventory"),
        "{text}"
    );

    // Durations are the human strings a config file would hold.
    assert_eq!(json["monitor"]["rollup_retention"], "30d");
    assert_eq!(json["monitor"]["raw_retention"], "1d");
    assert_eq!(json["tiers"]["hot"]["rpo"], "5s");
    let orders = &json["services"][0];
    assert_eq!(orders["tier"], "hot");
    assert_eq!(orders["targets"]["rto"], "30s");
    assert_eq!(orders["health"]["failures"], 3);
    assert_eq!(
        orders["postgres"]["eu-west"]["env"],
        "SHOP_MAIN_EU_WEST_DSN"
    );
    assert_eq!(json["api"]["listen"], "127.0.0.1:7878");
    assert_eq!(json["object_stores"][1]["kind"], "s3");
    assert_eq!(json["object_stores"][1]["bucket"], "shop-backups");
    assert_eq!(orders["backup"]["store"], "dr-bucket");
    assert_eq!(
        orders["backup"]["encryption_key"]["env"],
        "SHOP_MAIN_BACKUP_KEY"
    );
    let catalog = &json["services"][4];
    assert_eq!(catalog["name"], "catalog");
    assert_eq!(catalog["backup"]["restore_test_schedule"], "0 3 * * *");
    assert_eq!(catalog["backup"]["restore_test_max_age"], "2d");
    assert_eq!(catalog["backup"]["retention"]["keep_last"], 24);
    assert_eq!(catalog["backup"]["offsite_store"], "dr-bucket-eu");
}

#[test]
fn shop_example_publishes_through_both_dns_provider_kinds_and_fails_over_by_policy() {
    use drctl_config::{
        DnsProviderKind, FailoverSettings, RecordType, TsigAlgorithm, TsigKey, TsigSecret,
    };
    let config = drctl_config::load(Path::new(EXAMPLE)).unwrap();
    let config_dir = config.source.parent().unwrap();
    assert_eq!(config.failover, FailoverSettings::default());

    assert_eq!(
        config.dns_provider("public-dns").unwrap().kind,
        DnsProviderKind::Route53 {
            hosted_zone_id: "Z0123456789ABCDEFGHIJ".into(),
            endpoint: None,
            region: None,
            zone: Some("shop.example.com.".into()),
        }
    );
    assert_eq!(
        config.dns_provider("internal-dns").unwrap().kind,
        DnsProviderKind::Rfc2136 {
            server: "10.0.53.10:53".parse().unwrap(),
            zone: "shop.internal.".into(),
            tsig: Some(TsigKey {
                name: "drctl.".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: TsigSecret::File(config_dir.join("secrets/drctl-tsig.key")),
            }),
        }
    );

    let orders = config.service("orders").unwrap();
    let dns = orders.dns.as_ref().unwrap();
    assert_eq!(dns.record, "orders.shop.example.com.");
    assert_eq!(dns.drill_record, "orders-drill.shop.example.com.");
    assert_eq!(dns.rtype, RecordType::A);
    assert_eq!(dns.ttl, secs(30));
    assert_eq!(dns.target("us-east"), Some("198.51.100.10"));
    assert!(orders.failover.automatic, "hot: automatic by default");
    assert_eq!(orders.failover.cooldown, secs(30 * 60));
    assert_eq!(orders.failover.fence_hook_timeout, secs(20));
    assert_eq!(
        orders.failover.fence_hook.as_deref().unwrap()[2],
        "{region}",
        "placeholders are kept for the engine to fill in"
    );

    let inventory = config.service("inventory").unwrap();
    let dns = inventory.dns.as_ref().unwrap();
    assert_eq!(dns.rtype, RecordType::Cname);
    assert_eq!(
        dns.target("eu-west"),
        Some("pgproxy.eu-west.shop.internal.")
    );
    assert!(!inventory.failover.automatic, "warm: an operator decides");
    assert!(config.service("payments").unwrap().dns.is_none());
}
