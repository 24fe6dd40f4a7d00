//! Point-in-time recovery targets: what an operator asks for
//! (`--to-time`, `--to-lsn`, `--latest`), whether the archive can give it
//! (the restorable window), and which base backup a restore starts from.
//!
//! Times are the primary's clock, as commit timestamps are: PostgreSQL's
//! `recovery_target_time` compares the target with the commit records'
//! own times, so drctl never turns its own clock into a target.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use drctl_pg::wal::{TimelineHistory, TimelineId};
use drctl_pg::Lsn;
use serde::{Deserialize, Serialize};

/// The forms `--to-time` takes, for error messages and `--help`.
pub const TIME_FORMATS: &str = "a date, a time (seconds and a fraction optional) and a zone: \
2026-12-07T14:03:11Z, 2026-12-07 14:03:11.25+01:00, 2026-12-07 14:03:11 UTC, \
or as psql prints now(): 2026-12-07 14:03:11.250349+00";

/// What is wrong with a recovery target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("--to-time {given:?}: {why}; accepted: {TIME_FORMATS}")]
    Time { given: String, why: String },
    #[error("--to-lsn {0}")]
    Lsn(String),
    #[error("give only one of --to-time, --to-lsn and --latest")]
    Conflict,
    #[error("{target} is outside the restorable window of {service}: {window}; pick a point inside it, or --latest")]
    Outside {
        service: String,
        target: String,
        window: String,
    },
    #[error("{service} has no restorable window yet: no verified base backup with the WAL from its start")]
    NoWindow { service: String },
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "at", rename_all = "snake_case")]
pub enum RecoveryTarget {
    /// Every transaction committed at or before this time (the primary's
    /// clock), none committed after.
    Time(DateTime<Utc>),
    /// Every WAL record up to this position.
    Lsn(Lsn),
    /// Everything the archive holds.
    Latest,
}

impl RecoveryTarget {
    /// From the command line's or the API's three exclusive options.
    /// `None` when none is given: the caller says which one is missing.
    pub fn from_options(
        time: Option<&str>,
        lsn: Option<&str>,
        latest: bool,
    ) -> Result<Option<RecoveryTarget>, TargetError> {
        Ok(match (time, lsn, latest) {
            (Some(t), None, false) => Some(RecoveryTarget::Time(parse_time(t)?)),
            (None, Some(l), false) => {
                Some(RecoveryTarget::Lsn(l.trim().parse().map_err(
                    |e: drctl_pg::wal::WalError| TargetError::Lsn(e.to_string()),
                )?))
            }
            (None, None, true) => Some(RecoveryTarget::Latest),
            (None, None, false) => None,
            _ => return Err(TargetError::Conflict),
        })
    }
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Time(t) => write!(f, "{}", t.to_rfc3339()),
            RecoveryTarget::Lsn(l) => write!(f, "WAL position {l}"),
            RecoveryTarget::Latest => f.write_str("the latest archived WAL"),
        }
    }
}

/// Parses a `--to-time`. A time without a zone is refused rather than
/// guessed: during a ransomware recovery nobody should wonder whether
/// 14:03 meant UTC or the server's local time.
pub fn parse_time(given: &str) -> Result<DateTime<Utc>, TargetError> {
    let bad = |why: &str| TargetError::Time {
        given: given.to_string(),
        why: why.to_string(),
    };
    let text = given.trim();
    let (date, rest) = match (text.get(..10), text.get(10..)) {
        (Some(d), Some(r)) => (d, r),
        _ => return Err(bad("expected a date such as 2026-12-07 first")),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| bad("expected a date such as 2026-12-07 first"))?;
    if rest.is_empty() {
        return Err(bad("expected a time such as 14:03:11 after the date"));
    }
    let rest = rest
        .strip_prefix(['T', 't', ' '])
        .ok_or_else(|| bad("expected 'T' or a space between the date and the time"))?;
    let zone_at = rest
        .find(['Z', 'z', '+', '-', ' ', 'U'])
        .unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let time = ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(time, f).ok())
        .ok_or_else(|| bad("expected a time such as 14:03:11 after the date"))?;
    let offset = parse_zone(zone.trim_start()).map_err(|why| bad(&why))?;
    offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad("not a valid time"))
}

