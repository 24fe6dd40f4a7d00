//! The WAL archive's objects in a store: their names, what a listing of
//! them says (which segments are held, whole or in part, and which
//! timeline histories), and which of them retention may delete.
//!
//! Key layout (under the store's prefix), beside the base backups:
//! ```text
//! <service>/wal/000000010000000000000003.zst                  a whole segment, zstd (sealed when the policy encrypts)
//! <service>/wal/000000010000000000000007.00400000.partial.zst the segment's first 0x400000 bytes: the one being
//!                                                             written, or an old timeline's copy of a switch segment
//! <service>/wal/00000002.history.zst                          a timeline history file, zstd (sealed when the policy encrypts)
//! ```
//! The length of a partial copy is in its name, so one listing (no read,
//! no HEAD per object) says how far the archive reaches.

use std::collections::{BTreeMap, BTreeSet};

use drctl_pg::wal::{Held, Segment, SegmentSize, TimelineHistory, TimelineId};
use drctl_pg::Lsn;

use crate::ObjectInfo;

/// `<service>/wal/`: where a service's WAL archive lives.
pub fn wal_prefix(service: &str) -> String {
    format!("{service}/wal/")
}

/// One object of the WAL archive, by what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArchivedFile {
    /// A whole segment.
    Segment(Segment),
    /// A segment's first `len` bytes.
    Partial { segment: Segment, len: u64 },
    /// A timeline's history file.
    History(TimelineId),
}

impl ArchivedFile {
    /// The object's name under [`wal_prefix`].
    pub fn file_name(&self, size: SegmentSize) -> String {
        match self {
            ArchivedFile::Segment(s) => format!("{}.zst", s.file_name(size)),
            ArchivedFile::Partial { segment, len } => {
                format!("{}.{len:08X}.partial.zst", segment.file_name(size))
            }
            ArchivedFile::History(t) => format!("{}.zst", t.history_file_name()),
        }
    }

    /// What a name under [`wal_prefix`] holds; `None` for a name that is
    /// not the archive's.
    pub fn from_file_name(name: &str, size: SegmentSize) -> Option<ArchivedFile> {
        let stem = name.strip_suffix(".zst")?;
        if let Ok(t) = TimelineId::from_history_file_name(stem) {
            return Some(ArchivedFile::History(t));
        }
        if let Some(rest) = stem.strip_suffix(".partial") {
            let (segment, len) = rest.split_once('.')?;
            let segment = Segment::from_file_name(segment, size).ok()?;
            if len.len() != 8 {
                return None;
            }
            let len = u64::from_str_radix(len, 16).ok()?;
            return (len <= size.bytes()).then_some(ArchivedFile::Partial { segment, len });
        }
        Segment::from_file_name(stem, size)
            .ok()
            .map(ArchivedFile::Segment)
    }

    /// The position just past what this object holds (`None` for a history
    /// file).
    pub fn end(&self, size: SegmentSize) -> Option<Lsn> {
        match self {
            ArchivedFile::Segment(s) => Some(s.end(size)),
            ArchivedFile::Partial { segment, len } => Some(Lsn(segment.start(size).0 + len)),
            ArchivedFile::History(_) => None,
        }
    }
}

/// What one listing of `<service>/wal/` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveListing {
    /// The most the archive holds of each segment: a whole copy beats any
    /// partial one, a longer partial a shorter.
    pub segments: BTreeMap<Segment, Held>,
    /// Timelines whose history file is archived.
    pub histories: BTreeSet<TimelineId>,
    /// Every archive object with its key (relative to the store).
    pub objects: Vec<(ArchivedFile, ObjectInfo)>,
    /// Keys under the prefix that are not archive objects: reported, never
    /// deleted.
    pub strays: Vec<String>,
}

