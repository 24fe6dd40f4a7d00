//! Who is calling, and may they: bearer tokens from the config, roles, and
//! the audit trail of their use.
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is
//! compared against every configured digest in constant time
//! (`subtle`), so neither the comparison's timing nor a memory dump of the
//! daemon gives a token away. The rule for what each request needs is one
//! function, [`required_role`]: reads need `viewer`, anything that starts
//! work needs `operator`, the audit log needs `admin`; the dashboard page
//! itself, `/healthz` and the OpenAPI document need nothing (they hold no
//! data). A request without a token gets the configured anonymous role; a
//! request with a wrong token is refused, never downgraded to anonymous.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use drctl_config::{ApiConfig, DsnError, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, ApiState};

/// A token's use is written to the audit log at most this often (per token),
/// and a refused token at most this often per client address: the record of
/// who used the API, without one row per request.
const TOKEN_USE_AUDIT_EVERY: Duration = Duration::from_secs(3600);
const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// At most this many client addresses are throttled one by one. A flood
/// from more addresses than that (rotating sources) is audited as one
/// client, `other addresses`: the map stays bounded, and so does the number
/// of audit rows the flood can make operators' writes wait behind.
const THROTTLED_CLIENTS: usize = 1024;

/// The configured tokens, as digests.
pub struct Authenticator {
    tokens: Vec<TokenDigest>,
    anonymous: Option<Role>,
    /// When each token's use was last audited: one key per configured
    /// token, so bounded by the config.
    last_used: Mutex<HashMap<String, Instant>>,
    /// When each client's refusal was last audited, at most
    /// [`THROTTLED_CLIENTS`] keys.
    last_refused: Mutex<RefusalThrottle>,
}

struct TokenDigest {
    name: String,
    role: Role,
    digest: [u8; 32],
}

impl std::fmt::Debug for Authenticator {
    /// Names and roles only: not even the digests are worth printing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "tokens",
                &self
                    .tokens
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.role))
                    .collect::<Vec<_>>(),
            )
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// Why the tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("API token {name:?}: {source}")]
pub struct TokenError {
    pub name: String,
    #[source]
    pub source: DsnError,
}

/// The caller of one request, as the handlers and the audit log see it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name, or `anonymous`.
    pub name: String,
    pub role: Option<Role>,
    /// The client's address (`unknown` when the server was not told).
    pub source: String,
    /// Whether a valid token identified the caller (else anonymous).
    pub authenticated: bool,
}

impl Caller {
    /// How operations record who asked: `api:oncall`.
    pub fn requested_by(&self) -> String {
        format!("api:{}", self.name)
    }

    /// Whether the caller may see what only operators see: a fence hook's
    /// argv (which may carry a cloud credential or an internal address)
    /// and what it printed.
    pub fn sees_fence_hooks(&self) -> bool {
        self.role.is_some_and(|r| r >= Role::Operator)
    }
}

/// Removes fence-hook details from an API body for a caller below
/// operator: a `fence_hook` argv and a fence step's `hook` run become
/// `"redacted"`, and a plan's "run the fence hook …" names no argv. Walks
/// the whole value, so it covers service views and step outputs alike.
pub fn redact_fence_hooks(value: &mut serde_json::Value) {
    use serde_json::Value;
    const PLAN_HOOK: &str = "source unreachable: run the fence hook";
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "fence_hook" | "hook" if !v.is_null() => *v = Value::String("redacted".into()),
                    _ => redact_fence_hooks(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_fence_hooks),
        Value::String(s) if s.starts_with(PLAN_HOOK) => *s = format!("{PLAN_HOOK} (redacted)"),
        _ => {}
    }
}

