//! DNS providers of drctl behind one trait, each tested against a real
//! server: Route 53 (`aws-sdk-route53`; moto in tests) and RFC 2136 dynamic
//! update with TSIG (BIND, Knot, PowerDNS; Knot in tests). Production
//! providers only: the lab's authoritative server lives in `drctl-lab`.
//!
//! Owns the [`DnsProvider`] trait the failover engine flips records with,
//! [`provider`] (a config entry to a provider), [`confirm`] (poll until the
//! provider shows what was written) and [`query`] (a plain DNS question to
//! one server). It does not decide *when* to flip or what a record should
//! hold: the engine does, from the config's `[services.dns]`.
//!
//! Modules: `rfc2136` (dynamic update and TSIG keys), `route53`, [`wire`]
//! (names, values, UDP/TCP exchange), `error`.
//!
//! Every provider call takes bounded time (its own timeouts), and every
//! error says whether trying again may help ([`DnsError::is_retryable`]).

mod error;
mod rfc2136;
mod route53;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drctl_config::{DnsProviderConfig, DnsProviderKind};

pub use crate::error::DnsError;
pub use crate::rfc2136::{Rfc2136Provider, TsigKeyMaterial};
pub use crate::route53::{AwsCredentials, Route53Provider};
pub use drctl_config::RecordType;

/// A place records are published. Implementations are idempotent: the same
/// upsert twice leaves the same record, a delete of an absent record is Ok,
/// so a failover step that crashed half-way can simply run again.
#[async_trait::async_trait]
pub trait DnsProvider: Send + Sync {
    /// The provider's configured name, for journals and messages.
    fn name(&self) -> &str;

    /// Sets the record to exactly these values (UPSERT; the same values
    /// again are a no-op) and returns once the provider reports the change
    /// applied (Route 53: `ChangeResourceRecordSets`, then `GetChange` until
    /// INSYNC; RFC 2136: the server answered NOERROR to the signed update).
    async fn upsert(&self, record: &DnsRecord) -> Result<Applied, DnsError>;

    /// Sets the record to these values only if it holds exactly `expected`
    /// now (`None`: only if it is absent): the compare-and-set a failover's
    /// DNS flip needs, so a driver that woke up late can never overwrite a
    /// newer flip. Already holding the new values is Ok (a resumed flip is
    /// a no-op, `change_id: None`); anything else is
    /// [`DnsError::Conflict`] and nothing changes. RFC 2136: one update
    /// with the prerequisite that the RRset is `expected` (RFC 2136 2.4.2,
    /// 2.4.3); Route 53: one change batch that deletes the expected set and
    /// creates the new one, which Route 53 applies whole or not at all.
    async fn upsert_if(
        &self,
        record: &DnsRecord,
        expected: Option<&[String]>,
    ) -> Result<Applied, DnsError>;

    /// Removes the record set (drill cleanup); absent is Ok.
    async fn delete(&self, name: &str, rtype: RecordType) -> Result<(), DnsError>;

    /// What the authoritative source answers now (Route 53: the record set
    /// read back; RFC 2136: a query to the server itself), `None` when
    /// absent. Values in canonical form: IPv6 compressed, names absolute
    /// and lower case, sorted.
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Option<Vec<String>>, DnsError>;
}

/// One record set as drctl publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Absolute (`orders.shop.lab.`); a relative name is taken as absolute.
    pub name: String,
    pub rtype: RecordType,
    /// Seconds.
    pub ttl: u32,
    /// A: IPv4 addresses; AAAA: IPv6; CNAME: one host name.
    pub values: Vec<String>,
}

/// What a provider reported about an applied change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Route 53's change id (`/change/C…`); `None` for RFC 2136, whose
    /// answer is the confirmation.
    pub change_id: Option<String>,
    /// From the first request until the provider reported it applied.
    pub took: Duration,
}

/// The provider a config entry describes. Reads the TSIG secret now (from
/// its file or environment variable), so a missing key fails here, before
/// any record is touched; Route 53 credentials are loaded on first use.
pub fn provider(config: &DnsProviderConfig) -> Result<Arc<dyn DnsProvider>, DnsError> {
    provider_with_credentials(config, None)
}

/// [`provider`], a Route 53 provider signing with `aws` instead of the
/// standard AWS chain when given ([`Route53Provider::with_credentials`]).
pub fn provider_with_credentials(
    config: &DnsProviderConfig,
    aws: Option<AwsCredentials>,
) -> Result<Arc<dyn DnsProvider>, DnsError> {
    match &config.kind {
        DnsProviderKind::Rfc2136 { server, zone, tsig } => {
            let key = tsig
                .as_ref()
                .map(|tsig| {
                    let secret = tsig.secret.resolve_base64().map_err(|e| DnsError::Config {
                        provider: config.name.clone(),
                        reason: format!("tsig key {}: {e}", tsig.name),
                    })?;
                    Ok(TsigKeyMaterial {
                        name: tsig.name.clone(),
                        algorithm: tsig.algorithm,
                        secret,
                    })
                })
                .transpose()?;
            Ok(Arc::new(Rfc2136Provider::new(
                config.name.clone(),
                *server,
                zone,
                key.as_ref(),
            )?))
        }
        DnsProviderKind::Route53 {
            hosted_zone_id,
            endpoint,
            region,
            zone,
        } => {
            let route53 = Route53Provider::new(
                config.name.clone(),
                hosted_zone_id,
                zone.as_deref(),
                endpoint.as_deref(),
                region.as_deref(),
            );
            Ok(Arc::new(match aws {
                Some(keys) => route53.with_credentials(keys),
                None => route53,
            }))
        }
    }
}

