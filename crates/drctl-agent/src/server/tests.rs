//! The router in-process (`tower::ServiceExt::oneshot`) over a node that
//! records what reached it: what the agent lets through, where it puts
//! scratch copies, its error JSON, and one action at a time per directory.
//! (The node actions themselves are tested on real servers in
//! tests/agent.rs and tests/seam_node.rs.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use drctl_node::*;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(&'static str, PathBuf)>>,
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Recorder {
    fn saw(&self, action: &'static str, dir: &Path) {
        self.seen.lock().unwrap().push((action, dir.to_path_buf()));
    }
}

fn failed() -> NodeError {
    NodeError::failed("not in this test")
}

#[async_trait]
impl NodeActions for Recorder {
    async fn status(&self, node: &NodeRef) -> Result<NodeStatus, NodeError> {
        self.saw("status", &node.data_dir);
        Err(NodeError::new(NodeErrorKind::Missing, "no such directory"))
    }
    async fn stop(&self, node: &NodeRef, _: StopMode) -> Result<Stopped, NodeError> {
        self.saw("stop", &node.data_dir);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(Stopped { was_running: false })
    }
    async fn start(&self, _: &StartRequest) -> Result<Started, NodeError> {
        Err(NodeError::refused("fenced by op-1"))
    }
    async fn rewind_or_reclone(&self, _: &ResyncRequest) -> Result<Resynced, NodeError> {
        Err(failed())
    }
    async fn configure_standby(&self, _: &StandbyRequest) -> Result<StandbyConfigured, NodeError> {
        panic!("a bug in a node action")
    }
    async fn restore_backup(&self, _: &RestoreRequest) -> Result<Restored, NodeError> {
        Err(failed())
    }
    async fn clone_scratch(&self, req: &CloneRequest) -> Result<ScratchClone, NodeError> {
        self.saw("clone_scratch", &req.dir);
        Ok(ScratchClone {
            dir: req.dir.clone(),
            data_dir: req.dir.join("data"),
            port: 1,
            bytes: 0,
            took_ms: 0,
            tcp: None,
        })
    }
    async fn restore_scratch(&self, _: &ScratchRestoreRequest) -> Result<ScratchClone, NodeError> {
        Err(failed())
    }
    async fn teardown_scratch(&self, req: &TeardownRequest) -> Result<TornDown, NodeError> {
        self.saw("teardown_scratch", &req.dir);
        Ok(TornDown { removed: false })
    }
    async fn hard_fence(&self, req: &HardFenceRequest) -> Result<HardFenced, NodeError> {
        assert!(req.hook.is_none(), "the agent passes no hook on");
        Ok(HardFenced {
            method: HardFenceMethod::None,
            was_running: None,
            hook: None,
            host: None,
        })
    }
}

