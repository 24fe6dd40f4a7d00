//! How the audit log's hash chain can be found broken (computed by
//! `Store::verify_audit`, served, never stored).

state_enum! {
    /// Why the first row that breaks the audit chain breaks it.
    pub enum AuditBreakKind {
        /// The row's hash does not match its fields.
        Edited,
        /// Its `prev_hash` is not the previous row's hash.
        Relinked,
        /// A gap in the sequence: rows deleted.
        Missing,
        /// A plain SHA-256 row after HMAC rows began: rewritten without the
        /// key.
        Downgraded,
        /// A key is configured and no row is HMAC-chained.
        Unkeyed,
        /// An HMAC row, and no key configured to check it.
        KeyMissing,
        /// The expected head is not there: rows cut off or replaced.
        HeadMismatch,
    }
}
