//! WAL files as PostgreSQL names and chains them: segments, timelines and
//! timeline history files, and which segments a recovery along one
//! timeline reads. The WAL archive's continuity check, its retention and
//! point-in-time restores all stand on this; there is no I/O here.
//!
//! Which segment a recovery reads follows PostgreSQL's own rule
//! (`XLogFileReadAnyTLI`): for segment number `n` it takes the file of the
//! newest timeline in the target's history that had begun by `n`. The
//! segment holding a switch point therefore comes from the *new* timeline
//! (a promoted server writes it with the old timeline's WAL up to the
//! switch), and the old timeline's copy of it, which `pg_receivewal` keeps
//! as `.partial`, is never needed.

pub mod records;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Lsn;

pub use records::{scan_segment, ScanEnd, ScanError, SegmentScan, TransactionEnd};

/// What is wrong with a WAL name, position or history file. Each says what
/// was given and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    #[error("{0:?} is not a WAL position: expected two hexadecimal numbers of up to 8 digits separated by '/', such as 0/16B3748")]
    Lsn(String),
    #[error("{0:?} is not a WAL segment name: expected 24 hexadecimal digits (timeline, log, segment), such as 000000010000000000000003")]
    SegmentName(String),
    #[error("{0:?} is not a timeline history file name: expected 8 hexadecimal digits and .history, such as 00000002.history")]
    HistoryName(String),
    #[error("{0} is not a WAL segment size: PostgreSQL allows a power of two from 1 MiB to 1 GiB")]
    SegmentSize(u64),
    #[error("history file of timeline {timeline}, line {line}: {reason}")]
    History {
        timeline: TimelineId,
        line: usize,
        reason: String,
    },
}

impl FromStr for Lsn {
    type Err = WalError;

    /// PostgreSQL's `pg_lsn` input: `X/Y`, each part 1 to 8 hexadecimal
    /// digits.
    fn from_str(text: &str) -> Result<Lsn, WalError> {
        let bad = || WalError::Lsn(text.to_string());
        let (hi, lo) = text.split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u64::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(Lsn((part(hi)? << 32) | part(lo)?))
    }
}

/// A timeline: PostgreSQL starts a new one at every promotion and at the
/// end of every point-in-time recovery. Timeline 1 is the first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TimelineId(pub u32);

impl TimelineId {
    /// The timeline `initdb` starts.
    pub const FIRST: TimelineId = TimelineId(1);

    /// `00000002.history`: the file that says where this timeline branched
    /// off. Timeline 1 has none.
    pub fn history_file_name(self) -> String {
        format!("{:08X}.history", self.0)
    }

    /// The timeline a history file name is about.
    pub fn from_history_file_name(name: &str) -> Result<TimelineId, WalError> {
        let bad = || WalError::HistoryName(name.to_string());
        let hex = name.strip_suffix(".history").ok_or_else(bad)?;
        if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        match u32::from_str_radix(hex, 16) {
            Ok(0) | Err(_) => Err(bad()),
            Ok(t) => Ok(TimelineId(t)),
        }
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The size of one WAL segment file, fixed per cluster at `initdb`
/// (`--wal-segsize`, default 16 MiB; `SHOW wal_segment_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct SegmentSize(u64);

impl SegmentSize {
    /// PostgreSQL's default.
    pub const DEFAULT: SegmentSize = SegmentSize(16 * 1024 * 1024);

    pub fn new(bytes: u64) -> Result<SegmentSize, WalError> {
        if bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&bytes) {
            Ok(SegmentSize(bytes))
        } else {
            Err(WalError::SegmentSize(bytes))
        }
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Segments per 4 GiB "log id", the middle part of a segment name.
    fn per_log_id(self) -> u64 {
        0x1_0000_0000 / self.0
    }
}

impl TryFrom<u64> for SegmentSize {
    type Error = WalError;
    fn try_from(bytes: u64) -> Result<SegmentSize, WalError> {
        SegmentSize::new(bytes)
    }
}

impl From<SegmentSize> for u64 {
    fn from(size: SegmentSize) -> u64 {
        size.0
    }
}

impl Default for SegmentSize {
    fn default() -> Self {
        SegmentSize::DEFAULT
    }
}

/// One WAL segment file: a segment number (the position divided by the
/// segment size) on one timeline. Ordered by position first, so a sorted
/// set reads in WAL order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub number: u64,
    pub timeline: TimelineId,
}

impl Segment {
    /// The segment of `timeline` that holds the byte at `lsn`.
    pub fn containing(timeline: TimelineId, lsn: Lsn, size: SegmentSize) -> Segment {
        Segment {
            number: lsn.0 / size.0,
            timeline,
        }
    }