/// This host's name: where the CLI and the daemon say their own audit rows
/// come from.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Authenticator {
    /// Reads every token's secret (environment variable or file) now, so a
    /// daemon with a missing token fails at start, not at the first call.
    pub fn from_config(api: &ApiConfig) -> Result<Authenticator, TokenError> {
        let tokens = api
            .tokens
            .iter()
            .map(|t| {
                let secret = t.resolve().map_err(|source| TokenError {
                    name: t.name.clone(),
                    source,
                })?;
                Ok(TokenDigest {
                    name: t.name.clone(),
                    role: t.role,
                    digest: digest(secret.expose()),
                })
            })
            .collect::<Result<_, TokenError>>()?;
        Ok(Authenticator {
            tokens,
            anonymous: api.anonymous,
            last_used: Mutex::new(HashMap::new()),
            last_refused: Mutex::default(),
        })
    }

    /// The token's name and role; `None` when it matches no configured
    /// token. Every digest is compared, matched or not, so the time taken
    /// says nothing about which token came close.
    fn lookup(&self, presented: &str) -> Option<(&str, Role)> {
        let presented = digest(presented);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(&presented)) {
                found = Some((t.name.as_str(), t.role));
            }
        }
        found
    }

    /// True when token `name`'s use was not audited within the hour (and
    /// marks it now).
    fn token_use_due(&self, name: &str) -> bool {
        let mut seen = self.last_used.lock().expect("audit throttle lock");
        let now = Instant::now();
        match seen.get(name) {
            Some(at) if now.duration_since(*at) < TOKEN_USE_AUDIT_EVERY => false,
            _ => {
                seen.insert(name.to_string(), now);
                true
            }
        }
    }

    /// Whether a refusal from `source` is due for the audit log, and as
    /// which client (`None`: one was audited within the minute).
    fn refusal_due(&self, source: &str, reason: &'static str) -> Option<String> {
        self.last_refused
            .lock()
            .expect("audit throttle lock")
            .due(source, reason, Instant::now())
    }
}

/// When refusals were last audited, per client address and reason, for at
/// most [`THROTTLED_CLIENTS`] addresses; past that bound, every other
/// address shares one entry per reason.
#[derive(Default)]
struct RefusalThrottle {
    clients: HashMap<(String, &'static str), Instant>,
    others: HashMap<&'static str, Instant>,
}

impl RefusalThrottle {
    fn due(&mut self, source: &str, reason: &'static str, now: Instant) -> Option<String> {
        let key = (source.to_string(), reason);
        if self.clients.len() >= THROTTLED_CLIENTS && !self.clients.contains_key(&key) {
            // Forget the clients whose minute is over before refusing room.
            self.clients
                .retain(|_, at| now.duration_since(*at) < REFUSAL_AUDIT_EVERY);
        }
        let fresh = |at: &Instant| now.duration_since(*at) < REFUSAL_AUDIT_EVERY;
        if self.clients.len() < THROTTLED_CLIENTS || self.clients.contains_key(&key) {
            if self.clients.get(&key).is_some_and(fresh) {
                return None;
            }
            self.clients.insert(key, now);
            return Some(source.to_string());
        }
        // Full of clients refused within the minute: a flood from rotating
        // addresses, audited as one client.
        if self.others.get(reason).is_some_and(fresh) {
            return None;
        }
        self.others.insert(reason, now);
        Some(OTHER_ADDRESSES.to_string())
    }
}

/// The source recorded for refusals beyond [`THROTTLED_CLIENTS`] addresses.
const OTHER_ADDRESSES: &str = "other addresses";

/// What a request needs: `None` for the pages and documents that hold no
/// data, else the least role allowed.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/"
        || path == "/healthz"
        || path == "/api/v1/openapi.json"
        || path.starts_with("/assets/")
    {
        return None;
    }
    if path == "/api/v1/audit" || path.starts_with("/api/v1/audit/") {
        return Some(Role::Admin);
    }
    if method == Method::GET || method == Method::HEAD {
        Some(Role::Viewer)
    } else {
        Some(Role::Operator)
    }
}

