//! Faults injected between drctl and each of its dependencies, through the
//! lab's fault proxy (`drctl_lab::FaultProxy`) in front of the real server:
//!
//! - S3 (moto) during backups and verification: 5xx answers, resets, a black
//!   hole and a slow server are retried to a clean success; an outage fails
//!   the backup cleanly (no manifest, recorded failed); a verification that
//!   cannot read the store records no verdict; every backup marked verified
//!   restores.
//! - Route 53 (moto) during a failover: errors are retried; an outage stops
//!   the failover resumably after the promotion, and a resume completes it
//!   once the API answers again.
//! - PostgreSQL during each step of a failover: every connection to both
//!   regions dropped (and refused) while the step runs; the failover
//!   completes or stops resumably, and ends with one writable primary that
//!   DNS names, never half-applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drctl_backup::{restore_backup, ObjectStore, S3Location};
use drctl_failover::{OperationKind, OperationSaga};
use drctl_lab::{find_pg_bin, free_port, Fault, FaultProxy, Lab, PgCluster, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;
use serde_json::Value;

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("a loopback URL")
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Writes `text` beside the lab's config (token paths are relative to it).
fn write_config(lab: &Lab, name: &str, text: String) -> String {
    let path: PathBuf = lab.config_path().with_file_name(name);
    std::fs::write(&path, text).unwrap();
    drctl_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    path.to_str().unwrap().to_string()
}

// ------------------------------------------------------------------- S3

/// The bucket straight on moto, for looking behind drctl's back.
async fn bucket(moto: &MotoServer) -> ObjectStore {
    let store = ObjectStore::s3(S3Location {
        attempt_timeout: Duration::from_secs(30),
        ..moto.s3_location("drctl-faults", "backups/")
    })
    .await
    .unwrap();
    store.ensure_bucket().await.unwrap();
    store
}

/// Restores `id` into a scratch cluster and returns the newest row id.
async fn restored_rows(store: &ObjectStore, id: &str) -> i64 {
    let scratch = tempfile::Builder::new()
        .prefix("drctl-test-restore-")
        .tempdir_in("/tmp")
        .unwrap();
    let pg = PgCluster::new(
        "restore",
        scratch.path().join("data"),
        free_port(),
        find_pg_bin().unwrap(),
    );
    restore_backup(store, "catalog", id, &pg.data_dir, &Default::default())
        .await
        .expect("restore");
    pg.adopt_restored().unwrap();
    pg.start().unwrap();
    let mut c = connect(&pg.scratch_dsn("postgres", "catalog")).await;
    let (n,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM shop.price_changes")
        .fetch_one(&mut c)
        .await
        .unwrap();
    pg.stop("immediate").unwrap();
    n.unwrap_or(0)
}

async fn catalog_rows(lab: &Lab) -> i64 {
    let mut c = connect(&lab.cluster("catalog", REGION_A).dsn("catalog")).await;
    let (n,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM shop.price_changes")
        .fetch_one(&mut c)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// `drctl backup run catalog`: the backup's JSON, or the exit code and
/// output of a failed run.
fn backup_run(config: &str) -> Result<Value, (i32, String)> {
    let (code, out, err) = drctl(&["backup", "run", "catalog", "--config", config, "-o", "json"]);
    if code == 0 {
        Ok(json_of(&out)["backup"].clone())
    } else {
        Err((code, format!("{out}{err}")))
    }
}

fn backup_record(config: &str, id: &str) -> Value {
    let (code, out, err) = drctl(&[
        "backup", "list", "catalog", "--config", config, "-o", "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    json_of(&out)["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("backup {id} is listed: {out}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_faults_during_backup_and_verify_end_in_a_clean_success_or_a_clean_failure() {
    let (lab, _dir) = start_lab(vec![catalog()]).await;
    let moto = moto_server().await;
    let direct = bucket(&moto).await;
    let proxy = FaultProxy::start(addr_of(&moto.endpoint)).await.unwrap();
    let text = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .replace("[services.backup]\nstore = \"lab-objects\"\n", "[services.backup]\nstore = \"faulty-s3\"\n")
        + &format!(
            "\n[[object_stores]]\nname = \"faulty-s3\"\nkind = \"s3\"\nbucket = \"drctl-faults\"\nprefix = \"backups/\"\n\
             endpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\ntimeout = \"2s\"\n",
            proxy.url()
        );
    assert!(
        text.contains("store = \"faulty-s3\""),
        "the lab's config changed shape"
    );
    let config = write_config(&lab, "faulty-s3.toml", text);

    // Faults that retries absorb: each backup completes and verifies, and
    // what it verified restores.
    let transient = [
        ("three 503 answers", Fault::HttpStatus(503), 3),
        ("two 500 answers", Fault::HttpStatus(500), 2),
        ("three connection resets", Fault::Reset, 3),
        ("a black hole (the attempt times out)", Fault::BlackHole, 1),
    ];
    let mut verified = Vec::new();
    for (what, fault, times) in transient {
        let faulted = proxy.faulted();
        let rows = catalog_rows(&lab).await;
        proxy.set_for(fault, times);
        let started = Instant::now();
        let backup =
            backup_run(&config).unwrap_or_else(|(code, out)| panic!("{what}: exit {code}: {out}"));
        eprintln!(
            "s3 fault: {what}: backup complete in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(backup["status"], "complete", "{what}: {backup}");
        assert_eq!(
            proxy.faulted() - faulted,
            times as u64,
            "{what}: the faults happened"
        );
        let id = backup["id"].as_str().unwrap().to_string();
        let (code, out, err) = drctl(&["backup", "verify", &id, "--config", &config]);
        assert_eq!(code, 0, "{what}: {out}{err}");
        verified.push((id, rows));
    }
    // A slow server: slower, still complete.
    proxy.set(Fault::Slow(Duration::from_millis(20)));
    let slow = backup_run(&config).expect("a slow S3 still takes the backup");
    proxy.set(Fault::Pass);
    let (code, out, err) = drctl(&[
        "backup",
        "verify",
        slow["id"].as_str().unwrap(),
        "--config",
        &config,
    ]);
    assert_eq!(code, 0, "{out}{err}");

    // An outage that outlasts the retries: the backup fails, is recorded
    // failed, and leaves no manifest (nothing that could pass for a backup).
    proxy.set(Fault::HttpStatus(503));
    let (code, out) = backup_run(&config).expect_err("an S3 outage fails the backup");
    eprintln!("s3 fault: an outage: {out}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("503") || out.contains("ServiceUnavailable"),
        "the error says what S3 answered: {out}"
    );
    proxy.set(Fault::Pass);
    let (_, list, _) = drctl(&[
        "backup", "list", "catalog", "--config", &config, "-o", "json",
    ]);
    let failed = json_of(&list)["backups"][0].clone();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["verification"].is_null(), "{failed}");
    let failed_id = failed["id"].as_str().unwrap();
    let keys = direct.list("").await.unwrap();
    assert!(
        !keys
            .iter()
            .any(|o| o.key.contains(failed_id) && o.key.ends_with("manifest.json")),
        "no manifest for the failed backup: {keys:?}"
    );
    let (code, _, err) = drctl(&["backup", "verify", failed_id, "--config", &config]);
    assert_ne!(code, 0, "a failed backup cannot be verified: {err}");

    // Verification during an outage is no verdict: the record keeps no
    // verification, and the backup verifies once S3 answers.
    let fresh = backup_run(&config).expect("S3 is back").clone();
    let id = fresh["id"].as_str().unwrap();
    for fault in [Fault::HttpStatus(500), Fault::Reset] {
        proxy.set(fault);
        let (code, out, err) = drctl(&["backup", "verify", id, "--config", &config]);
        proxy.set(Fault::Pass);
        assert_ne!(code, 0, "{fault:?}: {out}{err}");
        let record = backup_record(&config, id);
        assert!(
            record["verification"].is_null(),
            "{fault:?}: an unreadable store is no verdict: {record}"
        );
    }
    let (code, out, err) = drctl(&["backup", "verify", id, "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");

    // Every backup marked verified restores, with the rows it held.
    let (_, list, _) = drctl(&[
        "backup", "list", "catalog", "--config", &config, "-o", "json",
    ]);
    let backups = json_of(&list)["backups"].as_array().unwrap().clone();
    let marked: Vec<&Value> = backups
        .iter()
        .filter(|b| b["verification"] == "verified")
        .collect();
    assert_eq!(marked.len(), verified.len() + 2, "{list}");
    for b in marked {
        let id = b["id"].as_str().unwrap();
        let rows = restored_rows(&direct, id).await;
        if let Some((_, before)) = verified.iter().find(|(v, _)| v == id) {
            assert!(
                rows >= *before,
                "backup {id} restores the rows written before it ({rows} < {before})"
            );
        }
        assert!(rows > 0, "backup {id} restores rows");
    }
}

// -------------------------------------------------------------- Route 53

/// The lab's config with its DNS provider swapped for Route 53 at `endpoint`.
fn route53_config(lab: &Lab, zone_id: &str, endpoint: &str) -> String {
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line == "name = \"lab-dns\"" {
            out.push_str(&format!(
                "{line}\nkind = \"route53\"\nhosted_zone_id = \"{zone_id}\"\nendpoint = \"{endpoint}\"\n\
                 region = \"us-east-1\"\nzone = \"shop.lab.\"\n"
            ));
            skipping = true;
            continue;
        }
        if skipping && line.trim().is_empty() {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        out.contains("kind = \"route53\"") && !out.contains("rfc2136"),
        "{out}"
    );
    write_config(lab, "route53.toml", out)
}

/// Where Route 53 (read straight from moto) sends clients of orders.
async fn route53_target(moto: &MotoServer, zone_id: &str) -> Option<String> {
    let text = reqwest::Client::new()
        .get(format!(
            "{}/2013-04-01/hostedzone/{zone_id}/rrset",
            moto.endpoint
        ))
        .header("authorization", moto_auth("route53"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let at = text.find("<Name>orders.shop.lab.</Name>")?;
    let rest = &text[at..];
    let v = rest.find("<Value>")? + "<Value>".len();
    Some(rest[v..v + rest[v..].find("</Value>")?].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route53_faults_during_a_failover_are_retried_or_stop_it_resumably_until_the_api_answers() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let moto = moto_server().await;
    let zone_id = create_hosted_zone(&moto.endpoint, "shop.lab.").await;
    let proxy = FaultProxy::start(addr_of(&moto.endpoint)).await.unwrap();
    let config = route53_config(&lab, &zone_id, &proxy.url());
    let store = Store::open(lab_config(&lab).store.url.expose())
        .await
        .unwrap();

    // Errors that retries absorb: the failover completes without stopping.
    proxy.set_for(Fault::HttpStatus(503), 2);
    let (code, out, err) = drctl(&[
        "failover", "orders", "--to", REGION_B, "--yes", "-o", "json", "--config", &config,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(proxy.faulted() >= 2, "the faults happened");
    assert_eq!(
        route53_target(&moto, &zone_id).await.as_deref(),
        Some("127.0.2.1")
    );
    assert!(writable(&lab, REGION_B).await && !writable(&lab, REGION_A).await);
    reclone(&lab, REGION_A, REGION_B);

    // An outage: the failover promotes, then stops at the DNS flip,
    // resumable; what is done stays done.
    for (what, fault) in [
        ("resets", Fault::Reset),
        ("500 answers", Fault::HttpStatus(500)),
    ] {
        let (source, target) = if writable(&lab, REGION_A).await {
            (REGION_A, REGION_B)
        } else {
            (REGION_B, REGION_A)
        };
        proxy.set(fault);
        let (code, out, err) = drctl(&[
            "failover", "orders", "--to", target, "--yes", "-o", "json", "--config", &config,
        ]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        let v = json_of(&out);
        assert_eq!(v["error"]["code"], "operation_stopped", "{what}: {v}");
        let op = store
            .unfinished_operation("orders", &[drctl_store::states::OperationKind::Failover])
            .await
            .unwrap()
            .expect("the stopped failover");
        let steps = store.journal(&op.id).await.unwrap();
        let flip = steps.iter().find(|s| s.step == "dns_flip").unwrap();
        assert_eq!(
            flip.status,
            drctl_store::states::StepState::Failed,
            "{what}: {flip:?}"
        );
        assert!(
            writable(&lab, target).await && !writable(&lab, source).await,
            "{what}: promoted and fenced"
        );

        // The API answers again: the resume completes from the DNS flip.
        proxy.set(Fault::Pass);
        let (code, out, err) = drctl(&[
            "failover", "--resume", &op.id, "--wait", "20s", "-o", "json", "--config", &config,
        ]);
        assert_eq!(code, 0, "{what}: {out}{err}");
        let expected = if target == REGION_B {
            "127.0.2.1"
        } else {
            "127.0.1.1"
        };
        assert_eq!(
            route53_target(&moto, &zone_id).await.as_deref(),
            Some(expected),
            "{what}"
        );
        let steps = store.journal(&op.id).await.unwrap();
        assert!(
            steps
                .iter()
                .all(|s| s.status == drctl_store::states::StepState::Done),
            "{what}: {steps:?}"
        );
        let promote = steps.iter().find(|s| s.step == "promote_target").unwrap();
        assert_eq!(promote.attempts, 1, "{what}: promoted once: {promote:?}");
        reclone(&lab, source, target);
    }
}

// ------------------------------------------------------------ PostgreSQL

/// The lab's config with orders' servers reached through `proxies`.
fn proxied_pg_config(lab: &Lab, proxies: &[(&str, &FaultProxy)]) -> String {
    let mut text = std::fs::read_to_string(lab.config_path()).unwrap();
    for (region, proxy) in proxies {
        let direct = format!(
            "dsn = \"postgres://postgres@127.0.0.1:{}/orders\"",
            lab.cluster("orders", region).port
        );
        assert!(text.contains(&direct), "{direct}");
        text = text.replace(
            &direct,
            &format!("dsn = \"postgres://postgres@{}/orders\"", proxy.addr()),
        );
    }
    write_config(lab, "proxied-pg.toml", text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_connections_dropped_during_each_failover_step_never_half_apply_it() {
    let (lab, _dir) = start_lab(vec![orders()]).await;
    lab.workload().pause();
    let a = FaultProxy::start(
        format!("127.0.0.1:{}", lab.cluster("orders", REGION_A).port)
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    let b = FaultProxy::start(
        format!("127.0.0.1:{}", lab.cluster("orders", REGION_B).port)
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    let config = proxied_pg_config(&lab, &[(REGION_A, &a), (REGION_B, &b)]);
    // The daemon beside the operations, as in production: its watchdog
    // fences an old primary that a failover could only record unreachable.
    let daemon = start_daemon_with(std::sync::Arc::new(
        drctl_config::load(Path::new(&config)).unwrap(),
    ))
    .await;
    let store = Store::open(lab_config(&lab).store.url.expose())
        .await
        .unwrap();

    let (mut source, mut target) = (REGION_A, REGION_B);
    for (i, step) in OperationKind::Failover.steps().iter().enumerate() {
        let at = format!("{}:started", step.as_str());
        // A short outage (retries in place absorb it) and a long one (the
        // step runs out of retries) in turn.
        let outage = if i % 2 == 0 {
            Duration::from_millis(1500)
        } else {
            Duration::from_secs(6)
        };
        let child = Command::new(drctl_bin())
            .args([
                "failover", "orders", "--to", target, "--yes", "-o", "json", "--config", &config,
            ])
            .env("DRCTL_FAULT_PAUSE_AT", &at)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        wait_for(
            &format!("the driver to pause at {at}"),
            Duration::from_secs(60),
            || async move { process_stopped(pid).then_some(()) },
        )
        .await;
        // Every connection to both regions drops, and new ones are refused,
        // for the outage.
        a.set(Fault::Reset);
        b.set(Fault::Reset);
        Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::sleep(outage).await;
        a.set(Fault::Pass);
        b.set(Fault::Pass);
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let op = store
            .operations(20)
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.kind == drctl_store::states::OperationKind::Failover)
            .expect("the failover is recorded");
        let outcome = match out.status.code() {
            Some(0) => "completed".to_string(),
            Some(1) => {
                let v = json_of(&stdout);
                let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
                assert!(
                    code == "operation_stopped" || code == "refused",
                    "{at}: a failed failover stops resumably or is refused before it changes anything: {v}"
                );
                if code == "operation_stopped" {
                    let (c, o, e) = drctl(&[
                        "failover", "--resume", &op.id, "--wait", "20s", "-o", "json", "--config",
                        &config,
                    ]);
                    assert_eq!(c, 0, "{at}: resume: {o}{e}");
                    format!(
                        "stopped, resumed ({})",
                        v["error"]["message"].as_str().unwrap_or_default()
                    )
                } else {
                    // Refused at the plan (a server unreachable): nothing
                    // changed; ask again with the servers back.
                    assert!(
                        writable(&lab, source).await,
                        "{at}: refused, nothing changed"
                    );
                    let (c, o, e) = drctl(&[
                        "failover", "orders", "--to", target, "--yes", "-o", "json", "--config",
                        &config,
                    ]);
                    assert_eq!(c, 0, "{at}: {o}{e}");
                    "refused, asked again".to_string()
                }
            }
            other => panic!("{at}: the driver ended with {other:?}: {stdout}{stderr}"),
        };
        eprintln!("pg fault: connections dropped for {outage:?} from {at}: {outcome}");
        let op = store
            .operations(20)
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.kind == drctl_store::states::OperationKind::Failover)
            .expect("the failover");
        assert_eq!(
            op.status,
            drctl_store::states::OpStatus::Succeeded,
            "{at}: {op:?}"
        );
        assert!(writable(&lab, target).await, "{at}: {target} is writable");
        wait_for(
            &format!("{at}: {source} to be fenced"),
            Duration::from_secs(30),
            || async { (!writable(&lab, source).await).then_some(()) },
        )
        .await;
        let expected = if target == REGION_B {
            "127.0.2.1"
        } else {
            "127.0.1.1"
        };
        assert_eq!(
            resolve(&lab).await.as_deref(),
            Some(expected),
            "{at}: DNS names {target}"
        );
        assert_eq!(
            store
                .cluster_role("orders")
                .await
                .unwrap()
                .unwrap()
                .primary_region,
            target,
            "{at}"
        );
        let steps = store.journal(&op.id).await.unwrap();
        assert!(
            steps
                .iter()
                .all(|s| s.status == drctl_store::states::StepState::Done),
            "{at}: {steps:?}"
        );
        reclone(&lab, source, target);
        std::mem::swap(&mut source, &mut target);
    }
    daemon.stop().await;
}
