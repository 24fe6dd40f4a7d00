//! Write-ahead log positions.

use std::fmt;

/// A WAL position in bytes since `0/0`, as PostgreSQL's `pg_lsn`.
///
/// Kept as a plain integer so byte lag is a subtraction; displayed in
/// PostgreSQL's `X/X` form so operators can paste it into `pg_waldump`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes from `other` up to `self`, zero when `other` is ahead.
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }

    pub(crate) fn from_db(value: i64) -> Lsn {
        Lsn(value.max(0) as u64)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_pg_lsn() {
        assert_eq!(Lsn(0x1_0000_00A0).to_string(), "1/A0");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }
}
