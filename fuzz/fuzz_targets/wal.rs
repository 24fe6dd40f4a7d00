//! Any bytes as WAL read back from the archive or a receiver's spool (a
//! bucket anyone with write access could have filled): the bytes as a
//! segment file through the record reader, and as text through the
//! timeline history parser, the archive's object names, WAL positions and
//! `--to-time`. Never a panic; what the reader reports stays inside the
//! segment, in order.
#![no_main]

use drctl_backup::archive::{ArchiveListing, ArchivedFile};
use drctl_backup::pitr::parse_time;
use drctl_backup::ObjectInfo;
use drctl_pg::wal::{continuity, scan_segment, Segment, SegmentSize, TimelineHistory, TimelineId};
use drctl_pg::Lsn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let size = SegmentSize::new(1 << 20).expect("1 MiB segments");
    let segment = Segment {
        number: 7,
        timeline: TimelineId(1),
    };
    if let Ok(scan) = scan_segment(data, segment, size) {
        assert!(scan.valid_end >= segment.start(size) && scan.valid_end <= segment.end(size));
        let mut last = None;
        for t in &scan.transactions {
            assert!(t.lsn >= segment.start(size) && t.lsn < scan.valid_end);
            assert!(last.is_none_or(|l| l < t.lsn));
            last = Some(t.lsn);
        }
    }

    let text = String::from_utf8_lossy(data);
    let _ = parse_time(&text);
    let _ = text.parse::<Lsn>();
    let history = TimelineHistory::parse(TimelineId(9), &text)
        .unwrap_or_else(|_| TimelineHistory::root(TimelineId(1)));
    // Every line as an archive object name: a listing, then the walk.
    let listed: Vec<ObjectInfo> = text
        .lines()
        .map(|l| ObjectInfo {
            key: format!("orders/wal/{l}"),
            size: 1,
        })
        .collect();
    let listing = ArchiveListing::read("orders", &listed, size);
    let from = history.ancestors.first().map_or(Lsn(0), |b| b.switch_point);
    let c = continuity(&history, from, &listing.segments, size);
    assert!(c.through >= from);
    for line in text.lines() {
        if let Some(file) = ArchivedFile::from_file_name(line, size) {
            assert_eq!(
                ArchivedFile::from_file_name(&file.file_name(size), size),
                Some(file)
            );
        }
    }
});
