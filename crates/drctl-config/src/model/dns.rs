//! The validated `[[dns_providers]]` and `[services.dns]`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::sources::{read_env, read_file, DsnError};
use crate::secret::Secret;

/// Where service records are published and flipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsProviderConfig {
    /// `[a-z0-9-]+`, unique; what `[services.dns] provider` names.
    pub name: String,
    /// Flattened, like object stores: `{"name": …, "kind": "rfc2136", …}`.
    #[serde(flatten)]
    pub kind: DnsProviderKind,
}

impl DnsProviderConfig {
    /// The zone records must be inside, when the config says (always for
    /// RFC 2136; optional for Route 53, whose hosted zone id decides).
    pub fn zone(&self) -> Option<&str> {
        match &self.kind {
            DnsProviderKind::Route53 { zone, .. } => zone.as_deref(),
            DnsProviderKind::Rfc2136 { zone, .. } => Some(zone),
        }
    }
}

/// The kind of a DNS provider and how to reach it. Domain names here are
/// lower case and absolute (`shop.example.com.`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DnsProviderKind {
    /// Amazon Route 53 (or a compatible API: moto, LocalStack). Credentials
    /// come from the standard AWS chain, never from the config.
    Route53 {
        /// `Z…`, without any `/hostedzone/` prefix.
        hosted_zone_id: String,
        /// `http://…` or `https://…`; `None` for AWS itself.
        endpoint: Option<String>,
        /// The API's signing region; `None`: the AWS chain's, else us-east-1.
        region: Option<String>,
        /// The hosted zone's name, when written: records are then checked to
        /// be inside it at load time.
        zone: Option<String>,
    },
    /// RFC 2136 dynamic update to an authoritative server (BIND, Knot,
    /// PowerDNS, the lab's own).
    Rfc2136 {
        /// The primary authoritative server, which takes updates.
        server: SocketAddr,
        zone: String,
        /// How updates are signed; `None`: unsigned (the server must allow
        /// updates by address, which is only sane in a lab).
        tsig: Option<TsigKey>,
    },
}

/// A TSIG key (RFC 8945) signing dynamic updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TsigKey {
    /// The key's name as the server knows it, absolute (`drctl-lab.`).
    pub name: String,
    pub algorithm: TsigAlgorithm,
    /// Where the base64 secret comes from; read only when needed.
    pub secret: TsigSecret,
}

/// The HMAC a TSIG key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn all() -> [TsigAlgorithm; 3] {
        [
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ]
    }

    /// As BIND and Knot write it: `hmac-sha256`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a TSIG secret comes from: the base64 text of BIND's and Knot's key
/// files (`secret "…"`). Unlike [`KeySource`] it may be written inline (a
/// lab's throwaway key), and it is base64, checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TsigSecret {
    /// Written in the config; always shown as `***`.
    Inline(Secret),
    /// The name of an environment variable holding the base64 secret.
    Env(String),
    /// A file holding the base64 secret (resolved against the config's
    /// directory); surrounding whitespace is trimmed.
    File(PathBuf),
}

impl TsigSecret {
    /// The key bytes, reading the environment variable or file now and
    /// decoding the base64. Errors name the variable or file, never the value.
    pub fn resolve_base64(&self) -> Result<Vec<u8>, DsnError> {
        let (text, origin) = match self {
            TsigSecret::Inline(secret) => (secret.clone(), "the config".to_string()),
            TsigSecret::Env(var) => (
                read_env(
                    var,
                    |var| DsnError::TsigEnvNotSet { var },
                    |var| DsnError::TsigEnvEmpty { var },
                )?,
                format!("environment variable {var}"),
            ),
            TsigSecret::File(path) => (
                read_file(
                    path,
                    |path, reason| DsnError::TsigFileUnreadable { path, reason },
                    |path| DsnError::TsigFileEmpty { path },
                )?,
                format!("file {}", path.display()),
            ),
        };
        decode_base64(text.expose()).ok_or(DsnError::TsigNotBase64 { origin })
    }
}

/// Standard base64 (padding optional), as `tsig-keygen`, `keymgr` and
/// `dnssec-keygen` write it. `None` when it is not, or decodes to nothing.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text.trim()).ok().filter(|b| !b.is_empty())
}

/// How a service is published in DNS: `[services.dns]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDns {
    /// The name of one of [`Config::dns_providers`].
    pub provider: String,
    /// Absolute, lower case, inside the provider's zone when that is known.
    pub record: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// Whole seconds, 1s..=1d: the longest a resolver keeps
    /// the old answer after a flip, so it bounds the measured RTO.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub ttl: Duration,
    /// What drills flip instead of `record` (default: the first label with
    /// `-drill`, `orders-drill.shop.example.com.`); never `record` itself.
    pub drill_record: String,
    /// The record's value per region: one for every region of the service.
    /// A → IPv4 address, AAAA → IPv6 address, CNAME → an absolute host name.
    pub targets: BTreeMap<String, String>,
}

impl ServiceDns {
    /// What the record holds while `region` is primary.
    pub fn target(&self, region: &str) -> Option<&str> {
        self.targets.get(region).map(String::as_str)
    }
}

/// The record types a service can be published as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
}

impl RecordType {
    pub fn all() -> [RecordType; 3] {
        [RecordType::A, RecordType::Aaaa, RecordType::Cname]
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = String;
    /// Case-insensitive, as DNS tools accept it (`a`, `Aaaa`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordType::all()
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not one of A, AAAA, CNAME"))
    }
}
