//! The DNS actions every kind that announces a server shares: flip the
//! record (conditional on the source's value for a failover or
//! switchover), then confirm the flip by reading back exactly what it
//! recorded.

use std::sync::Arc;
use std::time::Duration;

use drctl_dns::{DnsProvider, DnsRecord};
use serde::{Deserialize, Serialize};

use super::ctx::{ActionResult, Ctx, StepError};
use super::output::Action;
use crate::Step;

const DNS_CONFIRM: Duration = Duration::from_secs(30);

/// One record a flip set: what the confirm reads back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Flip {
    pub service: String,
    /// The configured provider's name.
    pub provider: String,
    pub record: String,
    pub rtype: String,
    /// The values joined with commas (as people read it).
    pub value: String,
    /// The values set (journals of version 1 have only `value`).
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub ttl: u32,
    pub change_id: Option<String>,
    pub took_ms: u64,
}

impl Flip {
    /// The record as it was set.
    fn record(&self) -> Result<DnsRecord, StepError> {
        let rtype = drctl_dns::RecordType::all()
            .into_iter()
            .find(|t| t.as_str() == self.rtype)
            .ok_or_else(|| {
                StepError::stop(format!(
                    "the journal's DNS flip of {} has an unknown record type {}",
                    self.record, self.rtype
                ))
            })?;
        Ok(DnsRecord {
            name: self.record.clone(),
            rtype,
            ttl: self.ttl,
            values: if self.values.is_empty() {
                self.value.split(',').map(str::to_string).collect()
            } else {
                self.values.clone()
            },
        })
    }
}

/// What the confirm found, per record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Confirmed {
    pub service: String,
    pub record: String,
    pub values: Vec<String>,
    pub took_ms: u64,
}

/// Which records a flip writes, and from what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Announce {
    /// The production record, only from the source region's value (or
    /// already the target's): failover and switchover.
    FromSource,
    /// The production record, whatever it holds (a recovery's record may
    /// hold anything after a long outage).
    Unconditional,
    /// A drill's own record, never the production one.
    Drill,
}

/// A member service, its DNS provider and the record as the target wants it.
type Flipped = (String, Arc<dyn DnsProvider>, DnsRecord);

/// The DNS records an operation flips: one per member with `[services.dns]`.
pub(crate) fn dns_records(ctx: &Ctx<'_>, announce: Announce) -> Result<Vec<Flipped>, StepError> {
    let mut out = Vec::new();
    for member in &ctx.params.members {
        let Some(service) = ctx.config.service(member) else {
            continue;
        };
        let Some(dns) = &service.dns else { continue };
        let value = dns.target(&ctx.params.target).ok_or_else(|| {
            StepError::abandon(format!(
                "service {member} has no DNS target for region {}",
                ctx.params.target
            ))
        })?;
        let provider_config = ctx.config.dns_provider(&dns.provider).ok_or_else(|| {
            StepError::abandon(format!(
                "DNS provider {} is no longer in the config",
                dns.provider
            ))
        })?;
        let provider =
            drctl_dns::provider(provider_config).map_err(|e| StepError::stop(e.to_string()))?;
        out.push((
            member.clone(),
            provider,
            DnsRecord {
                name: if announce == Announce::Drill {
                    dns.drill_record.clone()
                } else {
                    dns.record.clone()
                },
                rtype: dns.rtype,
                ttl: dns.ttl.as_secs().max(1) as u32,
                values: vec![value.to_string()],
            },
        ));
    }
    Ok(out)
}

pub(crate) fn dns_error(e: drctl_dns::DnsError) -> StepError {
    if e.is_retryable() {
        StepError::retry(e.to_string())
    } else {
        StepError::stop(e.to_string())
    }
}

/// Sets each member's record to the target's value and waits until the
/// provider reports it applied.
pub(crate) async fn flip(ctx: &Ctx<'_>, announce: Announce) -> ActionResult<Vec<Flip>> {
    let records = dns_records(ctx, announce)?;
    if records.is_empty() {
        return Ok(Action::skipped(
            "no service of the cluster has [services.dns]",
        ));
    }
    let mut flips = Vec::new();
    for (service, provider, record) in records {
        let expected = match announce {
            Announce::FromSource => Some(source_value(ctx, &service)?),
            Announce::Unconditional | Announce::Drill => None,
        };
        ctx.check_lease("flipping DNS").await?;
        let applied = match &expected {
            // Conditional: only from the source's value (or already the
            // target's). A driver that slept through a takeover and a
            // switchback finds the record changed and writes nothing.
            Some(old) => match provider.upsert_if(&record, Some(old)).await {
                // A record that does not exist yet (a new zone, a provider
                // rebuilt empty) names no newer primary: create it, again
                // only if it is still absent.
                Err(conflict @ drctl_dns::DnsError::Conflict { .. }) => provider
                    .upsert_if(&record, None)
                    .await
                    .map_err(|e| match e {
                        drctl_dns::DnsError::Conflict { .. } => conflict,
                        other => other,
                    }),
                other => other,
            },
            None => provider.upsert(&record).await,
        }
        .map_err(dns_error)?;
        flips.push(Flip {
            service,
            provider: provider.name().to_string(),
            record: record.name.clone(),
            rtype: record.rtype.as_str().to_string(),
            value: record.values.join(","),
            values: record.values.clone(),
            ttl: record.ttl,
            change_id: applied.change_id,
            took_ms: applied.took.as_millis() as u64,
        });
    }
    Ok(Action::Done(flips))
}

/// The value a conditional flip expects the record to hold now: the
/// source region's target.
fn source_value(ctx: &Ctx<'_>, member: &str) -> Result<Vec<String>, StepError> {
    let dns = ctx.config.service(member).and_then(|s| s.dns.as_ref());
    let value = dns
        .and_then(|d| d.target(&ctx.params.source))
        .ok_or_else(|| {
            StepError::abandon(format!(
                "service {member} has no DNS target for the source region {}",
                ctx.params.source
            ))
        })?;
    Ok(vec![value.to_string()])
}

/// The authoritative answer for each record the flip set is what it set:
/// read from the flip's output, never worked out again from the config.
pub(crate) async fn confirm(ctx: &Ctx<'_>) -> ActionResult<Vec<Confirmed>> {
    let Some(flips) = ctx.lookup::<Vec<Flip>>(Step::DnsFlip)?.done() else {
        return Ok(Action::skipped("no DNS flip"));
    };
    let mut confirmed = Vec::new();
    for flip in flips {
        let record = flip.record()?;
        let provider_config = ctx.config.dns_provider(&flip.provider).ok_or_else(|| {
            StepError::stop(format!(
                "DNS provider {} is no longer in the config: cannot confirm {}",
                flip.provider, flip.record
            ))
        })?;
        let provider =
            drctl_dns::provider(provider_config).map_err(|e| StepError::stop(e.to_string()))?;
        let took = drctl_dns::confirm(provider.as_ref(), &record, DNS_CONFIRM)
            .await
            .map_err(dns_error)?;
        confirmed.push(Confirmed {
            service: flip.service,
            record: record.name,
            values: record.values,
            took_ms: took.as_millis() as u64,
        });
    }
    Ok(Action::Done(confirmed))
}
