//! `[[services]]`: a service's name, tier, regions, primary, cluster and
//! targets; it reads the service's sub-tables through their own sections.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::backup::{backup, Origin};
use super::common::{
    already_declared, check_name, is_valid_name, optional_duration, NameKind, References,
};
use super::failover::service_failover;
use super::health::health;
use super::postgres::postgres;
use super::regions::DeclaredRegion;
use super::service_dns::{service_dns, PublishedRecords};
use super::tiers::TIER_NAMES;
use crate::model::{Service, Targets, Tier, TierTargets};
use crate::reader::{Cx, Field, Span, Spanned, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::suggest;

pub(crate) const SERVICES: Section = Section {
    header: "[[services]]",
    doc: "The unit of failover: a tier, its regions and primary, targets, health checks, and optionally a PostgreSQL datastore, backups, a DNS record and a failover policy. A service without `postgres` fails over by health check and DNS only.",
    keys: &[
        key("name", K::String, D::Required, "`[a-z0-9-]+`, unique."),
        key("tier", K::Choice(TIER_NAMES), D::Required, "How much the service may lose and how long it may be down; decides the recovery action."),
        key("regions", K::Strings, D::Required, "Declared regions the service runs in, no repeats; hot and warm need at least two."),
        key("primary", K::String, D::Required, "The region that takes writes now; one of `regions`."),
        key("cluster", K::String, D::Derived("the service's name"), "The PostgreSQL cluster it lives in; services naming the same cluster fail over together and must have the same regions and primary."),
        key("rpo", K::Duration, D::Derived("its tier's"), "The most data, in time, a failover may lose."),
        key("rto", K::Duration, D::Derived("its tier's"), "The longest the service may be down."),
        key("evidence_every", K::Duration, D::Derived("its tier's"), "How often the RTO must be proven again."),
        key("health", K::Table, D::Unset, "See `[services.health]`."),
        key("postgres", K::Table, D::Unset, "One table per region: see `[services.postgres.REGION]`."),
        key("backup", K::Table, D::Unset, "See `[services.backup]`."),
        key("dns", K::Table, D::Unset, "See `[services.dns]`."),
        key("failover", K::Table, D::Unset, "See `[services.failover]`."),
    ],
};

/// A validated service with the positions the cluster check points at.
pub(crate) struct CheckedService {
    pub(crate) service: Service,
    pub(crate) path: String,
    pub(crate) regions_span: Span,
    pub(crate) primary_span: Span,
    pub(crate) published: Option<PublishedRecords>,
}

pub(crate) fn services(
    cx: &mut Cx,
    root: &Table,
    regions: &[DeclaredRegion],
    tiers: &TierTargets,
    base_dir: &Path,
    refs: &References,
) -> Vec<CheckedService> {
    let Some(field) = root.get("services") else {
        return Vec::new();
    };
    let Some(tables) = cx.tables(&field, "write each service as a [[services]] table") else {
        return Vec::new();
    };
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut checked = Vec::new();
    for table in tables {
        if let Some(service) = service(cx, table, regions, tiers, base_dir, refs, &mut names) {
            checked.push(service);
        }
    }
    checked
}

pub(crate) fn service(
    cx: &mut Cx,
    mut table: Table,
    declared: &[DeclaredRegion],
    tiers: &TierTargets,
    base_dir: &Path,
    refs: &References,
    names: &mut HashMap<String, Span>,
) -> Option<CheckedService> {
    let index_path = table.path.clone();

    // The name first: every other error of this service is labelled with it.
    let name = cx
        .required(&table, "name", "add name = \"…\", e.g. name = \"orders\"")
        .and_then(|f| cx.string(&f).map(|s| (s, f.path)));
    let mut name_ok = false;
    if let Some((name, name_path)) = &name {
        name_ok = check_name(cx, name, name_path, NameKind::Service);
        if let Some(first_span) = names.get(&name.value) {
            already_declared(cx, name, name_path, first_span, NameKind::Service);
            name_ok = false;
        } else {
            names.insert(name.value.clone(), name.span.clone());
        }
        if is_valid_name(&name.value) {
            table.relabel(format!("{index_path} ({})", name.value));
        }
    }
    let path = table.path.clone();
    cx.unknown_keys(&table, &SERVICES.names());

    let tier = cx
        .required(&table, "tier", "add tier = \"hot\", \"warm\" or \"cold\"")
        .and_then(|f| tier(cx, &f));

    let region_names: Vec<&str> = declared
        .iter()
        .filter_map(|r| r.reference.as_deref())
        .collect();
    let example_regions = region_names
        .iter()
        .take(2)
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let regions_field = cx.required(
        &table,
        "regions",
        &format!("add regions = [{example_regions}]"),
    );
    let regions = regions_field
        .as_ref()
        .and_then(|f| service_regions(cx, f, &region_names, &example_regions));

    let primary = cx
        .required(
            &table,
            "primary",
            &format!(
                "add primary = {:?}",
                regions
                    .as_ref()
                    .and_then(|r| r.first())
                    .map_or("eu-west", |r| r.value.as_str())
            ),
        )
        .and_then(|f| cx.string(&f).map(|s| (s, f.path)));
    if let (Some((primary, primary_path)), Some(regions)) = (&primary, &regions) {
        if !regions.iter().any(|r| r.value == primary.value) {
            primary_not_among_regions(cx, primary, primary_path, regions, &region_names);
        }
    }

    let cluster = match table.get("cluster") {
        Some(f) => cx
            .string(&f)
            .filter(|c| check_name(cx, c, &f.path, NameKind::Cluster))
            .map(|c| c.value),
        None => name.as_ref().map(|(n, _)| n.value.clone()),
    };

    let rpo = optional_duration(cx, Some(&table), "rpo");
    let evidence_every = optional_duration(cx, Some(&table), "evidence_every");
    let rto = optional_duration(cx, Some(&table), "rto");
    let health = health(cx, &table);

    // A replicated tier fails over to a running standby, which must live in
    // another region than the primary.
    if let (Some(tier), Some(regions)) = (tier, &regions) {
        if tier.is_replicated() && regions.len() == 1 {
            cx.error(
                &table.span,
                &path,
                format!(
                    "a {tier} service needs a standby region; `regions` lists only {:?}",
                    regions[0].value
                ),
                Some("add a second region".into()),
            );
        }
    }

    let postgres = match table.get("postgres") {
        Some(f) => postgres(
            cx,
            &f,
            tier,
            regions.as_deref(),
            primary.as_ref().map(|p| &p.0),
            base_dir,
            refs.agents,
        ),
        None => Some((BTreeMap::new(), BTreeMap::new())),
    };

    let backup = match table.get("backup") {
        Some(f) => backup(
            cx,
            &f,
            refs.stores,
            regions.as_deref(),
            primary.as_ref().map(|p| &p.0),
            table
                .get("postgres")
                .is_some()
                .then_some(postgres.as_ref().map(|(c, _)| c)),
            Origin {
                service: name.as_ref().map(|(n, _)| n.value.as_str()),
                base_dir,
                state_dir: refs.state_dir,
            },
        )
        .map(Some),
        None => Some(None),
    };

    let dns = match table.get("dns") {
        Some(f) => service_dns(
            cx,
            &f,
            refs.dns_providers,
            name.as_ref().map(|(n, _)| n.value.as_str()),
            regions.as_deref(),
        )
        .map(|(dns, published)| (Some(dns), Some(published))),
        None => Some((None, None)),
    };
    let failover = service_failover(cx, &table, tier);

    let (name, _) = name?;
    if !name_ok {
        return None;
    }
    let (dns, published) = dns?;
    let tier = tier?;
    let regions = regions?;
    let regions_span = regions_field?.span;
    let (primary, _) = primary?;
    let postgres = postgres?;
    let tier_targets = tiers.get(tier);
    Some(CheckedService {
        service: Service {
            name: name.value,
            tier,
            regions: regions.into_iter().map(|r| r.value).collect(),
            primary: primary.value,
            cluster: cluster?,
            targets: Targets {
                rpo: rpo.unwrap_or(tier_targets.rpo),
                rto: rto.unwrap_or(tier_targets.rto),
                evidence_every: evidence_every.unwrap_or(tier_targets.evidence_every),
            },
            health: health?,
            postgres: postgres.0,
            nodes: postgres.1,
            backup: backup?,
            dns,
            failover: failover?,
        },
        path,
        regions_span,
        primary_span: primary.span,
        published,
    })
}

pub(crate) fn tier(cx: &mut Cx, field: &Field) -> Option<Tier> {
    let text = cx.string_or(
        field,
        Some("write tier = \"hot\", \"warm\" or \"cold\"".into()),
    )?;
    match text.value.parse::<Tier>() {
        Ok(tier) => Some(tier),
        Err(unknown) => {
            cx.error(
                &text.span,
                &field.path,
                unknown.to_string(),
                suggest::hint(&text.value, TIER_NAMES.iter().copied()),
            );
            None
        }
    }
}

/// The service's `regions`: declared, no repeats, at least one. `None` when
/// any element is wrong, so checks that depend on the list are skipped.
fn service_regions(
    cx: &mut Cx,
    field: &Field,
    declared: &[&str],
    example: &str,
) -> Option<Vec<Spanned<String>>> {
    let elements = cx.array(field, &format!("e.g. regions = [{example}]"))?;
    if elements.is_empty() {
        cx.error(
            &field.span,
            &field.path,
            "lists no region",
            Some(format!(
                "list the regions the service runs in, e.g. [{example}]"
            )),
        );
        return None;
    }
    let mut ok = true;
    let mut seen: Vec<Spanned<String>> = Vec::new();
    for element in elements {
        let Some(region) = cx.string(&element) else {
            ok = false;
            continue;
        };
        if !declared.contains(&region.value.as_str()) {
            let hint = suggest::hint(&region.value, declared.iter().copied())
                .unwrap_or_else(|| format!("declared regions are {}", declared.join(", ")));
            cx.error(
                &region.span,
                &element.path,
                format!("{:?} is not a declared region", region.value),
                Some(hint),
            );
            ok = false;
        } else if seen.iter().any(|r| r.value == region.value) {
            cx.error(
                &region.span,
                &element.path,
                format!("{:?} is listed twice", region.value),
                Some("remove the repeat".into()),
            );
            ok = false;
        } else {
            seen.push(region);
        }
    }
    ok.then_some(seen)
}

fn primary_not_among_regions(
    cx: &mut Cx,
    primary: &Spanned<String>,
    path: &str,
    regions: &[Spanned<String>],
    declared: &[&str],
) {
    let listed: Vec<&str> = regions.iter().map(|r| r.value.as_str()).collect();
    let hint = if declared.contains(&primary.value.as_str()) {
        format!(
            "add {:?} to `regions`, or choose one of them",
            primary.value
        )
    } else {
        suggest::hint(&primary.value, listed.iter().copied())
            .unwrap_or_else(|| "choose one of the service's regions".into())
    };
    cx.error(
        &primary.span,
        path,
        format!(
            "{:?} is not one of the service's regions {}",
            primary.value,
            listed.join(", ")
        ),
        Some(hint),
    );
}
