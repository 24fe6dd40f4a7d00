//! Shared helpers of the integration tests: labs on free ports, an
//! in-process daemon over a lab, ground truth read from the lab's own rows,
//! the `drctl` binary, and `moto_server`; test configs built from named
//! pieces ([`config`]) and a client of the API ([`api`]).
//!
//! Every helper that needs a server starts the real one; when it cannot, it
//! panics with the install hint (tests never pass by skipping).

pub mod agent;
pub mod api;
pub mod config;
pub mod engine;
pub mod lab_agents;
pub mod serve;

pub use api::{in_process_router, in_process_state, router_over, ApiClient, Reply};
pub use config::{Service, TestConfig, TokenSecret};
pub use serve::Serve;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drctl_config::Config;
use drctl_daemon::Daemon;
use drctl_lab::{Lab, LabService, LabSpec, REGION_A, REGION_B};
use sqlx::{Connection, PgConnection};

/// A lab with the given services in a fresh temporary directory, on free
/// ports. Keep the `TempDir` alive as long as the lab.
pub async fn start_lab(services: Vec<LabService>) -> (Lab, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-lab-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    let spec = LabSpec::for_tests(dir.path().join("lab"), services);
    let lab = Lab::up(spec, |m| eprintln!("lab: {m}"))
        .await
        .unwrap_or_else(|e| panic!("the lab did not start: {e}\n(the tests need PostgreSQL server binaries: run `bash tests/run.sh`, or `apt-get install postgresql`, or set PG_BIN)"));
    (lab, dir)
}

/// A lab whose regions are separate hosts: each region (and drctl's
/// control plane) its own network namespace, reached only over the lab's
/// network. `agents`: the lab also runs an agent per region. Needs root and
/// iproute2, and fails with the install hint without them (never skips).
pub async fn start_namespaced_lab(
    services: Vec<LabService>,
    agents: bool,
) -> (Lab, tempfile::TempDir) {
    if let Err(why) = drctl_lab::netns::available() {
        panic!("this test needs the namespaced lab: {why}\n(`bash tests/run.sh` runs the suite as root with iproute2 installed)");
    }
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-nslab-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    let mut spec = LabSpec::for_tests(dir.path().join("lab"), services);
    spec.network = drctl_lab::LabNetwork::Namespaces;
    if agents {
        spec.agents = Some(drctl_bin());
    }
    let lab = Lab::up(spec, |m| eprintln!("lab: {m}"))
        .await
        .unwrap_or_else(|e| panic!("the namespaced lab did not start: {e}\n(the tests need PostgreSQL server binaries and iproute2: run `bash tests/run.sh`, or `apt-get install postgresql iproute2`, or set PG_BIN)"));
    (lab, dir)
}

/// A namespaced lab with agents, three etcd members (region-a, region-b,
/// witness) and primary leases (`[coordination]`).
pub async fn start_leased_lab(services: Vec<LabService>) -> (Lab, tempfile::TempDir) {
    start_leased_lab_with(services, |_| {}).await
}

/// As [`start_leased_lab`], with the spec changed by `adjust` first.
pub async fn start_leased_lab_with(
    services: Vec<LabService>,
    adjust: impl FnOnce(&mut LabSpec),
) -> (Lab, tempfile::TempDir) {
    if let Err(why) = drctl_lab::netns::available() {
        panic!("this test needs the namespaced lab: {why}\n(`bash tests/run.sh` runs the suite as root with iproute2 installed)");
    }
    if let Err(why) = drctl_lab::etcd::find_etcd() {
        panic!("this test needs etcd: {why}\n(`bash tests/run.sh` installs it)");
    }
    let dir = tempfile::Builder::new()
        .prefix("drctl-test-leases-")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    let mut spec = LabSpec::for_tests(dir.path().join("lab"), services);
    spec.network = drctl_lab::LabNetwork::Namespaces;
    spec.agents = Some(drctl_bin());
    spec.coordination = true;
    adjust(&mut spec);
    let lab = Lab::up(spec, |m| eprintln!("lab: {m}"))
        .await
        .unwrap_or_else(|e| panic!("the leased lab did not start: {e}\n(run `bash tests/run.sh`, which installs PostgreSQL, etcd-server and iproute2)"));
    (lab, dir)
}

pub fn orders() -> LabService {
    LabService::new("orders", "hot", "shop.orders")
}

pub fn catalog() -> LabService {
    LabService::new("catalog", "cold", "shop.price_changes")
}

pub fn inventory() -> LabService {
    LabService::new("inventory", "warm", "shop.stock_movements")
}

