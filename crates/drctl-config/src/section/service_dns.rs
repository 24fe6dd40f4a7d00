//! `[services.dns]`: the record a service is published as, its targets per
//! region and its drill record.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::common::{
    bounded_duration, check_reference, dns_name_at, in_zone, normalize_dns_name, NameKind,
    ProviderRef,
};
use super::postgres::is_service_region;
use crate::duration::format_duration;
use crate::model::{RecordType, ServiceDns};
use crate::reader::{Cx, Field, Span, Spanned};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const SERVICE_DNS: Section = Section {
    header: "[services.dns]",
    doc: "The record clients resolve to reach the service, flipped by a failover. Without it drctl does not publish the service.",
    keys: &[
        key("provider", K::String, D::Required, "The name of one of `[[dns_providers]]`."),
        key("record", K::String, D::Required, "The record's name, inside the provider's zone when that is known."),
        key("type", K::Choice(&["A", "AAAA", "CNAME"]), D::Text(DEFAULT_RECORD_TYPE), "The record type (any case)."),
        key("ttl", K::Duration, D::Duration(DEFAULT_DNS_TTL), "Whole seconds, 1s..=1d: the longest a resolver keeps the old answer after a flip, so it bounds the measured RTO."),
        key("drill_record", K::String, D::Derived("the first label with `-drill` (`orders-drill.shop.example.com.`)"), "What drills flip instead of `record`; never `record` itself."),
        key("targets", K::Table, D::Required, "The record's value per region, one for every region of the service: an IPv4 address (A), an IPv6 address (AAAA) or a host name (CNAME)."),
    ],
};

pub(crate) const DEFAULT_RECORD_TYPE: &str = "A";

const DEFAULT_DNS_TTL: Duration = Duration::from_secs(30);

/// A record's TTL bounds how long clients keep the old region after a
/// flip; past a day, no RTO target is meaningful.
const TTL_RANGE: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(86_400);

/// Where a service's records sit, for the check that no two services (or a
/// service and a drill) publish the same name.
pub(crate) struct PublishedRecords {
    pub(crate) provider: String,
    pub(crate) record: (String, Span),
    pub(crate) drill: (String, Span),
}

