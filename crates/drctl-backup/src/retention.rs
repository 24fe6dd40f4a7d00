//! Retention: which backups to keep — the newest N plus the newest of each
//! of the last D days, W ISO weeks and M months (grandfather-father-son) —
//! and deleting the rest crash-safely.
//!
//! Three backups are never deleted, whatever the rules say: the newest
//! verified one (it may be all that stands between a disaster and nothing),
//! the newest one whose off-site copy is verified (all that stands between
//! the loss of the original's region and nothing: the off-site copy goes
//! with its original) and any a running restore test is reading.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

/// How many of each to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

/// A complete backup, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub ended_at: DateTime<Utc>,
    /// The original verified.
    pub verified: bool,
    /// The off-site copy verified.
    pub offsite_verified: bool,
}

/// The decision, with the reasons each kept backup is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    pub keep: BTreeMap<String, Vec<&'static str>>,
    pub delete: Vec<String>,
    /// Backups retention would delete that S3 Object Lock still holds,
    /// with when the lock ends (when the store says): kept, and deleted by
    /// the first pass after that.
    pub waiting: BTreeMap<String, Option<chrono::DateTime<chrono::Utc>>>,
    /// Archived WAL objects deleted: every segment wholly before the
    /// oldest retained backup's start (and partial copies superseded).
    pub wal_deleted: usize,
    /// Such WAL objects still under Object Lock: deleted by a later pass.
    pub wal_waiting: usize,
}

