//! `[monitor]`: how the lag monitor samples and how long it keeps samples.

use std::time::Duration;

use super::common::{duration_or, section};
use crate::model::*;
use crate::reader::{Cx, Table};

pub(crate) const MONITOR_KEYS: &[&str] = &[
    "interval",
    "probe_timeout",
    "breach_grace",
    "raw_retention",
    "rollup_retention",
];

pub(crate) fn monitor(cx: &mut Cx, root: &Table) -> MonitorConfig {
    let table = section(cx, root, "monitor", MONITOR_KEYS);
    let t = table.as_ref();
    let secs = Duration::from_secs;
    MonitorConfig {
        interval: duration_or(cx, t, "interval", secs(1)),
        probe_timeout: duration_or(cx, t, "probe_timeout", secs(2)),
        breach_grace: duration_or(cx, t, "breach_grace", secs(10)),
        raw_retention: duration_or(cx, t, "raw_retention", secs(24 * 3600)),
        rollup_retention: duration_or(cx, t, "rollup_retention", secs(30 * 86_400)),
    }
}