/// `[services.dns]`. `None` when anything is wrong (reported).
pub(crate) fn service_dns(
    cx: &mut Cx,
    field: &Field,
    providers: Option<&[ProviderRef]>,
    service_name: Option<&str>,
    regions: Option<&[Spanned<String>]>,
) -> Option<(ServiceDns, PublishedRecords)> {
    let table = cx.table(field)?;
    cx.unknown_keys(&table, &SERVICE_DNS.names());
    let names: Option<Vec<&str>> = providers.map(|p| p.iter().map(|p| p.name).collect());
    let provider_hint = match names.as_deref() {
        Some([first, ..]) => format!("name one of the DNS providers: provider = {first:?}"),
        _ => "declare a [[dns_providers]] table and name it here".to_string(),
    };
    let provider = cx
        .required(&table, "provider", &provider_hint)
        .and_then(|f| {
            let name = cx.string(&f)?;
            check_reference(cx, &name, &f.path, names.as_deref(), NameKind::DnsProvider)
                .then_some(name.value)
        });
    // Records are checked against the zone only when the provider is known
    // and its zone valid: otherwise that is the one mistake to report.
    let zone = provider
        .as_deref()
        .and_then(|p| providers?.iter().find(|r| r.name == p)?.zone);

    let rtype = match table.get("type") {
        None => DEFAULT_RECORD_TYPE.parse().ok(),
        Some(f) => cx
            .string(&f)
            .and_then(|text| match text.value.parse::<RecordType>() {
                Ok(t) => Some(t),
                Err(message) => {
                    let hint = match text.value.to_ascii_uppercase().as_str() {
                        "ALIAS" | "ANAME" => {
                            "use CNAME to a load balancer's name, or A/AAAA with its addresses"
                                .to_string()
                        }
                        _ => "use A for IPv4 targets, AAAA for IPv6, CNAME for host names"
                            .to_string(),
                    };
                    cx.error(&text.span, &f.path, message, Some(hint));
                    None
                }
            }),
    };

    let example = format!("{}.shop.example.com.", service_name.unwrap_or("orders"));
    let record = cx
        .required(
            &table,
            "record",
            &format!("add record = {example:?}, the name clients resolve"),
        )
        .and_then(|f| {
            let text = cx.string(&f)?;
            let name = dns_name_at(cx, &text, &f.path, &example)?;
            check_record_placement(cx, &name, &text.span, &f.path, zone, rtype)
                .then_some((name, text.span))
        });

    let ttl = bounded_duration(cx, &table, "ttl", DEFAULT_DNS_TTL, TTL_RANGE).and_then(|ttl| {
        if ttl.subsec_nanos() == 0 {
            return Some(ttl);
        }
        let f = table.get("ttl")?;
        cx.error(
            &f.span,
            &f.path,
            format!("{} is not whole seconds", format_duration(ttl)),
            Some("DNS counts TTLs in seconds, e.g. \"30s\"".into()),
        );
        None
    });

    let drill = match table.get("drill_record") {
        Some(f) => cx.string(&f).and_then(|text| {
            let name = dns_name_at(cx, &text, &f.path, "orders-drill.shop.example.com.")?;
            if record.as_ref().is_some_and(|(r, _)| *r == name) {
                cx.error(
                    &text.span,
                    &f.path,
                    format!("{name:?} is the service's own record"),
                    Some(
                        "drills must never touch the production record; \
                         name another, e.g. with a \"-drill\" label"
                            .into(),
                    ),
                );
                return None;
            }
            check_record_placement(cx, &name, &text.span, &f.path, zone, rtype)
                .then_some((name, text.span))
        }),
        None => record.as_ref().and_then(|(record, span)| {
            let drill = default_drill_record(record)
                .filter(|d| zone.is_none() || zone.is_some_and(|z| in_zone(d, z)));
            if let Some(drill) = drill {
                return Some((drill, span.clone()));
            }
            cx.error(
                span,
                &format!("{}.drill_record", table.path),
                format!(
                    "no default drill record for {record:?}: its first label with \"-drill\" \
                     would leave the zone or the length limits"
                ),
                Some("set drill_record = \"…\" in this table".into()),
            );
            None
        }),
    };

    let targets = cx
        .required(
            &table,
            "targets",
            "add [services.dns.targets] with the record's value in each region, \
             e.g. eu-west = \"192.0.2.10\"",
        )
        .and_then(|f| dns_targets(cx, &f, rtype, regions));

    let (record, record_span) = record?;
    let provider = provider?;
    let drill = drill?;
    Some((
        ServiceDns {
            provider: provider.clone(),
            record: record.clone(),
            rtype: rtype?,
            ttl: ttl?,
            drill_record: drill.0.clone(),
            targets: targets?,
        },
        PublishedRecords {
            provider,
            record: (record, record_span),
            drill,
        },
    ))
}

/// `orders.shop.example.com.` → `orders-drill.shop.example.com.`; `None`
/// when the label would grow too long.
fn default_drill_record(record: &str) -> Option<String> {
    let (first, rest) = record.split_once('.')?;
    normalize_dns_name(&format!("{first}-drill.{rest}")).ok()
}