impl ArchiveListing {
    /// Reads a listing of [`wal_prefix`]`(service)`.
    pub fn read(service: &str, listed: &[ObjectInfo], size: SegmentSize) -> ArchiveListing {
        let prefix = wal_prefix(service);
        let mut out = ArchiveListing::default();
        for info in listed {
            let file = info
                .key
                .strip_prefix(&prefix)
                .and_then(|name| ArchivedFile::from_file_name(name, size));
            let Some(file) = file else {
                out.strays.push(info.key.clone());
                continue;
            };
            match file {
                ArchivedFile::History(t) => {
                    out.histories.insert(t);
                }
                ArchivedFile::Segment(s) => {
                    out.segments.insert(s, Held::Complete);
                }
                ArchivedFile::Partial { segment, .. } => {
                    let end = file.end(size).expect("a partial segment has an end");
                    let held = out.segments.entry(segment).or_insert(Held::UpTo(end));
                    if let Held::UpTo(have) = held {
                        *have = (*have).max(end);
                    }
                }
            }
            out.objects.push((file, info.clone()));
        }
        out
    }

    /// How far the archive holds WAL on the newest timeline it has
    /// segments of (an older timeline's WAL past a fork is not on the
    /// current history, so it never counts).
    pub fn newest_end(&self, size: SegmentSize) -> Option<Lsn> {
        let timeline = self.segments.keys().map(|s| s.timeline).max()?;
        self.segments
            .iter()
            .filter(|(s, _)| s.timeline == timeline)
            .map(|(s, held)| match held {
                Held::Complete => s.end(size),
                Held::UpTo(end) => *end,
            })
            .max()
    }

    /// Where the run of WAL that ends at [`Self::newest_end`] begins, by
    /// the objects' names alone: walking back from the newest segment,
    /// each segment number held on some timeline up to the newest, until
    /// the first number held on none (a hole). A cheap check for the lag
    /// monitor, not a proof: `drctl backup wal` reads every object back.
    pub fn unbroken_from(&self, size: SegmentSize) -> Option<Lsn> {
        let newest = self.segments.keys().map(|s| s.timeline).max()?;
        let mut numbers: Vec<u64> = self
            .segments
            .keys()
            .filter(|s| s.timeline <= newest)
            .map(|s| s.number)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        let mut first = *numbers.last()?;
        for n in numbers.iter().rev().skip(1) {
            if *n + 1 != first {
                break;
            }
            first = *n;
        }
        Some(Lsn(first * size.bytes()))
    }

    /// The newest timeline the archive knows of: the highest with a
    /// history file or a segment.
    pub fn newest_timeline(&self) -> Option<TimelineId> {
        let by_segment = self.segments.keys().map(|s| s.timeline).max();
        self.histories.iter().copied().max().max(by_segment)
    }
}

/// The archive objects retention may delete, given where the oldest
/// retained base backup's WAL replay starts (`keep_from`, on `history`):
/// - every segment (of any timeline) wholly before `keep_from`;
/// - a partial copy of a segment the archive holds whole or holds a longer
///   copy of;
/// - never a history file (they are tiny and a restore along any timeline
///   needs its ancestors'), never a segment from `keep_from` on.
pub fn prunable(listing: &ArchiveListing, keep_from: Lsn, size: SegmentSize) -> Vec<ObjectInfo> {
    listing
        .objects
        .iter()
        .filter(|(file, _)| match file {
            ArchivedFile::History(_) => false,
            ArchivedFile::Segment(s) => s.end(size) <= keep_from,
            ArchivedFile::Partial { segment, .. } => {
                segment.end(size) <= keep_from
                    || match listing.segments.get(segment) {
                        Some(Held::Complete) => true,
                        Some(Held::UpTo(longest)) => file.end(size) < Some(*longest),
                        None => false,
                    }
            }
        })
        .map(|(_, info)| info.clone())
        .collect()
}

