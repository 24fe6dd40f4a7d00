//! What an operator gets by not writing something.

use std::path::Path;
use std::time::Duration;

use drctl_config::{BackupPolicy, HealthCheck, ObjectStoreKind, Targets, Tier, TierTargets};

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

    let t = |rpo, rto| Targets {
        rpo: secs(rpo),
        rto: secs(rto),
    };
    assert_eq!(config.tiers.get(Tier::Hot), t(5, 60));
    assert_eq!(config.tiers.get(Tier::Warm), t(300, 1800));
    assert_eq!(config.tiers.get(Tier::Cold), t(24 * 3600, 8 * 3600));
    assert_eq!(config.tiers, TierTargets::default());
    assert_eq!(config.source, Path::new("min.toml"));
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
            rto: secs(4 * 3600)
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
        }
    );
    assert!(config.object_store("nope").is_none());

    // The backup is taken from the primary unless told otherwise.
    assert_eq!(
        config.service("catalog").unwrap().backup,
        Some(BackupPolicy {
            store: "dr-bucket".into(),
            from_region: "eu-west".into(),
            compression_level: 3,
            validation_queries: Vec::new(),
            strict: false,
        })
    );
    assert_eq!(
        config.service("orders").unwrap().backup,
        Some(BackupPolicy {
            store: "minio".into(),
            from_region: "us-east".into(),
            compression_level: 19,
            validation_queries: vec!["SELECT count(*) > 0 FROM shop.orders".into()],
            strict: true,
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
            "endpoint": null, "region": "us-east-1", "path_style": false,
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
