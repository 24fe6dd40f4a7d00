//! Backups as an operator runs them, through the `drctl` binary on a lab:
//! `backup run`, `backup list`, `backup verify`, `restore-test`, and the
//! cold tier's RPO and RTO in the API matching those records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_tests::*;
use serde_json::Value;

async fn catalog_figures(api: &str) -> Value {
    let report: Value = reqwest::get(format!("{api}/api/v1/rpo-rto"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "catalog")
        .cloned()
        .unwrap()
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_tier_rpo_and_rto_come_from_verified_backups_and_restore_tests() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    let cfg = lab.config_path().display().to_string();

    let before = wait_for("the evidence refresh", Duration::from_secs(10), || async {
        let c = catalog_figures(&api).await;
        c["error"]
            .as_str()
            .is_some_and(|e| e.contains("no verified backup"))
            .then_some(c)
    })
    .await;
    assert_eq!(before["status"], "unknown");

    let (code, out, err) = drctl(&["backup", "run", "catalog", "--config", &cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let run = json_of(&out);
    let id = run["backup"]["id"].as_str().unwrap().to_string();
    assert_eq!(run["backup"]["status"], "complete");
    assert!(run["manifest"]["stop_lsn"].is_string());

    let (code, out, _) = drctl(&["backup", "list", "catalog", "--config", &cfg]);
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{out}"));
    assert!(
        line.contains("complete") && line.contains("unverified"),
        "{line}"
    );
    // Not verified yet: still no RPO figure for the cold tier.
    assert_eq!(catalog_figures(&api).await["status"], "unknown");

    let (code, out, err) = drctl(&["backup", "verify", "--latest", "catalog", "--config", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified"), "{out}");

    let (_, out, _) = drctl(&["backup", "list", "--config", &cfg, "-o", "json"]);
    let record = json_of(&out)["backups"][0].clone();
    assert_eq!(record["verification"], "verified");
    let ended_at = time(&record["ended_at"]);
    // With a verified backup whose start the WAL archive holds unbroken
    // (the daemon's archiver ran before the backup), what a restore would
    // lose is the archive's lag, not the backup's age.
    let figures = wait_for(
        "catalog's exposure from the verified backup and the WAL archive",
        Duration::from_secs(30),
        || async {
            let c = catalog_figures(&api).await;
            (c["rpo"]["exposure_s"].is_number()
                && c["rpo"]["exposure_s"] == c["wal_archive"]["archive_lag_s"])
                .then_some(c)
        },
    )
    .await;
    let backup_age = (time(&figures["sampled_at"]) - ended_at)
        .num_microseconds()
        .unwrap() as f64
        / 1e6;
    let exposure = figures["rpo"]["exposure_s"].as_f64().unwrap();
    assert_eq!(figures["rpo"]["best_standby"], "wal-archive", "{figures}");
    assert_eq!(figures["wal_archive"]["receiver"], "running", "{figures}");
    eprintln!("archive lag {exposure} s; the backup's age {backup_age} s");
    assert_eq!(
        figures["status"], "ok",
        "a fresh backup is well inside a 24 h target: {figures}"
    );
    assert_eq!(
        figures["backup"]["newest_verified_backup"]["id"],
        id.as_str()
    );

    let (code, out, err) = drctl(&["restore-test", "catalog", "--config", &cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let test = json_of(&out);
    assert_eq!(test["outcome"]["passed"], true, "{test}");
    assert_eq!(test["outcome"]["queries"][0]["value"], "true");
    let ttr_us = test["restore_test"]["time_to_ready_us"].as_i64().unwrap();
    let rto = wait_for("the measured RTO", Duration::from_secs(10), || async {
        let c = catalog_figures(&api).await;
        c["rto"]["measured_s"].is_number().then_some(c)
    })
    .await;
    assert_eq!(
        rto["rto"]["measured_s"].as_f64().unwrap(),
        ttr_us as f64 / 1e6
    );
    assert!(rto["rto"]["source"]
        .as_str()
        .unwrap()
        .contains(test["restore_test"]["id"].as_str().unwrap()));
    eprintln!("restore test ready after {:.2}s", ttr_us as f64 / 1e6);

    // Corrupt the stored object: verification fails and names it, and the
    // backup is no longer offered to a restore test.
    let object = lab
        .record
        .dir
        .join("objects")
        .join("catalog")
        .join(&id)
        .join("base.tar.zst");
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let (code, _, err) = drctl(&["backup", "verify", &id, "--config", &cfg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("FAILED") && err.contains("base.tar.zst"),
        "{err}"
    );
    let (code, _, err) = drctl(&["restore-test", "catalog", "--config", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("no verified backup"), "{err}");
    let after = wait_for(
        "catalog to lose its RPO figure",
        Duration::from_secs(10),
        || async {
            let c = catalog_figures(&api).await;
            (c["status"] == "unknown").then_some(c)
        },
    )
    .await;
    assert!(after["error"]
        .as_str()
        .unwrap()
        .contains("no verified backup"));

    let (code, _, err) = drctl(&["backup", "run", "nosuch", "--config", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("no service named \"nosuch\""), "{err}");
    daemon.stop().await;
    lab.teardown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_missed_while_the_daemon_was_down_are_recorded_and_the_latest_runs() {
    let (lab, dir) = start_lab(vec![catalog()]).await;
    let text = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        "[services.backup]\nstore = \"lab-objects\"\n",
        "[services.backup]\nstore = \"lab-objects\"\nschedule = \"* * * * *\"\n",
    );
    assert!(text.contains("schedule = "), "{text}");
    let path = lab.record.dir.join("scheduled.toml");
    std::fs::write(&path, text).unwrap();
    let config = std::sync::Arc::new(drctl_config::load(&path).unwrap_or_else(|e| panic!("{e}")));

    // The daemon last handled the backup due five minutes ago, then stopped.
    let store = drctl_store::Store::open(config.store.url.expose())
        .await
        .unwrap();
    let now = Utc::now();
    let five_ago = now - chrono::TimeDelta::minutes(5);
    let last_due = five_ago - chrono::TimeDelta::seconds(five_ago.timestamp() % 60);
    store
        .record_schedule_run(&drctl_store::ScheduleRun {
            service: "catalog".into(),
            job: drctl_store::states::ScheduledJob::Backup,
            due_at: last_due,
            started_at: Some(last_due),
            ended_at: Some(last_due),
            status: drctl_store::states::ScheduleRunStatus::Ok,
            detail: None,
        })
        .await
        .unwrap();
    store.close().await;

    let daemon = start_daemon_with(config).await;
    let api = daemon.api_url();
    let runs = wait_for(
        "the caught-up backup to finish",
        Duration::from_secs(60),
        || async {
            let runs: Value = reqwest::get(format!("{api}/api/v1/schedule-runs?service=catalog"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let list = runs["schedule_runs"].as_array()?.clone();
            list.iter()
                .any(|r| {
                    r["status"] == "ok"
                        && r["due_at"] != Value::Null
                        && time(&r["due_at"]) > last_due
                })
                .then_some(list)
        },
    )
    .await;
    let missed: Vec<&Value> = runs.iter().filter(|r| r["status"] == "missed").collect();
    let ok: Vec<&Value> = runs
        .iter()
        .filter(|r| r["status"] == "ok" && time(&r["due_at"]) > last_due)
        .collect();
    eprintln!("{}", serde_json::to_string_pretty(&runs).unwrap());
    assert_eq!(ok.len(), 1, "the latest due time ran once");
    assert!(
        missed.len() >= 3,
        "every minute slept through is recorded missed: {missed:?}"
    );
    assert!(missed
        .iter()
        .all(|r| time(&r["due_at"]) < time(&ok[0]["due_at"])));
    assert!(
        ok[0]["detail"].as_str().unwrap().contains("backup "),
        "{:?}",
        ok[0]
    );
    let backups: Value = reqwest::get(format!("{api}/api/v1/backups?service=catalog"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        backups["backups"].as_array().unwrap().len(),
        1,
        "one backup for the catch-up, not one per missed minute"
    );
    daemon.stop().await;
    lab.teardown().unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsite_copy_lands_in_the_second_store_verified() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        "[services.backup]\nstore = \"lab-objects\"\n",
        "[services.backup]\nstore = \"lab-objects\"\noffsite_store = \"dr-bucket\"\n",
    );
    text.push_str(&format!(
        "\n[[object_stores]]\nname = \"dr-bucket\"\nkind = \"s3\"\nbucket = \"drctl-offsite\"\nprefix = \"dr/\"\n\
         endpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\n",
        moto.endpoint
    ));
    let cfg = lab.record.dir.join("offsite.toml");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.display().to_string();

    let (code, out, err) = drctl(&["backup", "run", "catalog", "--config", &cfg, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let run = json_of(&out);
    let id = run["backup"]["id"].as_str().unwrap().to_string();
    assert_eq!(run["backup"]["offsite_store"], "dr-bucket");
    assert_eq!(run["backup"]["offsite_status"], "verified", "{run}");

    // The copy is really there, complete, and checks out on its own.
    let offsite = drctl_backup::ObjectStore::s3(moto.s3_location("drctl-offsite", "dr/"))
        .await
        .unwrap();
    let keys: Vec<String> = offsite
        .list("catalog/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        vec![
            format!("catalog/{id}/base.tar.zst"),
            format!("catalog/{id}/manifest.json")
        ]
    );
    let (_, report) = drctl_backup::verify_backup(&offsite, "catalog", &id, &Default::default())
        .await
        .unwrap();
    assert!(report.verified, "{report:?}");
    lab.teardown().unwrap();
}

async fn post(url: &str, token: &str) -> (u16, Value) {
    let reply = ApiClient::http(url).with_token(token).post("", None).await;
    (reply.status.as_u16(), reply.json())
}

/// Polls an operation until it is no longer running.
async fn finished(api: &str, id: &str) -> Value {
    wait_for(
        &format!("operation {id}"),
        Duration::from_secs(60),
        || async {
            let v: Value = reqwest::get(format!("{api}/api/v1/operations/{id}"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["operation"]["status"] != "running").then(|| v["operation"].clone())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_verifications_and_restore_tests_start_through_the_api() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    let operator = lab_token(&lab, "operator");

    let (status, body) = post(&format!("{api}/api/v1/services/catalog/backups"), &operator).await;
    assert_eq!(status, 202, "{body}");
    let op = body["operation"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["operation"]["url"], format!("/api/v1/operations/{op}"));
    let done = finished(&api, &op).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let backup = done["result"]["backup_id"].as_str().unwrap().to_string();

    let (status, body) = post(&format!("{api}/api/v1/backups/{backup}/verify"), &operator).await;
    assert_eq!(status, 202, "{body}");
    let done = finished(&api, body["operation"]["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["verified"], true);

    let (status, body) = post(
        &format!("{api}/api/v1/services/catalog/restore-tests"),
        &operator,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let done = finished(&api, body["operation"]["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["result"]["time_to_ready_s"].as_f64().unwrap() > 0.0);
    assert_eq!(done["result"]["backup_id"], backup.as_str());

    let ops: Value = reqwest::get(format!("{api}/api/v1/operations"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ops["operations"].as_array().unwrap().len(), 3);

    let (status, body) = post(
        &format!("{api}/api/v1/services/catalogue/backups"),
        &operator,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("service_not_found")),
        "{body}"
    );
    let (status, body) = post(&format!("{api}/api/v1/backups/nosuch/verify"), &operator).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("backup_not_found")),
        "{body}"
    );
    let r = reqwest::get(format!("{api}/api/v1/operations/op-nosuch"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "operation_not_found");
    daemon.stop().await;
    lab.teardown().unwrap();
}

/// The production path of `dsn_env` and `encryption_key_env`: drctl reads
/// both from its own environment, given here to the `drctl` child (the
/// config crate's tests resolve them through a map, since tests share one
/// process and must not change its environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_reads_the_dsn_and_the_backup_key_from_drctls_environment() {
    const DSN_VAR: &str = "DRCTL_BACKUP_CLI_TEST_CATALOG_DSN";
    const KEY_VAR: &str = "DRCTL_BACKUP_CLI_TEST_BACKUP_KEY";
    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let at = "[services.postgres.region-a]\ndsn = \"";
    let start = text.find(at).expect("the lab's catalog DSN") + at.len();
    let dsn = text[start..start + text[start..].find('"').unwrap()].to_string();
    let text = text
        .replace(
            &format!("{at}{dsn}\""),
            &format!("[services.postgres.region-a]\ndsn_env = \"{DSN_VAR}\""),
        )
        .replace(
            "[services.backup]\nstore = \"lab-objects\"\n",
            &format!(
                "[services.backup]\nstore = \"lab-objects\"\nencryption_key_env = \"{KEY_VAR}\"\n"
            ),
        );
    assert!(text.contains(DSN_VAR) && text.contains(KEY_VAR), "{text}");
    let cfg = lab.record.dir.join("from-env.toml");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.display().to_string();
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(drctl_bin())
            .args(["backup", "run", "catalog", "--config", &cfg, "-o", "json"])
            .envs(MOTO_CREDENTIALS)
            .envs(env.iter().copied())
            .output()
            .expect("running drctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&[(KEY_VAR, KEY)]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains(&format!("environment variable {DSN_VAR} is not set")),
        "{out}{err}"
    );

    let (code, out, err) = run(&[(DSN_VAR, &format!("  {dsn}\n")), (KEY_VAR, KEY)]);
    assert_eq!(code, Some(0), "{out}{err}");
    let run = json_of(&out);
    assert_eq!(run["backup"]["status"], "complete", "{run}");
    assert_eq!(
        run["manifest"]["encryption_key_id"],
        drctl_backup::BackupKey::from_hex(KEY).unwrap().id.as_str(),
        "{run}"
    );
    lab.teardown().unwrap();
}