/// The middleware: finds the caller, checks the role, and puts the
/// [`Caller`] in the request's extensions for the handlers.
pub async fn authorize(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let needed = required_role(req.method(), req.uri().path());
    let caller = match identify(&state, &req, &source) {
        Ok(caller) => caller,
        Err(e) if needed.is_none() => {
            // A wrong token on an open page is still no reason to refuse
            // the page; it is anonymous there.
            drop(e);
            Caller {
                name: "anonymous".into(),
                role: state.auth.anonymous,
                source,
                authenticated: false,
            }
        }
        Err(e) => {
            audit_refusal(&state, &source, req.uri().path(), "invalid_token");
            return axum::response::IntoResponse::into_response(e);
        }
    };
    if let Some(needed) = needed {
        match caller.role {
            // No token sent: the answer is "send one" (401), whatever the
            // anonymous role; 403 is for a valid token that is not enough.
            Some(role) if role < needed && !caller.authenticated => {
                return axum::response::IntoResponse::into_response(ApiError::Unauthorized(format!(
                    "this endpoint needs a token with the {needed} role: send Authorization: Bearer TOKEN (tokens are configured in [[api.tokens]])"
                )))
            }
            None => {
                return axum::response::IntoResponse::into_response(ApiError::Unauthorized(format!(
                    "this endpoint needs a token with the {needed} role or above: send Authorization: Bearer TOKEN (tokens are configured in [[api.tokens]])"
                )))
            }
            Some(role) if role < needed => {
                audit_refusal(&state, &caller.source, req.uri().path(), "forbidden");
                return axum::response::IntoResponse::into_response(ApiError::Forbidden {
                    caller: caller.name.clone(),
                    role,
                    needed,
                });
            }
            Some(_) => {}
        }
        if caller.authenticated && state.auth.token_use_due(&caller.name) {
            spawn_audit(
                &state,
                &caller,
                "token_used",
                None,
                serde_json::json!({ "first_request": req.uri().path(), "method": req.method().as_str() }),
            );
        }
    }
    // Work starts on the leader only: it alone runs the scheduler and the
    // guard, and resumes what a dead driver left. A follower says where the
    // leader is instead of forwarding (a forwarded request would carry this
    // caller's token to a URL read from the store).
    if needed.is_some_and(|r| r >= Role::Operator)
        && req.method() != Method::GET
        && req.method() != Method::HEAD
        && !state.leadership.is_leader()
    {
        let standing = state.leadership.standing();
        let leader = match standing.leader {
            Some(l) => format!(
                "the leader is {} at {}",
                l.id,
                l.api_url.as_deref().unwrap_or("an unknown address")
            ),
            None => "no daemon leads right now (an election is under way); retry in a few seconds"
                .into(),
        };
        let mut response = axum::response::IntoResponse::into_response(ApiError::NotLeader(format!(
            "this drctl daemon ({}) is a follower and does not start work; {leader} (GET /api/v1/cluster)",
            state.leadership.id()
        )));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn identify(state: &ApiState, req: &Request, source: &str) -> Result<Caller, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(Caller {
            name: "anonymous".into(),
            role: state.auth.anonymous,
            source: source.to_string(),
            authenticated: false,
        });
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be \"Bearer TOKEN\"".into())
        })?;
    let (name, role) = state
        .auth
        .lookup(token)
        .ok_or_else(|| ApiError::Unauthorized("the token is not valid".into()))?;
    Ok(Caller {
        name: name.to_string(),
        role: Some(role),
        source: source.to_string(),
        authenticated: true,
    })
}

/// A refused request, audited at most once a minute per client and reason
/// (a client hammering with a wrong token must not flood the log).
fn audit_refusal(state: &ApiState, source: &str, path: &str, reason: &'static str) {
    let Some(source) = state.auth.refusal_due(source, reason) else {
        return;
    };
    let caller = Caller {
        name: "anonymous".into(),
        role: None,
        source,
        authenticated: false,
    };
    spawn_audit(
        state,
        &caller,
        "request_refused",
        None,
        serde_json::json!({ "reason": reason, "path": path }),
    );
}

fn spawn_audit(
    state: &ApiState,
    caller: &Caller,
    action: &'static str,
    target: Option<String>,
    detail: serde_json::Value,
) {
    let store = state.store.clone();
    let entry = audit_entry(caller, action, target, detail);
    tokio::spawn(async move {
        if let Err(e) = store.append_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
    });
}

pub(crate) fn audit_entry(
    caller: &Caller,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) -> drctl_store::NewAudit {
    drctl_store::NewAudit {
        actor: caller.name.clone(),
        role: caller.role.map(|r| r.as_str().to_string()),
        source: caller.source.clone(),
        action: action.to_string(),
        target,
        detail,
    }
}

/// Records a mutation before it starts; a mutation that cannot be audited
/// does not happen (503 `store_unavailable`).
pub(crate) async fn audit(
    state: &ApiState,
    caller: &Caller,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&audit_entry(caller, action, target, detail))
        .await?;
    Ok(())
}
