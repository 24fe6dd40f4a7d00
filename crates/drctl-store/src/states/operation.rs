//! The states of operations and their journaled steps: the one list of
//! operation kinds, where an operation stands, where a step stands. The
//! spelling of each variant is the one in the database and in the API's
//! JSON. What a kind *does* (its steps, its lease, what it excludes) is
//! the failover engine's (`drctl-failover`), not the store's.

state_enum! {
    /// What an operation is: one the failover engine journals step by step
    /// ([`OperationKind::is_journaled`]), or a job the daemon or API runs.
    pub enum OperationKind {
        /// Unplanned: the source region is lost (or must be left now).
        Failover,
        /// Planned, zero data loss: the source is fenced, the target catches up
        /// to its last position, then takes over.
        Switchover,
        /// A rehearsal with no production impact: the standby is cloned into a
        /// scratch instance that is promoted, written to and announced under
        /// the drill DNS record, then everything is torn down, also when a step
        /// fails.
        Drill,
        /// An old primary (fenced or lost) becomes a standby of the new one:
        /// pg_rewind, or a fresh clone when rewinding cannot work, so the pair
        /// is protected again and can switch back.
        Rejoin,
        /// Cold tier: the newest verified backup is restored in the DR region,
        /// started, probed and announced in DNS.
        Recover,
        /// A base backup (a job, not journaled).
        Backup,
        /// A backup checked against its manifest (a job).
        Verify,
        /// A backup restored into a scratch instance and probed (a job).
        RestoreTest,
    }
}

impl OperationKind {
    /// The name as stored and served.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The kind a stored or requested name means.
    pub fn parse(s: &str) -> Option<OperationKind> {
        s.parse().ok()
    }

    /// Every kind, in the order people read them.
    pub fn all() -> &'static [OperationKind] {
        <OperationKind as strum::VariantArray>::VARIANTS
    }

    /// Driven by the failover engine with a step journal, a lease and a
    /// resume.
    pub fn is_journaled(self) -> bool {
        matches!(
            self,
            OperationKind::Failover
                | OperationKind::Switchover
                | OperationKind::Drill
                | OperationKind::Rejoin
                | OperationKind::Recover
        )
    }

    /// Changes which server is the primary, or rebuilds one: these exclude
    /// each other on a cluster.
    pub fn changes_production(self) -> bool {
        PRODUCTION_KINDS.contains(&self)
    }

    /// The kinds an operation of this kind must not run beside on one
    /// cluster: a production change excludes every other production
    /// change; a drill only another drill (it has its own lease, so a
    /// rehearsal never delays a real failover).
    pub fn exclusive_with(self) -> &'static [OperationKind] {
        match self {
            OperationKind::Drill => &[OperationKind::Drill],
            _ => PRODUCTION_KINDS,
        }
    }

    /// Moves a service to another region, for real or rehearsed: what RTO
    /// evidence is measured on.
    pub fn moves_a_service(self) -> bool {
        matches!(
            self,
            OperationKind::Failover | OperationKind::Switchover | OperationKind::Drill
        )
    }
}

/// The kinds that change which server is primary, or rebuild one.
const PRODUCTION_KINDS: &[OperationKind] = &[
    OperationKind::Failover,
    OperationKind::Switchover,
    OperationKind::Recover,
    OperationKind::Rejoin,
];

state_enum! {
    /// Where an operation stands.
    pub enum OpStatus {
        /// A driver holds (or held, and died holding) the lease and works on it.
        Running,
        /// A step failed; nothing is half-applied and a resume continues it.
        Stopped,
        /// Ended without reaching its goal (refused, or undone).
        Failed,
        Succeeded,
    }
}

impl OpStatus {
    /// The name as stored and served.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The status a stored name means.
    pub fn parse(s: &str) -> Option<OpStatus> {
        s.parse().ok()
    }

    pub fn is_final(self) -> bool {
        matches!(self, OpStatus::Failed | OpStatus::Succeeded)
    }
}

state_enum! {
    /// Where a journaled step stands.
    pub enum StepState {
        Pending,
        Started,
        Done,
        Failed,
        /// Not run: an earlier step failed and the operation unwound to its
        /// finally step (a drill's teardown).
        Skipped,
    }
}

crate::stored_as_text!(OperationKind, OpStatus, StepState);

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_state_is_stored_and_served_under_one_spelling() {
        for k in OperationKind::VARIANTS {
            let json = serde_json::to_value(k).unwrap();
            assert_eq!(json, k.as_str());
            assert_eq!(OperationKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(OperationKind::RestoreTest.as_str(), "restore_test");
        for s in OpStatus::VARIANTS {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(OpStatus::parse(s.as_str()), Some(*s));
        }
        for s in StepState::VARIANTS {
            assert_eq!(serde_json::to_value(s).unwrap(), s.to_string());
        }
        assert_eq!(OperationKind::parse("restore-test"), None);
    }

    #[test]
    fn production_changes_exclude_each_other_and_drills_only_drills() {
        for k in OperationKind::VARIANTS {
            if k.changes_production() {
                assert!(k.exclusive_with().contains(k), "{k}");
                assert!(!k.exclusive_with().contains(&OperationKind::Drill));
            }
        }
        assert_eq!(
            OperationKind::Drill.exclusive_with(),
            &[OperationKind::Drill]
        );
        assert!(!OperationKind::Backup.changes_production());
    }
}
