//! `[[dns_providers]]`: RFC 2136 servers (with TSIG keys named, not held) and
//! Route 53 hosted zones.

use std::net::SocketAddr;
use std::path::Path;

use super::common::{
    at_most_one, declared_tables, dns_name_at, is_credential_key, is_valid_name, key_env_name,
    key_file, kind_of, no_keys_of_other_kind, Declared, NameKind, AWS_CHAIN_HINT,
};
use super::object_stores::{check_endpoint, DEFAULT_S3_REGION};
use crate::model::{
    decode_base64, DnsProviderConfig, DnsProviderKind, TsigAlgorithm, TsigKey, TsigSecret,
};
use crate::reader::{Cx, Field, Spanned, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::secret::Secret;
use crate::suggest;

pub(crate) const DNS_PROVIDERS: Section = Section {
    header: "[[dns_providers]]",
    doc: "Where service records are published and flipped: an authoritative server taking RFC 2136 dynamic updates (BIND, Knot, PowerDNS) or Route 53. Route 53 credentials come from the standard AWS chain, never from the file. Domain names may be written with or without the final dot.",
    keys: &[
        key("name", K::String, D::Required, "`[a-z0-9-]+`, unique; what `[services.dns] provider` names."),
        key("kind", K::Choice(DNS_PROVIDER_KINDS), D::Required, "`rfc2136` or `route53`."),
        key("zone", K::String, D::Unset, "The zone records must be inside; required for `rfc2136`, optional for `route53` (then checked at load time)."),
        key("server", K::String, D::Unset, "`rfc2136` only, required: the primary server's `IP:PORT` (drctl must reach DNS without DNS)."),
        key("tsig_key", K::String, D::Unset, "`rfc2136` only: the TSIG key's name as the server knows it; unset sends unsigned updates (only sane in a lab)."),
        key("tsig_algorithm", K::Choice(&["hmac-sha256", "hmac-sha384", "hmac-sha512"]), D::Text(DEFAULT_TSIG_ALGORITHM), "`rfc2136` only: the key's HMAC."),
        key("tsig_secret", K::String, D::Unset, "`rfc2136` only: the key's base64 secret written in the file (a lab's throwaway key; shown as `***`). With `tsig_key`, exactly one of the three `tsig_secret*` keys."),
        key("tsig_secret_env", K::EnvVar, D::Unset, "`rfc2136` only: an environment variable holding the base64 secret."),
        key("tsig_secret_file", K::Path, D::Unset, "`rfc2136` only: a file holding the base64 secret."),
        key("hosted_zone_id", K::String, D::Unset, "`route53` only, required: `Z…`, with or without `/hostedzone/`."),
        key("endpoint", K::String, D::Derived("AWS itself"), "`route53` only: `http://…` or `https://…` of a compatible API (moto, LocalStack)."),
        key("region", K::String, D::Derived("the AWS chain's, else `us-east-1`"), "`route53` only: the API's signing region."),
    ],
};

/// As BIND and Knot write it; [`TsigAlgorithm::as_str`] of the default.
pub(crate) const DEFAULT_TSIG_ALGORITHM: &str = "hmac-sha256";

const DNS_PROVIDER_KINDS: &[&str] = &["rfc2136", "route53"];

/// Keys of one kind of DNS provider, refused on the other.
pub(crate) const RFC2136_KEYS: &[&str] = &[
    "server",
    "tsig_key",
    "tsig_algorithm",
    "tsig_secret",
    "tsig_secret_env",
    "tsig_secret_file",
];

pub(crate) const ROUTE53_KEYS: &[&str] = &["hosted_zone_id", "endpoint", "region"];

/// Where an RFC 2136 provider's credentials go instead of a key of their own.
const TSIG_INSTEAD_HINT: &str = "sign updates with tsig_key and the key's secret in \
tsig_secret_file or tsig_secret_env; remove this key";

/// Exactly one of these holds the secret of a TSIG key.
pub(crate) const TSIG_SECRET_KEYS: &[&str] =
    &["tsig_secret", "tsig_secret_env", "tsig_secret_file"];

/// `[[dns_providers]]`.
pub(crate) fn dns_providers(
    cx: &mut Cx,
    root: &Table,
    base_dir: &Path,
) -> Option<Vec<Declared<DnsProviderConfig>>> {
    declared_tables(
        cx,
        root,
        "dns_providers",
        NameKind::DnsProvider,
        "write each DNS provider as a [[dns_providers]] table",
        |cx, table| dns_provider_kind(cx, table, base_dir),
        |name, kind| DnsProviderConfig { name, kind },
    )
}

/// The kind, its keys and their values. `None` when anything is wrong.
fn dns_provider_kind(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<DnsProviderKind> {
    let kind = kind_of(
        cx,
        table,
        DNS_PROVIDER_KINDS,
        "use \"rfc2136\" for a server taking dynamic updates (BIND, Knot, PowerDNS) or \"route53\"",
    );
    dns_provider_keys(cx, table, kind.as_deref());
    let kind = kind?;
    let ok = if kind == "rfc2136" {
        no_keys_of_other_kind(
            cx,
            table,
            ROUTE53_KEYS,
            "route53",
            "this provider is kind = \"rfc2136\"; remove it, or set kind = \"route53\"",
        )
    } else {
        no_keys_of_other_kind(
            cx,
            table,
            RFC2136_KEYS,
            "rfc2136",
            "this provider is kind = \"route53\", which signs with AWS credentials; remove it",
        )
    };
    let provider = if kind == "rfc2136" {
        rfc2136_provider(cx, table, base_dir)
    } else {
        route53_provider(cx, table)
    };
    provider.filter(|_| ok)
}

/// Unknown keys of a DNS provider, and credentials under any other name,
/// which are refused without echoing the value.
fn dns_provider_keys(cx: &mut Cx, table: &Table, kind: Option<&str>) {
    for field in table.fields() {
        if DNS_PROVIDERS.names().contains(&field.key) {
            continue;
        }
        if is_credential_key(field.key) {
            let hint = match kind {
                Some("route53") => format!("{AWS_CHAIN_HINT}; remove this key"),
                _ => TSIG_INSTEAD_HINT.to_string(),
            };
            cx.error(
                &field.key_span,
                &field.path,
                "credentials do not belong in the config file",
                Some(hint),
            );
            continue;
        }
        let hint = suggest::hint(field.key, DNS_PROVIDERS.names())
            .unwrap_or_else(|| format!("expected one of {}", DNS_PROVIDERS.names().join(", ")));
        cx.error(&field.key_span, &field.path, "unknown key", Some(hint));
    }
}

fn rfc2136_provider(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<DnsProviderKind> {
    let server = cx
        .required(
            table,
            "server",
            "add server = \"IP:PORT\" of the primary authoritative server, e.g. \"192.0.2.53:53\"",
        )
        .and_then(|f| {
            let text = cx.string(&f)?;
            dns_server(cx, &text, &f.path)
        });
    let zone = cx
        .required(
            table,
            "zone",
            "add zone = \"…\", the zone the server is authoritative for, e.g. \"shop.example.com.\"",
        )
        .and_then(|f| {
            let text = cx.string(&f)?;
            dns_name_at(cx, &text, &f.path, "shop.example.com.")
        });
    let tsig = tsig(cx, table, base_dir);
    Some(DnsProviderKind::Rfc2136 {
        server: server?,
        zone: zone?,
        tsig: tsig?,
    })
}

/// The server's address. A host name is refused: resolving the DNS server
/// through DNS fails exactly when a failover needs it.
fn dns_server(cx: &mut Cx, text: &Spanned<String>, path: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.value.parse::<SocketAddr>() {
        return Some(addr);
    }
    let hint = if let Ok(ip) = text.value.parse::<std::net::IpAddr>() {
        format!("add the port: \"{}\"", SocketAddr::new(ip, 53))
    } else if text.value.chars().any(|c| c.is_ascii_alphabetic()) && !text.value.contains("::") {
        "use the server's IP address: drctl must reach DNS without DNS; e.g. \"192.0.2.53:53\""
            .to_string()
    } else {
        "write IP:PORT, e.g. \"192.0.2.53:53\" or \"[2001:db8::53]:53\"".to_string()
    };
    cx.error(
        &text.span,
        path,
        format!("{:?} is not an IP address and port", text.value),
        Some(hint),
    );
    None
}

/// `tsig_key` with its algorithm and exactly one secret source;
/// `Some(None)` when the provider signs nothing. `None` when wrong.
pub(crate) fn tsig(cx: &mut Cx, table: &Table, base_dir: &Path) -> Option<Option<TsigKey>> {
    let secret = at_most_one(
        cx,
        table,
        TSIG_SECRET_KEYS,
        "keep exactly one of tsig_secret, tsig_secret_env, tsig_secret_file",
    );
    let algorithm_field = table.get("tsig_algorithm");
    let Some(key_field) = table.get("tsig_key") else {
        // A secret or algorithm without a key name signs nothing: say so
        // rather than silently sending unsigned updates.
        let stray = secret.flatten().or(algorithm_field);
        if let Some(f) = stray {
            cx.error(
                &f.key_span,
                &f.path,
                format!("{} without tsig_key", f.key),
                Some("name the key as the server knows it, e.g. tsig_key = \"drctl.\"".into()),
            );
            return None;
        }
        return Some(None);
    };
    let name = cx
        .string(&key_field)
        .and_then(|name| dns_name_at(cx, &name, &key_field.path, "drctl."));
    let algorithm = match &algorithm_field {
        None => TsigAlgorithm::all()
            .into_iter()
            .find(|a| a.as_str() == DEFAULT_TSIG_ALGORITHM),
        Some(f) => cx
            .string(f)
            .and_then(|text| tsig_algorithm(cx, &text, &f.path)),
    };
    let secret = match secret? {
        None => {
            cx.error(
                &key_field.key_span,
                &key_field.path,
                "the key has no secret",
                Some(
                    "add tsig_secret_file = \"…\" (a file holding the base64 secret) \
                     or tsig_secret_env = \"…\""
                        .into(),
                ),
            );
            None
        }
        Some(f) => tsig_secret(cx, &f, base_dir),
    };
    Some(Some(TsigKey {
        name: name?,
        algorithm: algorithm?,
        secret: secret?,
    }))
}

fn tsig_algorithm(cx: &mut Cx, text: &Spanned<String>, path: &str) -> Option<TsigAlgorithm> {
    let lower = text.value.to_ascii_lowercase();
    if let Some(algorithm) = TsigAlgorithm::all()
        .into_iter()
        .find(|a| a.as_str() == lower)
    {
        return Some(algorithm);
    }
    let names: Vec<&str> = TsigAlgorithm::all().iter().map(|a| a.as_str()).collect();
    let hint = if lower.starts_with("hmac-md5") || lower == "hmac-sha1" || lower == "hmac-sha224" {
        "drctl signs with SHA-2 of 256 bits or more; make a new key, e.g. `keymgr -t drctl. hmac-sha256`"
            .to_string()
    } else {
        suggest::hint(&lower, names.iter().copied())
            .unwrap_or_else(|| format!("the default is {DEFAULT_TSIG_ALGORITHM}"))
    };
    cx.error(
        &text.span,
        path,
        format!("{:?} is not one of {}", text.value, names.join(", ")),
        Some(hint),
    );
    None
}

/// One of tsig_secret (inline base64, checked now), tsig_secret_env,
/// tsig_secret_file. The value is never echoed.
fn tsig_secret(cx: &mut Cx, field: &Field, base_dir: &Path) -> Option<TsigSecret> {
    let value = cx.string(field)?;
    match field.key {
        "tsig_secret" => {
            if decode_base64(&value.value).is_some() {
                return Some(TsigSecret::Inline(Secret::opaque(value.value.trim())));
            }
            cx.error(
                &value.span,
                &field.path,
                "the secret is not base64",
                Some(
                    "copy the secret exactly as the server's key file has it; better, move it to a file and name it with tsig_secret_file"
                        .into(),
                ),
            );
            None
        }
        "tsig_secret_env" => {
            key_env_name(cx, value, &field.path, "DRCTL_TSIG_SECRET").map(TsigSecret::Env)
        }
        _ => key_file(cx, value, &field.path, base_dir, "the base64 TSIG secret")
            .map(TsigSecret::File),
    }
}

fn route53_provider(cx: &mut Cx, table: &Table) -> Option<DnsProviderKind> {
    let hosted_zone_id = cx
        .required(
            table,
            "hosted_zone_id",
            "add hosted_zone_id = \"Z…\" (`aws route53 list-hosted-zones` shows it)",
        )
        .and_then(|f| {
            let id = cx.string(&f)?;
            hosted_zone_id(cx, &id, &f.path)
        });
    let endpoint = match table.get("endpoint") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|e| check_endpoint(cx, &e, &f.path).then_some(Some(e.value))),
    };
    let region = match table.get("region") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|r| aws_region(cx, &r, &f.path).then_some(Some(r.value))),
    };
    let zone = match table.get("zone") {
        None => Some(None),
        Some(f) => cx
            .string(&f)
            .and_then(|z| dns_name_at(cx, &z, &f.path, "shop.example.com."))
            .map(Some),
    };
    Some(DnsProviderKind::Route53 {
        hosted_zone_id: hosted_zone_id?,
        endpoint: endpoint?,
        region: region?,
        zone: zone?,
    })
}

/// `Z0123456789ABC`, also accepted as the API writes it
/// (`/hostedzone/Z0123456789ABC`) and kept without the prefix.
pub(crate) fn hosted_zone_id(cx: &mut Cx, id: &Spanned<String>, path: &str) -> Option<String> {
    let bare = id.value.strip_prefix("/hostedzone/").unwrap_or(&id.value);
    if !bare.is_empty()
        && bare.len() <= 32
        && bare
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Some(bare.to_string());
    }
    cx.error(
        &id.span,
        path,
        format!("{:?} is not a Route 53 hosted zone id", id.value),
        Some(
            "hosted zone ids are upper-case letters and digits, e.g. \"Z0123456789ABCDEFGHIJ\""
                .into(),
        ),
    );
    None
}

/// An AWS region name such as `eu-central-1` (shape only).
fn aws_region(cx: &mut Cx, region: &Spanned<String>, path: &str) -> bool {
    if is_valid_name(&region.value) {
        return true;
    }
    cx.error(
        &region.span,
        path,
        format!("{:?} is not an AWS region", region.value),
        Some(format!(
            "e.g. \"eu-central-1\"; compatible servers usually accept \"{DEFAULT_S3_REGION}\""
        )),
    );
    false
}