    /// PostgreSQL's file name: timeline, log id and segment, 8 hexadecimal
    /// digits each (`000000010000000000000003`).
    pub fn file_name(self, size: SegmentSize) -> String {
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline.0,
            self.number / size.per_log_id(),
            self.number % size.per_log_id()
        )
    }

    /// The segment a file name stands for (no suffix such as `.partial`).
    pub fn from_file_name(name: &str, size: SegmentSize) -> Result<Segment, WalError> {
        let bad = || WalError::SegmentName(name.to_string());
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let field = |i: usize| u64::from_str_radix(&name[i * 8..i * 8 + 8], 16).map_err(|_| bad());
        let (timeline, log, seg) = (field(0)?, field(1)?, field(2)?);
        if timeline == 0 || seg >= size.per_log_id() {
            return Err(bad());
        }
        Ok(Segment {
            number: log * size.per_log_id() + seg,
            timeline: TimelineId(timeline as u32),
        })
    }

    /// The first position in this segment.
    pub fn start(self, size: SegmentSize) -> Lsn {
        Lsn(self.number * size.0)
    }

    /// The position just past this segment (the next one's start).
    pub fn end(self, size: SegmentSize) -> Lsn {
        Lsn((self.number + 1) * size.0)
    }
}

/// Where one ancestor timeline ended: a line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Branch {
    /// The ancestor.
    pub timeline: TimelineId,
    /// The position where the ancestor ends and its child begins.
    pub switch_point: Lsn,
    /// Why (PostgreSQL writes "no recovery target specified", or the
    /// target that ended a point-in-time recovery).
    pub reason: String,
}

/// The ancestry of one timeline, from its history file (`00000003.history`
/// lists timelines 1 and 2 and where each ended). Timeline 1's is empty.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineHistory {
    pub timeline: TimelineId,
    /// Oldest first; switch points never go backwards.
    pub ancestors: Vec<Branch>,
}

impl TimelineHistory {
    /// The history of a timeline with no ancestors (timeline 1, or a fresh
    /// cluster).
    pub fn root(timeline: TimelineId) -> TimelineHistory {
        TimelineHistory {
            timeline,
            ancestors: Vec::new(),
        }
    }

