//! `[tiers.hot|warm|cold]`: each tier's default targets and their defaults.

use std::time::Duration;

use super::common::{optional_duration, section};
use crate::model::*;
use crate::reader::{Cx, Table};

pub(crate) const TIER_NAMES: &[&str] = &["hot", "warm", "cold"];

pub(crate) const TARGET_KEYS: &[&str] = &["rpo", "rto", "evidence_every"];

pub(crate) fn tiers(cx: &mut Cx, root: &Table) -> TierTargets {
    let mut targets = TierTargets::default();
    let Some(table) = section(cx, root, "tiers", TIER_NAMES) else {
        return targets;
    };
    for tier in Tier::all() {
        let Some(field) = table.get(tier.as_str()) else {
            continue;
        };
        let Some(tier_table) = cx.table(&field) else {
            continue;
        };
        cx.unknown_keys(&tier_table, TARGET_KEYS);
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
    /// hot 5s/1m, warm 5m/30m, cold 24h/8h: the "typical" column of
    /// DESIGN.md; evidence every 7 days (hot: a drill, cold: a restore
    /// test), every 30 days for warm.
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        const fn t(rpo: u64, rto: u64, every: u64) -> Targets {
            Targets {
                rpo: Duration::from_secs(rpo),
                rto: Duration::from_secs(rto),
                evidence_every: Duration::from_secs(every),
            }
        }
        TierTargets {
            hot: t(5, 60, 7 * DAY),
            warm: t(5 * 60, 30 * 60, 30 * DAY),
            cold: t(24 * 3600, 8 * 3600, 7 * DAY),
        }
    }
}
