//! Reading WAL records out of one segment file the way recovery reads
//! them: page headers checked, records followed across pages, each one's
//! CRC-32C checked, commit and abort times read.
//!
//! Why drctl reads WAL itself: a segment that `pg_receivewal` is still
//! writing holds an unknown number of valid bytes (the file is padded with
//! zeros from the start), and only the records say where the WAL that is
//! safe to restore ends and which commit it ends with. The archive uses
//! that to ship a partial segment up to its last whole record, to date the
//! newest commit it holds (the primary's own commit time, no clock of
//! ours), and to prove an archived segment intact before it counts.
//!
//! The layout is PostgreSQL's (`access/xlog_internal.h`, `xlogrecord.h`),
//! as written on little-endian 64-bit hosts with 8 kB WAL pages, the only
//! builds drctl supports; a page header that says otherwise is reported
//! as such, never guessed around.

use crc::{Crc, CRC_32_ISCSI};

use super::{Segment, SegmentSize};
use crate::Lsn;

/// `XLOG_BLCKSZ`: the WAL page size.
pub const PAGE: usize = 8192;
/// `XLOG_PAGE_MAGIC` of the versions drctl reads: PostgreSQL 15 (0xD110),
/// 16 (0xD113) and 17 (0xD116).
const MAGICS: [u16; 3] = [0xD110, 0xD113, 0xD116];
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
const SHORT_HEADER: usize = 24;
const LONG_HEADER: usize = 40;
/// `SizeOfXLogRecord`.
const RECORD_HEADER: usize = 24;
/// Offset of `xl_crc` in the record header: the CRC covers the header up
/// to it, after the rest of the record.
const CRC_AT: usize = 20;
/// No record is larger (`XLogRecordMaxSize` is 1020 MB).
const MAX_RECORD: u32 = 1020 * 1024 * 1024;
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_XACT_OPMASK: u8 = 0x70;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

static CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// A transaction's end as its record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionEnd {
    /// Where the record starts.
    pub lsn: Lsn,
    pub xid: u32,
    /// Microseconds since the Unix epoch on the primary's clock: the time
    /// `recovery_target_time` compares with.
    pub at_us: i64,
    pub committed: bool,
}

/// Why the walk through a segment stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// The segment's last bytes belong to a record that goes on in the
    /// next segment, or end exactly at its end: the whole segment is WAL.
    SegmentEnd,
    /// An `XLOG_SWITCH` record (`pg_switch_wal()`, `archive_timeout`): the
    /// rest of the segment is unused by design.
    Switch,
    /// The WAL ends here: zeros, a page not yet written, or a record cut
    /// off mid-way (the bytes after the last whole record of a segment
    /// still being written). In a finished segment it means damage.
    EndOfWal { at: Lsn, reason: String },
}

/// What one segment's bytes hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    pub segment: Segment,
    /// The end of the last whole record that starts in this segment,
    /// aligned to 8 bytes as PostgreSQL's own record ends are (the
    /// segment's first record position when none does): WAL up to here is
    /// complete and checked.
    pub valid_end: Lsn,
    /// Records that start in this segment and were read whole.
    pub records: u64,
    /// Commits and aborts, oldest first.
    pub transactions: Vec<TransactionEnd>,
    pub end: ScanEnd,
}

impl SegmentScan {
    /// Whether this is a finished segment as recovery needs it: every byte
    /// up to its end is WAL, or it was closed by a switch.
    pub fn is_whole(&self) -> bool {
        matches!(self.end, ScanEnd::SegmentEnd | ScanEnd::Switch)
    }

    /// The newest commit read.
    pub fn last_commit(&self) -> Option<&TransactionEnd> {
        self.transactions.iter().rev().find(|t| t.committed)
    }
}

/// What is wrong with a segment file as a whole (not the WAL's normal end).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("segment {name}: {reason}")]
    Header { name: String, reason: String },
}