/// Whether a restore can follow `history` from the archive: the target
/// timeline's history file is there (it lists every ancestor, so it is the
/// only one PostgreSQL reads); timeline 1 needs none.
pub fn history_archived(listing: &ArchiveListing, history: &TimelineHistory) -> bool {
    history.timeline == TimelineId::FIRST || listing.histories.contains(&history.timeline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_pg::wal::continuity;

    const MB16: SegmentSize = SegmentSize::DEFAULT;

    fn info(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 1,
        }
    }

    fn seg(t: u32, n: u64) -> Segment {
        Segment {
            number: n,
            timeline: TimelineId(t),
        }
    }

    #[test]
    fn names_round_trip() {
        for file in [
            ArchivedFile::Segment(seg(1, 3)),
            ArchivedFile::Partial {
                segment: seg(2, 0x107),
                len: 0x40_0000,
            },
            ArchivedFile::History(TimelineId(2)),
        ] {
            let name = file.file_name(MB16);
            assert_eq!(
                ArchivedFile::from_file_name(&name, MB16),
                Some(file),
                "{name}"
            );
        }
        assert_eq!(
            ArchivedFile::Partial {
                segment: seg(1, 7),
                len: 0x40_0000
            }
            .file_name(MB16),
            "000000010000000000000007.00400000.partial.zst"
        );
        for stray in [
            "000000010000000000000003",
            "000000010000000000000003.zst.tmp",
            "000000010000000000000007.400000.partial.zst",
            "000000010000000000000007.01000001.partial.zst",
            "notes.txt",
        ] {
            assert_eq!(ArchivedFile::from_file_name(stray, MB16), None, "{stray}");
        }
    }

    #[test]
    fn a_listing_keeps_the_most_of_each_segment_and_reports_strays() {
        let listed = [
            info("orders/wal/00000002.history.zst"),
            info("orders/wal/000000010000000000000003.zst"),
            info("orders/wal/000000010000000000000004.00100000.partial.zst"),
            info("orders/wal/000000010000000000000004.00800000.partial.zst"),
            info("orders/wal/000000010000000000000005.00200000.partial.zst"),
            info("orders/wal/000000010000000000000005.zst"),
            info("orders/wal/README"),
        ];
        let l = ArchiveListing::read("orders", &listed, MB16);
        assert_eq!(l.segments[&seg(1, 3)], Held::Complete);
        assert_eq!(l.segments[&seg(1, 4)], Held::UpTo(Lsn(0x480_0000)));
        assert_eq!(l.segments[&seg(1, 5)], Held::Complete);
        assert_eq!(l.strays, vec!["orders/wal/README".to_string()]);
        assert_eq!(l.newest_timeline(), Some(TimelineId(2)));

        // The shorter copy of 4 and the partial of 5 (held whole) go; so
        // does 3, wholly before the oldest base backup's start.
        let gone: Vec<String> = prunable(&l, Lsn(0x400_0028), MB16)
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            gone,
            vec![
                "orders/wal/000000010000000000000003.zst",
                "orders/wal/000000010000000000000004.00100000.partial.zst",
                "orders/wal/000000010000000000000005.00200000.partial.zst",
            ]
        );
    }

    #[test]
    fn a_listing_across_a_failover_is_unbroken() {
        // What pg_receivewal leaves after following a promotion at
        // 0/5000148: the old timeline's switch segment as a partial copy,
        // the new timeline from the start of that segment on.
        let listed = [
            info("orders/wal/000000010000000000000003.zst"),
            info("orders/wal/000000010000000000000004.zst"),
            info("orders/wal/000000010000000000000005.00000148.partial.zst"),
            info("orders/wal/00000002.history.zst"),
            info("orders/wal/000000020000000000000005.zst"),
            info("orders/wal/000000020000000000000006.00000400.partial.zst"),
        ];
        let l = ArchiveListing::read("orders", &listed, MB16);
        let history = TimelineHistory::parse(
            TimelineId(2),
            "1\t0/5000148\tno recovery target specified\n",
        )
        .unwrap();
        assert!(history_archived(&l, &history));
        let c = continuity(&history, Lsn(0x300_0028), &l.segments, MB16);
        assert_eq!(c.through, Lsn(0x600_0400));
        assert!(!c.hole);
        let missing =
            TimelineHistory::parse(TimelineId(3), "1\t0/5000148\tx\n2\t0/6000000\ty\n").unwrap();
        assert!(!history_archived(&l, &missing));
    }
}
