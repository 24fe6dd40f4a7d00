//! A test client of the drctl API: the same typed calls over the real router
//! in-process (`tower::ServiceExt::oneshot`) or over HTTP to a running
//! daemon (reqwest), with the bearer token, the JSON body decoded, and the
//! stable error code (`{"error": {"code": …}}`) at hand.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use drctl_api::{router, ApiState};
use drctl_config::Config;
use drctl_monitor::Monitor;
use drctl_store::Store;
use serde_json::Value;
use tower::ServiceExt;

/// The real router over `config` and its (real, SQLite) state store.
pub async fn in_process_router(config: Config) -> (axum::Router, Store) {
    let (state, store) = in_process_state(config).await;
    (router(state), store)
}

/// The real router over `config` and a store the test already holds.
pub fn router_over(config: Arc<Config>, store: Store) -> axum::Router {
    router(state_over(config, store))
}

/// The API's state over `config` and a store the test already holds (to
/// serve it over HTTP, or keep it beside the router).
pub fn state_over(config: Arc<Config>, store: Store) -> ApiState {
    ApiState::new(Monitor::new(config, store)).expect("the API's tokens load")
}

/// The API's state over `config`, and its state store, for tests that keep
/// the state (reports in flight, limits) beside the router.
pub async fn in_process_state(config: Config) -> (ApiState, Store) {
    let store = Store::open(config.store.url.expose())
        .await
        .expect("the test's state store opens");
    (state_over(Arc::new(config), store.clone()), store)
}

/// One answer of the API.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics naming the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    /// The body as JSON, `Null` when it is not JSON.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The stable error code of an error answer.
    pub fn error_code(&self) -> Option<String> {
        self.json_or_null()["error"]["code"]
            .as_str()
            .map(str::to_string)
    }

    pub fn header(&self, name: header::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header").to_string())
    }
}

enum Transport {
    Router(axum::Router),
    Http {
        base: String,
        client: reqwest::Client,
    },
}

/// Calls the API the way a client would; see the module doc.
pub struct ApiClient {
    transport: Transport,
    authorization: Option<String>,
}

impl ApiClient {
    /// Over the router, in-process.
    pub fn router(router: axum::Router) -> ApiClient {
        ApiClient {
            transport: Transport::Router(router),
            authorization: None,
        }
    }

    /// Over HTTP to `base` (`http://127.0.0.1:PORT`).
    pub fn http(base: &str) -> ApiClient {
        ApiClient {
            transport: Transport::Http {
                base: base.trim_end_matches('/').to_string(),
                client: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(60))
                    .build()
                    .expect("an HTTP client"),
            },
            authorization: None,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` from now on.
    pub fn with_token(self, token: &str) -> ApiClient {
        self.with_authorization(Some(format!("Bearer {token}")))
    }

    /// Sends this `Authorization` header as it is (`None`: none).
    pub fn with_authorization(mut self, value: Option<String>) -> ApiClient {
        self.authorization = value;
        self
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.request(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Option<Value>) -> Reply {
        self.request(Method::POST, uri, body).await
    }

    /// `GET`, expecting 200 and JSON.
    pub async fn get_ok(&self, uri: &str) -> Value {
        let reply = self.get(uri).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {uri}: {}", reply.body);
        reply.json()
    }

    /// One service's figures in `/api/v1/rpo-rto`; panics naming the
    /// service and the answer when it is missing.
    pub async fn service_figures(&self, service: &str) -> Value {
        let report = self.get_ok("/api/v1/rpo-rto").await;
        report["services"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["service"] == service).cloned())
            .unwrap_or_else(|| panic!("{service} missing from /api/v1/rpo-rto: {report}"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "GET /metrics: {}", reply.body);
        reply.body
    }

    pub async fn request(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        match &self.transport {
            Transport::Router(router) => {
                let mut req = Request::builder().method(method).uri(uri);
                if let Some(a) = &self.authorization {
                    req = req.header(header::AUTHORIZATION, a);
                }
                let req = match body {
                    Some(b) => req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(b.to_string())),
                    None => req.body(Body::empty()),
                }
                .expect("a request");
                let response = router
                    .clone()
                    .oneshot(req)
                    .await
                    .expect("the router answers");
                let (parts, body) = response.into_parts();
                let bytes = axum::body::to_bytes(body, 16 << 20)
                    .await
                    .expect("the body");
                Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                }
            }
            Transport::Http { base, client } => {
                let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
                    .expect("an HTTP method");
                let mut req = client.request(method, format!("{base}{uri}"));
                if let Some(a) = &self.authorization {
                    req = req.header(reqwest::header::AUTHORIZATION, a);
                }
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let response = req
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{base}{uri}: {e}"));
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                let mut headers = HeaderMap::new();
                for (k, v) in response.headers() {
                    if let (Ok(k), Ok(v)) = (
                        header::HeaderName::from_bytes(k.as_str().as_bytes()),
                        header::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        headers.append(k, v);
                    }
                }
                let body = response.text().await.expect("the body");
                Reply {
                    status,
                    headers,
                    body,
                }
            }
        }
    }
}