/// The lab's config, loaded and validated as the daemon would.
pub fn lab_config(lab: &Lab) -> Arc<Config> {
    Arc::new(
        drctl_config::load(lab.config_path())
            .unwrap_or_else(|e| panic!("the lab wrote an invalid config:\n{e}")),
    )
}

/// The lab's API token for `role` (`admin`, `operator`, `viewer`).
pub fn lab_token(lab: &Lab, role: &str) -> String {
    let path = lab
        .config_path()
        .with_file_name(drctl_lab::LAB_TOKENS_DIR)
        .join(role);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the lab's {role} token {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A copy of the lab's config beside it with a 1 s operation lease, so a
/// resume need not wait long for a dead driver's lease.
pub fn short_lease_config(lab: &Lab) -> PathBuf {
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    assert!(
        text.contains("\n[failover]\n"),
        "the lab's config has a [failover] table"
    );
    let path = lab.config_path().with_file_name("short-lease.toml");
    std::fs::write(
        &path,
        text.replace("\n[failover]\n", "\n[failover]\nlease = \"1s\"\n"),
    )
    .unwrap();
    path
}

/// Starts the daemon (monitor + API) over the lab, in this process. The API
/// binds an ephemeral port (`Daemon::api_url` says which): a port picked
/// earlier could be taken meanwhile by another test's lab.
pub async fn start_daemon(lab: &Lab) -> Daemon {
    start_daemon_with(lab_config(lab)).await
}

/// Starts the daemon over `config` with the API on an ephemeral port and
/// automatic failover off: tests that lose a primary on purpose decide
/// themselves what fails over ([`start_daemon_automatic`] keeps it on).
pub async fn start_daemon_with(config: Arc<Config>) -> Daemon {
    let mut config = Arc::unwrap_or_clone(config);
    for service in &mut config.services {
        service.failover.automatic = false;
    }
    start_daemon_automatic(Arc::new(config)).await
}

/// [`start_daemon_with`], automatic failover as the config says.
pub async fn start_daemon_automatic(config: Arc<Config>) -> Daemon {
    let mut config = Arc::unwrap_or_clone(config);
    config.api.listen.set_port(0);
    // A namespaced lab's API address is the control plane's site; a daemon
    // run in this (root) namespace, not on that site's runtime, listens on
    // loopback instead.
    if std::net::TcpListener::bind(config.api.listen).is_err() {
        config
            .api
            .listen
            .set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Daemon::start(Arc::new(config))
        .await
        .expect("the daemon starts")
}

/// The journaled output of `step` of operation `op`, as JSON (the view an
/// operator reads: secrets redacted). Panics when the step has none.
pub async fn journaled_output(
    store: &drctl_store::Store,
    op: &str,
    step: &str,
) -> serde_json::Value {
    let steps = store.journal(op).await.unwrap();
    let output = steps
        .iter()
        .find(|s| s.step == step)
        .and_then(|s| s.output.as_deref())
        .unwrap_or_else(|| panic!("operation {op} journaled no output of {step}: {steps:?}"));
    drctl_failover::view_output(output)
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn connect(dsn: &str) -> PgConnection {
    PgConnection::connect(dsn)
        .await
        .unwrap_or_else(|e| panic!("connecting to {dsn}: {e}"))
}

/// Ground truth of RPO exposure from the workload's own rows: the age, on
/// the primary's clock, of the oldest row committed on the primary and
/// absent on the standby. Returns `(primary_now_us, age_us)`; age 0 when
/// the standby has every row.
pub async fn ground_truth_exposure(lab: &Lab, service: &str, table: &str) -> (i64, i64) {
    let mut standby = connect(&lab.cluster(service, REGION_B).dsn(service)).await;
    let (max_on_standby,): (Option<i64>,) = sqlx::query_as(&format!("SELECT max(id) FROM {table}"))
        .fetch_one(&mut standby)
        .await
        .expect("reading the standby's newest row");
    let mut primary = connect(&lab.cluster(service, REGION_A).dsn(service)).await;
    let (now_us, oldest_missing_us): (i64, Option<i64>) = sqlx::query_as(&format!(
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
                (extract(epoch FROM min(created_at)) * 1000000)::bigint \
         FROM {table} WHERE id > $1"
    ))
    .bind(max_on_standby.unwrap_or(0))
    .fetch_one(&mut primary)
    .await
    .expect("reading the primary's rows");
    (now_us, oldest_missing_us.map_or(0, |t| now_us - t))
}

/// The `drctl` binary built by `cargo build` (the test command builds it
/// before running the tests).
pub fn drctl_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> → target/<profile>/drctl
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("drctl"))
        .expect("a target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build --workspace --bins` (bash tests/run.sh does; \
         `-p drctl` alone leaves out the DRCTL_FAULT_* hooks the fault tests use)",
        bin.display()
    );
    bin
}

/// The AWS credentials the tests' S3 and Route 53 clients present to
/// `moto_server`, which takes any. Given to every `drctl` child through its
/// environment (never by changing this process's: tests run in parallel),
/// so no child of a test signs with an operator's real keys either; the
/// clients a test builds in-process take them as [`moto_credentials`].
pub const MOTO_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "drctl-test"),
    ("AWS_SECRET_ACCESS_KEY", "drctl-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// [`MOTO_CREDENTIALS`] as the AWS SDK clients a test builds in-process
/// take them (`S3Location::credentials`,
/// `Route53Provider::with_credentials`): passed explicitly, never through
/// this process's environment (tests run in parallel).
pub fn moto_credentials() -> drctl_backup::AwsCredentials {
    drctl_backup::AwsCredentials::new(
        MOTO_CREDENTIALS[0].1,
        MOTO_CREDENTIALS[1].1,
        None,
        None,
        "moto",
    )
}

/// Runs `drctl ARGS…`, returning (exit code, stdout, stderr).
pub fn drctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(drctl_bin())
        .args(args)
        .envs(MOTO_CREDENTIALS)
        .output()
        .expect("running drctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `drctl ARGS…` with its stdout a pipe that is closed after
/// `lines` lines were read (0: before the command writes anything), as
/// `drctl … | head -n LINES` does; returns (exit code, `None` when a
/// signal ended it, and stderr). `RUST_BACKTRACE=1` is set, so a panic
/// would show with its backtrace.
pub fn drctl_into_closed_pipe(args: &[&str], lines: usize) -> (Option<i32>, String) {
    use std::io::{BufRead, Read};
    let mut child = Command::new(drctl_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running drctl");
    let stdout = child.stdout.take().expect("a stdout pipe");
    let mut reader = std::io::BufReader::new(stdout);
    for _ in 0..lines {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
    }
    drop(reader);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("a stderr pipe")
        .read_to_string(&mut stderr)
        .expect("reading drctl's stderr");
    let status = child.wait().expect("waiting for drctl");
    (status.code(), stderr)
}

/// A `moto_server` (S3, Route 53) on a free loopback port; killed on drop.
pub struct MotoServer {
    pub endpoint: String,
    child: Child,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// A bucket of this server as drctl's S3 store addresses it (path
    /// style, moto's region and credentials, 120 s per attempt).
    pub fn s3_location(&self, bucket: &str, prefix: &str) -> drctl_backup::S3Location {
        drctl_backup::S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            path_style: true,
            attempt_timeout: Duration::from_secs(120),
            credentials: Some(moto_credentials()),
            lock: None,
        }
    }
}

/// Starts `moto_server` from `MOTO_SERVER`, the test virtualenv or PATH.
pub async fn moto_server() -> MotoServer {
    moto_server_with(&[]).await
}

/// [`moto_server`] with settings of moto's own in its environment (e.g.
/// `S3_UPLOAD_PART_MIN_SIZE`), given to the child only.
pub async fn moto_server_with(env: &[(&str, &str)]) -> MotoServer {
    let candidates = [
        std::env::var("MOTO_SERVER").ok(),
        Some(format!(
            "{}/.venv-test/bin/moto_server",
            env!("CARGO_MANIFEST_DIR")
        )),
    ];
    let bin = candidates
        .into_iter()
        .flatten()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("moto_server not found: run `bash tests/run.sh` (it installs moto[server] into .venv-test), or set MOTO_SERVER")
        });
    let port = drctl_lab::free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let server = MotoServer {
        endpoint: endpoint.clone(),
        child,
    };
    wait_for("moto_server to answer", Duration::from_secs(30), || {
        let client = client.clone();
        let endpoint = endpoint.clone();
        async move { client.get(&endpoint).send().await.ok().map(|_| ()) }
    })
    .await;
    server
}