/// Walks the records of `segment` in `bytes` (the file's content from its
/// start; a short buffer is a segment written that far). Records that
/// started in the previous segment are skipped: their start is not here.
pub fn scan_segment(
    bytes: &[u8],
    segment: Segment,
    size: SegmentSize,
) -> Result<SegmentScan, ScanError> {
    let name = segment.file_name(size);
    let base = segment.start(size).0;
    let seg_len = (size.bytes() as usize).min(bytes.len());
    let mut scan = SegmentScan {
        segment,
        valid_end: segment.start(size),
        records: 0,
        transactions: Vec::new(),
        end: ScanEnd::SegmentEnd,
    };
    let first = match page_header(bytes, 0, base) {
        Ok(h) => h,
        Err(reason) => {
            // An empty or never-written file: no WAL in it yet. Anything
            // else at a segment's first page is not WAL at all.
            if bytes.len() < LONG_HEADER || bytes[..LONG_HEADER].iter().all(|b| *b == 0) {
                scan.end = ScanEnd::EndOfWal {
                    at: segment.start(size),
                    reason,
                };
                return Ok(scan);
            }
            return Err(ScanError::Header { name, reason });
        }
    };
    if first.info & XLP_LONG_HEADER == 0 {
        return Err(ScanError::Header {
            name,
            reason: "its first page has no long header".into(),
        });
    }
    if first.seg_size != Some(size.bytes() as u32) || first.blcksz != Some(PAGE as u32) {
        return Err(ScanError::Header {
            name,
            reason: format!(
                "written with {} byte segments and {} byte pages; expected {} and {PAGE}",
                first.seg_size.unwrap_or(0),
                first.blcksz.unwrap_or(0),
                size.bytes()
            ),
        });
    }
    // Skip the tail of a record that began in the previous segment.
    let mut pos = LONG_HEADER;
    if first.info & XLP_FIRST_IS_CONTRECORD != 0 {
        match follow(bytes, base, seg_len, pos, first.rem_len as usize, None) {
            Followed::Whole(end) => pos = end,
            // One record fills the whole segment and goes on (or the file
            // is cut inside it): no record starts here.
            Followed::OffTheEnd => {
                scan.end = if seg_len == size.bytes() as usize {
                    ScanEnd::SegmentEnd
                } else {
                    end_of_wal(base, seg_len, "the segment ends inside a record")
                };
                return Ok(scan);
            }
            Followed::Broken(at, reason) => {
                scan.end = end_of_wal(base, at, &reason);
                return Ok(scan);
            }
        }
        pos = maxalign(pos);
    }
    scan.valid_end = Lsn(base + pos as u64);

    let mut prev: Option<u64> = None;
    let mut record = Vec::new();
    loop {
        if pos >= seg_len {
            scan.end = if seg_len == size.bytes() as usize {
                ScanEnd::SegmentEnd
            } else {
                end_of_wal(base, pos, "the file ends here")
            };
            return Ok(scan);
        }
        if pos.is_multiple_of(PAGE) {
            match page_header(bytes, pos, base) {
                Ok(h) if h.info & XLP_FIRST_IS_CONTRECORD == 0 => pos += SHORT_HEADER,
                Ok(_) => {
                    scan.end =
                        end_of_wal(base, pos, "a page continues a record that never started");
                    return Ok(scan);
                }
                Err(reason) => {
                    scan.end = end_of_wal(base, pos, &reason);
                    return Ok(scan);
                }
            }
        }
        if pos + 4 > seg_len {
            scan.end = end_of_wal(base, pos, "the file ends here");
            return Ok(scan);
        }
        let start = pos;
        let tot_len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        if tot_len == 0 {
            scan.end = end_of_wal(base, pos, "no record (zeros)");
            return Ok(scan);
        }
        if (tot_len as usize) < RECORD_HEADER || tot_len > MAX_RECORD {
            scan.end = end_of_wal(base, pos, &format!("invalid record length {tot_len}"));
            return Ok(scan);
        }
        // Gather the record across pages.
        record.clear();
        match follow(
            bytes,
            base,
            seg_len,
            pos,
            tot_len as usize,
            Some(&mut record),
        ) {
            Followed::Whole(end) => pos = end,
            // Goes on in the next segment (a finished file), or was cut
            // off (a file still being written).
            Followed::OffTheEnd => {
                scan.end = if seg_len == size.bytes() as usize {
                    ScanEnd::SegmentEnd
                } else {
                    end_of_wal(base, start, "the last record is not whole yet")
                };
                return Ok(scan);
            }
            Followed::Broken(..) => {
                scan.end = end_of_wal(base, start, "the record's next page does not continue it");
                return Ok(scan);
            }
        }
        let header = &record[..RECORD_HEADER];
        let xl_prev = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if prev.is_some_and(|p| p != xl_prev) {
            scan.end = end_of_wal(
                base,
                start,
                "the record does not point back to the previous one",
            );
            return Ok(scan);
        }
        let stored = u32::from_le_bytes(header[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
        let mut digest = CRC32C.digest();
        digest.update(&record[RECORD_HEADER..]);
        digest.update(&header[..CRC_AT]);
        if digest.finalize() != stored {
            scan.end = end_of_wal(base, start, "record CRC mismatch");
            return Ok(scan);
        }
        scan.records += 1;
        // Aligned, as PostgreSQL counts a record's end (`EndRecPtr`): the
        // next record starts there.
        scan.valid_end = Lsn(base + maxalign(pos) as u64);
        prev = Some(base + start as u64);
        let (xid, info, rmid) = (
            u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")),
            header[16],
            header[17],
        );
        if rmid == RM_XACT_ID {
            if let Some(t) = transaction_end(&record, info) {
                scan.transactions.push(TransactionEnd {
                    lsn: Lsn(base + start as u64),
                    xid,
                    ..t
                });
            }
        }
        if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
            scan.end = ScanEnd::Switch;
            return Ok(scan);
        }
        pos = maxalign(pos);
    }
}

/// How following a record's bytes across pages ended.
enum Followed {
    /// All of them, ending here.
    Whole(usize),
    /// The file ends inside them.
    OffTheEnd,
    /// A page does not continue them: its position and why.
    Broken(usize, String),
}

/// Follows `remaining` bytes of one record from `pos`, across the page
/// headers in between (each must say it continues the record, with the
/// bytes still to come), appending them to `into` when given.
fn follow(
    bytes: &[u8],
    base: u64,
    seg_len: usize,
    mut pos: usize,
    mut remaining: usize,
    mut into: Option<&mut Vec<u8>>,
) -> Followed {
    loop {
        let here = remaining.min(page_end(pos) - pos).min(seg_len - pos);
        if let Some(into) = into.as_deref_mut() {
            into.extend_from_slice(&bytes[pos..pos + here]);
        }
        remaining -= here;
        pos += here;
        if remaining == 0 {
            return Followed::Whole(pos);
        }
        if pos >= seg_len {
            return Followed::OffTheEnd;
        }
        match page_header(bytes, pos, base) {
            Ok(h) if h.info & XLP_FIRST_IS_CONTRECORD != 0 && h.rem_len as usize == remaining => {
                pos += SHORT_HEADER;
            }
            Ok(_) => {
                return Followed::Broken(pos, "the next page does not continue the record".into())
            }
            Err(reason) => return Followed::Broken(pos, reason),
        }
    }
}

fn end_of_wal(base: u64, pos: usize, reason: &str) -> ScanEnd {
    ScanEnd::EndOfWal {
        at: Lsn(base + pos as u64),
        reason: reason.to_string(),
    }
}

fn maxalign(pos: usize) -> usize {
    (pos + 7) & !7
}

fn page_end(pos: usize) -> usize {
    (pos / PAGE + 1) * PAGE
}

struct PageHeader {
    info: u16,
    rem_len: u32,
    seg_size: Option<u32>,
    blcksz: Option<u32>,
}

/// Checks the page header at `pos` (a page boundary): PostgreSQL's magic
/// and the page's own address, which tells a written page from zeros or
/// from an older segment's bytes in a recycled file.
fn page_header(bytes: &[u8], pos: usize, base: u64) -> Result<PageHeader, String> {
    let at = Lsn(base + pos as u64);
    let Some(h) = bytes.get(pos..pos + SHORT_HEADER) else {
        return Err(format!("the file ends before the page at {at}"));
    };
    let magic = u16::from_le_bytes([h[0], h[1]]);
    let info = u16::from_le_bytes([h[2], h[3]]);
    let pageaddr = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let rem_len = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    if magic == 0 && pageaddr == 0 {
        return Err(format!("the page at {at} was never written"));
    }
    if !MAGICS.contains(&magic) {
        return Err(format!(
            "the page at {at} has magic {magic:#06X}, not that of PostgreSQL 15 to 17"
        ));
    }
    if pageaddr != at.0 {
        return Err(format!("the page at {at} says it is at {}", Lsn(pageaddr)));
    }
    let (seg_size, blcksz) = if info & XLP_LONG_HEADER != 0 {
        let l = bytes
            .get(pos..pos + LONG_HEADER)
            .ok_or_else(|| format!("the file ends inside the page header at {at}"))?;
        (
            Some(u32::from_le_bytes(l[32..36].try_into().expect("4 bytes"))),
            Some(u32::from_le_bytes(l[36..40].try_into().expect("4 bytes"))),
        )
    } else {
        (None, None)
    };
    Ok(PageHeader {
        info,
        rem_len,
        seg_size,
        blcksz,
    })
}

/// A commit's or abort's time: the first field of its main data
/// (`xl_xact_commit.xact_time`, `xl_xact_abort.xact_time`). Reads the
/// record's block header chain to find the main data; commit and abort
/// records reference no blocks.
fn transaction_end(record: &[u8], info: u8) -> Option<TransactionEnd> {
    let committed = match info & XLOG_XACT_OPMASK {
        0x00 | 0x30 => true,  // COMMIT, COMMIT_PREPARED
        0x20 | 0x40 => false, // ABORT, ABORT_PREPARED
        _ => return None,
    };
    let mut pos = RECORD_HEADER;
    loop {
        let id = *record.get(pos)?;
        pos += 1;
        match id {
            255 => {
                pos += 1; // XLR_BLOCK_ID_DATA_SHORT: one length byte
                break;
            }
            254 => {
                pos += 4; // XLR_BLOCK_ID_DATA_LONG
                break;
            }
            253 => pos += 2,  // XLR_BLOCK_ID_ORIGIN
            252 => pos += 4,  // XLR_BLOCK_ID_TOPLEVEL_XID
            _ => return None, // a block reference: not a plain commit
        }
    }
    let time = i64::from_le_bytes(record.get(pos..pos + 8)?.try_into().ok()?);
    Some(TransactionEnd {
        lsn: Lsn(0),
        xid: 0,
        at_us: time.checked_add(PG_EPOCH_US)?,
        committed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::TimelineId;

    const MB1: SegmentSize = SegmentSize(1 << 20);

    /// Writes PostgreSQL's page and record layout (the reader's tests;
    /// tests/wal_archive.rs reads real WAL from a real server).
    struct Writer {
        bytes: Vec<u8>,
        base: u64,
        prev: u64,
    }

    impl Writer {
        fn new(base: u64) -> Writer {
            let mut w = Writer {
                bytes: Vec::new(),
                base,
                prev: 0,
            };
            w.page_header(0);
            w
        }

        fn page_header(&mut self, rem_len: u32) {
            let at = self.base + self.bytes.len() as u64;
            let long = self.bytes.is_empty();
            let mut info = if long { XLP_LONG_HEADER } else { 0 };
            if rem_len > 0 {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            self.bytes.extend_from_slice(&0xD110u16.to_le_bytes());
            self.bytes.extend_from_slice(&info.to_le_bytes());
            self.bytes.extend_from_slice(&1u32.to_le_bytes());
            self.bytes.extend_from_slice(&at.to_le_bytes());
            self.bytes.extend_from_slice(&rem_len.to_le_bytes());
            self.bytes.extend_from_slice(&[0; 4]);
            if long {
                self.bytes.extend_from_slice(&7u64.to_le_bytes());
                self.bytes
                    .extend_from_slice(&(MB1.bytes() as u32).to_le_bytes());
                self.bytes.extend_from_slice(&(PAGE as u32).to_le_bytes());
            }
        }

        /// Appends one record; returns its start.
        fn record(&mut self, rmid: u8, info: u8, xid: u32, main: &[u8]) -> u64 {
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            if self.bytes.len().is_multiple_of(PAGE) {
                self.page_header(0);
            }
            let start = self.base + self.bytes.len() as u64;
            let mut body = Vec::new();
            if main.len() < 256 {
                body.extend_from_slice(&[255, main.len() as u8]);
            } else {
                body.push(254);
                body.extend_from_slice(&(main.len() as u32).to_le_bytes());
            }
            body.extend_from_slice(main);
            let tot = (RECORD_HEADER + body.len()) as u32;
            let mut header = Vec::new();
            header.extend_from_slice(&tot.to_le_bytes());
            header.extend_from_slice(&xid.to_le_bytes());
            header.extend_from_slice(&self.prev.to_le_bytes());
            header.extend_from_slice(&[info, rmid, 0, 0]);
            let mut d = CRC32C.digest();
            d.update(&body);
            d.update(&header);
            header.extend_from_slice(&d.finalize().to_le_bytes());
            let mut rec = header;
            rec.extend_from_slice(&body);
            let mut rest = &rec[..];
            while !rest.is_empty() {
                let room = PAGE - self.bytes.len() % PAGE;
                let here = room.min(rest.len());
                self.bytes.extend_from_slice(&rest[..here]);
                rest = &rest[here..];
                if !rest.is_empty() {
                    self.page_header(rest.len() as u32);
                }
            }
            self.prev = start;
            start
        }

        fn commit(&mut self, xid: u32, unix_us: i64) -> u64 {
            let t = (unix_us - PG_EPOCH_US).to_le_bytes();
            self.record(RM_XACT_ID, 0x00, xid, &t)
        }
    }

    fn segment() -> Segment {
        Segment {
            number: 7,
            timeline: TimelineId(1),
        }
    }

    #[test]
    fn reads_records_across_pages_and_their_commit_times() {
        let mut w = Writer::new(7 << 20);
        w.record(10, 0, 700, &[1; 100]);
        let big = w.record(10, 0, 701, &vec![2; 20_000]); // spans three pages
        w.commit(701, 1_765_116_191_250_349);
        w.record(RM_XACT_ID, 0x20, 702, &5i64.to_le_bytes()); // an abort
        w.commit(703, 1_765_116_192_000_000);
        let end = 7 * (1 << 20) + w.bytes.len() as u64;
        let mut file = w.bytes.clone();
        file.resize(1 << 20, 0);
        let scan = scan_segment(&file, segment(), MB1).unwrap();
        assert_eq!(scan.records, 5);
        assert_eq!(scan.valid_end, Lsn((end + 7) & !7));
        assert!(
            matches!(scan.end, ScanEnd::EndOfWal { .. }),
            "{:?}",
            scan.end
        );
        assert!(!scan.is_whole());
        assert!(big > 7 << 20);
        let commits: Vec<_> = scan.transactions.iter().filter(|t| t.committed).collect();
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].at_us, 1_765_116_191_250_349);
        assert_eq!(commits[0].xid, 701);
        assert_eq!(scan.last_commit().unwrap().at_us, 1_765_116_192_000_000);
        assert!(!scan.transactions[1].committed);

        // A file cut inside the big record: WAL ends before it.
        let cut = (big - (7 << 20)) as usize + 9000;
        let scan = scan_segment(&w.bytes[..cut], segment(), MB1).unwrap();
        assert_eq!(scan.records, 1);
        // The long page header, then the first record: 24 + 2 + 100 bytes.
        assert_eq!(scan.valid_end.0 - (7 << 20), 40 + 128);
        assert!(scan.transactions.is_empty());

        // One flipped byte in the second commit: WAL ends at that record.
        let mut bad = file.clone();
        let second = scan_segment(&file, segment(), MB1).unwrap().transactions[2].lsn;
        bad[(second.0 - (7 << 20)) as usize + 30] ^= 0x40;
        let scan = scan_segment(&bad, segment(), MB1).unwrap();
        assert_eq!(scan.valid_end, second);
        assert_eq!(
            scan.end,
            ScanEnd::EndOfWal {
                at: second,
                reason: "record CRC mismatch".into()
            }
        );
    }

    #[test]
    fn a_full_segment_and_a_switch_are_whole() {
        let mut w = Writer::new(7 << 20);
        while w.bytes.len() < (1 << 20) - 30_000 {
            w.record(10, 0, 1, &[3; 5000]);
        }
        // The last record goes on in the next segment.
        w.record(10, 0, 1, &[4; 40_000]);
        let file = w.bytes[..1 << 20].to_vec();
        let scan = scan_segment(&file, segment(), MB1).unwrap();
        assert_eq!(scan.end, ScanEnd::SegmentEnd);
        assert!(scan.is_whole());

        let mut w = Writer::new(7 << 20);
        w.commit(9, 1_765_116_191_000_000);
        w.record(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
        let mut file = w.bytes.clone();
        file.resize(1 << 20, 0);
        let scan = scan_segment(&file, segment(), MB1).unwrap();
        assert_eq!(scan.end, ScanEnd::Switch);
        assert!(scan.is_whole());
    }

    #[test]
    fn the_tail_of_the_previous_segments_record_is_skipped() {
        // The next segment starts with 20,000 bytes of a record begun in
        // segment 7, then a commit.
        let mut w = Writer {
            bytes: Vec::new(),
            base: 8 << 20,
            prev: 0,
        };
        w.page_header(20_000);
        w.bytes.extend_from_slice(&vec![9; PAGE - LONG_HEADER]);
        w.page_header(20_000 - (PAGE - LONG_HEADER) as u32);
        w.bytes.extend_from_slice(&vec![9; PAGE - SHORT_HEADER]);
        let left = 20_000 - (PAGE - LONG_HEADER) - (PAGE - SHORT_HEADER);
        w.page_header(left as u32);
        w.bytes.extend_from_slice(&vec![9; left]);
        let at = w.commit(800, 1_765_116_191_000_000);
        let scan = scan_segment(
            &w.bytes,
            Segment {
                number: 8,
                timeline: TimelineId(1),
            },
            MB1,
        )
        .unwrap();
        assert_eq!(scan.records, 1);
        assert_eq!(scan.transactions[0].lsn, Lsn(at));
    }

    #[test]
    fn a_file_that_is_not_wal_is_an_error_and_zeros_are_no_wal_yet() {
        let zeros = vec![0; 1 << 20];
        let scan = scan_segment(&zeros, segment(), MB1).unwrap();
        assert_eq!(scan.records, 0);
        assert_eq!(scan.valid_end, Lsn(7 << 20));
        let junk = vec![0x5a; 1 << 20];
        let err = scan_segment(&junk, segment(), MB1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("segment 000000010000000000000007: the page at 0/700000 has magic"),
            "{err}"
        );
        // A segment of another size.
        let w = Writer::new(7 << 20);
        let err = scan_segment(&w.bytes, segment(), SegmentSize::DEFAULT).unwrap_err();
        assert!(
            err.to_string().contains("says it is at") || err.to_string().contains("byte segments"),
            "{err}"
        );
    }
}