/// Polls [`DnsProvider::lookup`] until it returns exactly the record's
/// values (in canonical form), or `timeout` passes. Returns how long it
/// took. Retryable lookup errors are retried until the deadline; others
/// return at once.
pub async fn confirm(
    provider: &dyn DnsProvider,
    record: &DnsRecord,
    timeout: Duration,
) -> Result<Duration, DnsError> {
    let started = Instant::now();
    let label = wire::record_label(&record.name, record.rtype);
    let expected = wire::normalize_values(record.rtype, &record.values).map_err(|reason| {
        DnsError::InvalidRecord {
            provider: provider.name().to_string(),
            record: label.clone(),
            reason,
        }
    })?;
    let mut pause = Duration::from_millis(50);
    loop {
        let found = match provider.lookup(&record.name, record.rtype).await {
            Ok(Some(values)) if values == expected => return Ok(started.elapsed()),
            Ok(Some(values)) => values.join(", "),
            Ok(None) => "absent".to_string(),
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => return Err(e),
        };
        if started.elapsed() + pause > timeout {
            return Err(DnsError::NotConfirmed {
                provider: provider.name().to_string(),
                record: label,
                expected: expected.join(", "),
                found,
                after: started.elapsed(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The record's values in canonical form, refusing an empty set or a value
/// not of the record's type before any request is sent.
pub(crate) fn publishable_values(
    provider: &str,
    record: &DnsRecord,
) -> Result<Vec<String>, DnsError> {
    let invalid = |reason: String| DnsError::InvalidRecord {
        provider: provider.to_string(),
        record: wire::record_label(&record.name, record.rtype),
        reason,
    };
    let values = wire::normalize_values(record.rtype, &record.values).map_err(invalid)?;
    if values.is_empty() {
        return Err(invalid(
            "no values to publish (delete the record instead)".into(),
        ));
    }
    Ok(values)
}

/// `expected` in canonical form (`None` stays `None`: absent), refusing a
/// value not of the record's type before any request is sent.
pub(crate) fn expected_values(
    provider: &str,
    record: &DnsRecord,
    expected: Option<&[String]>,
) -> Result<Option<Vec<String>>, DnsError> {
    expected
        .map(|e| {
            wire::normalize_values(record.rtype, e).map_err(|reason| DnsError::InvalidRecord {
                provider: provider.to_string(),
                record: wire::record_label(&record.name, record.rtype),
                reason: format!("expected value: {reason}"),
            })
        })
        .transpose()
        .map(|e| e.filter(|v| !v.is_empty()))
}

/// The [`DnsError::Conflict`] of a conditional change that found `found`.
pub(crate) fn conflict(
    provider: &str,
    record: &DnsRecord,
    expected: Option<&[String]>,
    found: Option<&[String]>,
) -> DnsError {
    let text = |v: Option<&[String]>| v.map_or("nothing (absent)".to_string(), |v| v.join(", "));
    DnsError::Conflict {
        provider: provider.to_string(),
        record: wire::record_label(&record.name, record.rtype),
        expected: text(expected),
        found: text(found),
    }
}

/// The end of a conditional change whose condition failed: the record
/// already holds `values` (a resumed or concurrent identical flip, done),
/// or someone else's change, which must stand ([`DnsError::Conflict`]).
pub(crate) fn already_applied_or_conflict(
    provider: &str,
    record: &DnsRecord,
    expected: Option<&[String]>,
    found: Option<&[String]>,
    values: &[String],
    started: std::time::Instant,
) -> Result<Applied, DnsError> {
    if found == Some(values) {
        Ok(Applied {
            change_id: None,
            took: started.elapsed(),
        })
    } else {
        Err(conflict(provider, record, expected, found))
    }
}

/// How long [`query`] waits for an answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks `server` for `name`/`rtype` (UDP, TCP when the answer is
/// truncated), as a client of the lab's names or a test would: `None` when
/// the name or type is absent. Only records at `name` itself count (a CNAME
/// answer to an A question is `None` for A).
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Option<Vec<String>>, DnsError> {
    rfc2136::lookup_at(
        &format!("server {server}"),
        server,
        name,
        rtype,
        QUERY_TIMEOUT,
    )
    .await
}
