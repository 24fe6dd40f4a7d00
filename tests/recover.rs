//! Cold-tier recovery against a real lab: the newest verified backup of a
//! lost primary is restored in the other region, started, probed and
//! announced; the rows written before the backup are there, the ones after
//! it are not, and the reported loss covers them.

use std::time::Duration;

use drctl_lab::{REGION_A, REGION_B};
use drctl_pg::PgCluster;
use drctl_tests::*;

/// Stops the recovered server however the test ends.
struct Recovered(PgCluster);

impl Drop for Recovered {
    fn drop(&mut self) {
        let _ = self.0.stop("immediate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_service_is_recovered_from_its_newest_verified_backup_in_the_other_region() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    lab.workload().pause();
    let primary = lab.cluster("catalog", REGION_A);
    let mut c = connect(&primary.dsn("catalog")).await;
    sqlx::query(
        "CREATE TABLE shop.marks (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("INSERT INTO shop.marks (id) SELECT generate_series(1, 50)")
        .execute(&mut c)
        .await
        .unwrap();

    // The recovery target: region-b's server, not running yet.
    let port = drctl_pg::os::free_port();
    let dns = lab.dns().addr();
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let extra = format!(
        "[services.postgres.region-b]\ndsn = \"postgres://postgres@127.0.0.1:{port}/catalog\"\ndata_dir = \"catalog-region-b\"\n\
         [services.dns]\nprovider = \"lab-dns\"\nrecord = \"catalog.shop.lab.\"\n\
         [services.dns.targets]\nregion-a = \"127.0.1.1\"\nregion-b = \"127.0.2.1\"\n"
    );
    let path = lab.config_path().with_file_name("recover.toml");
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    let cfg = path.to_str().unwrap();
    let recovered = Recovered(PgCluster::new(
        "catalog-region-b",
        lab.config_path().with_file_name("catalog-region-b"),
        port,
        drctl_pg::find_pg_bin().unwrap(),
    ));

    // No verified backup yet: refused, with its code.
    let (code, out, _) = drctl(&[
        "recover",
        "catalog",
        "--to",
        REGION_B,
        "--dry-run",
        "-o",
        "json",
        "--config",
        cfg,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no_verified_backup") && out.contains("\"blocked\": true"),
        "{out}"
    );

    let (code, out, err) = drctl(&["backup", "run", "catalog", "--config", cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = drctl(&["backup", "verify", "--latest", "catalog", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("INSERT INTO shop.marks (id) SELECT generate_series(51, 80)")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.crash().unwrap();

    let (code, out, err) = drctl(&[
        "recover", "catalog", "--to", REGION_B, "--yes", "-o", "json", "--config", cfg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = &v["operation"]["measured"];
    eprintln!("recover: {m}");

    // Region-b serves the catalog as it was at the backup.
    let mut b = connect(&recovered.0.dsn("catalog")).await;
    let (writable,): (bool,) = sqlx::query_as("SELECT NOT pg_is_in_recovery()")
        .fetch_one(&mut b)
        .await
        .unwrap();
    assert!(writable);
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM shop.marks ORDER BY id")
        .fetch_all(&mut b)
        .await
        .unwrap();
    assert_eq!(
        ids,
        (1..=50).collect::<Vec<i64>>(),
        "the rows before the backup, none after"
    );
    // The reported loss covers what was really lost: the rows after the
    // backup were written within it.
    let rpo_s = m["rpo_us"].as_i64().unwrap() as f64 / 1e6;
    assert!((1.0..60.0).contains(&rpo_s), "{m}");
    assert_eq!(
        drctl_dns::query(dns, "catalog.shop.lab.", drctl_config::RecordType::A)
            .await
            .unwrap(),
        Some(vec!["127.0.2.1".to_string()])
    );
    // A second recovery finds the target already serving and refuses.
    let (code, out, _) = drctl(&[
        "recover", "catalog", "--to", REGION_B, "--yes", "-o", "json", "--config", cfg,
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("\"refused\"") && out.contains("already answers"),
        "{out}"
    );
}

/// A backup's postgresql.auto.conf is whatever was in the bucket: someone
/// who can write there could set `archive_command` (a shell command the
/// server runs) or preload a library. The recovered server starts with
/// drctl's configuration, not the backup's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovered_server_never_starts_with_the_backups_own_configuration() {
    let (lab, dir) = start_lab(vec![catalog()]).await;
    lab.workload().pause();
    let primary = lab.cluster("catalog", REGION_A);
    let marker = dir.path().join("archive-command-ran");
    let mut c = connect(&primary.dsn("postgres")).await;
    for sql in [
        "ALTER SYSTEM SET archive_mode = 'on'".to_string(),
        format!(
            "ALTER SYSTEM SET archive_command = 'touch {}'",
            marker.display()
        ),
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'".to_string(),
    ] {
        sqlx::query(&sql).execute(&mut c).await.unwrap();
    }
    drop(c);

    let port = drctl_pg::os::free_port();
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let extra = format!(
        "[services.postgres.region-b]\ndsn = \"postgres://postgres@127.0.0.1:{port}/catalog\"\ndata_dir = \"catalog-region-b\"\n"
    );
    let path = lab.config_path().with_file_name("recover.toml");
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    let cfg = path.to_str().unwrap();
    let recovered = Recovered(PgCluster::new(
        "catalog-region-b",
        lab.config_path().with_file_name("catalog-region-b"),
        port,
        drctl_pg::find_pg_bin().unwrap(),
    ));
    let (code, out, err) = drctl(&["backup", "run", "catalog", "--config", cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = drctl(&["backup", "verify", "--latest", "catalog", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    primary.crash().unwrap();
    let (code, out, err) = drctl(&[
        "recover", "catalog", "--to", REGION_B, "--yes", "-o", "json", "--config", cfg,
    ]);
    assert_eq!(code, 0, "{out}{err}");

    let mut b = connect(&recovered.0.dsn("catalog")).await;
    let (archive_mode, preload, port_now): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('archive_mode'), current_setting('shared_preload_libraries'), current_setting('port')",
    )
    .fetch_one(&mut b)
    .await
    .unwrap();
    assert_eq!(
        (archive_mode.as_str(), preload.as_str(), port_now),
        ("off", "", port.to_string()),
        "the recovered server runs drctl's settings"
    );
    // A finished WAL segment would have run the planted archive_command.
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut b)
        .await
        .unwrap();
    sqlx::query("CHECKPOINT").execute(&mut b).await.unwrap();
    assert!(!marker.exists(), "the planted archive_command ran");
}