/// A record must be inside its provider's zone (when known), and a CNAME
/// cannot sit at the zone's apex, beside its SOA and NS records.
fn check_record_placement(
    cx: &mut Cx,
    name: &str,
    span: &Span,
    path: &str,
    zone: Option<&str>,
    rtype: Option<RecordType>,
) -> bool {
    let Some(zone) = zone else {
        return true;
    };
    if !in_zone(name, zone) {
        let first = name.split('.').next().unwrap_or("orders");
        cx.error(
            span,
            path,
            format!("{name:?} is not inside the provider's zone {zone:?}"),
            Some(format!(
                "e.g. \"{first}.{zone}\"; or name a provider for its zone"
            )),
        );
        return false;
    }
    if name == zone && rtype == Some(RecordType::Cname) {
        cx.error(
            span,
            path,
            format!("a CNAME cannot be the zone's apex {zone:?}"),
            Some("publish the service under a name inside the zone, or use type = \"A\"".into()),
        );
        return false;
    }
    true
}

/// `[services.dns.targets]`: exactly one value per region of the service,
/// each of the record's type. `None` when wrong (reported).
fn dns_targets(
    cx: &mut Cx,
    field: &Field,
    rtype: Option<RecordType>,
    regions: Option<&[Spanned<String>]>,
) -> Option<BTreeMap<String, String>> {
    let table = cx.table(field)?;
    let listed: Option<Vec<&str>> = regions.map(|r| r.iter().map(|r| r.value.as_str()).collect());
    let mut ok = true;
    let mut targets = BTreeMap::new();
    for entry in table.fields() {
        if !is_service_region(cx, &entry, listed.as_deref(), "target") {
            ok = false;
            continue;
        }
        let Some(value) = cx.string(&entry) else {
            ok = false;
            continue;
        };
        match rtype.map(|t| dns_target(&value.value, t)) {
            Some(Ok(target)) => {
                targets.insert(entry.key.to_string(), target);
            }
            Some(Err((why, hint))) => {
                cx.error(&value.span, &entry.path, why, Some(hint));
                ok = false;
            }
            // The type itself is wrong (reported): nothing to check against.
            None => ok = false,
        }
    }
    for region in listed.unwrap_or_default() {
        if table.get(region).is_none() {
            cx.error(
                &table.span,
                &table.path,
                format!(
                    "no target for region {region:?}; a failover there would have nothing to publish"
                ),
                Some(format!("add {region} = \"…\" to this table")),
            );
            ok = false;
        }
    }
    ok.then_some(targets)
}

/// One target, normalized (IPv6 in its canonical form, host names
/// absolute), or why not and a hint.
fn dns_target(value: &str, rtype: RecordType) -> Result<String, (String, String)> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    match rtype {
        RecordType::A => value.parse::<Ipv4Addr>().map(|ip| ip.to_string()).map_err(|_| {
            let hint = if value.parse::<Ipv6Addr>().is_ok() {
                "this is an IPv6 address: set type = \"AAAA\""
            } else if value.parse::<SocketAddr>().is_ok() {
                "a record holds no port: drop it"
            } else {
                "an A record holds an IPv4 address, e.g. \"192.0.2.10\"; for a host name set type = \"CNAME\""
            };
            (format!("{value:?} is not an IPv4 address"), hint.to_string())
        }),
        RecordType::Aaaa => value.parse::<Ipv6Addr>().map(|ip| ip.to_string()).map_err(|_| {
            let hint = if value.parse::<Ipv4Addr>().is_ok() {
                "this is an IPv4 address: set type = \"A\""
            } else {
                "an AAAA record holds an IPv6 address, e.g. \"2001:db8::10\""
            };
            (format!("{value:?} is not an IPv6 address"), hint.to_string())
        }),
        RecordType::Cname => {
            if value.parse::<std::net::IpAddr>().is_ok() {
                return Err((
                    format!("{value:?} is an address, not a host name"),
                    "a CNAME points at a name; for addresses set type = \"A\" or \"AAAA\"".to_string(),
                ));
            }
            normalize_dns_name(value).map_err(|why| {
                (
                    format!("{value:?} is not a host name: {why}"),
                    "e.g. \"shop-lb.eu-west.example.com.\"".to_string(),
                )
            })
        }
    }
}