/// Decides what to keep. Pure: the caller supplies the backups, the rule
/// and the ids in use.
pub fn plan_retention(
    candidates: &[Candidate],
    rule: RetentionRule,
    in_use: &HashSet<String>,
) -> RetentionPlan {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.ended_at.cmp(&a.ended_at).then_with(|| b.id.cmp(&a.id)));
    let mut plan = RetentionPlan::default();
    let mut keep =
        |id: &str, why: &'static str| plan.keep.entry(id.to_string()).or_default().push(why);

    for c in sorted.iter().take(rule.keep_last as usize) {
        keep(&c.id, "last");
    }
    // The newest backup of each period, for the most recent periods that
    // have one (a period without backups does not use up a slot).
    let mut by_period =
        |limit: u32, why: &'static str, period: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
            let mut seen = Vec::new();
            for c in &sorted {
                let p = period(&c.ended_at);
                if seen.contains(&p) {
                    continue;
                }
                if seen.len() as u32 >= limit {
                    break;
                }
                seen.push(p);
                keep(&c.id, why);
            }
        };
    by_period(rule.keep_daily, "daily", &|t| (t.year(), t.ordinal()));
    by_period(rule.keep_weekly, "weekly", &|t| {
        (t.iso_week().year(), t.iso_week().week())
    });
    by_period(rule.keep_monthly, "monthly", &|t| (t.year(), t.month()));
    if let Some(newest_verified) = sorted.iter().find(|c| c.verified) {
        keep(&newest_verified.id, "newest verified");
    }
    if let Some(newest_offsite) = sorted.iter().find(|c| c.offsite_verified) {
        keep(&newest_offsite.id, "newest verified off-site");
    }
    for c in &sorted {
        if in_use.contains(&c.id) {
            keep(&c.id, "in use by a restore test");
        }
    }
    plan.delete = sorted
        .iter()
        .filter(|c| !plan.keep.contains_key(&c.id))
        .map(|c| c.id.clone())
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap(),
        )
    }

    /// Two backups a day (03:00 and 15:00) from 2026-01-01 to 2026-06-30.
    fn calendar() -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        while day <= NaiveDate::from_ymd_opt(2026, 6, 30).unwrap() {
            for h in [3, 15] {
                let t = Utc.from_utc_datetime(&day.and_hms_opt(h, 0, 0).unwrap());
                out.push(Candidate {
                    id: t.format("%Y%m%dT%H").to_string(),
                    ended_at: t,
                    verified: true,
                    offsite_verified: false,
                });
            }
            day = day.succ_opt().unwrap();
        }
        out
    }

    const RULE: RetentionRule = RetentionRule {
        keep_last: 3,
        keep_daily: 7,
        keep_weekly: 4,
        keep_monthly: 6,
    };

    fn kept(plan: &RetentionPlan) -> Vec<&str> {
        plan.keep.keys().map(String::as_str).collect()
    }

    #[test]
    fn grandfather_father_son_over_half_a_year() {
        let plan = plan_retention(&calendar(), RULE, &HashSet::new());
        let expected = vec![
            // monthly: the newest of January … June (June's is also "last")
            "20260131T15",
            "20260228T15",
            "20260331T15",
            "20260430T15",
            "20260531T15",
            // weekly: the newest of the ISO weeks of 30 June (Tuesday; the 30th itself),
            // of 22-28 June (the 28th, also daily), 15-21 and 8-14 June
            "20260614T15",
            "20260621T15",
            // daily: 24 … 30 June
            "20260624T15",
            "20260625T15",
            "20260626T15",
            "20260627T15",
            "20260628T15",
            "20260629T15",
            // last 3: the 30th's two and the 29th's 15:00 (already daily)
            "20260630T03",
            "20260630T15",
        ];
        let mut expected: Vec<&str> = expected;
        expected.sort();
        assert_eq!(kept(&plan), expected);
        assert_eq!(plan.keep.len() + plan.delete.len(), calendar().len());
        assert_eq!(
            plan.keep["20260630T15"],
            vec!["last", "daily", "weekly", "monthly", "newest verified"]
        );
    }

    #[test]
    fn never_deletes_the_newest_verified_backup() {
        let mut backups = calendar();
        // Only an old backup was ever verified.
        for b in backups.iter_mut() {
            b.verified = b.id == "20260102T03";
        }
        let plan = plan_retention(&backups, RULE, &HashSet::new());
        assert_eq!(plan.keep["20260102T03"], vec!["newest verified"]);
        assert!(!plan.delete.contains(&"20260102T03".to_string()));
    }

    #[test]
    fn never_deletes_a_backup_in_use() {
        let in_use: HashSet<String> = ["20260315T03".to_string()].into();
        let plan = plan_retention(&calendar(), RULE, &in_use);
        assert_eq!(plan.keep["20260315T03"], vec!["in use by a restore test"]);
    }

    #[test]
    fn zero_rules_keep_only_what_must_stay() {
        let rule = RetentionRule {
            keep_last: 1,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
        };
        let plan = plan_retention(&calendar(), rule, &HashSet::new());
        assert_eq!(kept(&plan), vec!["20260630T15"]);
        assert_eq!(plan.delete.len(), calendar().len() - 1);
    }

    #[test]
    fn periods_without_backups_do_not_use_up_slots() {
        let backups = vec![
            Candidate {
                id: "a".into(),
                ended_at: at(2026, 1, 10, 1),
                verified: false,
                offsite_verified: false,
            },
            Candidate {
                id: "b".into(),
                ended_at: at(2026, 3, 10, 1),
                verified: false,
                offsite_verified: false,
            },
            Candidate {
                id: "c".into(),
                ended_at: at(2026, 6, 10, 1),
                verified: false,
                offsite_verified: false,
            },
        ];
        let rule = RetentionRule {
            keep_last: 1,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 3,
        };
        let plan = plan_retention(&backups, rule, &HashSet::new());
        assert_eq!(kept(&plan), vec!["a", "b", "c"]);
    }

    #[test]
    fn never_deletes_the_newest_backup_whose_offsite_copy_is_verified() {
        // Every original verified, but only an old backup's off-site copy:
        // were the original's region lost, that copy is all there is.
        let mut backups = calendar();
        for b in backups.iter_mut() {
            b.offsite_verified = b.id == "20260105T15";
        }
        let plan = plan_retention(&backups, RULE, &HashSet::new());
        assert_eq!(plan.keep["20260105T15"], vec!["newest verified off-site"]);
        assert!(!plan.delete.contains(&"20260105T15".to_string()));
    }
}
