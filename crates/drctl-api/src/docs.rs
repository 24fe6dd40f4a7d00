//! The OpenAPI document's frame: title, version, the bearer security scheme
//! and the error responses every endpoint shares. The paths and schemas
//! come from the handlers themselves (see [`crate::routes`]).

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Tag};
use utoipa::openapi::{RefOr, Schema};
use utoipa::IntoResponses;

use crate::error::ErrorBody;

/// The document before any path is added.
pub(crate) fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("drctl")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Measured RPO and RTO against each service's targets, with the evidence \
                     behind every figure; backups, restore tests and failover operations. \
                     Errors are JSON `{\"error\": {\"code\", \"message\"}}` with a stable code. \
                     Reads need a viewer token (unless anonymous reads are on), starting work \
                     an operator token, the audit log an admin token.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A token from [[api.tokens]]"))
                .build(),
        ),
    );
    doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    doc.tags = Some(
        [
            ("services", "Services and their measured RPO/RTO"),
            ("evidence", "Backups, restore tests and their schedule"),
            (
                "operations",
                "Failovers, switchovers, drills, backups started and followed",
            ),
            ("reports", "Compliance over a period, for auditors"),
            ("audit", "Who changed what (admin)"),
            ("daemon", "Health and metrics"),
        ]
        .into_iter()
        .map(|(name, description)| {
            let mut tag = Tag::new(name);
            tag.description = Some(description.to_string());
            tag
        })
        .collect(),
    );
    doc
}

/// The errors every endpoint may answer (the audit log's 403 is for tokens
/// below admin; starting work needs an operator).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum ReadErrors {
    /// `invalid_parameter`: a parameter or the body is malformed;
    /// `region_not_found`: no such region.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// `unauthorized`: no token where one is needed, or a wrong one.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// `forbidden`: the token's role is too low.
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// `store_unavailable`: the state store failed; `not_leader`: this
    /// daemon follows and starts no work (the message names the leader).
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody),
}

/// `404`, added to [`ReadErrors`] where a parameter names something.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum NotFound {
    /// `service_not_found`, `operation_not_found`, `backup_not_found`.
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody),
}

/// `429`, added where the daemon limits how many requests it serves at once.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Busy {
    /// `report_busy`: as many reports as the daemon builds at once are under
    /// way; try again after `Retry-After` seconds.
    #[response(status = 429)]
    Busy(#[to_schema] ErrorBody),
}

/// `409`, added where starting work can conflict with the state.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Conflict {
    /// `operation_in_progress`, `refused`, `no_backup_policy`,
    /// `backup_not_verifiable`, …: the request conflicts with the state.
    #[response(status = 409)]
    Conflict(#[to_schema] ErrorBody),
}

/// A duration ago, as the API takes it: a whole number and a unit
/// (`90s`, `15m`, `24h`, `7d`).
pub(crate) const DURATION_AGO: &str = "^[0-9]{1,6}[smhd]$";

/// A query parameter naming a point in time: RFC 3339, or a duration ago.
pub(crate) struct TimeParam;

impl utoipa::PartialSchema for TimeParam {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(DURATION_AGO)),
            )
            .description(Some(
                "RFC 3339 (2026-01-31T12:00:00Z) or a duration ago (15m, 24h, 7d)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for TimeParam {}

/// Makes the document say what this daemon's config allows: the `{name}`
/// of a service is one of the configured services, and with anonymous
/// reads on, every GET may also be sent without a token.
pub(crate) fn adapt_to_config(doc: &mut OpenApi, services: &[String], anonymous_reads: bool) {
    use utoipa::openapi::path::ParameterIn;
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "name" && p.parameter_in == ParameterIn::Path {
                    p.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(services.iter().cloned()))
                            .into(),
                    );
                }
            }
        }
    }
    if !anonymous_reads {
        return;
    }
    for item in doc.paths.paths.values_mut() {
        if let Some(get) = item.get.as_mut() {
            let open = get
                .security
                .as_ref()
                .is_some_and(|s| s.iter().any(|r| r == &SecurityRequirement::default()));
            if !open {
                get.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::default(),
                ]);
            }
        }
    }
}
