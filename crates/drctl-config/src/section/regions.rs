//! `[[regions]]`: the failure domains services name.

use super::common::{already_declared, declared_name, element_name, NameKind};
use crate::model::Region;
use crate::reader::{Cx, Span, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const REGIONS: Section = Section {
    header: "[[regions]]",
    doc: "A failure domain with its own database instances and DNS target. At least one.",
    keys: &[
        key(
            "name",
            K::String,
            D::Required,
            "`[a-z0-9-]+`, unique; what services' `regions` and `primary` name.",
        ),
        key("description", K::String, D::Unset, "Free text for people."),
    ],
};

/// A region as read, with the position of its name for later references.
pub(crate) struct DeclaredRegion {
    pub(crate) region: Region,
    pub(crate) name_span: Span,
    /// The name services must use: the name when valid, else the name its
    /// error suggests (so fixing the region per the hint fixes references
    /// too, and a service naming `us-east` is not reported a second time).
    pub(crate) reference: Option<String>,
}

pub(crate) fn regions(cx: &mut Cx, root: &Table) -> Vec<DeclaredRegion> {
    let missing_hint = "declare at least one region: [[regions]] with name = \"eu-west\"";
    let Some(field) = root.get("regions") else {
        cx.error(
            &(0..0),
            "regions",
            "no region is declared",
            Some(missing_hint.into()),
        );
        return Vec::new();
    };
    let Some(tables) = cx.tables(&field, "write each region as a [[regions]] table") else {
        return Vec::new();
    };
    if tables.is_empty() {
        cx.error(
            &field.span,
            &field.path,
            "no region is declared",
            Some(missing_hint.into()),
        );
    }
    let mut declared: Vec<DeclaredRegion> = Vec::new();
    for mut table in tables {
        let name = element_name(cx, &mut table, NameKind::Region);
        cx.unknown_keys(&table, &REGIONS.names());
        let description = table
            .get("description")
            .and_then(|f| cx.string(&f))
            .map(|s| s.value);
        let Some((name, name_path)) = name else {
            continue;
        };
        let (_, reference) = declared_name(cx, &name, &name_path, NameKind::Region);
        if let Some(first) = declared.iter().find(|r| r.region.name == name.value) {
            already_declared(cx, &name, &name_path, &first.name_span, NameKind::Region);
            continue;
        }
        declared.push(DeclaredRegion {
            region: Region {
                name: name.value,
                description,
            },
            name_span: name.span,
            reference,
        });
    }
    declared
}
