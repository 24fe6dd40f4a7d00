//! The HTTP server under the API: drctl-http's accept loop, its limits and
//! TLS (shared with the agent), and the API's own TLS settings (`[api]
//! tls_cert`/`tls_key`), which name the files in its errors. What a request
//! gets is the router's business, not this module's.

use drctl_config::ApiTls;

pub use drctl_http::{serve, Limits, TlsAcceptor, TlsError};

/// The API's settings, as its TLS errors name them.
const API_TLS: drctl_http::TlsNames = drctl_http::TlsNames {
    owner: "the API's",
    cert: "[api] tls_cert",
    key: "[api] tls_key",
    both: "[api] tls_cert and tls_key",
    client_ca: "[api]",
};

/// Reads the certificate chain and key of `[api]` into a TLS acceptor
/// (TLS 1.2 and 1.3, ring's algorithms, HTTP/1.1 over ALPN).
pub fn tls_acceptor(tls: &ApiTls) -> Result<TlsAcceptor, TlsError> {
    drctl_http::tls_acceptor(&tls.cert, &tls.key, &API_TLS)
}
