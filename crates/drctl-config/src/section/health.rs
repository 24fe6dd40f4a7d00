//! `[services.health]`: how a service's health is probed and when it counts as
//! down.

use std::time::Duration;

use super::common::{optional_duration, section};
use crate::model::HealthCheck;
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_FAILURES: u32 = 3;

pub(crate) const HEALTH: Section = Section {
    header: "[services.health]",
    doc: "How a service's primary is probed, and when it counts as down (which, for an automatic service, starts a failover once `[services.failover] min_down` has also passed).",
    keys: &[
        key("interval", K::Duration, D::Duration(DEFAULT_INTERVAL), "How often the primary is probed."),
        key("timeout", K::Duration, D::Duration(DEFAULT_TIMEOUT), "How long one probe may take before it counts as failed."),
        key("failures", K::Integer, D::Integer(DEFAULT_FAILURES as i64), "Consecutive failed probes before the primary counts as down; 1 or more."),
    ],
};

pub(crate) fn health(cx: &mut Cx, service: &Table) -> Option<HealthCheck> {
    let mut health = HealthCheck::default();
    let Some(table) = section(cx, service, "health", &HEALTH.names()) else {
        // Absent, or not a table (reported): defaults either way.
        return Some(health);
    };
    if let Some(d) = optional_duration(cx, Some(&table), "interval") {
        health.interval = d;
    }
    if let Some(d) = optional_duration(cx, Some(&table), "timeout") {
        health.timeout = d;
    }
    if let Some(field) = table.get("failures") {
        let failures = cx.integer(&field)?;
        if failures.value < 1 {
            cx.error(
                &failures.span,
                &field.path,
                format!("{} failed checks can never be reached", failures.value),
                Some("use 1 or more".into()),
            );
            return None;
        }
        match u32::try_from(failures.value) {
            Ok(n) => health.failures = n,
            Err(_) => {
                cx.error(
                    &failures.span,
                    &field.path,
                    format!("{} is too large", failures.value),
                    Some("a handful of consecutive failures is typical, e.g. 3".into()),
                );
                return None;
            }
        }
    }
    Some(health)
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            failures: DEFAULT_FAILURES,
        }
    }
}