fn parse_zone(zone: &str) -> Result<FixedOffset, String> {
    const NONE: &str =
        "it has no time zone: add Z for UTC (2026-12-07T14:03:11Z) or an offset such as +01:00";
    if zone.is_empty() {
        return Err(NONE.into());
    }
    if matches!(zone, "Z" | "z" | "UTC" | "utc") {
        return Ok(FixedOffset::east_opt(0).expect("zero offset"));
    }
    let bad = || {
        format!(
            "{zone:?} is not a time zone: use Z, UTC, or an offset such as +01:00, +0100 or +01"
        )
    };
    let (sign, digits) = match zone.split_at_checked(1) {
        Some(("+", d)) => (1, d),
        Some(("-", d)) => (-1, d),
        _ => return Err(bad()),
    };
    let digits = digits.replacen(':', "", 1);
    if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), |m| m.parse())
        .map_err(|_| bad())?;
    if hours > 15 || minutes > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

/// A base backup as a restore sees it: where it becomes consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasePoint {
    pub backup_id: String,
    pub timeline: TimelineId,
    /// Where WAL replay must start.
    pub start_lsn: Lsn,
    /// The backup is consistent from here: no restore can stop earlier.
    pub stop_lsn: Lsn,
    /// When the primary passed `stop_lsn`, on its clock (an upper bound).
    pub consistent_at: DateTime<Utc>,
}

/// The span a point-in-time restore can reach along one timeline's
/// history: from the oldest usable base backup's consistency point to the
/// end of the unbroken WAL after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorableWindow {
    pub service: String,
    pub timeline: TimelineId,
    pub from_time: DateTime<Utc>,
    pub from_lsn: Lsn,
    /// The newest commit time known to be in the archive's WAL (the
    /// primary's clock at the newest heartbeat the unbroken WAL holds).
    pub to_time: DateTime<Utc>,
    pub to_lsn: Lsn,
}

impl fmt::Display for RestorableWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) to {} ({}) on timeline {}",
            self.from_time.to_rfc3339(),
            self.from_lsn,
            self.to_time.to_rfc3339(),
            self.to_lsn,
            self.timeline
        )
    }
}

impl RestorableWindow {
    /// Refuses a target the archive cannot reach, naming the window.
    pub fn admits(&self, target: &RecoveryTarget) -> Result<(), TargetError> {
        let inside = match target {
            RecoveryTarget::Time(t) => *t >= self.from_time && *t <= self.to_time,
            RecoveryTarget::Lsn(l) => *l >= self.from_lsn && *l <= self.to_lsn,
            RecoveryTarget::Latest => true,
        };
        if inside {
            Ok(())
        } else {
            Err(TargetError::Outside {
                service: self.service.clone(),
                target: target.to_string(),
                window: self.to_string(),
            })
        }
    }
}