    /// Reads a history file the way PostgreSQL does
    /// (`readTimeLineHistory`): blank lines and `#` comments are skipped,
    /// each other line is `parent<TAB>X/Y<TAB>reason`, parents increase,
    /// all below `timeline`.
    pub fn parse(timeline: TimelineId, text: &str) -> Result<TimelineHistory, WalError> {
        let mut ancestors: Vec<Branch> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| WalError::History {
                timeline,
                line: index + 1,
                reason,
            };
            let mut fields = line.splitn(3, ['\t', ' ']);
            let parent = fields
                .next()
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|t| *t > 0)
                .map(TimelineId)
                .ok_or_else(|| bad(format!("expected a timeline number first, found {line:?}")))?;
            let switch_point: Lsn = fields
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .map_err(|e: WalError| bad(e.to_string()))?;
            let reason = fields.next().unwrap_or("").trim().to_string();
            if parent >= timeline {
                return Err(bad(format!(
                    "ancestor timeline {parent} is not older than timeline {timeline}"
                )));
            }
            if let Some(last) = ancestors.last() {
                if parent <= last.timeline {
                    return Err(bad(format!(
                        "timeline {parent} follows timeline {}: ancestors must increase",
                        last.timeline
                    )));
                }
                if switch_point < last.switch_point {
                    return Err(bad(format!(
                        "switch point {switch_point} is before the previous one, {}",
                        last.switch_point
                    )));
                }
            }
            ancestors.push(Branch {
                timeline: parent,
                switch_point,
                reason,
            });
        }
        Ok(TimelineHistory {
            timeline,
            ancestors,
        })
    }

    /// The timeline that wrote `lsn` on the way to this one.
    pub fn timeline_at(&self, lsn: Lsn) -> TimelineId {
        self.ancestors
            .iter()
            .find(|b| lsn < b.switch_point)
            .map_or(self.timeline, |b| b.timeline)
    }

    /// Where `timeline` begins and ends on the way to this one (`None` for
    /// the end of the target itself); `None` if it is not on the way.
    pub fn span(&self, timeline: TimelineId) -> Option<(Lsn, Option<Lsn>)> {
        let mut begin = Lsn(0);
        for branch in &self.ancestors {
            if branch.timeline == timeline {
                return Some((begin, Some(branch.switch_point)));
            }
            begin = branch.switch_point;
        }
        (timeline == self.timeline).then_some((begin, None))
    }

    /// Whether a position of `timeline` lies on the way to this timeline:
    /// a base backup taken there can be recovered along this history.
    pub fn passes_through(&self, timeline: TimelineId, lsn: Lsn) -> bool {
        match self.span(timeline) {
            Some((begin, end)) => lsn >= begin && end.is_none_or(|end| lsn <= end),
            None => false,
        }
    }

    /// The segment file a recovery along this history reads for segment
    /// number `number`: the newest timeline that had begun by then (see the
    /// module doc).
    pub fn segment(&self, number: u64, size: SegmentSize) -> Segment {
        let mut timeline = self.ancestors.first().map_or(self.timeline, |b| b.timeline);
        for (i, branch) in self.ancestors.iter().enumerate() {
            let child = self
                .ancestors
                .get(i + 1)
                .map_or(self.timeline, |b| b.timeline);
            if branch.switch_point.0 / size.0 <= number {
                timeline = child;
            }
        }
        Segment { number, timeline }
    }
}

/// What an archive holds of one segment: all of it, or its start up to a
/// position (a `.partial` file: the segment being written, or the old
/// timeline's copy of a switch segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Complete,
    UpTo(Lsn),
}

/// How far the archive's WAL is unbroken from a starting position along
/// one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuity {
    /// Where the walk started (a base backup's start position).
    pub from: Lsn,
    /// Every byte of WAL from `from` up to here is in the archive: a
    /// recovery can reach any point before it.
    pub through: Lsn,
    /// The segment the walk stopped at: missing, or held only in part.
    pub stopped_at: Segment,
    /// Whether the archive holds a later segment of this history: then
    /// `stopped_at` is a hole, not the end of what was archived so far.
    pub hole: bool,
}

