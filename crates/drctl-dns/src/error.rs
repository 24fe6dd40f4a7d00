//! What can go wrong talking to a DNS provider, and whether trying again
//! can help.
//!
//! Owns [`DnsError`]. Every message names the provider and the record it
//! was about, never a secret (TSIG keys and AWS credentials never reach an
//! error). [`DnsError::is_retryable`] is what the failover engine acts on:
//! a timeout or a throttled API is worth another attempt; a refused update
//! or a bad signature will be refused again, so the operator must act.

use std::time::Duration;

/// A failed DNS operation. `provider` is the provider's configured name (or
/// `server ADDR` for a bare [`crate::query`]); `record` is `NAME TYPE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The provider's configuration cannot work (a TSIG secret that cannot
    /// be read, an unsupported algorithm). Not retryable.
    #[error("dns provider {provider}: {reason}")]
    Config { provider: String, reason: String },
    /// The record itself is wrong for this provider (outside its zone, a
    /// value that is not of its type). Not retryable.
    #[error("dns provider {provider}: {record}: {reason}")]
    InvalidRecord {
        provider: String,
        record: String,
        reason: String,
    },
    /// No answer in time. Retryable.
    #[error("dns provider {provider}: {record}: no answer from {server} within {}", humanize(*after))]
    Timeout {
        provider: String,
        record: String,
        server: String,
        after: Duration,
    },
    /// The server or API could not be reached (connection refused, network
    /// down). Retryable.
    #[error("dns provider {provider}: {record}: cannot reach {server}: {reason}")]
    Unreachable {
        provider: String,
        record: String,
        server: String,
        reason: String,
    },
    /// The DNS server answered with an error code (`REFUSED`, `NOTAUTH`,
    /// `SERVFAIL`…); `tsig_error` is the TSIG error it gave (`BADSIG`,
    /// `BADKEY`, `BADTIME`), if any.
    #[error("dns provider {provider}: {record}: the server answered {rcode}{}{}", tsig_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(), hint_for(rcode, tsig_error.as_deref()))]
    Rejected {
        provider: String,
        record: String,
        rcode: String,
        tsig_error: Option<String>,
    },
    /// The answer could not be trusted or understood (malformed, a signed
    /// request answered unsigned or with a wrong signature). Not retryable:
    /// something between drctl and the server is wrong.
    #[error("dns provider {provider}: {record}: bad answer: {reason}")]
    BadResponse {
        provider: String,
        record: String,
        reason: String,
    },
    /// The Route 53 API refused or failed the request. `code` is its error
    /// code (`Throttling`, `InvalidChangeBatch`…).
    #[error("dns provider {provider}: {record}: {code}: {message}")]
    Api {
        provider: String,
        record: String,
        code: String,
        message: String,
        retryable: bool,
    },
    /// A conditional change found the record holding neither the values it
    /// expected nor the ones it was to write (another operation or a person
    /// changed it since): nothing was changed. Not retryable: a driver
    /// acting on a stale view must not overwrite a newer flip.
    #[error("dns provider {provider}: {record}: holds {found}, not the expected {expected}: left unchanged (another operation or a person changed it; check `drctl operations` before flipping it by hand)")]
    Conflict {
        provider: String,
        record: String,
        expected: String,
        found: String,
    },
    /// The provider did not show the expected values within the time
    /// [`crate::confirm`] was given. Retryable (it may still converge).
    #[error("dns provider {provider}: {record}: still {found} after {}, expected {expected}", humanize(*after))]
    NotConfirmed {
        provider: String,
        record: String,
        expected: String,
        found: String,
        after: Duration,
    },
}

impl DnsError {
    /// Whether the same call may succeed later without anyone changing
    /// anything: timeouts, unreachable servers, `SERVFAIL`, throttling and
    /// 5xx answers. `REFUSED`, `NOTAUTH`, bad signatures, invalid records and
    /// configuration will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            DnsError::Timeout { .. }
            | DnsError::Unreachable { .. }
            | DnsError::NotConfirmed { .. } => true,
            DnsError::Rejected {
                rcode, tsig_error, ..
            } => tsig_error.is_none() && rcode == "SERVFAIL",
            DnsError::Api { retryable, .. } => *retryable,
            DnsError::Config { .. }
            | DnsError::InvalidRecord { .. }
            | DnsError::BadResponse { .. }
            | DnsError::Conflict { .. } => false,
        }
    }
}

/// What an operator should check for the common refusals.
fn hint_for(rcode: &str, tsig_error: Option<&str>) -> &'static str {
    match (rcode, tsig_error) {
        (_, Some("BADKEY")) => "; the server does not know this key name or algorithm",
        (_, Some("BADSIG")) => "; the TSIG secret differs from the server's",
        (_, Some("BADTIME")) => "; the clocks of drctl and the server differ by more than the fudge (300s)",
        ("REFUSED", None) => "; the server's ACL does not allow this update (or the key), or it is not authoritative for the zone",
        ("NOTAUTH", None) => "; the server is not authoritative for the zone, or refused the signature",
        ("NOTZONE", None) => "; the record is not inside the zone",
        _ => "",
    }
}

/// `1s 500ms`, `250ms`: short, for messages; drctl's one formatter for
/// durations shown to people.
fn humanize(d: Duration) -> String {
    drctl_config::format_duration_short(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(rcode: &str, tsig: Option<&str>) -> DnsError {
        DnsError::Rejected {
            provider: "lab-dns".into(),
            record: "orders.shop.lab. A".into(),
            rcode: rcode.into(),
            tsig_error: tsig.map(str::to_string),
        }
    }

    #[test]
    fn refusals_are_final_and_timeouts_are_not() {
        assert!(!rejected("REFUSED", None).is_retryable());
        assert!(!rejected("NOTAUTH", Some("BADSIG")).is_retryable());
        assert!(rejected("SERVFAIL", None).is_retryable());
        let timeout = DnsError::Timeout {
            provider: "lab-dns".into(),
            record: "orders.shop.lab. A".into(),
            server: "127.0.0.1:55353".into(),
            after: Duration::from_millis(1500),
        };
        assert!(timeout.is_retryable());
        assert_eq!(
            timeout.to_string(),
            "dns provider lab-dns: orders.shop.lab. A: no answer from 127.0.0.1:55353 within 1s 500ms"
        );
        assert_eq!(
            rejected("NOTAUTH", Some("BADSIG")).to_string(),
            "dns provider lab-dns: orders.shop.lab. A: the server answered NOTAUTH (BADSIG); \
             the TSIG secret differs from the server's"
        );
    }
}
