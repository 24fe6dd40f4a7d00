//! The etcd calls drctl makes, through etcd's JSON API (`POST /v3/...`).
//!
//! Each call goes to one member at a time, the last one that answered
//! first, each try bounded by the request timeout: a member cut off from
//! the quorum cannot answer a linearizable read or a lease renewal (it
//! waits for a leader), so it is passed over after the timeout, as a
//! gRPC client's balancer would. int64 fields travel as JSON strings
//! (protobuf's JSON mapping); both forms are read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::{CoordError, Result};

/// An etcd lease's ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One key as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The lease it is attached to (`None`: it lives until deleted).
    pub lease: Option<LeaseId>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// What one member says of itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub endpoint: String,
    pub member_id: u64,
    pub leader_id: u64,
    pub raft_term: u64,
}

impl MemberStatus {
    pub fn is_leader(&self) -> bool {
        self.member_id != 0 && self.member_id == self.leader_id
    }
}

/// A renewal that etcd answered.
#[derive(Clone, Copy, Debug)]
pub struct Renewal {
    /// When the request that was answered was sent, on this process's
    /// monotonic clock: a holder's deadline counts from here.
    pub sent: Instant,
    /// The lease's time left as etcd restarted it; `None`: the lease is
    /// gone (expired or revoked), nothing was renewed.
    pub ttl: Option<Duration>,
}

/// A client of one etcd cluster (its members' client URLs).
#[derive(Clone, Debug)]
pub struct Etcd {
    endpoints: Arc<Vec<String>>,
    http: reqwest::Client,
    timeout: Duration,
    preferred: Arc<AtomicUsize>,
}