struct Test {
    node: Arc<Recorder>,
    router: Router,
    data_dir: PathBuf,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

fn agent() -> Test {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let (data_dir, root) = (base.join("main"), base.join("scratch"));
    let node = Arc::new(Recorder::default());
    let router = router(
        node.clone(),
        AgentSettings {
            data_dirs: vec![data_dir.clone()],
            scratch_root: root.clone(),
            host: "db1".into(),
            restores: false,
            scratch_tls: None,
        },
    );
    Test {
        node,
        router,
        data_dir,
        root,
        _dir: dir,
    }
}

fn drctl() -> Option<PeerIdentity> {
    Some(PeerIdentity {
        common_name: Some("drctl".into()),
        sha256: "00".repeat(32),
    })
}

async fn send(
    router: &Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
    peer: Option<PeerIdentity>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    request.extensions_mut().insert(peer);
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn node_json(dir: &Path) -> Value {
    json!({"name": "db1@a", "data_dir": dir, "port": 0})
}

#[tokio::test]
async fn nothing_reaches_the_node_without_a_client_certificate() {
    let t = agent();
    let body = json!({"node": node_json(&t.data_dir), "mode": "immediate"}).to_string();
    let (status, answer) = send(&t.router, "POST", "/v1/node/stop", body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"]["code"], "unauthenticated");
    let (status, _) = send(&t.router, "GET", "/v1/health", Body::empty(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(t.node.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn node_errors_keep_their_kind_and_message_as_json() {
    let t = agent();
    let node = json!({"node": node_json(&t.data_dir)}).to_string();
    let (status, answer) = send(&t.router, "POST", "/v1/node/status", node, drctl()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "node_missing");
    assert_eq!(answer["error"]["message"], "no such directory");
    let start = json!({"node": node_json(&t.data_dir), "wait_ready_ms": null, "recovered": null})
        .to_string();
    let (status, answer) = send(&t.router, "POST", "/v1/node/start", start, drctl()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["error"]["code"], "node_refused");
    assert_eq!(answer["error"]["message"], "fenced by op-1");
}

#[tokio::test]
async fn bad_bodies_unknown_actions_wrong_methods_and_panics_are_json() {
    let t = agent();
    let (status, answer) = send(&t.router, "POST", "/v1/node/stop", "{", drctl()).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, answer) = send(&t.router, "POST", "/v1/node/stop", big, drctl()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["code"], "payload_too_large");
    let (status, answer) = send(&t.router, "POST", "/v1/node/reboot", "{}", drctl()).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, answer) = send(&t.router, "GET", "/v1/node/stop", Body::empty(), drctl()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer["error"]["code"], "method_not_allowed");
    let standby = json!({"node": node_json(&t.data_dir), "primary": "postgres://x"}).to_string();
    let (status, answer) = send(
        &t.router,
        "POST",
        "/v1/node/configure_standby",
        standby,
        drctl(),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["error"]["code"], "internal");
    // The agent still answers after the panic.
    let (status, answer) = send(&t.router, "GET", "/v1/health", Body::empty(), drctl()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["host"], "db1");
}

#[tokio::test]
async fn scratch_copies_go_under_the_agent_root_and_only_its_own_are_torn_down() {
    let t = agent();
    let clone = json!({
        "dir": "/somewhere/else/drill-1", "source": "postgres://x", "settings": [], "roles": []
    })
    .to_string();
    let (status, answer) = send(&t.router, "POST", "/v1/node/clone_scratch", clone, drctl()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["dir"], json!(t.root.join("drill-1")));
    for dir in ["/tmp/..", "/", ""] {
        let clone = json!({"dir": dir, "source": "postgres://x", "settings": [], "roles": []});
        let (status, answer) = send(
            &t.router,
            "POST",
            "/v1/node/clone_scratch",
            clone.to_string(),
            drctl(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{dir:?}: {answer}");
        assert_eq!(answer["error"]["code"], "node_refused");
    }
    let inside = json!({"dir": t.root.join("drill-1"), "port": 0}).to_string();
    let (status, _) = send(
        &t.router,
        "POST",
        "/v1/node/teardown_scratch",
        inside,
        drctl(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for dir in [
        t.root.clone(),
        t.data_dir.clone(),
        t.root.join("a/b"),
        t.root.join("a/.."),
    ] {
        let body = json!({"dir": dir, "port": 0}).to_string();
        let (status, _) = send(
            &t.router,
            "POST",
            "/v1/node/teardown_scratch",
            body,
            drctl(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}", dir.display());
    }
    let seen = t.node.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("clone_scratch", t.root.join("drill-1")),
            ("teardown_scratch", t.root.join("drill-1")),
        ]
    );
}

#[tokio::test]
async fn a_hard_fence_reaches_the_node_without_the_requests_hook() {
    let t = agent();
    let fence = json!({
        "service": "orders", "region": "a", "operation_id": "op-1",
        "node": node_json(&t.data_dir), "hook": ["/bin/rm", "-rf", "/"], "hook_timeout_ms": 1000
    });
    let (status, answer) = send(
        &t.router,
        "POST",
        "/v1/node/hard_fence",
        fence.to_string(),
        drctl(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_actions_on_one_data_directory_never_run_at_once() {
    let t = agent();
    let body = json!({"node": node_json(&t.data_dir), "mode": "fast"}).to_string();
    let runs = (0..8).map(|_| {
        let (router, body) = (t.router.clone(), body.clone());
        tokio::spawn(async move { send(&router, "POST", "/v1/node/stop", body, drctl()).await })
    });
    for run in runs.collect::<Vec<_>>() {
        assert_eq!(run.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(t.node.most_at_once.load(Ordering::SeqCst), 1);
    assert_eq!(t.node.seen.lock().unwrap().len(), 8);
}
