//! The document's root: which top-level sections exist, reading them all, and
//! the checks that span sections (clusters agree on their regions and
//! primary; no two services publish the same record).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::alerts::webhooks;
use super::api::api;
use super::audit::audit;
use super::common::{ProviderRef, References};
use super::dns_providers::dns_providers;
use super::failover::failover_settings;
use super::monitor::monitor;
use super::object_stores::object_stores;
use super::regions::regions;
use super::scratch::scratch;
use super::services::{services, CheckedService};
use super::store::store;
use super::tiers::tiers;
use crate::model::{Config, DnsProviderConfig};
use crate::reader::{Cx, Span, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

/// The top-level tables; each has a section of its own below it.
pub(crate) const ROOT: Section = Section {
    header: "Top level",
    doc: "The tables a config file may hold. Only `[[regions]]` is required; every other table has defaults or may be left out.",
    keys: &[
        key("store", K::Table, D::Unset, "Where drctl keeps its state: see `[store]`."),
        key("api", K::Table, D::Unset, "The HTTP API: see `[api]`."),
        key("monitor", K::Table, D::Unset, "The lag monitor: see `[monitor]`."),
        key("regions", K::Tables, D::Required, "The failure domains: see `[[regions]]`; at least one."),
        key("tiers", K::Table, D::Unset, "Each tier's default targets: see `[tiers.hot]`, `[tiers.warm]`, `[tiers.cold]`."),
        key("object_stores", K::Tables, D::Unset, "Where backups go: see `[[object_stores]]`."),
        key("failover", K::Table, D::Unset, "How operations are driven: see `[failover]`."),
        key("dns_providers", K::Tables, D::Unset, "Where service records are published: see `[[dns_providers]]`."),
        key("webhooks", K::Tables, D::Unset, "Where alerts go: see `[[webhooks]]`."),
        key("services", K::Tables, D::Unset, "The units of failover: see `[[services]]`."),
        key("scratch", K::Table, D::Unset, "Where scratch clusters live: see `[scratch]`."),
        key("audit", K::Table, D::Unset, "The audit chain's key: see `[audit]`."),
        key("agents", K::Table, D::Unset, "Mutual TLS with the node agents: see `[agents]`."),
        key("coordination", K::Table, D::Unset, "Primary leases through etcd: see `[coordination]`."),
    ],
};

/// Reads and checks the whole document; `None` when anything was reported.
pub(crate) fn config(
    cx: &mut Cx,
    root: &Table,
    source: PathBuf,
    base_dir: &Path,
) -> Option<Config> {
    cx.unknown_keys(root, &ROOT.names());
    let store = store(cx, root, base_dir);
    let api = api(cx, root, base_dir);
    let monitor = monitor(cx, root);
    let regions = regions(cx, root);
    let tiers = tiers(cx, root);
    let object_stores = object_stores(cx, root, base_dir);
    let store_names: Option<Vec<&str>> = object_stores.as_ref().map(|stores| {
        stores
            .iter()
            .filter_map(|s| s.reference.as_deref())
            .collect()
    });
    let failover = failover_settings(cx, root);
    let dns_providers = dns_providers(cx, root, base_dir);
    let provider_refs: Option<Vec<ProviderRef>> = dns_providers.as_ref().map(|providers| {
        providers
            .iter()
            .filter_map(|p| {
                Some(ProviderRef {
                    name: p.reference.as_deref()?,
                    zone: p.value.as_ref().and_then(DnsProviderConfig::zone),
                })
            })
            .collect()
    });
    let state_dir = store
        .as_ref()
        .and_then(super::store::sqlite_dir)
        .unwrap_or_else(|| base_dir.to_path_buf());
    let refs = References {
        stores: store_names.as_deref(),
        dns_providers: provider_refs.as_deref(),
        agents: root.get("agents").is_some(),
        state_dir: &state_dir,
    };
    let webhooks = webhooks(cx, root, base_dir);
    let scratch = scratch(cx, root, base_dir);
    let audit = audit(cx, root, base_dir);
    let agents = super::agents::agents(cx, root, base_dir);
    let coordination = super::coordination::coordination(cx, root);
    let services = services(cx, root, &regions, &tiers, base_dir, &refs);
    clusters(cx, &services);
    published_records(cx, &services);

    if cx.has_errors() {
        return None;
    }
    Some(Config {
        source,
        store: store?,
        api: api?,
        monitor,
        regions: regions.into_iter().map(|r| r.region).collect(),
        tiers,
        services: services.into_iter().map(|s| s.service).collect(),
        object_stores: object_stores?
            .into_iter()
            .map(|s| s.value)
            .collect::<Option<Vec<_>>>()?,
        failover: failover?,
        dns_providers: dns_providers?
            .into_iter()
            .map(|p| p.value)
            .collect::<Option<Vec<_>>>()?,
        webhooks: webhooks?
            .into_iter()
            .map(|w| w.value)
            .collect::<Option<Vec<_>>>()?,
        scratch,
        audit: audit?,
        agents: agents?,
        coordination: coordination?,
    })
}

/// Services naming the same cluster share one PostgreSQL cluster and fail
/// over together, so they must agree on where it lives: same regions (as a
/// set) and same primary. Each disagreeing member is compared with the first
/// member of its cluster.
pub(crate) fn clusters(cx: &mut Cx, services: &[CheckedService]) {
    let mut first_of: HashMap<&str, &CheckedService> = HashMap::new();
    for member in services {
        let cluster = member.service.cluster.as_str();
        let Some(first) = first_of.get(cluster) else {
            first_of.insert(cluster, member);
            continue;
        };
        let (a, b) = (&first.service, &member.service);
        let hint = |what: &str| {
            Some(format!(
                "services in one cluster fail over together; give them the same {what}"
            ))
        };
        let mut regions_a = a.regions.clone();
        let mut regions_b = b.regions.clone();
        regions_a.sort();
        regions_b.sort();
        if regions_a != regions_b {
            let line = cx.line(&first.regions_span);
            cx.error(
                &member.regions_span,
                &format!("{}.regions", member.path),
                format!(
                    "{:?} differ from {:?} of {} at line {line}, which shares cluster {cluster:?}",
                    b.regions, a.regions, first.path
                ),
                hint("regions"),
            );
        }
        if a.primary != b.primary {
            let line = cx.line(&first.primary_span);
            cx.error(
                &member.primary_span,
                &format!("{}.primary", member.path),
                format!(
                    "{:?} differs from primary {:?} of {} at line {line}, which shares cluster {cluster:?}",
                    b.primary, a.primary, first.path
                ),
                hint("primary"),
            );
        }
    }
}

/// No two services publish the same name through the same provider, and no
/// drill record is another service's production record: a drill or a
/// failover of one would overwrite the other.
fn published_records(cx: &mut Cx, services: &[CheckedService]) {
    let mut first_of: HashMap<(&str, &str), (&str, &Span)> = HashMap::new();
    for service in services {
        let Some(published) = &service.published else {
            continue;
        };
        for (name, span) in [&published.record, &published.drill] {
            let key = (published.provider.as_str(), name.as_str());
            match first_of.get(&key) {
                None => {
                    first_of.insert(key, (service.path.as_str(), span));
                }
                Some((path, first_span)) => {
                    let line = cx.line(first_span);
                    cx.error(
                        span,
                        &format!("{}.dns", service.path),
                        format!("{name:?} is already published by {path} at line {line}"),
                        Some("each service needs its own record and drill record".into()),
                    );
                }
            }
        }
    }
}