/// moto routes a request to S3 or Route 53 by the service named in the
/// SigV4 credential scope (it does not check signatures); the AWS SDK sends
/// real ones, raw test requests this minimal one.
pub fn moto_auth(service: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0")
}

/// Creates a hosted zone in moto with a raw API call; returns its id.
pub async fn create_hosted_zone(endpoint: &str, zone: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
         <Name>{zone}</Name><CallerReference>drctl-test-{zone}</CallerReference>\
         </CreateHostedZoneRequest>"
    );
    let text = reqwest::Client::new()
        .post(format!("{endpoint}/2013-04-01/hostedzone"))
        .header("authorization", moto_auth("route53"))
        .body(body)
        .send()
        .await
        .expect("CreateHostedZone")
        .text()
        .await
        .unwrap();
    let start = text.find("<Id>").expect("a hosted zone id") + "<Id>".len();
    let end = start + text[start..].find("</Id>").unwrap();
    text[start..end]
        .trim_start_matches("/hostedzone/")
        .to_string()
}

/// Whether the kernel has process `pid` stopped (state `T`: SIGSTOP).
pub fn process_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
        .unwrap_or(false)
}

// ------------------------------------------------- clients of the lab's orders

/// Rebuilds orders' server in `region` as a streaming standby of the one in
/// `primary` (what a rejoin or a re-clone does), so the next failover can go
/// back.
pub fn reclone(lab: &Lab, region: &str, primary: &str) {
    lab.reclone_standby("orders", region, primary)
        .unwrap_or_else(|e| panic!("re-cloning orders in {region} from {primary}: {e}"));
}

