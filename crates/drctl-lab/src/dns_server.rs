//! A small authoritative DNS server for one zone, held in memory: the lab's
//! DNS, which drctl flips like any RFC 2136 server.
//!
//! Owns [`ZoneServer`]: UDP and TCP on one address; answers A, AAAA, CNAME,
//! SOA and NS (and whatever else an update added) for its zone, REFUSED for
//! names outside it; applies RFC 2136 updates only when signed with its
//! TSIG key (NOTAUTH with BADKEY/BADSIG/BADTIME for a wrong signature,
//! REFUSED for an unsigned update or when it has no key). It is not a
//! general DNS server: no recursion, no zone transfer, no DNSSEC, no
//! wildcards, and its zone lives only as long as the process.
//!
//! Being authoritative and TSIG-checking for real is the point: the lab and
//! the tests exercise the same RFC 2136 provider code that flips BIND or
//! Knot in production, signatures included. It lives in the lab, not in
//! `drctl-dns` (the production providers), which lends it only its wire
//! helpers and the TSIG key type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{
    DNSClass, Name, RData, Record, RecordType as WireType, TSigResponseContext, TSigner,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use drctl_dns::wire::{self, EDNS_PAYLOAD};
use drctl_dns::{RecordType, TsigKeyMaterial};

/// TTL of the synthesized SOA and NS records, and the SOA's minimum (how
/// long resolvers cache "no such name"): short, because the lab's names
/// change during failovers.
const APEX_TTL: u32 = 30;
/// What a UDP answer may be without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;

/// An authoritative server for one zone; stops when dropped.
pub struct ZoneServer {
    addr: SocketAddr,
    zone: Arc<Zone>,
    tasks: Vec<JoinHandle<()>>,
}

/// The zone and its key, shared by the UDP and TCP tasks.
struct Zone {
    origin: Name,
    signer: Option<TSigner>,
    data: Mutex<ZoneData>,
}

/// The zone's records, SOA and NS aside (they are synthesized at the apex).
#[derive(Clone, Default)]
struct ZoneData {
    /// Bumped by every update that changed something; starts at 1.
    serial: u32,
    /// (lower-case absolute name, type) → RRset.
    rrsets: BTreeMap<(String, u16), RrSet>,
}

#[derive(Clone, PartialEq)]
struct RrSet {
    ttl: u32,
    rdatas: Vec<RData>,
}

