//! RFC 2136 dynamic update, signed with TSIG (RFC 8945): BIND, Knot,
//! PowerDNS, and the lab's own zone server (`drctl-lab`).
//!
//! Owns [`Rfc2136Provider`] and the TSIG key material both sides use
//! ([`TsigKeyMaterial`]). An upsert is one update message that deletes the
//! RRset and adds the new values: the server applies a message atomically
//! (RFC 2136 3.4), so no resolver ever sees the name empty. Updates go over
//! TCP (no datagram loss, no ambiguous retransmission); lookups ask the
//! server itself, since it is the source of truth, not a resolver's cache.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use drctl_config::TsigAlgorithm;
use hickory_proto::op::update_message::{self, UpdateMessage};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as WireAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, Record, RecordSet, TSigner};

use crate::wire::{self, record_label, wire_type, ExchangeError};
use crate::{Applied, DnsError, DnsProvider, DnsRecord, RecordType};

/// How long one update or query may take before it counts as lost.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How far apart the clocks of signer and server may be (RFC 8945's
/// recommended 300 s).
pub(crate) const TSIG_FUDGE: u16 = 300;

/// A TSIG key with its secret bytes, for signing (the provider) and
/// verifying (the lab's server). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKeyMaterial {
    /// Absolute, as the server knows it (`drctl-lab.`).
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

impl TsigKeyMaterial {
    /// A fresh random 256-bit key, as `keymgr -t NAME hmac-sha256` makes.
    pub fn generate(name: &str) -> std::io::Result<Self> {
        let mut secret = vec![0u8; 32];
        // The kernel's CSPRNG; the lab and tests run on Linux.
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        Ok(TsigKeyMaterial {
            name: name.to_string(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret,
        })
    }

    /// The secret as BIND and Knot key files write it (standard base64).
    pub fn secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.secret)
    }

    /// The hickory signer of this key; `provider` names who asks, for errors.
    pub fn signer(&self, provider: &str) -> Result<TSigner, DnsError> {
        let config = |reason: String| DnsError::Config {
            provider: provider.to_string(),
            reason,
        };
        let name =
            wire::parse_name(&self.name).map_err(|e| config(format!("tsig key name: {e}")))?;
        TSigner::new(
            self.secret.clone(),
            wire_algorithm(self.algorithm),
            name,
            TSIG_FUDGE,
        )
        .map_err(|e| config(format!("tsig key {}: {e}", self.name)))
    }
}

impl fmt::Debug for TsigKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKeyMaterial")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"***")
            .finish()
    }
}

pub(crate) fn wire_algorithm(algorithm: TsigAlgorithm) -> WireAlgorithm {
    match algorithm {
        TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => WireAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
    }
}

/// Seconds since the epoch, for TSIG's time signed.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The mnemonic of a response code, as dig and the RFCs write it.
pub(crate) fn rcode_name(rcode: ResponseCode) -> String {
    let names = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    let code = u16::from(rcode);
    names
        .get(usize::from(code))
        .map_or_else(|| format!("RCODE {code}"), |n| n.to_string())
}

pub(crate) fn tsig_error_name(error: &TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}").to_uppercase(),
    }
}

/// A zone on an authoritative server that takes dynamic updates.
pub struct Rfc2136Provider {
    name: String,
    server: SocketAddr,
    zone: Name,
    signer: Option<TSigner>,
    timeout: Duration,
}

impl Rfc2136Provider {
    /// `name` is the provider's name in errors; `zone` the zone updates are
    /// addressed to; `key` signs them (`None`: unsigned, which only a
    /// server allowing updates by address accepts).
    pub fn new(
        name: impl Into<String>,
        server: SocketAddr,
        zone: &str,
        key: Option<&TsigKeyMaterial>,
    ) -> Result<Self, DnsError> {
        let name = name.into();
        let zone = wire::parse_name(zone).map_err(|reason| DnsError::Config {
            provider: name.clone(),
            reason: format!("zone: {reason}"),
        })?;
        let signer = key.map(|k| k.signer(&name)).transpose()?;
        Ok(Rfc2136Provider {
            name,
            server,
            zone,
            signer,
            timeout: EXCHANGE_TIMEOUT,
        })
    }

