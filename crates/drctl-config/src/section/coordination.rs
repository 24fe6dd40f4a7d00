//! `[coordination]`: the etcd cluster (one member per site: two regions and
//! a witness) that grants the primaries' leases. Without it, nothing can
//! tell a lost region from a cut-off one, and an unreachable primary is
//! only fenced by its agent or a hook.

use std::time::Duration;

use super::common::{duration_or, section};
use crate::model::CoordinationConfig;
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

/// The primary lease's default time: short enough that a cut-off region's
/// writes stop within seconds, long enough for an etcd leader election
/// (about a second) and a few lost renewals.
pub(crate) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) const COORDINATION: Section = Section {
    header: "[coordination]",
    doc: "Primary leases through etcd: each primary's agent holds a lease that only a quorum of the etcd members can renew, fences its own server before the lease can expire when it cannot, and drctl promotes a standby of an unreachable primary only once that lease expired. Put one member in each region and one in a third (witness) site, so that any one site can be lost. Every node of a service then needs an `agent`.",
    keys: &[
        key("etcd", K::Strings, D::Required, "The etcd members' client URLs (`http://HOST:2379`), at least one; three in three sites for a quorum that survives the loss of any one."),
        key("lease_ttl", K::Duration, D::Duration(DEFAULT_LEASE_TTL), "How long a primary lease lasts without a renewal (whole seconds, 3s or more); the agents renew it every third of it and fence their server a margin before it ends."),
        key("request_timeout", K::Duration, D::Duration(DEFAULT_REQUEST_TIMEOUT), "How long one etcd member may take to answer before the next is tried."),
    ],
};

/// `[coordination]`, when present. `Some(None)` when absent; `None` when
/// wrong (reported).
pub(crate) fn coordination(cx: &mut Cx, root: &Table) -> Option<Option<CoordinationConfig>> {
    let Some(table) = section(cx, root, "coordination", &COORDINATION.names()) else {
        return Some(None);
    };
    let example =
        "etcd = [\"http://10.0.1.5:2379\", \"http://10.0.2.5:2379\", \"http://10.0.3.5:2379\"]";
    let etcd = match table.get("etcd") {
        None => {
            cx.error(
                &table.span,
                &table.path,
                "no etcd".to_string(),
                Some(format!("list the etcd members' client URLs: {example}")),
            );
            None
        }
        Some(field) => {
            let items = cx.array(&field, example);
            items.and_then(|items| {
                let mut urls = Vec::new();
                let mut ok = true;
                for item in &items {
                    let Some(s) = cx.string(item) else {
                        ok = false;
                        continue;
                    };
                    let problem = match url::Url::parse(&s.value) {
                        Err(e) => Some(format!("{:?} is not a URL ({e})", s.value)),
                        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
                            "an etcd member is reached over http:// or https://, not {}://",
                            u.scheme()
                        )),
                        Ok(u) if u.port().is_none() => {
                            Some("names no port (etcd's client port, 2379 by default)".into())
                        }
                        Ok(u) if u.path() != "/" => Some("has more than SCHEME://HOST:PORT".into()),
                        Ok(_) => None,
                    };
                    match problem {
                        Some(message) => {
                            cx.error(&s.span, &item.path, message, Some(example.to_string()));
                            ok = false;
                        }
                        None => urls.push(s.value.trim_end_matches('/').to_string()),
                    }
                }
                if urls.is_empty() && ok {
                    cx.error(
                        &field.span,
                        &field.path,
                        "lists no member".to_string(),
                        Some(example.to_string()),
                    );
                    ok = false;
                }
                ok.then_some(urls)
            })
        }
    };
    let t = Some(&table);
    let lease_ttl = duration_or(cx, t, "lease_ttl", DEFAULT_LEASE_TTL);
    if lease_ttl < Duration::from_secs(3) || lease_ttl.subsec_nanos() != 0 {
        if let Some(f) = table.get("lease_ttl") {
            cx.error(
                &f.span,
                &f.path,
                format!("{lease_ttl:?} is not a whole number of seconds of at least 3"),
                Some("etcd leases count whole seconds; 10s is the default".into()),
            );
        }
        return None;
    }
    let request_timeout = duration_or(cx, t, "request_timeout", DEFAULT_REQUEST_TIMEOUT);
    if request_timeout * 3 > lease_ttl {
        if let Some(f) = table
            .get("request_timeout")
            .or_else(|| table.get("lease_ttl"))
        {
            cx.error(
                &f.span,
                &f.path,
                format!("request_timeout ({request_timeout:?}) must be at most a third of lease_ttl ({lease_ttl:?})"),
                Some("a renewal must be able to try another member well before the lease ends".into()),
            );
        }
        return None;
    }
    Some(Some(CoordinationConfig {
        etcd: etcd?,
        lease_ttl,
        request_timeout,
    }))
}
