//! DNS on the wire: names, record values, and one request/answer exchange
//! over UDP or TCP.
//!
//! Owns the translation between drctl's text values (`"127.0.1.1"`,
//! `"lb.example.com."`) and hickory-proto's types, and the transport. The
//! translation is public for the lab's zone server (`drctl-lab`), which
//! must name and hold records exactly as the providers write them. It
//! does not decide what to send (the RFC 2136 provider and [`crate::query`]
//! do) nor what an answer means for a provider.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType as WireType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::RecordType;

/// What a UDP answer may be at most; 1232 is the DNS flag day 2020 value
/// that avoids IP fragmentation. Bigger answers come back truncated and are
/// asked again over TCP.
pub const EDNS_PAYLOAD: u16 = 1232;

pub fn wire_type(rtype: RecordType) -> WireType {
    match rtype {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Cname => WireType::CNAME,
    }
}

/// `"Orders.Shop.Lab"` → the absolute, lower-case name `orders.shop.lab.`.
pub fn parse_name(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text)
        .map_err(|e| format!("{text:?} is not a domain name: {e}"))?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// A name as drctl writes it: lower case, absolute.
pub fn name_text(name: &Name) -> String {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name.to_ascii()
}

/// The record data of one value of `rtype`.
pub fn rdata(rtype: RecordType, value: &str) -> Result<RData, String> {
    match rtype {
        RecordType::A => value
            .parse::<Ipv4Addr>()
            .map(|ip| RData::A(A(ip)))
            .map_err(|_| format!("{value:?} is not an IPv4 address")),
        RecordType::Aaaa => value
            .parse::<Ipv6Addr>()
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| format!("{value:?} is not an IPv6 address")),
        RecordType::Cname => parse_name(value).map(|n| RData::CNAME(CNAME(n))),
    }
}

/// The text of a value, in the form [`normalize_values`] produces; `None`
/// for record data drctl does not publish.
pub fn value_text(rdata: &RData) -> Option<String> {
    match rdata {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
        RData::CNAME(cname) => Some(name_text(&cname.0)),
        _ => None,
    }
}

/// Values in one canonical form, sorted and without repeats, so that what
/// was written and what is read back compare equal (`2001:DB8::1` and
/// `2001:db8:0::1`, `LB.example.com` and `lb.example.com.`).
pub(crate) fn normalize_values(
    rtype: RecordType,
    values: &[String],
) -> Result<Vec<String>, String> {
    let mut out = values
        .iter()
        .map(|v| rdata(rtype, v).map(|r| value_text(&r).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// `orders.shop.lab. A`, how errors name a record.
pub(crate) fn record_label(name: &str, rtype: RecordType) -> String {
    format!("{name} {}", rtype.as_str())
}

/// A query for `name`/`rtype` in class IN, with EDNS.
pub(crate) fn query_message(name: Name, rtype: RecordType) -> Message {
    let mut message = Message::query();
    let mut query = Query::query(name, wire_type(rtype));
    query.set_query_class(DNSClass::IN);
    message.add_query(query);
    message
        .edns
        .get_or_insert_with(Edns::new)
        .set_max_payload(EDNS_PAYLOAD)
        .set_version(0);
    message
}

/// The values of `rtype` at `name` in an answer: `None` when the name or
/// the type is absent. An error code other than NXDOMAIN is returned as is.
pub(crate) fn answer_values(
    answer: &Message,
    name: &Name,
    rtype: RecordType,
) -> Result<Option<Vec<String>>, ResponseCode> {
    match answer.metadata.response_code {
        ResponseCode::NXDomain => return Ok(None),
        ResponseCode::NoError => {}
        other => return Err(other),
    }
    let mut values: Vec<String> = answer
        .answers
        .iter()
        .filter(|r| r.record_type() == wire_type(rtype) && r.name.to_lowercase() == *name)
        .filter_map(|r| value_text(&r.data))
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    values.sort();
    values.dedup();
    Ok(Some(values))
}

/// Why an exchange produced no answer.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    Timeout,
    Io(String),
    Malformed(String),
}

/// Sends `request` (already encoded, id `id`) and returns the answer's
/// bytes. Over UDP unless `tcp`; a truncated UDP answer is asked again over
/// TCP, as resolvers do. `timeout` bounds the whole exchange.
pub(crate) async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    tcp: bool,
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let work = async {
        if !tcp {
            let answer = exchange_udp(server, request, id).await?;
            if !is_truncated(&answer) {
                return Ok(answer);
            }
        }
        exchange_tcp(server, request).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(ExchangeError::Timeout))
}

/// Bit TC of the header's flags.
fn is_truncated(answer: &[u8]) -> bool {
    answer.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// One datagram out, the first datagram back with the same id. A lost
/// datagram is sent again every second until the caller's timeout.
async fn exchange_udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
) -> Result<Vec<u8>, ExchangeError> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(io_error)?;
    // A connected socket only receives from the server: no spoofed answer
    // from elsewhere is even looked at.
    socket.connect(server).await.map_err(io_error)?;
    let mut buf = vec![0u8; 65_535];
    loop {
        socket.send(request).await.map_err(io_error)?;
        let resend = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(resend);
        loop {
            tokio::select! {
                received = socket.recv(&mut buf) => {
                    let n = received.map_err(io_error)?;
                    if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                        return Ok(buf[..n].to_vec());
                    }
                }
                _ = &mut resend => break,
            }
        }
    }
}

/// One length-prefixed message out and one back (RFC 1035 4.2.2).
async fn exchange_tcp(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let mut stream = TcpStream::connect(server).await.map_err(io_error)?;
    let len = u16::try_from(request.len())
        .map_err(|_| ExchangeError::Malformed("request longer than 65535 bytes".into()))?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await.map_err(io_error)?;
    let len = stream.read_u16().await.map_err(io_error)?;
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.map_err(io_error)?;
    Ok(answer)
}

fn io_error(e: std::io::Error) -> ExchangeError {
    ExchangeError::Io(e.to_string().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_in_one_canonical_form() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            normalize_values(RecordType::Aaaa, &v(&["2001:DB8:0::1", "2001:db8::1"])).unwrap(),
            ["2001:db8::1"]
        );
        assert_eq!(
            normalize_values(RecordType::Cname, &v(&["LB.Example.com"])).unwrap(),
            ["lb.example.com."]
        );
        assert_eq!(
            normalize_values(RecordType::A, &v(&["127.0.2.1", "127.0.1.1"])).unwrap(),
            ["127.0.1.1", "127.0.2.1"]
        );
        assert!(normalize_values(RecordType::A, &v(&["::1"])).is_err());
    }
}
