//! The HTTP server under drctl's API (`drctl serve`) and its node agent
//! (`drctl agent serve`): how connections are taken and kept, never what a
//! request gets (that is the router's business).
//!
//! - [`serve`]: the accept loop and its [`Limits`] (connections at once,
//!   header-read and TLS-handshake timeouts, graceful shutdown);
//! - [`tls_acceptor`]: server TLS from a certificate and key (rustls with
//!   the ring provider);
//! - [`mtls_acceptor`]: the same, also asking for a client certificate
//!   verified against a CA. A client that sends none still completes the
//!   handshake, so the router can answer it with a JSON 401; a certificate
//!   from another CA, or one not made for client authentication (no
//!   clientAuth EKU), ends the handshake. The verified certificate's
//!   [`PeerIdentity`] is in every request's extensions as
//!   `Option<PeerIdentity>` (`None` without a client certificate or TLS).
//!
//! Dependencies: none of drctl's crates; the API and the agent sit above.

mod serve;
mod tls;

pub use serve::{serve, Limits, LocalAddr};
pub use tls::{mtls_acceptor, tls_acceptor, PeerIdentity, TlsError, TlsNames};
pub use tokio_rustls::TlsAcceptor;