    /// `name` as a domain name inside the zone, or why not.
    fn name_in_zone(&self, name: &str, rtype: RecordType) -> Result<Name, DnsError> {
        let invalid = |reason: String| DnsError::InvalidRecord {
            provider: self.name.clone(),
            record: record_label(name, rtype),
            reason,
        };
        let parsed = wire::parse_name(name).map_err(invalid)?;
        if !self.zone.zone_of(&parsed) {
            return Err(invalid(format!(
                "not inside the zone {}",
                wire::name_text(&self.zone)
            )));
        }
        Ok(parsed)
    }

    /// An update message for the zone that first deletes the RRset.
    fn delete_message(&self, name: &Name, rtype: RecordType) -> Message {
        update_message::delete_rrset(
            Record::update0(name.clone(), 0, wire_type(rtype)),
            self.zone.clone(),
            true,
        )
    }

    /// The RRset as it should be after an upsert of `record`.
    fn new_rrset(&self, name: &Name, record: &DnsRecord, values: &[String]) -> RecordSet {
        let mut rrset = RecordSet::with_ttl(name.clone(), wire_type(record.rtype), record.ttl);
        // Canonical values always parse back: nothing is dropped here.
        for rdata in values
            .iter()
            .filter_map(|v| wire::rdata(record.rtype, v).ok())
        {
            rrset.add_rdata(rdata);
        }
        rrset
    }

    /// Signs and sends an update; `Ok` once the server answered NOERROR
    /// (with a valid signature when signed).
    async fn send_update(&self, mut message: Message, label: &str) -> Result<(), DnsError> {
        let bad = |reason: String| DnsError::BadResponse {
            provider: self.name.clone(),
            record: label.to_string(),
            reason,
        };
        let id = message.metadata.id;
        let mut verifier = match &self.signer {
            Some(signer) => message
                .finalize(signer, unix_now())
                .map_err(|e| bad(format!("cannot sign the update: {e}")))?,
            None => None,
        };
        let request = message
            .to_vec()
            .map_err(|e| bad(format!("cannot encode the update: {e}")))?;
        let answer_bytes = wire::exchange(self.server, &request, id, true, self.timeout)
            .await
            .map_err(|e| self.exchange_error(e, label))?;
        let answer = Message::from_vec(&answer_bytes).map_err(|e| bad(e.to_string()))?;
        if answer.metadata.id != id {
            return Err(bad("the answer is to another request".into()));
        }
        let rcode = answer.metadata.response_code;
        if rcode != ResponseCode::NoError {
            return Err(DnsError::Rejected {
                provider: self.name.clone(),
                record: label.to_string(),
                rcode: rcode_name(rcode),
                tsig_error: answer
                    .signature()
                    .and_then(|s| s.data.error.as_ref())
                    .map(tsig_error_name),
            });
        }
        // A NOERROR that does not verify could be forged: the record would
        // then not be what drctl records as published.
        if let Some(verifier) = verifier.as_mut() {
            if answer.signature().is_none() {
                return Err(bad("the answer to a signed update is not signed".into()));
            }
            verifier
                .verify(&answer_bytes)
                .map_err(|e| bad(format!("the answer's signature does not verify: {e}")))?;
        }
        Ok(())
    }

    fn exchange_error(&self, error: ExchangeError, label: &str) -> DnsError {
        exchange_error(&self.name, self.server, self.timeout, error, label)
    }
}

/// The [`DnsError`] of a failed exchange with `server`.
pub(crate) fn exchange_error(
    provider: &str,
    server: SocketAddr,
    timeout: Duration,
    error: ExchangeError,
    label: &str,
) -> DnsError {
    match error {
        ExchangeError::Timeout => DnsError::Timeout {
            provider: provider.to_string(),
            record: label.to_string(),
            server: server.to_string(),
            after: timeout,
        },
        ExchangeError::Io(reason) => DnsError::Unreachable {
            provider: provider.to_string(),
            record: label.to_string(),
            server: server.to_string(),
            reason,
        },
        ExchangeError::Malformed(reason) => DnsError::BadResponse {
            provider: provider.to_string(),
            record: label.to_string(),
            reason,
        },
    }
}

