//! The node agent as a real process (`drctl agent serve`) beside a real
//! PostgreSQL server, reached by drctl's client (`RemoteNode`) over mutual
//! TLS with certificates from `drctl_agent::issue_pki`: the node actions
//! work through it (status, stop, start, the hard fence and its mark, a
//! scratch teardown), and every request it must refuse (no certificate,
//! another PKI's certificate, an agent's server certificate, malformed
//! JSON, a directory it does not serve, a `..` scratch directory) is
//! refused with nothing changed: the server still runs, with the same pid.

use std::path::PathBuf;
use std::time::Duration;

use drctl_agent::{ClientTls, Pki, RemoteNode};
use drctl_lab::{find_pg_bin, free_port, PgCluster};
use drctl_node::*;
use drctl_tests::agent::{issue_test_pki, raw_client, AgentProcess};
use serde_json::{json, Value};
use sqlx::Connection;

/// A PostgreSQL server (initialised, not started) and its agent.
struct Fixture {
    dir: tempfile::TempDir,
    pki: Pki,
    cluster: PgCluster,
    node: NodeRef,
    scratch_root: PathBuf,
    agent: AgentProcess,
    remote: RemoteNode,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.cluster.stop("immediate");
    }
}

fn fixture() -> Fixture {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-agent-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    // The postgres user must pass through to its data directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let pki = issue_test_pki(&dir.path().join("pki"), "db1");
    let bin = find_pg_bin().unwrap_or_else(|e| {
        panic!("{e}\n(the agent tests need PostgreSQL server binaries: `apt-get install postgresql`, or set PG_BIN)")
    });
    let data_dir = dir.path().join("pg").join("db1");
    let cluster = PgCluster::new("db1", data_dir.clone(), free_port(), bin);
    cluster
        .init_primary(20)
        .unwrap_or_else(|e| panic!("initdb of the agent's server: {e}"));
    let node = NodeRef::new("db1@region-a", data_dir.clone(), cluster.port);
    let scratch_root = dir.path().join("scratch");
    let agent = AgentProcess::start(&pki, &[data_dir], &scratch_root);
    let remote = agent.client(&pki.client);
    Fixture {
        dir,
        pki,
        cluster,
        node,
        scratch_root,
        agent,
        remote,
    }
}

fn start_request(node: &NodeRef, unfence: bool) -> StartRequest {
    StartRequest {
        node: node.clone(),
        wait_ready_ms: Some(60_000),
        recovered: None,
        unfence,
    }
}