/// Walks `history` from `from` over the segments `archive` holds and says
/// how far the WAL is unbroken. Segments of other timelines (an abandoned
/// branch, a `.partial` copy of a switch segment) are never used. The walk
/// starts on the segment containing `from`.
pub fn continuity(
    history: &TimelineHistory,
    from: Lsn,
    archive: &BTreeMap<Segment, Held>,
    size: SegmentSize,
) -> Continuity {
    let mut number = from.0 / size.0;
    loop {
        let wanted = history.segment(number, size);
        let through = match archive.get(&wanted) {
            Some(Held::Complete) => {
                number += 1;
                continue;
            }
            Some(Held::UpTo(lsn)) => (*lsn).clamp(wanted.start(size), wanted.end(size)),
            None => wanted.start(size),
        };
        let hole = archive
            .keys()
            .any(|s| s.number > number && history.segment(s.number, size) == *s);
        return Continuity {
            from,
            through: through.max(from),
            stopped_at: wanted,
            hole,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: SegmentSize = SegmentSize::DEFAULT;

    fn lsn(text: &str) -> Lsn {
        text.parse().unwrap()
    }

    #[test]
    fn positions_parse_like_pg_lsn() {
        assert_eq!(lsn("0/0"), Lsn(0));
        assert_eq!(lsn("1/A0"), Lsn(0x1_0000_00A0));
        assert_eq!(lsn("ffffffff/ffffffff"), Lsn(u64::MAX));
        for bad in [
            "",
            "0",
            "/0",
            "0/",
            "1/2/3",
            "123456789/0",
            "0/g",
            " 0/1",
            "-1/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(
                err.to_string().contains("such as 0/16B3748"),
                "{bad}: {err}"
            );
        }
        assert_eq!(lsn("16/B374D848").to_string(), "16/B374D848");
    }

    #[test]
    fn segment_names_round_trip_and_match_postgres() {
        // From a 16 MiB cluster: 0/3000028 lives in ...03, 1/0 in ...0100000000.
        let s = Segment::containing(TimelineId(1), lsn("0/3000028"), MB16);
        assert_eq!(s.file_name(MB16), "000000010000000000000003");
        let s = Segment::containing(TimelineId(2), lsn("1/0"), MB16);
        assert_eq!(s.file_name(MB16), "000000020000000100000000");
        assert_eq!(s.start(MB16), lsn("1/0"));
        assert_eq!(s.end(MB16), lsn("1/1000000"));
        let back = Segment::from_file_name("0000000A00000002000000FF", MB16).unwrap();
        assert_eq!(back.timeline, TimelineId(10));
        assert_eq!(back.start(MB16), lsn("2/FF000000"));
        assert_eq!(back.file_name(MB16), "0000000A00000002000000FF");
        // 1 GiB segments: 4 per log id.
        let big = SegmentSize::new(1 << 30).unwrap();
        let s = Segment::containing(TimelineId(1), lsn("1/C0000000"), big);
        assert_eq!(s.file_name(big), "000000010000000100000003");
        assert!(Segment::from_file_name("000000010000000100000004", big).is_err());
        for bad in [
            "00000001000000000000003",
            "000000010000000000000003.partial",
            "00000000000000000000000A",
            "0000000100000000000000G3",
        ] {
            assert!(Segment::from_file_name(bad, MB16).is_err(), "{bad}");
        }
        assert!(SegmentSize::new(3 << 20).is_err());
        assert!(SegmentSize::new(1 << 19).is_err());
        assert!(SegmentSize::new(2 << 30).is_err());
    }

    #[test]
    fn history_files_parse_like_postgres() {
        // What PostgreSQL 15 writes after two promotions.
        let text = "1\t0/3000148\tno recovery target specified\n\n\
                    2\t0/50000A0\tbefore 2026-12-07 14:03:12+00\n";
        let h = TimelineHistory::parse(TimelineId(3), text).unwrap();
        assert_eq!(h.ancestors.len(), 2);
        assert_eq!(h.ancestors[1].switch_point, lsn("0/50000A0"));
        assert_eq!(h.ancestors[1].reason, "before 2026-12-07 14:03:12+00");
        assert_eq!(h.timeline_at(lsn("0/3000147")), TimelineId(1));
        assert_eq!(h.timeline_at(lsn("0/3000148")), TimelineId(2));
        assert_eq!(h.timeline_at(lsn("9/0")), TimelineId(3));
        assert_eq!(
            h.span(TimelineId(2)),
            Some((lsn("0/3000148"), Some(lsn("0/50000A0"))))
        );
        assert_eq!(h.span(TimelineId(3)), Some((lsn("0/50000A0"), None)));
        assert_eq!(h.span(TimelineId(4)), None);
        assert!(h.passes_through(TimelineId(1), lsn("0/2000000")));
        assert!(!h.passes_through(TimelineId(1), lsn("0/4000000")));
        assert!(h.passes_through(TimelineId(3), lsn("7/0")));
        assert_eq!(
            TimelineId::from_history_file_name("00000003.history").unwrap(),
            TimelineId(3)
        );
        assert_eq!(TimelineId(26).history_file_name(), "0000001A.history");
        assert!(TimelineId::from_history_file_name("00000000.history").is_err());
        assert!(TimelineId::from_history_file_name("3.history").is_err());

        let err = TimelineHistory::parse(TimelineId(3), "# c\n2\t0/1\tx\n1\t0/2\ty\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = TimelineHistory::parse(TimelineId(2), "2\t0/1\tx\n").unwrap_err();
        assert!(err.to_string().contains("not older"), "{err}");
        let err = TimelineHistory::parse(TimelineId(2), "one\t0/1\tx\n").unwrap_err();
        assert!(err.to_string().contains("timeline number"), "{err}");
        let err = TimelineHistory::parse(TimelineId(2), "1\tzz\tx\n").unwrap_err();
        assert!(err.to_string().contains("not a WAL position"), "{err}");
    }

    #[test]
    fn a_switch_segment_is_read_from_the_new_timeline() {
        let h = TimelineHistory::parse(TimelineId(2), "1\t0/3000148\tx\n").unwrap();
        assert_eq!(h.segment(2, MB16).timeline, TimelineId(1));
        assert_eq!(h.segment(3, MB16).timeline, TimelineId(2));
        assert_eq!(h.segment(4, MB16).timeline, TimelineId(2));
        // Two promotions inside one segment: the newest timeline wins.
        let h =
            TimelineHistory::parse(TimelineId(3), "1\t0/3000148\tx\n2\t0/3000200\ty\n").unwrap();
        assert_eq!(h.segment(3, MB16).timeline, TimelineId(3));
        assert_eq!(h.segment(2, MB16).timeline, TimelineId(1));
        // A switch at a segment boundary needs nothing of the old timeline there.
        let h = TimelineHistory::parse(TimelineId(2), "1\t0/4000000\tx\n").unwrap();
        assert_eq!(h.segment(3, MB16).timeline, TimelineId(1));
        assert_eq!(h.segment(4, MB16).timeline, TimelineId(2));
    }

    fn archive(items: &[(u32, u64, Held)]) -> BTreeMap<Segment, Held> {
        items
            .iter()
            .map(|(t, n, held)| {
                (
                    Segment {
                        number: *n,
                        timeline: TimelineId(*t),
                    },
                    *held,
                )
            })
            .collect()
    }

    #[test]
    fn continuity_follows_the_timeline_switch_and_finds_holes() {
        use Held::*;
        let h = TimelineHistory::parse(TimelineId(2), "1\t0/5000148\tx\n").unwrap();
        // 1/3 1/4 (1/5 partial: the old copy) 2/5 2/6, 2/7 partial.
        let a = archive(&[
            (1, 3, Complete),
            (1, 4, Complete),
            (1, 5, UpTo(lsn("0/5000148"))),
            (2, 5, Complete),
            (2, 6, Complete),
            (2, 7, UpTo(lsn("0/7000400"))),
        ]);
        let c = continuity(&h, lsn("0/3000028"), &a, MB16);
        assert_eq!(c.through, lsn("0/7000400"));
        assert_eq!(c.stopped_at.file_name(MB16), "000000020000000000000007");
        assert!(!c.hole);

        // Without the new timeline's switch segment the old partial copy
        // does not do: the walk stops there, and 2/6 makes it a hole.
        let mut b = a.clone();
        b.remove(&Segment {
            number: 5,
            timeline: TimelineId(2),
        });
        let c = continuity(&h, lsn("0/3000028"), &b, MB16);
        assert_eq!(c.through, lsn("0/5000000"));
        assert_eq!(c.stopped_at.file_name(MB16), "000000020000000000000005");
        assert!(c.hole);

        // Segments of an abandoned branch (timeline 1 past the switch, the
        // old primary's) are not a continuation, nor a hole's proof.
        let c2 = archive(&[
            (1, 3, Complete),
            (1, 4, Complete),
            (1, 5, Complete),
            (1, 6, Complete),
        ]);
        let c = continuity(&h, lsn("0/3000028"), &c2, MB16);
        assert_eq!(c.through, lsn("0/5000000"));
        assert!(!c.hole);

        // Nothing archived yet: unbroken only up to the start itself.
        let c = continuity(&h, lsn("0/3000028"), &BTreeMap::new(), MB16);
        assert_eq!(c.through, lsn("0/3000028"));
        assert!(!c.hole);
    }
}
