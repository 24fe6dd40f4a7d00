//! TLS for the server: a certificate and key into a rustls acceptor, with
//! or without client certificates verified against a CA, and the verified
//! client's [`PeerIdentity`]. Paths only in errors: a key's content is
//! never shown.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Who owns the files and which settings name them, for error messages
/// that point at the right knob (`[api] tls_cert` for the API, `--cert`
/// for the agent).
#[derive(Clone, Copy, Debug)]
pub struct TlsNames {
    /// Whose certificate: "the API's", "the agent's".
    pub owner: &'static str,
    /// The setting that names the certificate: "[api] tls_cert".
    pub cert: &'static str,
    /// The setting that names the key: "[api] tls_key".
    pub key: &'static str,
    /// Both, as a fix names them: "[api] tls_cert and tls_key".
    pub both: &'static str,
    /// The setting that names the CA of client certificates: "--ca".
    pub client_ca: &'static str,
}

/// Why a certificate, key or CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {owner} TLS {what} {path}: {source} (check {setting})")]
    Read {
        owner: &'static str,
        what: &'static str,
        setting: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (check {setting}: a \"-----BEGIN CERTIFICATE-----\" block is expected)")]
    NoCertificate { path: String, setting: &'static str },
    #[error("{path} holds no usable PEM private key (check {setting}: PKCS#8, PKCS#1 or SEC1, unencrypted)")]
    NoKey { path: String, setting: &'static str },
    #[error("{owner} certificate {cert} does not go with its key {key}: {reason} (check {both})")]
    Mismatch {
        owner: &'static str,
        cert: String,
        key: String,
        both: &'static str,
        reason: String,
    },
    #[error("the client CA {path} cannot verify client certificates: {reason} (check {setting}: the CA certificate that signed the clients')")]
    ClientCa {
        path: String,
        setting: &'static str,
        reason: String,
    },
}

/// The verified client certificate of a connection (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name (CN), when it has one.
    pub common_name: Option<String>,
    /// SHA-256 of the certificate (DER), lower-case hex: what a log can
    /// name without the certificate itself.
    pub sha256: String,
}

impl PeerIdentity {
    /// The identity of `cert` (a certificate in DER).
    pub fn of(cert: &[u8]) -> PeerIdentity {
        let common_name = x509_parser::parse_x509_certificate(cert)
            .ok()
            .and_then(|(_, c)| {
                c.subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_string)
            });
        PeerIdentity {
            common_name,
            sha256: hex::encode(Sha256::digest(cert)),
        }
    }

    /// The CN, else the start of the fingerprint: for logs.
    pub fn display_name(&self) -> String {
        self.common_name
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", &self.sha256[..16.min(self.sha256.len())]))
    }
}

fn read(
    path: &Path,
    what: &'static str,
    setting: &'static str,
    names: &TlsNames,
) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        owner: names.owner,
        what,
        setting,
        path: path.display().to_string(),
        source,
    })
}

fn certificates(
    path: &Path,
    what: &'static str,
    setting: &'static str,
    names: &TlsNames,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what, setting, names)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
            setting,
        });
    }
    Ok(chain)
}

fn private_key(path: &Path, names: &TlsNames) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "key", names.key, names)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: path.display().to_string(),
        setting: names.key,
    })
}

/// The provider is named, not left to rustls' crate features: the AWS SDK
/// brings aws-lc-rs into the tree too, and with two providers compiled in,
/// rustls will not pick one by itself.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server TLS acceptor from the certificate chain at `cert` and the key
/// at `key` (TLS 1.2 and 1.3, ring's algorithms, HTTP/1.1 over ALPN); no
/// client certificates.
pub fn tls_acceptor(cert: &Path, key: &Path, names: &TlsNames) -> Result<TlsAcceptor, TlsError> {
    acceptor(cert, key, None, names)
}

/// As [`tls_acceptor`], also asking every client for a certificate signed
/// by the CA at `client_ca` and made for client authentication. A client
/// without one is let through the handshake (the router refuses it with a
/// JSON 401); any other certificate ends the handshake.
pub fn mtls_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    names: &TlsNames,
) -> Result<TlsAcceptor, TlsError> {
    acceptor(cert, key, Some(client_ca), names)
}

fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    names: &TlsNames,
) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(cert, "certificate", names.cert, names)?;
    let private = private_key(key, names)?;
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        owner: names.owner,
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        both: names.both,
        reason: e.to_string(),
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_error = |reason: String| TlsError::ClientCa {
                path: ca.display().to_string(),
                setting: names.client_ca,
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca, "client CA", names.client_ca, names)? {
                roots.add(c).map_err(|e| ca_error(e.to_string()))?;
            }
            // webpki checks the chain, the validity period and the
            // clientAuth EKU (a server certificate of the same CA with
            // only serverAuth is refused).
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private).map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: TlsNames = TlsNames {
        owner: "the agent's",
        cert: "--cert",
        key: "--key",
        both: "--cert and --key",
        client_ca: "--ca",
    };

    #[test]
    fn a_peer_identity_is_the_subject_cn_and_the_fingerprint() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "drctl");
        let cert = params.self_signed(&key).unwrap();
        let id = PeerIdentity::of(cert.der());
        assert_eq!(id.common_name.as_deref(), Some("drctl"));
        assert_eq!(id.sha256.len(), 64);
        assert_eq!(id.display_name(), "drctl");
        let garbage = PeerIdentity::of(b"not a certificate");
        assert_eq!(garbage.common_name, None);
        assert!(garbage.display_name().starts_with("sha256:"));
    }

    #[test]
    fn unreadable_files_are_named_with_the_setting_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = mtls_acceptor(&missing, &missing, &missing, &NAMES)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.pem") && e.contains("--cert"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = tls_acceptor(&empty, &empty, &NAMES)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("no PEM certificate") && e.contains("--cert"),
            "{e}"
        );
    }
}