/// The base backup a restore to `target` along `history` starts from: the
/// newest one on the way to the target timeline that is consistent by the
/// target (the less WAL to replay, the faster the restore). `None`: no
/// backup can reach it.
pub fn pick_base<'a>(
    backups: &'a [BasePoint],
    history: &TimelineHistory,
    target: &RecoveryTarget,
) -> Option<&'a BasePoint> {
    backups
        .iter()
        .filter(|b| history.passes_through(b.timeline, b.stop_lsn))
        .filter(|b| match target {
            RecoveryTarget::Time(t) => b.consistent_at <= *t,
            RecoveryTarget::Lsn(l) => b.stop_lsn <= *l,
            RecoveryTarget::Latest => true,
        })
        .max_by_key(|b| b.stop_lsn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_parse_in_the_forms_operators_paste() {
        let want = utc("2026-12-07T14:03:11Z");
        for ok in [
            "2026-12-07T14:03:11Z",
            "2026-12-07t14:03:11z",
            "2026-12-07 14:03:11Z",
            "2026-12-07 14:03:11 UTC",
            "2026-12-07 14:03:11UTC",
            "2026-12-07 15:03:11+01:00",
            "2026-12-07 15:03:11 +0100",
            "2026-12-07 14:03:11+00",
            "2026-12-07T09:33:11-04:30",
            "  2026-12-07T14:03:11Z ",
        ] {
            assert_eq!(parse_time(ok).unwrap(), want, "{ok}");
        }
        assert_eq!(
            parse_time("2026-12-07 14:03:11.250349+00").unwrap(),
            utc("2026-12-07T14:03:11.250349Z")
        );
        assert_eq!(
            parse_time("2026-12-07 14:03Z").unwrap(),
            utc("2026-12-07T14:03:00Z")
        );
    }

    #[test]
    fn malformed_times_are_refused_with_the_accepted_formats() {
        for (bad, why) in [
            ("2026-12-07 14:03:11", "no time zone"),
            ("2026-12-07T14:03:11", "no time zone"),
            ("yesterday", "expected a date"),
            ("2026-13-07 14:03:11Z", "expected a date"),
            ("2026-12-07", "expected a time"),
            ("2026-12-07_14:03:11Z", "'T' or a space"),
            ("2026-12-07 25:03:11Z", "expected a time"),
            ("2026-12-07 14:03:11 CET", "not a time zone"),
            ("2026-12-07 14:03:11+1", "not a time zone"),
            ("2026-12-07 14:03:11+24:00", "not a time zone"),
            ("", "expected a date"),
            ("2026-12-07 14:03:11Zé", "not a time zone"),
        ] {
            let err = parse_time(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("accepted: a date"), "{bad}: {err}");
        }
    }

    #[test]
    fn exactly_one_target_option() {
        assert_eq!(
            RecoveryTarget::from_options(None, None, false).unwrap(),
            None
        );
        assert_eq!(
            RecoveryTarget::from_options(None, Some("0/3000028"), false).unwrap(),
            Some(RecoveryTarget::Lsn(Lsn(0x3000028)))
        );
        assert_eq!(
            RecoveryTarget::from_options(None, None, true).unwrap(),
            Some(RecoveryTarget::Latest)
        );
        let err =
            RecoveryTarget::from_options(Some("2026-12-07T14:03:11Z"), None, true).unwrap_err();
        assert_eq!(err, TargetError::Conflict);
        let err = RecoveryTarget::from_options(None, Some("3000028"), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--to-lsn \"3000028\" is not a WAL position"),
            "{err}"
        );
    }

    fn window() -> RestorableWindow {
        RestorableWindow {
            service: "orders".into(),
            timeline: TimelineId(2),
            from_time: utc("2026-12-06T02:00:05Z"),
            from_lsn: Lsn(0x3000148),
            to_time: utc("2026-12-07T22:10:41Z"),
            to_lsn: Lsn(0x7000400),
        }
    }

    #[test]
    fn a_target_outside_the_window_names_the_window() {
        let w = window();
        w.admits(&RecoveryTarget::Time(utc("2026-12-07T14:03:11Z")))
            .unwrap();
        w.admits(&RecoveryTarget::Latest).unwrap();
        w.admits(&RecoveryTarget::Lsn(Lsn(0x7000400))).unwrap();
        let err = w
            .admits(&RecoveryTarget::Time(utc("2026-12-05T14:03:11Z")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "2026-12-05T14:03:11+00:00 is outside the restorable window of orders: \
             2026-12-06T02:00:05+00:00 (0/3000148) to 2026-12-07T22:10:41+00:00 (0/7000400) \
             on timeline 2; pick a point inside it, or --latest"
        );
        assert!(w.admits(&RecoveryTarget::Lsn(Lsn(0x7000401))).is_err());
    }

    #[test]
    fn the_newest_base_backup_consistent_by_the_target_on_its_history() {
        let history = TimelineHistory::parse(TimelineId(2), "1\t0/5000148\tx\n").unwrap();
        let base = |id: &str, tl: u32, stop: u64, at: &str| BasePoint {
            backup_id: id.into(),
            timeline: TimelineId(tl),
            start_lsn: Lsn(stop - 0x100),
            stop_lsn: Lsn(stop),
            consistent_at: utc(at),
        };
        let backups = vec![
            base("b1", 1, 0x3000200, "2026-12-07T10:00:00Z"),
            base("b2", 1, 0x4000200, "2026-12-07T12:00:00Z"),
            // On timeline 1 after the switch: the old primary's, abandoned.
            base("b3", 1, 0x6000200, "2026-12-07T13:00:00Z"),
            base("b4", 2, 0x6800200, "2026-12-07T14:00:00Z"),
        ];
        let pick =
            |t: RecoveryTarget| pick_base(&backups, &history, &t).map(|b| b.backup_id.clone());
        assert_eq!(
            pick(RecoveryTarget::Time(utc("2026-12-07T13:30:00Z"))).as_deref(),
            Some("b2")
        );
        assert_eq!(
            pick(RecoveryTarget::Time(utc("2026-12-07T14:00:00Z"))).as_deref(),
            Some("b4")
        );
        assert_eq!(
            pick(RecoveryTarget::Time(utc("2026-12-07T09:00:00Z"))),
            None
        );
        assert_eq!(
            pick(RecoveryTarget::Lsn(Lsn(0x3000200))).as_deref(),
            Some("b1")
        );
        assert_eq!(pick(RecoveryTarget::Latest).as_deref(), Some("b4"));
    }
}