/// `(in recovery, read-only)` of the lab's orders cluster, `None` when it is down.
pub async fn role(lab: &Lab, region: &str) -> Option<(bool, bool)> {
    let mut c = PgConnection::connect(&lab.cluster("orders", region).dsn("orders"))
        .await
        .ok()?;
    sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'",
    )
    .fetch_one(&mut c)
    .await
    .ok()
}

pub async fn writable(lab: &Lab, region: &str) -> bool {
    role(lab, region).await == Some((false, false))
}

/// A client that commits one numbered row every 50 ms to the service the
/// way an application does: it resolves `orders.shop.lab.` through the lab's
/// DNS at every (re)connect and connects to that region's front. Remembers
/// every row it saw committed.
pub struct Writer {
    acked: Arc<Mutex<Vec<(i64, Instant)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Where the lab's DNS sends clients of orders now (`None`: no record).
/// A drill of the lab's orders, requested by the test for `reason`.
pub fn drill_request(reason: &str) -> drctl_failover::Request {
    drctl_failover::Request {
        kind: drctl_failover::OperationKind::Drill,
        service: "orders".into(),
        to: None,
        accept_data_loss: false,
        accept_unfenced: false,
        requested_by: "test".into(),
        reason: Some(reason.into()),
        detected_at: None,
    }
}

/// The address DNS gives for a service in `region`: its front there
/// (`127.0.N.1` on a loopback lab, the region's site address on a
/// namespaced one).
pub fn front(lab: &Lab, region: &str) -> String {
    lab.record.front_ip(region).to_string()
}

pub async fn resolve(lab: &Lab) -> Option<String> {
    drctl_dns::query(
        lab.dns().addr(),
        "orders.shop.lab.",
        drctl_config::RecordType::A,
    )
    .await
    .ok()
    .flatten()
    .and_then(|v| v.into_iter().next())
}

impl Writer {
    pub async fn start(lab: &Lab) -> Writer {
        let mut c = connect(&lab.cluster("orders", REGION_A).dsn("orders")).await;
        sqlx::query("CREATE TABLE IF NOT EXISTS shop.acked (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
            .execute(&mut c)
            .await
            .unwrap();
        let port = lab
            .record
            .fronts
            .iter()
            .find(|f| f.service == "orders")
            .expect("a front")
            .front_port;
        let dns = lab.dns().addr();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let log = acked.clone();
        let task = tokio::spawn(async move {
            let mut next = 1i64;
            let mut conn: Option<PgConnection> = None;
            while !*stopped.borrow() {
                if conn.is_none() {
                    let ip = drctl_dns::query(dns, "orders.shop.lab.", drctl_config::RecordType::A)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|v| v.into_iter().next());
                    if let Some(ip) = ip {
                        let dsn = format!("postgres://postgres@{ip}:{port}/orders");
                        if let Ok(Ok(c)) = tokio::time::timeout(
                            Duration::from_millis(500),
                            PgConnection::connect(&dsn),
                        )
                        .await
                        {
                            conn = Some(c);
                        }
                    }
                }
                if let Some(c) = conn.as_mut() {
                    let r = tokio::time::timeout(
                        Duration::from_millis(500),
                        sqlx::query("INSERT INTO shop.acked (id) VALUES ($1)")
                            .bind(next)
                            .execute(&mut *c),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => {
                            log.lock().unwrap().push((next, Instant::now()));
                            next += 1;
                        }
                        // Unknown outcome (the commit may or may not have
                        // happened): never counted as acknowledged; the id
                        // is not reused.
                        _ => {
                            next += 1;
                            conn = None;
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Writer { acked, stop, task }
    }

    pub async fn finish(self) -> Vec<(i64, Instant)> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// The longest time between two consecutive acknowledged writes.
pub fn longest_gap(acked: &[(i64, Instant)]) -> Duration {
    acked
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default()
}