/// What `server` answers for `name`/`rtype`, asked directly (UDP, TCP when
/// truncated). `provider` names who asks, in errors.
pub(crate) async fn lookup_at(
    provider: &str,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Option<Vec<String>>, DnsError> {
    let label = record_label(name, rtype);
    let qname = wire::parse_name(name).map_err(|reason| DnsError::InvalidRecord {
        provider: provider.to_string(),
        record: label.clone(),
        reason,
    })?;
    let message = wire::query_message(qname.clone(), rtype);
    let bad = |reason: String| DnsError::BadResponse {
        provider: provider.to_string(),
        record: label.clone(),
        reason,
    };
    let request = message.to_vec().map_err(|e| bad(e.to_string()))?;
    let answer = wire::exchange(server, &request, message.metadata.id, false, timeout)
        .await
        .map_err(|e| exchange_error(provider, server, timeout, e, &label))?;
    let answer = Message::from_vec(&answer).map_err(|e| bad(e.to_string()))?;
    wire::answer_values(&answer, &qname, rtype).map_err(|rcode| DnsError::Rejected {
        provider: provider.to_string(),
        record: label.clone(),
        rcode: rcode_name(rcode),
        tsig_error: None,
    })
}

#[async_trait::async_trait]
impl DnsProvider for Rfc2136Provider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn upsert(&self, record: &DnsRecord) -> Result<Applied, DnsError> {
        let started = Instant::now();
        let label = record_label(&record.name, record.rtype);
        let name = self.name_in_zone(&record.name, record.rtype)?;
        let values = crate::publishable_values(&self.name, record)?;
        let mut message = self.delete_message(&name, record.rtype);
        message.add_updates(self.new_rrset(&name, record, &values));
        self.send_update(message, &label).await?;
        Ok(Applied {
            change_id: None,
            took: started.elapsed(),
        })
    }

    async fn upsert_if(
        &self,
        record: &DnsRecord,
        expected: Option<&[String]>,
    ) -> Result<Applied, DnsError> {
        let started = Instant::now();
        let label = record_label(&record.name, record.rtype);
        let name = self.name_in_zone(&record.name, record.rtype)?;
        let values = crate::publishable_values(&self.name, record)?;
        let expected = crate::expected_values(&self.name, record, expected)?;
        let mut message = self.delete_message(&name, record.rtype);
        match &expected {
            // RRset exists (value dependent), RFC 2136 2.4.2: the server
            // compares the whole set, so one RR per expected value.
            Some(old) => {
                for rdata in old.iter().filter_map(|v| wire::rdata(record.rtype, v).ok()) {
                    message.add_pre_requisite(Record::from_rdata(name.clone(), 0, rdata));
                }
            }
            // RRset does not exist, RFC 2136 2.4.3.
            None => {
                let mut absent = Record::update0(name.clone(), 0, wire_type(record.rtype));
                absent.dns_class = DNSClass::NONE;
                message.add_pre_requisite(absent);
            }
        }
        message.add_updates(self.new_rrset(&name, record, &values));
        match self.send_update(message, &label).await {
            Ok(()) => Ok(Applied {
                change_id: None,
                took: started.elapsed(),
            }),
            // The prerequisite failed: already flipped (a resumed step), or
            // someone else's change, which must stand.
            Err(DnsError::Rejected {
                rcode, tsig_error, ..
            }) if tsig_error.is_none() && matches!(rcode.as_str(), "NXRRSET" | "YXRRSET") => {
                let found = self.lookup(&record.name, record.rtype).await?;
                crate::already_applied_or_conflict(
                    &self.name,
                    record,
                    expected.as_deref(),
                    found.as_deref(),
                    &values,
                    started,
                )
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, name: &str, rtype: RecordType) -> Result<(), DnsError> {
        let label = record_label(name, rtype);
        let parsed = self.name_in_zone(name, rtype)?;
        // Deleting an absent RRset is silently ignored by the server
        // (RFC 2136 2.5.2): absent is Ok without a special case.
        self.send_update(self.delete_message(&parsed, rtype), &label)
            .await
    }

    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Option<Vec<String>>, DnsError> {
        lookup_at(&self.name, self.server, name, rtype, self.timeout).await
    }
}
