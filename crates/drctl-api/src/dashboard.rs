//! The dashboard page at `/`: one static HTML page, its script and its
//! stylesheet, compiled into the binary. The page holds no data; its script
//! reads the same `/api/v1` endpoints as everyone else (with the viewer's
//! token when anonymous reads are off), so the page cannot show anything
//! the API would not.
//!
//! Served with a strict Content-Security-Policy: nothing but this origin's
//! own script and stylesheet runs, no inline script, no framing.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::ApiState;

const HTML: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/dashboard.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary brings a new page: never serve yesterday's script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