impl Etcd {
    /// A client of the members at `endpoints` (`http://HOST:PORT`), each
    /// try bounded by `timeout`.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Etcd> {
        if endpoints.is_empty() {
            return Err(CoordError::Config("no etcd endpoint".into()));
        }
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(CoordError::Config(format!(
                    "etcd endpoint {e:?} must be a URL (http://HOST:2379)"
                )));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            // A fresh connection per try would cost a handshake on every
            // renewal; an idle one is dropped before a partition could
            // leave it half-open for long.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CoordError::Config(format!("HTTP client: {e}")))?;
        Ok(Etcd {
            endpoints: Arc::new(endpoints),
            http,
            timeout,
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The client of this process for `endpoints` and `timeout`, made once:
    /// every caller (each guard round, each operation's step) then starts
    /// from the member that answered last, instead of waiting out a
    /// timeout on a member cut off with a lost site each time.
    ///
    /// One client per network namespace too: its pooled connections
    /// belong to the namespace they were opened in, and one process may
    /// run tasks in several (the lab's sites each have a runtime).
    pub fn shared(endpoints: &[String], timeout: Duration) -> Result<Etcd> {
        type Key = (Vec<String>, Duration, Option<std::path::PathBuf>);
        type Registry = std::sync::Mutex<std::collections::HashMap<Key, Etcd>>;
        static CLIENTS: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        let registry = CLIENTS.get_or_init(Default::default);
        let netns = std::fs::read_link("/proc/thread-self/ns/net").ok();
        let key = (endpoints.to_vec(), timeout, netns);
        if let Some(c) = registry.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(c);
        }
        let client = Etcd::new(endpoints, timeout)?;
        if let Ok(mut m) = registry.lock() {
            m.entry(key).or_insert_with(|| client.clone());
        }
        Ok(client)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `body` to `path` on one member after another until one
    /// answers; returns the answer and when its request was sent.
    async fn call(&self, call: &'static str, path: &str, body: &Value) -> Result<(Value, Instant)> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let endpoint = &self.endpoints[idx];
            let sent = Instant::now();
            let answer = self
                .http
                .post(format!("{endpoint}{path}"))
                .json(body)
                .send()
                .await;
            let resp = match answer {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{endpoint}: {}", short_error(&e)));
                    continue;
                }
            };
            let status = resp.status();
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{endpoint}: {}", short_error(&e)));
                    continue;
                }
            };
            let value: Value = serde_json::from_str(&text).map_err(|e| CoordError::Malformed {
                call,
                message: format!("{e}: {}", truncate(&text)),
            })?;
            if !status.is_success() || value.get("error").is_some() {
                let message = value
                    .get("message")
                    .or_else(|| value.get("error"))
                    .map(|m| {
                        m.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| m.to_string())
                    })
                    .unwrap_or_else(|| truncate(&text));
                // A member without a leader says so; another may have one.
                if is_transient(&message) {
                    failures.push(format!("{endpoint}: {message}"));
                    continue;
                }
                return Err(CoordError::Refused { call, message });
            }
            self.preferred.store(idx, Ordering::Relaxed);
            return Ok((value, sent));
        }
        Err(CoordError::Unreachable(failures.join("; ")))
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = ttl.as_secs().max(1);
        let (v, _) = self
            .call("lease grant", "/v3/lease/grant", &json!({ "TTL": secs }))
            .await?;
        let id = int(&v, "ID").ok_or_else(|| malformed("lease grant", &v))?;
        Ok(LeaseId(id))
    }

    /// Renews `lease` once.
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<Renewal> {
        let (v, sent) = self
            .call(
                "lease keep-alive",
                "/v3/lease/keepalive",
                &json!({ "ID": lease.0.to_string() }),
            )
            .await?;
        let result = v.get("result").unwrap_or(&v);
        let ttl = int(result, "TTL").filter(|t| *t > 0);
        Ok(Renewal {
            sent,
            ttl: ttl.map(|t| Duration::from_secs(t as u64)),
        })
    }

    /// The time `lease` has left (`None`: expired or revoked).
    pub async fn time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let (v, _) = self
            .call(
                "lease time-to-live",
                "/v3/lease/timetolive",
                &json!({ "ID": lease.0.to_string() }),
            )
            .await?;
        Ok(int(&v, "TTL")
            .filter(|t| *t >= 0)
            .map(|t| Duration::from_secs(t as u64)))
    }

    /// Ends `lease` and deletes its keys (a lease already gone is fine).
    pub async fn revoke(&self, lease: LeaseId) -> Result<()> {
        match self
            .call(
                "lease revoke",
                "/v3/lease/revoke",
                &json!({ "ID": lease.0.to_string() }),
            )
            .await
        {
            Err(CoordError::Refused { message, .. }) if message.contains("not found") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// The key `key`, if it exists (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let (v, _) = self
            .call("range", "/v3/kv/range", &json!({ "key": B64.encode(key) }))
            .await?;
        first_kv(&v, "range")
    }

    /// Every key under `prefix`.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let end = prefix_end(prefix.as_bytes());
        let (v, _) = self
            .call(
                "range",
                "/v3/kv/range",
                &json!({ "key": B64.encode(prefix), "range_end": B64.encode(end) }),
            )
            .await?;
        kvs(&v, "range")
    }

    /// Creates `key` with `value` (attached to `lease`) unless it exists;
    /// `Err(current)` when it does.
    pub async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<std::result::Result<(), KeyValue>> {
        let compare = json!({ "key": B64.encode(key), "target": "CREATE", "create_revision": "0" });
        self.put_if(key, value, lease, compare).await
    }

    /// Replaces `key` with `value` (attached to `lease`) only while it is
    /// still at `mod_revision`; `Err(current)` otherwise (`current` with
    /// revision 0 when it is gone).
    pub async fn replace(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
        mod_revision: i64,
    ) -> Result<std::result::Result<(), KeyValue>> {
        let compare = json!({ "key": B64.encode(key), "target": "MOD", "mod_revision": mod_revision.to_string() });
        self.put_if(key, value, lease, compare).await
    }

    async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
        compare: Value,
    ) -> Result<std::result::Result<(), KeyValue>> {
        let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if let Some(l) = lease {
            put["lease"] = json!(l.0.to_string());
        }
        let body = json!({
            "compare": [compare],
            "success": [{ "request_put": put }],
            "failure": [{ "request_range": { "key": B64.encode(key) } }],
        });
        let (v, _) = self.call("txn", "/v3/kv/txn", &body).await?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            return Ok(Ok(()));
        }
        let current = v
            .get("responses")
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("response_range"))
            .map(|r| first_kv(r, "txn"))
            .transpose()?
            .flatten();
        Ok(Err(current.unwrap_or(KeyValue {
            key: key.to_string(),
            value: Vec::new(),
            lease: None,
            create_revision: 0,
            mod_revision: 0,
        })))
    }

    /// Deletes `key` only while it is at `mod_revision`; whether it did.
    pub async fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool> {
        let body = json!({
            "compare": [{ "key": B64.encode(key), "target": "MOD", "mod_revision": mod_revision.to_string() }],
            "success": [{ "request_delete_range": { "key": B64.encode(key) } }],
            "failure": [],
        });
        let (v, _) = self.call("txn", "/v3/kv/txn", &body).await?;
        Ok(v.get("succeeded").and_then(Value::as_bool) == Some(true))
    }

    /// Each member's own status, asked of it directly (a member that does
    /// not answer within the timeout is left out).
    pub async fn members(&self) -> Vec<MemberStatus> {
        let mut out = Vec::new();
        for endpoint in self.endpoints.iter() {
            let one = Etcd {
                endpoints: Arc::new(vec![endpoint.clone()]),
                http: self.http.clone(),
                timeout: self.timeout,
                preferred: Arc::new(AtomicUsize::new(0)),
            };
            if let Ok((v, _)) = one
                .call("status", "/v3/maintenance/status", &json!({}))
                .await
            {
                let member_id = v
                    .get("header")
                    .and_then(|h| uint(h, "member_id"))
                    .unwrap_or(0);
                out.push(MemberStatus {
                    endpoint: endpoint.clone(),
                    member_id,
                    leader_id: uint(&v, "leader").unwrap_or(0),
                    raft_term: uint(&v, "raftTerm").unwrap_or(0),
                });
            }
        }
        out
    }
}

