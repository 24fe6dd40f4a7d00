//! What the automatic-failover guard decided in one round, as its decision
//! log stores it (`failover_decisions.action`).

state_enum! {
    /// The guard's decision, recorded once per change.
    pub enum GuardDecision {
        /// The primary answers (again).
        Healthy,
        /// Probes of the primary fail, not long enough yet.
        Suspect,
        /// Lost by drctl's probes, but no failover (the record's `code`
        /// says why).
        Hold,
        /// Fail over now.
        Failover,
        /// The watchdog fenced a second writable primary.
        Fenced,
        /// An old primary's agent answers again: the guard started its
        /// automatic rejoin as a standby of the primary (`rejoin = "auto"`).
        Rejoin,
    }
}

crate::stored_as_text!(GuardDecision);
