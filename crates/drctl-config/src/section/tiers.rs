//! `[tiers.hot|warm|cold]`: each tier's default targets and their defaults.

use std::time::Duration;

use super::common::{optional_duration, section};
use crate::model::{Targets, Tier, TierTargets};
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const TIER_NAMES: &[&str] = &["hot", "warm", "cold"];

const DAY: u64 = 24 * 3600;

/// Targets from seconds, for the defaults below.
const fn targets(rpo: u64, rto: u64, evidence_every: u64) -> Targets {
    Targets {
        rpo: Duration::from_secs(rpo),
        rto: Duration::from_secs(rto),
        evidence_every: Duration::from_secs(evidence_every),
    }
}

/// hot 5s/1m, warm 5m/30m, cold 24h/8h: the "typical" column of DESIGN.md;
/// evidence every 7 days (hot: a drill, cold: a restore test), every 30
/// days for warm.
const DEFAULT_HOT: Targets = targets(5, 60, 7 * DAY);
const DEFAULT_WARM: Targets = targets(5 * 60, 30 * 60, 30 * DAY);
const DEFAULT_COLD: Targets = targets(DAY, 8 * 3600, 7 * DAY);

pub(crate) const TIERS: Section = Section {
    header: "[tiers]",
    doc: "Each tier's default recovery objectives; a service's own `rpo`, `rto` and `evidence_every` override its tier's.",
    keys: &[
        key("hot", K::Table, D::Unset, "See `[tiers.hot]`."),
        key("warm", K::Table, D::Unset, "See `[tiers.warm]`."),
        key("cold", K::Table, D::Unset, "See `[tiers.cold]`."),
    ],
};

/// The keys of one tier's table, with that tier's defaults.
macro_rules! tier_section {
    ($header:literal, $doc:literal, $defaults:expr) => {
        Section {
            header: $header,
            doc: $doc,
            keys: &[
                key("rpo", K::Duration, D::Duration($defaults.rpo), "The most data, in time, a failover may lose."),
                key("rto", K::Duration, D::Duration($defaults.rto), "The longest the service may be down."),
                key("evidence_every", K::Duration, D::Duration($defaults.evidence_every), "How often the RTO must be proven again (a drill, or a restore test for cold services); older proof is stale evidence."),
            ],
        }
    };
}

pub(crate) const HOT: Section = tier_section!(
    "[tiers.hot]",
    "Streaming replication with a running standby; fails over automatically unless told not to.",
    DEFAULT_HOT
);
pub(crate) const WARM: Section = tier_section!(
    "[tiers.warm]",
    "Replicated with a running standby; an operator triggers failover.",
    DEFAULT_WARM
);
pub(crate) const COLD: Section = tier_section!(
    "[tiers.cold]",
    "Verified backups in another region; recovery restores one.",
    DEFAULT_COLD
);

pub(crate) fn tiers(cx: &mut Cx, root: &Table) -> TierTargets {
    let mut targets = TierTargets::default();
    let Some(table) = section(cx, root, "tiers", &TIERS.names()) else {
        return targets;
    };
    for tier in Tier::all() {
        let Some(field) = table.get(tier.as_str()) else {
            continue;
        };
        let Some(tier_table) = cx.table(&field) else {
            continue;
        };
        cx.unknown_keys(&tier_table, &HOT.names());
        let slot = match tier {
            Tier::Hot => &mut targets.hot,
            Tier::Warm => &mut targets.warm,
            Tier::Cold => &mut targets.cold,
        };
        if let Some(rpo) = optional_duration(cx, Some(&tier_table), "rpo") {
            slot.rpo = rpo;
        }
        if let Some(rto) = optional_duration(cx, Some(&tier_table), "rto") {
            slot.rto = rto;
        }
        if let Some(every) = optional_duration(cx, Some(&tier_table), "evidence_every") {
            slot.evidence_every = every;
        }
    }
    targets
}

impl Default for TierTargets {
    fn default() -> Self {
        TierTargets {
            hot: DEFAULT_HOT,
            warm: DEFAULT_WARM,
            cold: DEFAULT_COLD,
        }
    }
}
