//! The compliance verdicts of a service: RPO and RTO against targets,
//! the freshness of the evidence, and the overall status (computed by
//! drctl-monitor's `compliance`, served by the API, never stored).

state_enum! {
    /// A service's overall compliance: the worst of its judgements, in the
    /// order `breach`, `at_risk`, `unknown`, `stale`, `unverified`, `compliant`.
    pub enum ComplianceStatus {
        Compliant,
        AtRisk,
        Breach,
        Stale,
        Unverified,
        Unknown,
    }
}

state_enum! {
    /// RPO against its target: exposure now and the p99 over the last hour.
    pub enum RpoJudgement {
        Met,
        AtRisk,
        Breach,
        Unknown,
    }
}

state_enum! {
    /// RTO: the newest measured recovery time against its target.
    pub enum RtoJudgement {
        Met,
        Breach,
        Unknown,
    }
}

state_enum! {
    /// How far the evidence proving the RTO can be trusted.
    pub enum EvidenceStatus {
        /// Within the service's `evidence_every`.
        Fresh,
        /// Older than `evidence_every`.
        Stale,
        /// The service's configuration changed after it.
        Unverified,
        /// There never was one.
        Missing,
    }
}

state_enum! {
    /// What counts as proof of the RTO for a tier: a drill for replicated
    /// tiers, a passed restore test for cold.
    pub enum ProofRequired {
        Drill,
        RestoreTest,
    }
}