/// The server runs, with this pid: nothing changed it.
async fn assert_unchanged(f: &mut Fixture, pid: Option<u32>, after: &str) {
    assert!(f.agent.is_running(), "the agent still runs after {after}");
    let status = f.remote.status(&f.node).await.unwrap();
    assert!(
        status.running,
        "the server still runs after {after}: {status:?}"
    );
    assert_eq!(status.pid, pid, "the same server process after {after}");
    assert!(
        status.fenced_by.is_none(),
        "not fenced after {after}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stops_starts_and_hard_fences_its_server_through_remote_node() {
    let f = fixture();
    let remote = &f.remote;
    assert_eq!(remote.agent(), Some(f.agent.url.as_str()));
    let health = remote.probe_health().await.unwrap();
    assert_eq!(health.data_dirs, vec![f.node.data_dir.clone()]);
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));

    let status = remote.status(&f.node).await.unwrap();
    assert!(status.initialized && !status.running, "{status:?}");
    assert!(status.dataset_id.is_some(), "{status:?}");

    // Start, twice: the second finds it running.
    let start = start_request(&f.node, false);
    assert!(!remote.start(&start).await.unwrap().already_running);
    assert!(remote.start(&start).await.unwrap().already_running);
    let running = remote.status(&f.node).await.unwrap();
    assert!(running.running && running.pid.is_some(), "{running:?}");
    assert!(f.cluster.is_running(), "the server really runs");

    // Stop, twice: the second finds it stopped.
    assert!(
        remote
            .stop(&f.node, StopMode::Fast)
            .await
            .unwrap()
            .was_running
    );
    assert!(
        !remote
            .stop(&f.node, StopMode::Fast)
            .await
            .unwrap()
            .was_running
    );
    assert!(!f.cluster.is_running());
    assert!(!remote.start(&start).await.unwrap().already_running);

    // The hard fence stops it and leaves its mark; the agent runs no hook
    // a request names (the orchestrator's), so the mark is the evidence.
    let fence = HardFenceRequest {
        service: "orders".into(),
        region: "region-a".into(),
        operation_id: "op-fence-1".into(),
        node: Some(f.node.clone()),
        hook: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "touch /tmp/drctl-agent-hook-ran".into(),
        ]),
        hook_timeout_ms: 10_000,
        mode: StopMode::Immediate,
    };
    let fenced = remote.hard_fence(&fence).await.unwrap();
    assert_eq!(fenced.method, HardFenceMethod::Stopped);
    assert_eq!(fenced.was_running, Some(true));
    assert!(fenced.host.is_some(), "{fenced:?}");
    assert!(fenced.hook.is_none(), "{fenced:?}");
    assert_eq!(
        remote.hard_fence(&fence).await.unwrap().was_running,
        Some(false),
        "a rerun finds it stopped"
    );
    assert!(!f.cluster.is_running());
    let status = remote.status(&f.node).await.unwrap();
    assert_eq!(status.fenced_by.as_deref(), Some("op-fence-1"));

    // A plain start is refused, across the wire with its kind and message.
    let refused = remote.start(&start).await.unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Refused, "{refused}");
    assert!(refused.message.contains("op-fence-1"), "{refused}");
    assert!(!remote.status(&f.node).await.unwrap().running);
    assert!(!f.cluster.is_running());
    // Only a start that lifts the fence runs it again.
    assert!(
        !remote
            .start(&start_request(&f.node, true))
            .await
            .unwrap()
            .already_running
    );
    let status = remote.status(&f.node).await.unwrap();
    assert!(status.running && status.fenced_by.is_none(), "{status:?}");

    // A drill's scratch clone of the server: made under the agent's own
    // scratch root whatever directory was asked for (only its last
    // component counts), the real paths in the answer; started, then torn
    // down through what came back.
    let source = Engine::Postgres
        .connect(
            "db1",
            &Dsn::new(f.cluster.dsn("postgres")),
            Duration::from_secs(5),
        )
        .unwrap();
    let clone = remote
        .clone_scratch(&CloneRequest {
            dir: PathBuf::from("/var/elsewhere/drill-orders-1"),
            source: Dsn::new(f.cluster.dsn("postgres")),
            settings: source.clone_settings().await.unwrap(),
            roles: vec!["postgres".into()],
            tls: None,
        })
        .await
        .unwrap();
    source.close().await;
    assert_eq!(clone.dir, f.scratch_root.join("drill-orders-1"));
    assert!(clone.data_dir.starts_with(&clone.dir), "{clone:?}");
    assert!(clone.data_dir.join("PG_VERSION").exists());
    assert!(!PathBuf::from("/var/elsewhere").exists());
    let clone_start = StartRequest {
        node: clone.node(),
        wait_ready_ms: Some(CLONE_READY.as_millis() as u64),
        recovered: None,
        unfence: false,
    };
    assert!(!remote.start(&clone_start).await.unwrap().already_running);
    assert!(remote.status(&clone.node()).await.unwrap().running);
    // drctl reaches the copy where it reached the agent, over TLS: the
    // copy's certificate checked against the agents' CA (verify-full), and
    // drctl's client certificate the only credential.
    let tcp = clone
        .tcp
        .expect("a copy made by an agent is reached over TCP");
    assert_eq!(tcp.ip().to_string(), "127.0.0.1", "{clone:?}");
    let tls = drctl_config::AgentsTls {
        ca: f.pki.client.ca.clone(),
        cert: f.pki.client.cert.clone(),
        key: f.pki.client.key.clone(),
    };
    let dsn = clone.dsn("postgres", "postgres", Some(&tls)).unwrap();
    let mut c = sqlx::PgConnection::connect(dsn.expose())
        .await
        .unwrap_or_else(|e| panic!("drctl's certificate opens the copy: {e}"));
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(ssl, "the session is encrypted");
    drop(c);
    // Without a client certificate, or without TLS, or as a role drctl
    // did not name: no way in.
    let bare = format!(
        "postgres://postgres@{tcp}/postgres?sslmode=verify-full&sslrootcert={}",
        f.pki.client.ca.display()
    );
    let plain = format!("postgres://postgres@{tcp}/postgres?sslmode=disable");
    let stranger = clone.dsn("intruder", "postgres", Some(&tls)).unwrap();
    for refused in [bare.as_str(), plain.as_str(), stranger.expose()] {
        assert!(
            sqlx::PgConnection::connect(refused).await.is_err(),
            "the copy admitted {refused}"
        );
    }
    assert!(
        clone.dsn("postgres", "postgres", None).is_err(),
        "a copy on an agent's host needs [agents]"
    );
    let teardown = TeardownRequest {
        dir: clone.dir.clone(),
        port: clone.port,
    };
    assert!(remote.teardown_scratch(&teardown).await.unwrap().removed);
    assert!(!clone.dir.exists());

    // Started without --config, the agent cannot read backups: a restore
    // is "missing", with the reason, and nothing is touched.
    let missing = remote
        .restore_backup(&RestoreRequest {
            node: f.node.clone(),
            backup_id: "20261207T000000Z-orders".into(),
            operation_id: "op-recover-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.kind, NodeErrorKind::Missing, "{missing}");
    assert!(missing.message.contains("--config"), "{missing}");
    assert!(remote.status(&f.node).await.unwrap().running);

    // Tearing down a scratch copy that is not there: already gone.
    let gone = remote
        .teardown_scratch(&TeardownRequest {
            dir: f.scratch_root.join("drill-orders-1"),
            port: 0,
        })
        .await
        .unwrap();
    assert!(!gone.removed);

    remote.stop(&f.node, StopMode::Fast).await.unwrap();
    let _ = &f.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_unauthenticated_foreign_and_malformed_requests_and_nothing_changes() {
    let mut f = fixture();
    f.remote
        .start(&start_request(&f.node, false))
        .await
        .unwrap();
    let pid = f.remote.status(&f.node).await.unwrap().pid;
    let url = f.agent.url.clone();
    let stop_body = json!({"node": f.node, "mode": "immediate"});

    // No client certificate: a JSON 401, nothing done.
    let anonymous = raw_client(&f.pki.ca, None);
    let reply = anonymous
        .post(format!("{url}/v1/node/stop"))
        .json(&stop_body)
        .send()
        .await
        .expect("the agent answers a client without a certificate");
    assert_eq!(reply.status(), 401);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("certificate"));
    assert_unchanged(&mut f, pid, "a request without a certificate").await;

    // Another lab's PKI: drctl trusts this agent, but its certificate is
    // from another CA, so the agent ends the handshake.
    let other = issue_test_pki(&f.dir.path().join("other-pki"), "db1");
    let foreign = RemoteNode::new(
        &url,
        &ClientTls {
            ca: f.pki.ca.clone(),
            cert: other.client.cert.clone(),
            key: other.client.key.clone(),
        },
    )
    .unwrap();
    let refused = foreign
        .stop(&f.node, StopMode::Immediate)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Unreachable, "{refused}");
    assert!(
        refused.message.contains("refused drctl's certificate"),
        "{refused}"
    );
    let raw = raw_client(&f.pki.ca, Some((&other.client.cert, &other.client.key)));
    assert!(
        raw.post(format!("{url}/v1/node/stop"))
            .json(&stop_body)
            .send()
            .await
            .is_err(),
        "no HTTP answer to another CA's certificate"
    );
    assert_unchanged(&mut f, pid, "another PKI's certificate").await;

    // An agent's server certificate (same CA, serverAuth only) is not a
    // client certificate.
    let agent_files = f.pki.agents[0].clone();
    let impostor = RemoteNode::new(
        &url,
        &ClientTls {
            ca: f.pki.ca.clone(),
            cert: agent_files.cert.clone(),
            key: agent_files.key.clone(),
        },
    )
    .unwrap();
    let refused = impostor
        .stop(&f.node, StopMode::Immediate)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Unreachable, "{refused}");
    assert!(
        refused.message.contains("refused drctl's certificate"),
        "{refused}"
    );
    assert_unchanged(&mut f, pid, "an agent's server certificate").await;

    // Malformed bodies: a JSON 400 each.
    let drctl = raw_client(&f.pki.ca, Some((&f.pki.client.cert, &f.pki.client.key)));
    for body in [
        "not json".to_string(),
        r#"{"node": 5, "mode": "immediate"}"#.to_string(),
        json!({"node": f.node, "mode": "gently"}).to_string(),
    ] {
        let reply = drctl
            .post(format!("{url}/v1/node/stop"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 400, "{body}");
        let answer: Value = reply.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
    }
    // An unknown action: a JSON 404.
    let reply = drctl
        .post(format!("{url}/v1/node/format_disk"))
        .json(&stop_body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);
    let answer: Value = reply.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "not_found", "{answer}");
    assert_unchanged(&mut f, pid, "malformed requests").await;

    // A data directory the agent does not serve: 403, and RemoteNode says
    // Refused with the agent's message.
    let elsewhere = NodeRef::new("db2@region-a", f.dir.path().join("pg").join("db2"), 5432);
    let reply = drctl
        .post(format!("{url}/v1/node/stop"))
        .json(&json!({"node": elsewhere, "mode": "immediate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let answer: Value = reply.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "node_refused", "{answer}");
    let refused = f
        .remote
        .stop(&elsewhere, StopMode::Immediate)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Refused, "{refused}");
    assert!(refused.message.contains("does not serve"), "{refused}");
    // Its own directory reached through `..` is refused too.
    let sneaky = NodeRef::new(
        "db1@region-a",
        f.node.data_dir.join("..").join("db1"),
        f.node.port,
    );
    let refused = f
        .remote
        .stop(&sneaky, StopMode::Immediate)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Refused, "{refused}");
    assert_unchanged(&mut f, pid, "a directory the agent does not serve").await;

    // A `..` scratch directory: refused for a clone and a teardown.
    let reply = drctl
        .post(format!("{url}/v1/node/clone_scratch"))
        .json(&json!({
            "dir": "/tmp/..",
            "source": "postgres://postgres@127.0.0.1:1/postgres",
            "settings": [],
            "roles": []
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let answer: Value = reply.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "node_refused", "{answer}");
    for dir in [
        f.scratch_root.join("x").join(".."),
        f.node.data_dir.clone(),
        PathBuf::from("/tmp"),
    ] {
        let refused = f
            .remote
            .teardown_scratch(&TeardownRequest {
                dir: dir.clone(),
                port: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused.kind,
            NodeErrorKind::Refused,
            "{}: {refused}",
            dir.display()
        );
    }
    assert!(
        f.node.data_dir.join("PG_VERSION").exists(),
        "the data directory is intact"
    );
    assert_unchanged(&mut f, pid, "`..` and outside scratch directories").await;

    // drctl that trusts another CA does not talk to this agent at all.
    let distrustful = RemoteNode::new(&url, &other.client).unwrap();
    let refused = distrustful.status(&f.node).await.unwrap_err();
    assert_eq!(refused.kind, NodeErrorKind::Unreachable, "{refused}");
    assert!(refused.message.contains("does not trust"), "{refused}");
    assert_unchanged(&mut f, pid, "a client of another PKI").await;

    f.remote.stop(&f.node, StopMode::Fast).await.unwrap();

    // SIGTERM stops the agent cleanly; then drctl finds nobody there.
    assert!(f.agent.terminate().success());
    let gone = f.remote.status(&f.node).await.unwrap_err();
    assert_eq!(gone.kind, NodeErrorKind::Unreachable, "{gone}");
    assert!(gone.message.contains("cannot reach the agent"), "{gone}");
}
