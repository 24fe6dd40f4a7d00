//! The failover engine against a real lab: switchover under writes loses no
//! acknowledged row, an unplanned failover reports the data it really lost,
//! two requests never run at once, and a driver killed at any step boundary
//! is resumed by another process to exactly one writable primary. On the
//! namespaced lab (each region its own network namespace) without agents:
//! drctl reaches the servers over the lab's network, as from another host.

use std::time::Duration;

use drctl_failover::{
    Engine, FailoverError, OpStatus, OperationKind, OperationSaga, Request, Step,
};
use drctl_lab::{Lab, REGION_A, REGION_B};
use drctl_store::Store;
use drctl_tests::*;

fn request(kind: OperationKind, to: &str, accept_data_loss: bool) -> Request {
    Request {
        kind,
        service: "orders".into(),
        to: Some(to.into()),
        accept_data_loss,
        accept_unfenced: false,
        requested_by: "test".into(),
        reason: None,
        detected_at: None,
    }
}

async fn engine(lab: &Lab) -> (Engine, Store) {
    let config = lab_config(lab);
    let store = Store::open(config.store.url.expose())
        .await
        .expect("the lab's state store opens");
    (Engine::new(config, store.clone()), store)
}

fn quiet(_: drctl_failover::Progress) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_under_writes_loses_no_acknowledged_row_and_refuses_a_second_request() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let (engine, store) = engine(&lab).await;
    let (second, _) = self::engine(&lab).await;

    let plan = engine
        .plan(&request(OperationKind::Switchover, REGION_B, false))
        .await
        .unwrap();
    assert!(plan.standing(false).is_empty(), "{:?}", plan.blockers);
    assert_eq!(plan.expected_loss_us, Some(0));

    let writer = Writer::start(&lab).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Two requests for the same service: exactly one runs.
    let req = request(OperationKind::Switchover, REGION_B, false);
    let (first, other) = tokio::join!(engine.run(&req, &quiet), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        second.run(&req, &quiet).await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = writer.finish().await;

    let outcome = first.expect("the switchover succeeds");
    match other {
        Err(FailoverError::InProgress { id, .. }) => assert_eq!(id, outcome.id),
        Err(FailoverError::LeaseBusy { .. }) => {}
        other => panic!("the concurrent request must be refused, got {other:?}"),
    }
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let measured = outcome.measured.expect("measured figures");
    assert_eq!(measured.rpo_bytes, 0, "{measured:?}");
    assert_eq!(measured.rpo_us, 0);
    assert_eq!(measured.rpo_basis, "fenced_source");

    // Every acknowledged row is on the new primary.
    assert!(
        writable(&lab, REGION_B).await,
        "region-b is the writable primary"
    );
    assert!(
        !writable(&lab, REGION_A).await,
        "region-a no longer takes writes"
    );
    let mut c = connect(&lab.cluster("orders", REGION_B).dsn("orders")).await;
    let present: Vec<(i64,)> = sqlx::query_as("SELECT id FROM shop.acked")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let present: std::collections::HashSet<i64> = present.into_iter().map(|(i,)| i).collect();
    let lost: Vec<i64> = acked
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !present.contains(i))
        .collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    assert!(
        acked.len() > 40,
        "the client kept writing ({} rows)",
        acked.len()
    );

    // The outage the client saw, against the one reported.
    let seen = longest_gap(&acked);
    let reported = Duration::from_millis(measured.write_outage_ms.expect("a write outage"));
    eprintln!("switchover: client saw a {seen:?} write gap; drctl reported a {reported:?} write outage, RTO {} ms; steps {:?}", measured.rto_ms, measured.steps_ms);
    let slack = (seen.as_secs_f64() * 0.10).max(0.15);
    assert!(
        (seen.as_secs_f64() - reported.as_secs_f64()).abs() <= slack,
        "reported outage {reported:?} vs seen {seen:?}"
    );

    // DNS names the new primary's region.
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_B)));
    // The store says where the primary is now.
    let role = store
        .cluster_role("orders")
        .await
        .unwrap()
        .expect("a recorded role");
    assert_eq!(role.primary_region, REGION_B);
    // The journal has every step done once.
    let steps = store.journal(&outcome.id).await.unwrap();
    assert_eq!(steps.len(), OperationKind::Switchover.steps().len());
    assert!(
        steps
            .iter()
            .all(|s| s.status == drctl_store::states::StepState::Done && s.attempts == 1),
        "{steps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_after_a_link_cut_and_a_lost_primary_reports_the_rows_really_lost() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    let daemon = start_daemon(&lab).await;
    let (engine, store) = engine(&lab).await;
    // The monitor has a map of the primary's history.
    tokio::time::sleep(Duration::from_secs(3)).await;

    lab.link().cut();
    tokio::time::sleep(Duration::from_secs(7)).await;

    // 7 s of writes the standby lacks exceed the hot tier's 5 s RPO target.
    let req = request(OperationKind::Failover, REGION_B, false);
    let plan = engine.plan(&req).await.unwrap();
    assert!(
        plan.blockers
            .iter()
            .any(|b| b.code == "data_loss" && b.overridable),
        "{plan:#?}"
    );
    lab.kill_primary("orders").unwrap();
    match engine.run(&req, &quiet).await {
        Err(FailoverError::Refused { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The killed primary cannot be fenced and has no fence hook: the
    // operator accepts that too.
    let accepted = Request {
        accept_unfenced: true,
        ..request(OperationKind::Failover, REGION_B, true)
    };
    let outcome = engine
        .run(&accepted, &quiet)
        .await
        .expect("the failover runs when the loss and the missing fence are accepted");
    daemon.stop().await;
    let measured = outcome.measured.expect("measured figures");
    assert_eq!(measured.rpo_basis, "last_sample");
    assert!(writable(&lab, REGION_B).await);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_B)));

    // Ground truth: start the old primary's data alone and read what only it has.
    let old = lab.cluster("orders", REGION_A);
    lab.in_region(REGION_A, || old.start()).unwrap().unwrap();
    let mut a = connect(&old.dsn("orders")).await;
    let mut b = connect(&lab.cluster("orders", REGION_B).dsn("orders")).await;
    let (kept,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM shop.orders")
        .fetch_one(&mut b)
        .await
        .unwrap();
    let (first_lost, last_lost, lost_rows): (Option<i64>, Option<i64>, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM min(created_at)) * 1e6)::bigint, \
                (extract(epoch FROM max(created_at)) * 1e6)::bigint, count(*) \
         FROM shop.orders WHERE id > $1",
    )
    .bind(kept.unwrap_or(0))
    .fetch_one(&mut a)
    .await
    .unwrap();
    old.stop("fast").unwrap();
    let truth_us = last_lost.unwrap() - first_lost.unwrap();
    eprintln!(
        "failover: {lost_rows} rows lost spanning {:.2} s; drctl measured {:.2} s, at most {:.2} s ({} bytes); RTO {} ms",
        truth_us as f64 / 1e6,
        measured.rpo_us as f64 / 1e6,
        measured.rpo_upper_us.unwrap_or(-1) as f64 / 1e6,
        measured.rpo_bytes,
        measured.rto_ms
    );
    assert!(lost_rows > 50, "the cut lost rows");
    // The source was lost: the figure is a minimum, with a maximum that
    // holds the truth.
    assert!(measured.rpo_lower_bound, "{measured:?}");
    // About one heartbeat per second of the cut was lost.
    assert!(measured.rpo_heartbeats >= 5, "{measured:?}");
    let upper = measured.rpo_upper_us.expect("an upper bound");
    assert!(
        upper >= truth_us,
        "upper bound {upper} µs below the truth {truth_us} µs"
    );
    let interval = lab_config(&lab).monitor.interval.as_micros() as i64;
    assert!(
        (measured.rpo_us - truth_us).abs() <= interval,
        "measured {} µs vs truth {} µs (allowed: one interval, {} µs)",
        measured.rpo_us,
        truth_us,
        interval
    );
    assert_eq!(
        store
            .cluster_role("orders")
            .await
            .unwrap()
            .unwrap()
            .primary_region,
        REGION_B
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_driver_killed_at_any_step_boundary_is_resumed_to_one_writable_primary() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    // A short lease, so a resume need not wait long for a dead driver's.
    let config_path = short_lease_config(&lab);
    let config = config_path.to_str().unwrap();
    let store = Store::open(lab_config(&lab).store.url.expose())
        .await
        .unwrap();

    let mut source = REGION_A;
    let mut target = REGION_B;
    for step in OperationKind::Failover.steps() {
        for phase in ["applied", "done"] {
            let crash = format!("{}:{phase}", step.as_str());
            let out = std::process::Command::new(drctl_bin())
                .args([
                    "failover", "orders", "--to", target, "--yes", "--config", config,
                ])
                .env("DRCTL_FAULT_CRASH_AT", &crash)
                .output()
                .unwrap();
            assert!(
                !out.status.success() && out.status.code().is_none(),
                "{crash}: the driver must die, got {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let op = store
                .unfinished_operation(
                    "orders",
                    &[
                        drctl_store::states::OperationKind::Failover,
                        drctl_store::states::OperationKind::Switchover,
                    ],
                )
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{crash}: an unfinished operation"));
            let (code, stdout, stderr) = drctl(&[
                "failover", "--resume", &op.id, "--wait", "20s", "-o", "json", "--config", config,
            ]);
            assert_eq!(code, 0, "{crash}: resume failed: {stdout}{stderr}");

            assert!(
                writable(&lab, target).await,
                "{crash}: {target} is writable"
            );
            assert!(!writable(&lab, source).await, "{crash}: {source} is not");
            let steps = store.journal(&op.id).await.unwrap();
            for s in &steps {
                assert_eq!(
                    s.status,
                    drctl_store::states::StepState::Done,
                    "{crash}: {s:?}"
                );
                let expected = if s.step == step.as_str() && phase == "applied" {
                    2
                } else {
                    1
                };
                assert_eq!(
                    s.attempts, expected,
                    "{crash}: step {} ran {} times",
                    s.step, s.attempts
                );
            }
            if *step == Step::PromoteTarget && phase == "applied" {
                let out = steps.iter().find(|s| s.step == "promote_target").unwrap();
                assert!(
                    out.output
                        .as_deref()
                        .unwrap()
                        .contains("\"already_primary\":true"),
                    "{crash}: {out:?}"
                );
            }
            let mut c = connect(&lab.cluster("orders", target).dsn("orders")).await;
            let (probes,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM drctl.write_probe WHERE operation_id = $1")
                    .bind(&op.id)
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            assert_eq!(probes, 1, "{crash}: one probe row");
            assert_eq!(
                resolve(&lab).await,
                Some(front(&lab, target)),
                "{crash}: DNS names {target}"
            );
            assert_eq!(
                store
                    .cluster_role("orders")
                    .await
                    .unwrap()
                    .unwrap()
                    .primary_region,
                target,
                "{crash}"
            );

            reclone(&lab, source, target);
            std::mem::swap(&mut source, &mut target);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daemon_resumes_an_operation_whose_driver_died() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let config_path = short_lease_config(&lab);
    let out = std::process::Command::new(drctl_bin())
        .args([
            "switchover",
            "orders",
            "--to",
            REGION_B,
            "--yes",
            "--config",
            config_path.to_str().unwrap(),
        ])
        .env("DRCTL_FAULT_CRASH_AT", "promote_target:applied")
        .output()
        .unwrap();
    assert!(out.status.code().is_none(), "the driver dies: {out:?}");

    let config = std::sync::Arc::new(drctl_config::load(&config_path).unwrap());
    let daemon = start_daemon_with(config.clone()).await;
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let op = wait_for(
        "the daemon to finish the operation",
        Duration::from_secs(60),
        || async {
            let ops = store.operations(10).await.ok()?;
            ops.into_iter().find(|o| {
                o.kind == drctl_store::states::OperationKind::Switchover
                    && o.status == drctl_store::states::OpStatus::Succeeded
            })
        },
    )
    .await;
    daemon.stop().await;
    assert!(writable(&lab, REGION_B).await);
    assert!(!writable(&lab, REGION_A).await);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_B)));
    let steps = store.journal(&op.id).await.unwrap();
    let promote = steps.iter().find(|s| s.step == "promote_target").unwrap();
    assert_eq!(promote.attempts, 2, "{promote:?}");
    assert_ne!(
        steps.iter().find(|s| s.step == "plan").unwrap().driver,
        promote.driver,
        "another process finished it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dns_provider_down_stops_the_failover_resumably_and_a_resume_completes_it() {
    let (lab, dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    // The service's DNS lives on a server of the test's own, down at first.
    let key = drctl_dns::TsigKeyMaterial::generate("drctl-lab.").unwrap();
    let key_file = dir.path().join("lab").join("down-dns.key");
    std::fs::write(&key_file, format!("{}\n", key.secret_base64())).unwrap();
    let port = drctl_pg::os::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .replace(
            &format!("server = \"{}\"", lab.dns().addr()),
            &format!("server = \"{addr}\""),
        )
        .replace(
            "tsig_secret_file = \"lab-dns.key\"",
            "tsig_secret_file = \"down-dns.key\"",
        );
    assert!(
        text.contains(&addr.to_string()),
        "the provider now points at the test's server"
    );
    let path = dir.path().join("lab").join("dns-down.toml");
    std::fs::write(&path, text).unwrap();
    let config = path.to_str().unwrap();

    let (code, stdout, stderr) = drctl(&[
        "failover", "orders", "--to", REGION_B, "--yes", "-o", "json", "--config", config,
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["error"]["code"], "operation_stopped", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("dns_flip") && message.contains("--resume"),
        "{message}"
    );
    let store = Store::open(lab_config(&lab).store.url.expose())
        .await
        .unwrap();
    let op = store
        .unfinished_operation("orders", &[drctl_store::states::OperationKind::Failover])
        .await
        .unwrap()
        .expect("the stopped failover");
    assert_eq!(op.status, drctl_store::states::OpStatus::Stopped);
    let steps = store.journal(&op.id).await.unwrap();
    let flip = steps.iter().find(|s| s.step == "dns_flip").unwrap();
    assert_eq!(flip.status, drctl_store::states::StepState::Failed);
    assert!(flip.attempts >= 1, "{flip:?}");
    // What is done stays done: region-b took over, region-a is fenced.
    assert!(writable(&lab, REGION_B).await);
    assert!(!writable(&lab, REGION_A).await);

    // The provider comes back; the resume finishes from the DNS flip.
    let server = drctl_lab::dns_server::ZoneServer::start(addr, "shop.lab.", Some(&key))
        .await
        .unwrap();
    let (code, stdout, stderr) = drctl(&[
        "failover", "--resume", &op.id, "--wait", "20s", "-o", "json", "--config", config,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        drctl_dns::query(addr, "orders.shop.lab.", drctl_config::RecordType::A)
            .await
            .unwrap(),
        Some(vec![front(&lab, REGION_B)])
    );
    let steps = store.journal(&op.id).await.unwrap();
    let promote = steps.iter().find(|s| s.step == "promote_target").unwrap();
    assert_eq!(promote.attempts, 1, "promoted once: {promote:?}");
    assert!(
        steps
            .iter()
            .all(|s| s.status == drctl_store::states::StepState::Done),
        "{steps:?}"
    );
    drop(server);
}

/// A source that answers but refuses the fence (here: a role that may not
/// `ALTER SYSTEM`) is not "unreachable": the failover stops at the fence,
/// resumably, and nothing is promoted or announced beside a primary that
/// may still take writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fence_the_source_refuses_stops_the_failover_before_anything_is_promoted() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let a = lab.cluster("orders", REGION_A);
    let mut c = connect(&a.dsn("orders")).await;
    sqlx::query("CREATE ROLE drctl_weak LOGIN PASSWORD 'weak'")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    // drctl reaches region-a as that role; everything else as before.
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let host = lab.record.cluster_host(REGION_A);
    let strong = format!("dsn = \"postgres://postgres@{host}:{}/orders\"", a.port);
    assert!(
        text.contains(&strong),
        "the lab's config names region-a's server"
    );
    let weak = format!(
        "dsn = \"postgres://drctl_weak:weak@{host}:{}/orders\"",
        a.port
    );
    let path = lab.config_path().with_file_name("weak-source.toml");
    std::fs::write(&path, text.replacen(&strong, &weak, 1)).unwrap();
    let config = std::sync::Arc::new(drctl_config::load(&path).unwrap());
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store.clone());

    let err = engine
        .run(&request(OperationKind::Failover, REGION_B, true), &quiet)
        .await
        .expect_err("a fence the source refuses stops the failover");
    match &err {
        FailoverError::Stopped { step, error, .. } => {
            assert_eq!(step, "fence_source", "{err}");
            assert!(error.contains("permission denied"), "{err}");
        }
        other => panic!("expected the failover stopped at the fence, got {other:?}"),
    }
    assert_eq!(
        role(&lab, REGION_B).await,
        Some((true, false)),
        "region-b is still a standby"
    );
    assert!(writable(&lab, REGION_A).await, "region-a was never fenced");
    assert_eq!(
        resolve(&lab).await,
        Some(front(&lab, REGION_A)),
        "DNS still names region-a"
    );
    let op = store
        .unfinished_operation("orders", &[drctl_store::states::OperationKind::Failover])
        .await
        .unwrap()
        .expect("the failover waits, resumable");
    assert_eq!(op.status, drctl_store::states::OpStatus::Stopped);
}

/// A source that cannot be reached and has no fence hook is a named
/// blocker: the dry run shows it, `--accept-data-loss` does not pass it,
/// an automatic request cannot pass it, and only `--accept-unfenced` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_source_without_a_fence_hook_is_a_blocker_only_an_operator_passes() {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let (engine, store) = engine(&lab).await;
    lab.kill_primary("orders").unwrap();

    let unfenced = |plan: &drctl_failover::PlanReport| {
        plan.blockers
            .iter()
            .any(|b| b.code == "unfenced_source" && !b.overridable)
    };
    let plan = engine
        .plan(&request(OperationKind::Failover, REGION_B, true))
        .await
        .unwrap();
    assert!(unfenced(&plan), "{plan:#?}");
    let config = lab.config_path().to_str().unwrap().to_string();
    let (code, out, err) = drctl(&[
        "failover",
        "orders",
        "--to",
        REGION_B,
        "--dry-run",
        "--accept-data-loss",
        "--config",
        &config,
    ]);
    assert_eq!(code, 1, "the dry run reports the blocker: {out}{err}");
    assert!(
        out.contains("[unfenced_source]") && out.contains("BLOCKS"),
        "{out}"
    );

    match engine
        .run(&request(OperationKind::Failover, REGION_B, true), &quiet)
        .await
    {
        Err(FailoverError::Refused { blockers, .. }) => {
            assert!(
                blockers.iter().any(|b| b.contains("no fence hook")),
                "{blockers:?}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Automatic failover never fails over unfenced, whatever it asks.
    let automatic = Request {
        accept_unfenced: true,
        requested_by: "automatic".into(),
        ..request(OperationKind::Failover, REGION_B, true)
    };
    assert!(unfenced(&engine.plan(&automatic).await.unwrap()));
    assert!(matches!(
        engine.run(&automatic, &quiet).await,
        Err(FailoverError::Refused { .. })
    ));
    assert_eq!(
        role(&lab, REGION_B).await,
        Some((true, false)),
        "nothing was promoted"
    );

    let accepted = Request {
        accept_unfenced: true,
        ..request(OperationKind::Failover, REGION_B, true)
    };
    let plan = engine.plan(&accepted).await.unwrap();
    assert!(!unfenced(&plan), "{plan:#?}");
    assert!(plan.fence.contains("--accept-unfenced"), "{}", plan.fence);
    let outcome = engine.run(&accepted, &quiet).await.unwrap();
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let steps = store.journal(&outcome.id).await.unwrap();
    let fence = steps.iter().find(|s| s.step == "fence_source").unwrap();
    assert!(
        fence
            .output
            .as_deref()
            .unwrap()
            .contains("\"method\":\"none\""),
        "{fence:?}"
    );
    assert!(writable(&lab, REGION_B).await);
}

/// A driver paused (SIGSTOP, as a GC pause or a frozen VM would) right
/// before its DNS flip, while another driver takes the failover over and a
/// switchover brings the primary back: when it wakes, it writes nothing —
/// DNS keeps naming the primary there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_driver_paused_before_the_dns_flip_writes_no_stale_target_after_a_takeover_and_a_switchback(
) {
    let (lab, _dir) = start_namespaced_lab(vec![orders()], false).await;
    lab.workload().pause();
    let config_path = short_lease_config(&lab);
    let config_text = config_path.to_str().unwrap();
    let config = std::sync::Arc::new(drctl_config::load(&config_path).unwrap());
    let store = Store::open(config.store.url.expose()).await.unwrap();
    let engine = Engine::new(config, store.clone());

    let paused = std::process::Command::new(drctl_bin())
        .args([
            "failover",
            "orders",
            "--to",
            REGION_B,
            "--yes",
            "--config",
            config_text,
        ])
        .env("DRCTL_FAULT_PAUSE_AT", "dns_flip:started")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = paused.id();
    wait_for(
        "the driver to pause before its DNS flip",
        Duration::from_secs(60),
        || async move { process_stopped(pid).then_some(()) },
    )
    .await;
    let op = store
        .unfinished_operation("orders", &[drctl_store::states::OperationKind::Failover])
        .await
        .unwrap()
        .expect("the paused failover");

    // Another driver takes the failover over once the lease expires…
    let outcome = engine
        .resume(&op.id, Duration::from_secs(30), &quiet)
        .await
        .unwrap();
    assert_eq!(outcome.status, OpStatus::Succeeded);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_B)));
    // …and the pair switches back.
    reclone(&lab, REGION_A, REGION_B);
    let back = engine
        .run(&request(OperationKind::Switchover, REGION_A, false), &quiet)
        .await
        .unwrap();
    assert_eq!(back.status, OpStatus::Succeeded);
    assert_eq!(resolve(&lab).await, Some(front(&lab, REGION_A)));
    let journal = store.journal(&op.id).await.unwrap();

    // The paused driver wakes up where it stopped: right before dns_flip.
    std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || paused.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("continued after dns_flip:started"),
        "{stderr}"
    );
    assert!(
        !status.status.success(),
        "the woken driver must not succeed: {stderr}"
    );
    assert_eq!(
        resolve(&lab).await,
        Some(front(&lab, REGION_A)),
        "the woken driver flipped DNS back to region-b: {stderr}"
    );
    assert!(writable(&lab, REGION_A).await);
    assert!(
        !writable(&lab, REGION_B).await,
        "region-b stays fenced by the switchover"
    );
    assert_eq!(
        store.journal(&op.id).await.unwrap(),
        journal,
        "the woken driver changed the journal"
    );
}