/// A member that has lost its leader, or is electing one, answers with
/// one of these; another member may answer.
fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "no leader",
        "leader changed",
        "timed out",
        "timeout",
        "unavailable",
        "too many requests",
        "not capable",
    ]
    .iter()
    .any(|s| m.contains(s))
}

fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn malformed(call: &'static str, v: &Value) -> CoordError {
    CoordError::Malformed {
        call,
        message: truncate(&v.to_string()),
    }
}

/// An int64 field, as a JSON string or number.
fn int(v: &Value, field: &str) -> Option<i64> {
    match v.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn uint(v: &Value, field: &str) -> Option<u64> {
    match v.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn kvs(v: &Value, call: &'static str) -> Result<Vec<KeyValue>> {
    let Some(list) = v.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .and_then(|k| B64.decode(k).ok())
                .ok_or_else(|| malformed(call, kv))?;
            let value = match kv.get("value").and_then(Value::as_str) {
                Some(s) => B64.decode(s).map_err(|_| malformed(call, kv))?,
                None => Vec::new(),
            };
            Ok(KeyValue {
                key: String::from_utf8_lossy(&key).into_owned(),
                value,
                lease: int(kv, "lease").filter(|l| *l != 0).map(LeaseId),
                create_revision: int(kv, "create_revision").unwrap_or(0),
                mod_revision: int(kv, "mod_revision").unwrap_or(0),
            })
        })
        .collect()
}

fn first_kv(v: &Value, call: &'static str) -> Result<Option<KeyValue>> {
    Ok(kvs(v, call)?.into_iter().next())
}

/// The end of the range of keys starting with `prefix` (etcd's rule: the
/// prefix with its last byte below 0xff incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"drctl/"), b"drctl0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }

    #[test]
    fn int64_fields_read_as_strings_or_numbers() {
        let v = json!({ "a": "12", "b": 7, "c": "x" });
        assert_eq!(int(&v, "a"), Some(12));
        assert_eq!(int(&v, "b"), Some(7));
        assert_eq!(int(&v, "c"), None);
    }

    #[test]
    fn endpoints_must_be_urls() {
        assert!(Etcd::new(&["10.0.0.1:2379".into()], Duration::from_secs(1)).is_err());
        assert!(Etcd::new(&[], Duration::from_secs(1)).is_err());
        assert!(Etcd::new(&["http://10.0.0.1:2379".into()], Duration::from_secs(1)).is_ok());
    }
}
