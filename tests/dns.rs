//! DNS providers against real servers: the lab's own zone server, Knot
//! (RFC 2136 with TSIG, both directions: drctl updating Knot, Knot's
//! `knsupdate` updating the zone server) and moto (Route 53). Every flip is
//! confirmed by asking the server itself, never by trusting the provider's
//! word alone.
//!
//! Knot comes from Debian (`knot`, `knot-dnsutils`), moto from PyPI; both
//! are installed by `tests/run.sh`. A missing server fails the test with the
//! install hint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drctl_config::{Config, TsigAlgorithm};
use drctl_dns::{
    confirm, provider, provider_with_credentials, query, DnsError, DnsProvider, DnsRecord,
    RecordType, Rfc2136Provider, TsigKeyMaterial,
};
use drctl_lab::dns_server::ZoneServer;
use drctl_tests::{create_hosted_zone, moto_credentials, moto_server, wait_for};

fn record(name: &str, rtype: RecordType, values: &[&str]) -> DnsRecord {
    DnsRecord {
        name: name.to_string(),
        rtype,
        ttl: 30,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn values(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

fn key(name: &str) -> TsigKeyMaterial {
    TsigKeyMaterial::generate(name).expect("random bytes")
}

/// A config holding one DNS provider, parsed like an operator's file
/// (relative paths against `dir`).
fn config_with(dir: &Path, providers: &str) -> Config {
    let text = format!("[[regions]]\nname = \"region-a\"\n\n{providers}");
    drctl_config::parse("dns-test.toml", &text, dir)
        .unwrap_or_else(|e| panic!("the test's config is invalid:\n{e}"))
}

/// upsert → read back → flip → idempotent repeat → delete, against any
/// provider, confirmed through `lookup` (the authoritative source) and,
/// when given, a plain DNS query to `server`.
async fn exercise_flips(provider: &dyn DnsProvider, name: &str, server: Option<SocketAddr>) {
    let region_a = record(name, RecordType::A, &["127.0.1.1"]);
    let region_b = record(name, RecordType::A, &["127.0.2.1"]);
    let asked = |rtype| async move {
        match server {
            Some(server) => query(server, name, rtype).await.expect("query"),
            None => provider.lookup(name, rtype).await.expect("lookup"),
        }
    };

    provider.upsert(&region_a).await.expect("first upsert");
    confirm(provider, &region_a, Duration::from_secs(10))
        .await
        .expect("region-a confirmed");
    assert_eq!(asked(RecordType::A).await, values(&["127.0.1.1"]));

    provider.upsert(&region_b).await.expect("flip");
    confirm(provider, &region_b, Duration::from_secs(10))
        .await
        .expect("region-b confirmed");
    assert_eq!(asked(RecordType::A).await, values(&["127.0.2.1"]));

    // A crashed step runs again: the same upsert must change nothing.
    provider.upsert(&region_b).await.expect("repeat");
    assert_eq!(asked(RecordType::A).await, values(&["127.0.2.1"]));

    provider.delete(name, RecordType::A).await.expect("delete");
    assert_eq!(asked(RecordType::A).await, None);
    assert_eq!(provider.lookup(name, RecordType::A).await.unwrap(), None);
    provider
        .delete(name, RecordType::A)
        .await
        .expect("deleting an absent record is Ok");
}

// ------------------------------------------------------------ zone server

#[tokio::test]
async fn zone_server_applies_signed_updates_and_answers_queries() {
    let key = key("drctl-lab.");
    let server = ZoneServer::start("127.0.0.1:0".parse().unwrap(), "shop.lab", Some(&key))
        .await
        .expect("zone server");
    let addr = server.addr();
    assert_eq!(server.zone(), "shop.lab.");
    let lab_dns = Rfc2136Provider::new("lab-dns", addr, "shop.lab.", Some(&key)).unwrap();

    exercise_flips(&lab_dns, "orders.shop.lab.", Some(addr)).await;

    // The same upsert twice does not even bump the serial.
    let r = record("payments.shop.lab.", RecordType::A, &["127.0.1.2"]);
    lab_dns.upsert(&r).await.unwrap();
    let serial = server.serial();
    lab_dns.upsert(&r).await.unwrap();
    assert_eq!(
        server.serial(),
        serial,
        "an idempotent update changes nothing"
    );
    assert_eq!(
        server.get("payments.shop.lab", RecordType::A),
        values(&["127.0.1.2"])
    );

    // AAAA and CNAME; names answer case-insensitively.
    let v6 = record("orders.shop.lab.", RecordType::Aaaa, &["2001:DB8::1"]);
    lab_dns.upsert(&v6).await.unwrap();
    assert_eq!(
        query(addr, "ORDERS.Shop.Lab", RecordType::Aaaa)
            .await
            .unwrap(),
        values(&["2001:db8::1"])
    );
    let alias = record("www.shop.lab.", RecordType::Cname, &["Orders.shop.lab"]);
    lab_dns.upsert(&alias).await.unwrap();
    assert_eq!(
        query(addr, "www.shop.lab.", RecordType::Cname)
            .await
            .unwrap(),
        values(&["orders.shop.lab."])
    );
    assert_eq!(
        query(addr, "www.shop.lab.", RecordType::A).await.unwrap(),
        None,
        "an A question at a CNAME gets the CNAME, not an A"
    );

    // Absent names, and names outside the zone.
    assert_eq!(
        query(addr, "nope.shop.lab.", RecordType::A).await.unwrap(),
        None
    );
    match query(addr, "orders.example.com.", RecordType::A).await {
        Err(DnsError::Rejected { rcode, .. }) => assert_eq!(rcode, "REFUSED"),
        other => panic!("a name outside the zone must be refused, got {other:?}"),
    }
    match lab_dns
        .upsert(&record(
            "orders.example.com.",
            RecordType::A,
            &["127.0.1.1"],
        ))
        .await
    {
        Err(e @ DnsError::InvalidRecord { .. }) => assert!(!e.is_retryable(), "{e}"),
        other => panic!("a record outside the zone is invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn zone_server_refuses_unsigned_and_wrongly_signed_updates() {
    let key = key("drctl-lab.");
    let server = ZoneServer::start("127.0.0.1:0".parse().unwrap(), "shop.lab.", Some(&key))
        .await
        .unwrap();
    let addr = server.addr();
    server
        .set("orders.shop.lab.", RecordType::A, 30, &["127.0.1.1".into()])
        .unwrap();
    let serial = server.serial();
    let flip = record("orders.shop.lab.", RecordType::A, &["127.0.2.1"]);

    let unsigned = Rfc2136Provider::new("unsigned", addr, "shop.lab.", None).unwrap();
    let wrong_secret = TsigKeyMaterial {
        secret: b"not the lab's secret, same name".to_vec(),
        ..key.clone()
    };
    let forged = Rfc2136Provider::new("forged", addr, "shop.lab.", Some(&wrong_secret)).unwrap();
    let stranger =
        Rfc2136Provider::new("stranger", addr, "shop.lab.", Some(&self::key("other."))).unwrap();
    let wrong_algorithm = TsigKeyMaterial {
        algorithm: TsigAlgorithm::HmacSha512,
        ..key.clone()
    };
    let mismatched =
        Rfc2136Provider::new("mismatched", addr, "shop.lab.", Some(&wrong_algorithm)).unwrap();

    for (provider, rcode, tsig_error) in [
        (&unsigned, "REFUSED", None),
        (&forged, "NOTAUTH", Some("BADSIG")),
        (&stranger, "NOTAUTH", Some("BADKEY")),
        (&mismatched, "NOTAUTH", Some("BADKEY")),
    ] {
        match provider.upsert(&flip).await {
            Err(e @ DnsError::Rejected { .. }) => {
                let DnsError::Rejected {
                    rcode: got,
                    tsig_error: got_tsig,
                    ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(
                    (got.as_str(), got_tsig.as_deref()),
                    (rcode, tsig_error),
                    "{e}"
                );
                assert!(!e.is_retryable(), "a refusal is final: {e}");
                assert!(e.to_string().contains(provider.name()), "{e}");
            }
            other => panic!("{} must be refused, got {other:?}", provider.name()),
        }
        assert!(provider
            .delete("orders.shop.lab.", RecordType::A)
            .await
            .is_err());
    }
    assert_eq!(server.serial(), serial, "nothing was applied");
    assert_eq!(
        query(addr, "orders.shop.lab.", RecordType::A)
            .await
            .unwrap(),
        values(&["127.0.1.1"])
    );

    // A server without a key takes no update at all, even a signed one.
    let keyless = ZoneServer::start("127.0.0.1:0".parse().unwrap(), "shop.lab.", None)
        .await
        .unwrap();
    let signed = Rfc2136Provider::new("lab-dns", keyless.addr(), "shop.lab.", Some(&key)).unwrap();
    match signed.upsert(&flip).await {
        Err(DnsError::Rejected { rcode, .. }) => assert_eq!(rcode, "REFUSED"),
        other => panic!("a keyless server must refuse updates, got {other:?}"),
    }
}

/// The secret comes from a file next to the config, as the lab writes it,
/// and never shows in an error; a dead server is a retryable error.
#[tokio::test]
async fn provider_from_config_reads_the_key_file_and_reports_unreachable_servers() {
    let dir = tempfile::tempdir().unwrap();
    let key = key("drctl-lab.");
    std::fs::write(
        dir.path().join("lab-dns.key"),
        format!("{}\n", key.secret_base64()),
    )
    .unwrap();
    let server = ZoneServer::start("127.0.0.1:0".parse().unwrap(), "shop.lab.", Some(&key))
        .await
        .unwrap();
    let config = config_with(
        dir.path(),
        &format!(
            "[[dns_providers]]\nname = \"lab-dns\"\nkind = \"rfc2136\"\nserver = \"{}\"\nzone = \"shop.lab\"\n\
             tsig_key = \"drctl-lab\"\ntsig_secret_file = \"lab-dns.key\"\n",
            server.addr()
        ),
    );
    let lab_dns = provider(&config.dns_providers[0]).expect("provider");
    assert_eq!(lab_dns.name(), "lab-dns");
    let r = record("orders.shop.lab.", RecordType::A, &["127.0.1.1"]);
    lab_dns
        .upsert(&r)
        .await
        .expect("signed with the file's key");
    assert_eq!(
        query(server.addr(), "orders.shop.lab.", RecordType::A)
            .await
            .unwrap(),
        values(&["127.0.1.1"])
    );

    let dead = server.addr();
    drop(server);
    let error = lab_dns.upsert(&r).await.expect_err("nobody listens");
    assert!(error.is_retryable(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("lab-dns") && message.contains("orders.shop.lab. A"),
        "{message}"
    );
    assert!(message.contains(&dead.to_string()), "{message}");
    assert!(!message.contains(&key.secret_base64()), "{message}");

    std::fs::remove_file(dir.path().join("lab-dns.key")).unwrap();
    match provider(&config.dns_providers[0]) {
        Err(e @ DnsError::Config { .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("lab-dns.key"), "{e}");
        }
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("a missing key file must fail the provider"),
    }
}

// ------------------------------------------------------------------ Knot

const KNOT_HINT: &str = "the RFC 2136 interop tests need Knot DNS: run `bash tests/run.sh` \
(it installs them) or `apt-get install knot knot-dnsutils`";

/// A binary from Debian's knot packages, or a loud failure with the hint.
fn knot_bin(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: {KNOT_HINT}"))
}

/// `knotd` serving `shop.test.` on a loopback port, updates allowed only
/// with `key`; killed on drop.
struct Knot {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_knot(key: &TsigKeyMaterial) -> Knot {
    let knotd = knot_bin("knotd");
    let dir = tempfile::Builder::new()
        .prefix("drctl-knot-")
        .tempdir()
        .unwrap();
    let port = drctl_lab::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("shop.test.zone"),
        "$ORIGIN shop.test.\n$TTL 30\n\
         @ SOA ns.shop.test. hostmaster.shop.test. 1 3600 600 86400 30\n\
         @ NS ns.shop.test.\nns A 127.0.0.1\n",
    )
    .unwrap();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n\
         database:\n    storage: \"{d}\"\n\
         log:\n  - target: stderr\n    any: info\n\
         key:\n  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n\
         acl:\n  - id: drctl-update\n    key: {name}\n    action: update\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n\
         zone:\n  - domain: shop.test.\n    file: shop.test.zone\n    acl: drctl-update\n",
        name = key.name,
        alg = key.algorithm,
        secret = key.secret_base64(),
    );
    let conf_path = dir.path().join("knot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = std::fs::File::create(dir.path().join("knotd.log")).unwrap();
    let child = Command::new(&knotd)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e} ({KNOT_HINT})", knotd.display()));
    let knot = Knot {
        addr,
        child,
        _dir: dir,
    };
    let log_path = knot._dir.path().join("knotd.log");
    wait_for("knotd to serve shop.test.", Duration::from_secs(20), || {
        let log_path = log_path.clone();
        async move {
            match query(addr, "ns.shop.test.", RecordType::A).await {
                Ok(Some(_)) => Some(()),
                _ => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    assert!(!log.contains("error"), "knotd failed to start:\n{log}");
                    None
                }
            }
        }
    })
    .await;
    knot
}

/// `kdig @server -p PORT +short NAME TYPE`: the answer as Knot's own client
/// sees it, sorted.
fn kdig(server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new(knot_bin("kdig"))
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+short",
            "+timeout=2",
            name,
            rtype,
        ])
        .output()
        .unwrap_or_else(|e| panic!("running kdig: {e} ({KNOT_HINT})"));
    assert!(
        out.status.success(),
        "kdig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn knot_applies_signed_updates_from_the_rfc2136_provider() {
    let key = key("drctl-test.");
    let knot = start_knot(&key).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("knot.key"), key.secret_base64()).unwrap();
    let config = config_with(
        dir.path(),
        &format!(
            "[[dns_providers]]\nname = \"knot\"\nkind = \"rfc2136\"\nserver = \"{}\"\nzone = \"shop.test.\"\n\
             tsig_key = \"drctl-test.\"\ntsig_algorithm = \"hmac-sha256\"\ntsig_secret_file = \"knot.key\"\n",
            knot.addr
        ),
    );
    let knot_dns = provider(&config.dns_providers[0]).unwrap();

    exercise_flips(knot_dns.as_ref(), "orders.shop.test.", Some(knot.addr)).await;

    // Knot's own client sees each flip too: the wire format is interoperable.
    let orders = |ip: &str| record("orders.shop.test.", RecordType::A, &[ip]);
    knot_dns.upsert(&orders("127.0.1.1")).await.unwrap();
    assert_eq!(kdig(knot.addr, "orders.shop.test.", "A"), ["127.0.1.1"]);
    knot_dns.upsert(&orders("127.0.2.1")).await.unwrap();
    assert_eq!(kdig(knot.addr, "orders.shop.test.", "A"), ["127.0.2.1"]);
    let alias = record("www.shop.test.", RecordType::Cname, &["orders.shop.test"]);
    knot_dns.upsert(&alias).await.unwrap();
    assert_eq!(
        kdig(knot.addr, "www.shop.test.", "CNAME"),
        ["orders.shop.test."]
    );
    assert_eq!(
        knot_dns
            .lookup("www.shop.test.", RecordType::Cname)
            .await
            .unwrap(),
        values(&["orders.shop.test."])
    );

    // Knot refuses a wrong secret and an unknown key, with the TSIG error.
    let forged = Rfc2136Provider::new(
        "forged",
        knot.addr,
        "shop.test.",
        Some(&TsigKeyMaterial {
            secret: b"guessed".to_vec(),
            ..key.clone()
        }),
    )
    .unwrap();
    let stranger = Rfc2136Provider::new(
        "stranger",
        knot.addr,
        "shop.test.",
        Some(&self::key("other.")),
    )
    .unwrap();
    let unsigned = Rfc2136Provider::new("unsigned", knot.addr, "shop.test.", None).unwrap();
    for (provider, tsig_error) in [
        (&forged, Some("BADSIG")),
        (&stranger, Some("BADKEY")),
        (&unsigned, None),
    ] {
        match provider.upsert(&orders("127.0.9.9")).await {
            Err(e @ DnsError::Rejected { .. }) => {
                assert!(!e.is_retryable(), "{e}");
                let DnsError::Rejected {
                    tsig_error: got, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(got.as_deref(), tsig_error, "{e}");
            }
            other => panic!("Knot must refuse {}, got {other:?}", provider.name()),
        }
    }
    assert_eq!(kdig(knot.addr, "orders.shop.test.", "A"), ["127.0.2.1"]);
}

/// Runs `knsupdate` to replace orders.shop.lab. A with 127.0.2.1 at
/// `server`, signing with key `name` and base64 `secret`.
fn knsupdate(server: SocketAddr, name: &str, secret: &str) -> std::process::Output {
    use std::io::Write as _;
    let script = format!(
        "server {} {}\nzone shop.lab.\nkey hmac-sha256:{name}:{secret}\n\
         update delete orders.shop.lab. A\nupdate add orders.shop.lab. 30 A 127.0.2.1\nsend\n",
        server.ip(),
        server.port(),
    );
    let mut child = Command::new(knot_bin("knsupdate"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running knsupdate: {e} ({KNOT_HINT})"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The other direction: Knot's `knsupdate`, signing with the same kind of
/// key, updates the lab's zone server. Multi-threaded: `kdig` blocks this
/// thread while the server's tasks answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knsupdate_updates_the_zone_server() {
    let key = key("drctl-lab.");
    let server = ZoneServer::start("127.0.0.1:0".parse().unwrap(), "shop.lab.", Some(&key))
        .await
        .unwrap();
    let addr = server.addr();
    let wrong = TsigKeyMaterial::generate("x.").unwrap().secret_base64();
    let name = key.name.clone();
    let refused = tokio::task::spawn_blocking(move || knsupdate(addr, &name, &wrong))
        .await
        .unwrap();
    assert!(!refused.status.success(), "a wrong secret must be refused");
    assert_eq!(server.get("orders.shop.lab.", RecordType::A), None);

    let (name, secret) = (key.name.clone(), key.secret_base64());
    let applied = tokio::task::spawn_blocking(move || knsupdate(addr, &name, &secret))
        .await
        .unwrap();
    assert!(
        applied.status.success(),
        "knsupdate failed: {}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(
        query(server.addr(), "orders.shop.lab.", RecordType::A)
            .await
            .unwrap(),
        values(&["127.0.2.1"])
    );
    assert_eq!(kdig(server.addr(), "orders.shop.lab.", "A"), ["127.0.2.1"]);
}

// -------------------------------------------------------------- Route 53

#[tokio::test]
async fn route53_upserts_flips_and_deletes_on_moto() {
    let moto = moto_server().await;
    let zone_id = create_hosted_zone(&moto.endpoint, "shop.example.com.").await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &format!(
            "[[dns_providers]]\nname = \"aws\"\nkind = \"route53\"\nhosted_zone_id = \"{zone_id}\"\n\
             endpoint = \"{}\"\nregion = \"us-east-1\"\nzone = \"shop.example.com.\"\n",
            moto.endpoint
        ),
    );
    // moto's keys passed in, not through this process's environment.
    let aws =
        provider_with_credentials(&config.dns_providers[0], Some(moto_credentials())).unwrap();

    exercise_flips(aws.as_ref(), "orders.shop.example.com.", None).await;

    let applied = aws
        .upsert(&record(
            "orders.shop.example.com.",
            RecordType::A,
            &["127.0.1.1"],
        ))
        .await
        .unwrap();
    assert!(applied.change_id.is_some(), "Route 53 names its change");
    let v6 = record(
        "orders.shop.example.com.",
        RecordType::Aaaa,
        &["2001:DB8::1", "2001:db8::2"],
    );
    aws.upsert(&v6).await.unwrap();
    assert_eq!(
        aws.lookup("orders.shop.example.com.", RecordType::Aaaa)
            .await
            .unwrap(),
        values(&["2001:db8::1", "2001:db8::2"])
    );
    assert_eq!(
        aws.lookup("orders.shop.example.com.", RecordType::A)
            .await
            .unwrap(),
        values(&["127.0.1.1"]),
        "types are separate record sets"
    );

    // Outside the configured zone: refused before any call.
    match aws
        .upsert(&record(
            "orders.elsewhere.com.",
            RecordType::A,
            &["127.0.1.1"],
        ))
        .await
    {
        Err(e @ DnsError::InvalidRecord { .. }) => assert!(!e.is_retryable()),
        other => panic!("expected an invalid record, got {other:?}"),
    }
    // A zone that does not exist: Route 53 refuses, for good.
    let missing =
        drctl_dns::Route53Provider::new("aws", "ZNOSUCHZONE", None, Some(&moto.endpoint), None)
            .with_credentials(moto_credentials());
    match missing
        .upsert(&record(
            "orders.shop.example.com.",
            RecordType::A,
            &["127.0.1.1"],
        ))
        .await
    {
        Err(e) => {
            assert!(!e.is_retryable(), "{e}");
            assert!(e.to_string().contains("orders.shop.example.com. A"), "{e}");
        }
        Ok(_) => panic!("a missing hosted zone must fail"),
    }
    // Nobody at the endpoint: worth retrying.
    let dead = format!("http://127.0.0.1:{}", drctl_lab::free_port());
    let unreachable = drctl_dns::Route53Provider::new("aws", &zone_id, None, Some(&dead), None)
        .with_credentials(moto_credentials());
    let error = unreachable
        .lookup("orders.shop.example.com.", RecordType::A)
        .await
        .expect_err("nothing listens");
    assert!(error.is_retryable(), "{error}");
}

// ------------------------------------------------------------------- lab

/// The lab publishes each replicated service through its DNS: a client
/// resolves `orders.shop.lab.`, connects to the front port at that address
/// and writes; after a flip (done as the failover engine does it, through
/// the lab config's provider) the same steps reach region B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resolves_orders_through_the_lab_dns_and_writes_through_the_front() {
    use std::os::unix::fs::PermissionsExt as _;
    let (lab, _dir) = drctl_tests::start_lab(vec![drctl_tests::orders()]).await;
    let record = &lab.record;
    assert_eq!(record.dns_zone, "shop.lab.");
    let mode = std::fs::metadata(&record.dns_key_file)
        .expect("the key file beside the config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the TSIG secret is the owner's alone");
    let front_port = record
        .fronts
        .iter()
        .find(|f| f.service == "orders")
        .expect("orders has a front")
        .front_port;

    let resolve = || async {
        query(record.dns_server, "orders.shop.lab.", RecordType::A)
            .await
            .expect("the lab DNS answers")
            .expect("orders is published")
    };
    let at = resolve().await;
    assert_eq!(at, ["127.0.1.1"], "the zone starts at the primary region");
    let mut primary = drctl_tests::connect(&format!(
        "postgres://postgres@{}:{front_port}/orders",
        at[0]
    ))
    .await;
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO shop.orders (amount_cents) VALUES (4242) RETURNING id")
            .fetch_one(&mut primary)
            .await
            .expect("a write through the region-a front");
    let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
        .fetch_one(&mut primary)
        .await
        .unwrap();
    assert!(!in_recovery, "region A's front reaches the primary");

    let config = drctl_tests::lab_config(&lab);
    let dns = config
        .service("orders")
        .unwrap()
        .dns
        .clone()
        .expect("orders has [services.dns]");
    let lab_dns = provider(config.dns_provider(&dns.provider).unwrap()).unwrap();
    let flip = DnsRecord {
        name: dns.record.clone(),
        rtype: dns.rtype,
        ttl: dns.ttl.as_secs() as u32,
        values: vec![dns.target("region-b").unwrap().to_string()],
    };
    lab_dns
        .upsert(&flip)
        .await
        .expect("flip signed with the lab's key");
    let at = resolve().await;
    assert_eq!(at, ["127.0.2.1"]);
    let mut standby = drctl_tests::connect(&format!(
        "postgres://postgres@{}:{front_port}/orders",
        at[0]
    ))
    .await;
    let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
        .fetch_one(&mut standby)
        .await
        .unwrap();
    assert!(
        in_recovery,
        "region B's front reaches region B's cluster (the standby until promoted)"
    );
    // The row written through region A's front arrives in region B.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM shop.orders WHERE id = $1")
            .bind(id)
            .fetch_one(&mut standby)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "row {id} never reached region B"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The compare-and-set a failover's DNS flip uses, against any provider:
/// it changes the record only from the expected value (or from nothing),
/// is a no-op when the record already holds the new value (a resumed
/// flip), and refuses — changing nothing — when someone else changed the
/// record meanwhile (a driver that woke up after a takeover and a
/// switchback must not write its stale target).
async fn exercise_conditional_flips(provider: &dyn DnsProvider, name: &str) {
    let a = ["127.0.1.1".to_string()];
    let region_a = record(name, RecordType::A, &["127.0.1.1"]);
    let region_b = record(name, RecordType::A, &["127.0.2.1"]);
    let read = || async { provider.lookup(name, RecordType::A).await.expect("lookup") };
    provider.delete(name, RecordType::A).await.unwrap();

    provider
        .upsert_if(&region_a, None)
        .await
        .expect("created from nothing");
    assert_eq!(read().await, values(&["127.0.1.1"]));
    provider
        .upsert_if(&region_a, None)
        .await
        .expect("already there: a no-op");

    provider
        .upsert_if(&region_b, Some(&a))
        .await
        .expect("flipped from the expected value");
    assert_eq!(read().await, values(&["127.0.2.1"]));
    let again = provider
        .upsert_if(&region_b, Some(&a))
        .await
        .expect("a resumed flip");
    assert_eq!(again.change_id, None, "nothing to change the second time");
    assert_eq!(read().await, values(&["127.0.2.1"]));

    // Someone else moved the record on: a flip from region-a is stale.
    provider
        .upsert(&record(name, RecordType::A, &["127.0.3.1"]))
        .await
        .unwrap();
    let stale = provider
        .upsert_if(&region_b, Some(&a))
        .await
        .expect_err("a flip from a value the record no longer holds");
    assert!(matches!(stale, DnsError::Conflict { .. }), "{stale:?}");
    assert!(!stale.is_retryable(), "{stale}");
    assert!(stale.to_string().contains("127.0.3.1"), "{stale}");
    assert_eq!(
        read().await,
        values(&["127.0.3.1"]),
        "a refused flip changes nothing"
    );
    let not_absent = provider
        .upsert_if(&region_a, None)
        .await
        .expect_err("the record exists");
    assert!(
        matches!(not_absent, DnsError::Conflict { .. }),
        "{not_absent:?}"
    );
    assert_eq!(read().await, values(&["127.0.3.1"]));

    // Several values on either side.
    let pair = record(name, RecordType::A, &["127.0.4.1", "127.0.4.2"]);
    provider
        .upsert_if(&pair, Some(&["127.0.3.1".to_string()]))
        .await
        .expect("flipped to two values");
    assert_eq!(read().await, values(&["127.0.4.1", "127.0.4.2"]));
    let two = ["127.0.4.2".to_string(), "127.0.4.1".to_string()];
    provider
        .upsert_if(&region_a, Some(&two))
        .await
        .expect("flipped from two values");
    assert_eq!(read().await, values(&["127.0.1.1"]));
    let one_of_two = provider
        .upsert_if(&region_b, Some(&two[..1]))
        .await
        .expect_err("one expected value of two is not the set");
    assert!(
        matches!(one_of_two, DnsError::Conflict { .. }),
        "{one_of_two:?}"
    );
    provider.delete(name, RecordType::A).await.unwrap();
}

#[tokio::test]
async fn knot_changes_a_record_conditionally_only_from_the_expected_value() {
    let key = key("drctl-test.");
    let knot = start_knot(&key).await;
    let provider = Rfc2136Provider::new("knot", knot.addr, "shop.test.", Some(&key)).unwrap();
    exercise_conditional_flips(&provider, "orders.shop.test.").await;
    // What Knot itself answers agrees.
    provider
        .upsert_if(
            &record("orders.shop.test.", RecordType::A, &["127.0.2.1"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(kdig(knot.addr, "orders.shop.test.", "A"), ["127.0.2.1"]);
    let stale = provider
        .upsert_if(
            &record("orders.shop.test.", RecordType::A, &["127.0.9.9"]),
            Some(&["127.0.1.1".to_string()]),
        )
        .await;
    assert!(matches!(stale, Err(DnsError::Conflict { .. })), "{stale:?}");
    assert_eq!(kdig(knot.addr, "orders.shop.test.", "A"), ["127.0.2.1"]);
}

#[tokio::test]
async fn route53_changes_a_record_conditionally_only_from_the_expected_value_on_moto() {
    let moto = moto_server().await;
    let zone_id = create_hosted_zone(&moto.endpoint, "shop.example.com.").await;
    let aws = drctl_dns::Route53Provider::new(
        "aws",
        &zone_id,
        Some("shop.example.com."),
        Some(&moto.endpoint),
        Some("us-east-1"),
    )
    .with_credentials(moto_credentials());
    exercise_conditional_flips(&aws, "orders.shop.example.com.").await;
}
