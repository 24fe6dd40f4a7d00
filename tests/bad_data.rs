//! The "bad data" drill end to end, as an operator runs it on a lab (the
//! README's walk-through and `runbooks/bad-data.md`): the daemon archives
//! WAL, a base backup is taken, `drctl lab corrupt` deletes and rewrites
//! recent orders on the primary (and the standby copies the damage), and
//! `drctl restore orders --to-time <intact_at>` brings back a copy that
//! holds every deleted row, every rewritten row as it was, and nothing
//! committed after that moment.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_tests::*;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_just_before_lab_corrupt_brings_back_every_row() {
    let (lab, dir) = start_lab(vec![orders()]).await;
    let daemon = start_daemon(&lab).await;
    let cfg = lab.config_path().display().to_string();
    let lab_dir = lab.record.dir.display().to_string();

    wait_for("the WAL archiver", Duration::from_secs(60), || async {
        let w = daemon.monitor.view("orders")?.wal_archive?;
        (w.receiver == drctl_monitor::ArchiveReceiver::Running && w.archive_lag_us.is_some())
            .then_some(())
    })
    .await;
    let (code, out, err) = drctl(&["backup", "run", "orders", "--config", &cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let backup = json_of(&out)["backup"]["id"].as_str().unwrap().to_string();
    // The workload goes on after the backup: the restore replays it.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (code, out, err) = drctl(&[
        "lab", "--dir", &lab_dir, "corrupt", "orders", "--rows", "15", "-o", "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let corrupted = json_of(&out)["corrupted"].clone();
    let intact_at = corrupted["intact_at"].as_str().unwrap().to_string();
    let (deleted, rewritten) = (ids(&corrupted["deleted"]), ids(&corrupted["rewritten"]));
    assert_eq!((deleted.len(), rewritten.len()), (15, 15), "{corrupted}");

    // The archive holds the damage's moment (the workload commits after it).
    wait_for(
        "the archive past the damage",
        Duration::from_secs(60),
        || async {
            let (code, out, _) =
                drctl(&["backup", "wal", "orders", "--config", &cfg, "-o", "json"]);
            let report = json_of(&out);
            let newest = report["wal_archive"]["newest_commit"].as_str()?;
            (code == 0 && time(&Value::from(newest)) > time(&Value::from(intact_at.as_str())))
                .then_some(())
        },
    )
    .await;

    // The dry run names the backup and the WAL; a time without its zone is
    // refused with the accepted forms.
    let (code, out, err) = drctl(&[
        "restore",
        "orders",
        "--to-time",
        &intact_at,
        "--dry-run",
        "--config",
        &cfg,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let plan = json_of(&out)["plan"].clone();
    assert_eq!(plan["base"]["backup_id"], backup.as_str(), "{plan}");
    assert!(plan["wal_objects"].as_u64().unwrap() >= 1, "{plan}");
    let zoneless = intact_at.trim_end_matches('Z').to_string();
    let (code, _, err) = drctl(&[
        "restore",
        "orders",
        "--to-time",
        &zoneless,
        "--dry-run",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("accepted: a date"), "{err}");

    let target = dir.path().join("orders-restored");
    let target_arg = target.display().to_string();
    let (code, out, err) = drctl(&[
        "restore",
        "orders",
        "--to-time",
        &intact_at,
        "--target",
        &target_arg,
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&backup), "{out}");

    // Started on a port of its own (the runbook's `-o "-p …"`), loopback
    // only: it replays to the moment and promotes itself.
    let port = drctl_pg::os::free_port();
    let mut auto = std::fs::read_to_string(target.join("postgresql.auto.conf")).unwrap();
    auto.push_str(&format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
    ));
    std::fs::write(target.join("postgresql.auto.conf"), auto).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    drctl_pg::os::give_to_postgres(&target).unwrap();
    drctl_pg::os::give_to_postgres(&dir.path().join("orders-restored-wal")).unwrap();
    let restored = drctl_pg::PgCluster::new(
        "orders-restored",
        target.clone(),
        port,
        drctl_pg::find_pg_bin().unwrap(),
    );
    restored.start().expect("the restored directory starts");
    let dsn = format!("postgres://postgres@127.0.0.1:{port}/orders");
    let mut r = wait_for(
        "the restore to promote",
        Duration::from_secs(60),
        || async {
            let mut r = PgConnection::connect(&dsn).await.ok()?;
            let (recovering,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                .fetch_one(&mut r)
                .await
                .ok()?;
            (!recovering).then_some(r)
        },
    )
    .await;

    // Every deleted row is back; every rewritten row as it was (production
    // holds its negation); nothing committed after the moment (a row's
    // created_at is its insert's clock, before its commit).
    let (back,): (i64,) = sqlx::query_as("SELECT count(*) FROM shop.orders WHERE id = ANY($1)")
        .bind(&deleted)
        .fetch_one(&mut r)
        .await
        .unwrap();
    assert_eq!(back, deleted.len() as i64, "every deleted row restored");
    let as_was: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, amount_cents FROM shop.orders WHERE id = ANY($1) ORDER BY id")
            .bind(&rewritten)
            .fetch_all(&mut r)
            .await
            .unwrap();
    let primary_dsn = lab
        .record
        .dsn("orders", drctl_lab::REGION_A, "orders")
        .unwrap();
    let mut p = PgConnection::connect(&primary_dsn).await.unwrap();
    let damaged: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, amount_cents FROM shop.orders WHERE id = ANY($1) ORDER BY id")
            .bind(&rewritten)
            .fetch_all(&mut p)
            .await
            .unwrap();
    assert_eq!(as_was.len(), rewritten.len());
    for ((id, was), (_, now)) in as_was.iter().zip(&damaged) {
        assert!(
            *was >= 0 && *now == -*was,
            "row {id}: restored {was}, production {now}"
        );
    }
    let (newest_us,): (Option<i64>,) = sqlx::query_as(
        "SELECT (extract(epoch FROM max(created_at)) * 1000000)::bigint FROM shop.orders",
    )
    .fetch_one(&mut r)
    .await
    .unwrap();
    let intact = time(&Value::from(intact_at.as_str()));
    assert!(
        newest_us.unwrap() <= intact.timestamp_micros(),
        "a row from {newest_us:?} µs, after {intact}"
    );
    // And every row the primary had before the damage began.
    let (restored_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM shop.orders")
        .fetch_one(&mut r)
        .await
        .unwrap();
    let (untouched,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM shop.orders WHERE created_at <= $1::timestamptz")
            .bind(&intact_at)
            .fetch_one(&mut p)
            .await
            .unwrap();
    let before_damage = untouched + deleted.len() as i64;
    eprintln!(
        "restored to {intact_at}: {restored_rows} rows; the primary had {before_damage} by then"
    );
    // An insert that had begun but not committed by the moment is in
    // production and rightly not in the copy: one writer, so at most one.
    assert!(
        restored_rows <= before_damage && restored_rows + 1 >= before_damage,
        "{restored_rows} restored, {before_damage} before the damage"
    );

    drop(r);
    restored.stop("immediate").unwrap();
    daemon.stop().await;
    lab.teardown().unwrap();
}