impl ZoneServer {
    /// Serves `zone` on `listen` (UDP and TCP; port 0 picks a free one).
    /// With `key`, updates signed by it are applied; without, every update
    /// is refused.
    pub async fn start(
        listen: SocketAddr,
        zone: &str,
        key: Option<&TsigKeyMaterial>,
    ) -> std::io::Result<ZoneServer> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let origin = wire::parse_name(zone).map_err(invalid)?;
        let signer = key
            .map(|k| k.signer("zone server").map_err(|e| invalid(e.to_string())))
            .transpose()?;
        let (udp, tcp) = bind_both(listen).await?;
        let addr = udp.local_addr()?;
        let zone = Arc::new(Zone {
            origin,
            signer,
            data: Mutex::new(ZoneData {
                serial: 1,
                rrsets: BTreeMap::new(),
            }),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, zone.clone())),
            tokio::spawn(serve_tcp(tcp, zone.clone())),
        ];
        Ok(ZoneServer { addr, zone, tasks })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The zone, absolute (`shop.lab.`).
    pub fn zone(&self) -> String {
        wire::name_text(&self.zone.origin)
    }

    /// The SOA serial: 1, plus one for each update that changed the zone.
    pub fn serial(&self) -> u32 {
        self.zone.lock().serial
    }

    /// Sets a record directly (the lab seeds its zone this way), replacing
    /// the RRset. Errors say which value or name is wrong.
    pub fn set(
        &self,
        name: &str,
        rtype: RecordType,
        ttl: u32,
        values: &[String],
    ) -> Result<(), String> {
        let owner = wire::parse_name(name)?;
        if !self.zone.origin.zone_of(&owner) {
            return Err(format!("{name} is not inside the zone {}", self.zone()));
        }
        let rdatas = values
            .iter()
            .map(|v| wire::rdata(rtype, v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut data = self.zone.lock();
        data.rrsets.insert(
            (wire::name_text(&owner), u16::from(wire::wire_type(rtype))),
            RrSet { ttl, rdatas },
        );
        data.serial += 1;
        Ok(())
    }

    /// The values the zone holds for `name`/`rtype` now, as the server
    /// would answer them (`None` when absent).
    pub fn get(&self, name: &str, rtype: RecordType) -> Option<Vec<String>> {
        let owner = wire::parse_name(name).ok()?;
        let data = self.zone.lock();
        let set = data
            .rrsets
            .get(&(wire::name_text(&owner), u16::from(wire::wire_type(rtype))))?;
        let mut values: Vec<String> = set.rdatas.iter().filter_map(wire::value_text).collect();
        values.sort();
        Some(values)
    }
}

impl Drop for ZoneServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP socket and a TCP listener on the same address. With port 0 the
/// UDP port is picked first and TCP tries it; another process may hold
/// that TCP port, so a few picks are tried.
async fn bind_both(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut attempts = if listen.port() == 0 { 10 } else { 1 };
    loop {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if attempts <= 1 => return Err(e),
            Err(_) => attempts -= 1,
        }
    }
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(answer) = zone.handle(&buf[..n], true) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>) {
    // Connections are tasks of this set: aborting the listener's task drops
    // the set, which aborts them too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, zone.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2) until the client closes.
async fn serve_connection(mut stream: TcpStream, zone: Arc<Zone>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut request = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let Some(answer) = zone.handle(&request, false) else {
            continue;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

impl Zone {
    fn lock(&self) -> std::sync::MutexGuard<'_, ZoneData> {
        // A panic while holding the lock cannot leave the map half-updated
        // (updates are applied to a copy and swapped in), so poison is moot.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The encoded answer to one request; `None` when nothing should be
    /// sent back (an answer, or bytes too short to carry an id).
    fn handle(&self, request: &[u8], udp: bool) -> Option<Vec<u8>> {
        let message = match Message::from_vec(request) {
            Ok(m) => m,
            Err(_) if request.len() >= 2 => {
                let id = u16::from_be_bytes([request[0], request[1]]);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
            Err(_) => return None,
        };
        if message.metadata.message_type != MessageType::Query {
            return None;
        }
        let answer = match message.metadata.op_code {
            OpCode::Query => {
                let answer = self.answer_query(&message);
                let limit = if udp {
                    message
                        .edns
                        .as_ref()
                        .map_or(PLAIN_UDP_PAYLOAD, |e| usize::from(e.max_payload().max(512)))
                } else {
                    usize::MAX
                };
                return fit(answer, limit);
            }
            OpCode::Update => self.apply_update(&message, request),
            op => error(&message, op, ResponseCode::NotImp)
                .to_vec()
                .map_err(|e| e.to_string()),
        };
        answer.ok()
    }

    fn answer_query(&self, request: &Message) -> Message {
        let mut response = error(request, OpCode::Query, ResponseCode::NoError);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        if request.edns.is_some() {
            response
                .edns
                .get_or_insert_with(Edns::new)
                .set_max_payload(EDNS_PAYLOAD)
                .set_version(0);
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        let qname = query.name().to_lowercase();
        if query.query_class() != DNSClass::IN || !self.origin.zone_of(&qname) {
            response.metadata.response_code = ResponseCode::Refused;
            return response;
        }
        response.metadata.authoritative = true;
        let data = self.lock();
        let qtype = query.query_type();
        let mut answers = self.records(&data, &qname, qtype);
        if answers.is_empty() && qtype != WireType::CNAME {
            answers = self.records(&data, &qname, WireType::CNAME);
        }
        if answers.is_empty() {
            if !self.name_exists(&data, &qname) {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            response.add_authorities(self.records(&data, &self.origin, WireType::SOA));
        }
        response.add_answers(answers);
        response
    }

    /// The records of `name`/`rtype` (`ANY`: every type), the apex's SOA
    /// and NS included.
    fn records(&self, data: &ZoneData, name: &Name, rtype: WireType) -> Vec<Record> {
        let text = wire::name_text(name);
        let mut out: Vec<Record> = data
            .rrsets
            .range((text.clone(), 0)..=(text, u16::MAX))
            .filter(|((_, t), _)| rtype == WireType::ANY || *t == u16::from(rtype))
            .flat_map(|(_, set)| {
                set.rdatas
                    .iter()
                    .map(|rdata| Record::from_rdata(name.clone(), set.ttl, rdata.clone()))
            })
            .collect();
        if *name == self.origin {
            if matches!(rtype, WireType::SOA | WireType::ANY) {
                out.push(Record::from_rdata(
                    name.clone(),
                    APEX_TTL,
                    self.soa(data.serial),
                ));
            }
            if matches!(rtype, WireType::NS | WireType::ANY) {
                out.push(Record::from_rdata(name.clone(), APEX_TTL, self.ns()));
            }
        }
        out
    }

    fn ns_name(&self) -> Name {
        Name::from_ascii("ns")
            .and_then(|ns| ns.append_domain(&self.origin))
            .unwrap_or_else(|_| self.origin.clone())
    }

    fn soa(&self, serial: u32) -> RData {
        let rname = Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(&self.origin))
            .unwrap_or_else(|_| self.origin.clone());
        RData::SOA(SOA::new(
            self.ns_name(),
            rname,
            serial,
            3600,
            600,
            86_400,
            APEX_TTL,
        ))
    }

    fn ns(&self) -> RData {
        RData::NS(NS(self.ns_name()))
    }

    /// Whether `name` owns records or is an empty non-terminal (has names
    /// below it): NODATA then, not NXDOMAIN.
    fn name_exists(&self, data: &ZoneData, name: &Name) -> bool {
        if *name == self.origin {
            return true;
        }
        let text = wire::name_text(name);
        let below = format!(".{text}");
        data.rrsets
            .keys()
            .any(|(owner, _)| *owner == text || owner.ends_with(&below))
    }

    /// Checks the signature, applies the update, and signs the answer.
    fn apply_update(&self, request: &Message, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let id = request.metadata.id;
        let now = unix_now();
        let refuse = |why: &str| {
            tracing::warn!(zone = %self.origin, "dns update refused: {why}");
            error(request, OpCode::Update, ResponseCode::Refused)
                .to_vec()
                .map_err(|e| e.to_string())
        };
        let Some(signer) = &self.signer else {
            return refuse("this server takes no updates (no key)");
        };
        let Some(signature) = request.signature() else {
            return refuse("unsigned");
        };
        let context = if signature.name.to_lowercase() != signer.signer_name().to_lowercase()
            || signature.data.algorithm != *signer.algorithm()
        {
            tracing::warn!(zone = %self.origin, key = %signature.name, "dns update with an unknown key");
            Err(TSigResponseContext::unknown_key(
                id,
                now,
                signature.name.clone(),
            ))
        } else {
            match signer.verify_message_byte(bytes, None, true) {
                Err(_) => {
                    tracing::warn!(zone = %self.origin, "dns update with a bad signature");
                    Err(TSigResponseContext::bad_signature(id, now, signer.clone()))
                }
                Ok((mac, _, valid)) if !valid.contains(&now) => {
                    tracing::warn!(zone = %self.origin, "dns update signed at a time too far from now");
                    Err(TSigResponseContext::new(
                        id,
                        now,
                        signer.clone(),
                        mac,
                        Some(TsigError::BadTime),
                    ))
                }
                Ok((mac, _, _)) => Ok(TSigResponseContext::new(id, now, signer.clone(), mac, None)),
            }
        };
        let (rcode, context) = match context {
            Ok(context) => (self.apply(request), context),
            Err(context) => (ResponseCode::NotAuth, context),
        };
        let mut response = error(request, OpCode::Update, rcode);
        let unsigned = response.to_vec().map_err(|e| e.to_string())?;
        response.set_signature(context.sign(&unsigned).map_err(|e| e.to_string())?);
        response.to_vec().map_err(|e| e.to_string())
    }

    /// RFC 2136 section 3: zone, prerequisites, prescan, then the updates,
    /// all or nothing.
    fn apply(&self, request: &Message) -> ResponseCode {
        let [zone] = request.zones() else {
            return ResponseCode::FormErr;
        };
        if zone.query_type() != WireType::SOA || zone.query_class() != DNSClass::IN {
            return ResponseCode::FormErr;
        }
        if zone.name().to_lowercase() != self.origin {
            return ResponseCode::NotAuth;
        }
        let mut data = self.lock();
        for prerequisite in request.prerequisites() {
            if let Err(rcode) = self.check_prerequisite(&data, prerequisite) {
                return rcode;
            }
        }
        for update in request.updates() {
            if !self.origin.zone_of(&update.name.to_lowercase()) {
                return ResponseCode::NotZone;
            }
            let ok = match update.dns_class {
                DNSClass::IN => !matches!(
                    update.record_type(),
                    WireType::ANY | WireType::AXFR | WireType::IXFR
                ),
                DNSClass::ANY | DNSClass::NONE => update.ttl == 0,
                _ => false,
            };
            if !ok {
                return ResponseCode::FormErr;
            }
        }
        // Applied to a copy and swapped in: all or nothing.
        let mut next = data.clone();
        for update in request.updates() {
            self.apply_one(&mut next, update);
        }
        if next.rrsets != data.rrsets {
            next.serial = data.serial.wrapping_add(1);
            tracing::debug!(zone = %self.origin, serial = next.serial, "dns update applied");
            *data = next;
        }
        ResponseCode::NoError
    }

    fn check_prerequisite(&self, data: &ZoneData, rr: &Record) -> Result<(), ResponseCode> {
        let name = rr.name.to_lowercase();
        if !self.origin.zone_of(&name) {
            return Err(ResponseCode::NotZone);
        }
        let rtype = rr.record_type();
        let present = |t: WireType| !self.records(data, &name, t).is_empty();
        match (rr.dns_class, rtype) {
            (DNSClass::ANY, WireType::ANY) if !present(WireType::ANY) => {
                Err(ResponseCode::NXDomain)
            }
            (DNSClass::ANY, t) if t != WireType::ANY && !present(t) => Err(ResponseCode::NXRRSet),
            (DNSClass::NONE, WireType::ANY) if present(WireType::ANY) => {
                Err(ResponseCode::YXDomain)
            }
            (DNSClass::NONE, t) if t != WireType::ANY && present(t) => Err(ResponseCode::YXRRSet),
            (DNSClass::IN, t) => {
                let held: Vec<RData> = self
                    .records(data, &name, t)
                    .into_iter()
                    .map(|r| r.data)
                    .collect();
                if held.contains(&normalized(&rr.data)) {
                    Ok(())
                } else {
                    Err(ResponseCode::NXRRSet)
                }
            }
            (DNSClass::ANY | DNSClass::NONE, _) => Ok(()),
            _ => Err(ResponseCode::FormErr),
        }
    }

    /// One update RR (RFC 2136 3.4.2). SOA and NS at the apex are the
    /// server's own and are left alone; CNAME and other data never share a
    /// name (the conflicting add is ignored, as the RFC says).
    fn apply_one(&self, data: &mut ZoneData, rr: &Record) {
        let name = wire::name_text(&rr.name);
        let rtype = rr.record_type();
        let at_apex = rr.name.to_lowercase() == self.origin;
        if at_apex && matches!(rtype, WireType::SOA | WireType::NS) {
            return;
        }
        let key = (name.clone(), u16::from(rtype));
        match rr.dns_class {
            DNSClass::IN => {
                let cname = u16::from(WireType::CNAME);
                let conflict = data.rrsets.keys().any(|(owner, t)| {
                    *owner == name && ((rtype == WireType::CNAME) != (*t == cname))
                });
                if conflict {
                    return;
                }
                let set = data.rrsets.entry(key).or_insert(RrSet {
                    ttl: rr.ttl,
                    rdatas: Vec::new(),
                });
                set.ttl = rr.ttl;
                let rdata = normalized(&rr.data);
                if !set.rdatas.contains(&rdata) {
                    set.rdatas.push(rdata);
                }
            }
            DNSClass::ANY if rtype == WireType::ANY => {
                data.rrsets.retain(|(owner, _), _| *owner != name);
            }
            DNSClass::ANY => {
                data.rrsets.remove(&key);
            }
            DNSClass::NONE => {
                let rdata = normalized(&rr.data);
                if let Some(set) = data.rrsets.get_mut(&key) {
                    set.rdatas.retain(|r| *r != rdata);
                    if set.rdatas.is_empty() {
                        data.rrsets.remove(&key);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Record data as the zone keeps it: names lower case, so that a delete of
/// `LB.example.com.` matches an add of `lb.example.com.`.
fn normalized(rdata: &RData) -> RData {
    match rdata {
        RData::CNAME(cname) => {
            let mut name = cname.0.to_lowercase();
            name.set_fqdn(true);
            RData::CNAME(hickory_proto::rr::rdata::CNAME(name))
        }
        other => other.clone(),
    }
}

/// An answer to `request` with `rcode`, echoing its question.
fn error(request: &Message, op: OpCode, rcode: ResponseCode) -> Message {
    let mut response = Message::error_msg(request.metadata.id, op, rcode);
    response.add_queries(request.queries.clone());
    response
}

/// The encoded answer, or when it exceeds `limit` its truncated form (TC
/// set, no records) so the client asks again over TCP.
fn fit(answer: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = answer.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut truncated = answer.truncate();
    truncated.metadata.truncation = true;
    truncated.to_vec().ok()
}

/// Seconds since the epoch, for TSIG's time signed.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
