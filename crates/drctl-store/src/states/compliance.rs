//! The compliance verdicts of a service: RPO and RTO against targets,
//! the freshness of the evidence, and the overall status (computed by
//! drctl-monitor's `compliance`, served by the API, never stored).

/// A service's overall compliance: the worst of its judgements, in the
/// order `breach`, `at_risk`, `unknown`, `stale`, `unverified`, `compliant`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ComplianceStatus {
    Compliant,
    AtRisk,
    Breach,
    Stale,
    Unverified,
    Unknown,
}

/// RPO against its target: exposure now and the p99 over the last hour.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RpoJudgement {
    Met,
    AtRisk,
    Breach,
    Unknown,
}

/// RTO: the newest measured recovery time against its target.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RtoJudgement {
    Met,
    Breach,
    Unknown,
}

/// How far the evidence proving the RTO can be trusted.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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

/// What counts as proof of the RTO for a tier: a drill for replicated
/// tiers, a passed restore test for cold.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ProofRequired {
    Drill,
    RestoreTest,
}
