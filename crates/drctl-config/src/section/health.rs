//! `[services.health]`: how a service's health is probed and when it counts as
//! down.

use std::time::Duration;

use super::common::{optional_duration, section};
use crate::model::*;
use crate::reader::{Cx, Table};

pub(crate) const HEALTH_KEYS: &[&str] = &["interval", "timeout", "failures"];

pub(crate) fn health(cx: &mut Cx, service: &Table) -> Option<HealthCheck> {
    let mut health = HealthCheck::default();
    let Some(table) = section(cx, service, "health", HEALTH_KEYS) else {
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
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            failures: 3,
        }
    }
}
