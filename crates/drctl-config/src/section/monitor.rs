//! `[monitor]`: how the lag monitor samples and how long it keeps samples.

use std::time::Duration;

use super::common::{duration_or, section};
use crate::model::MonitorConfig;
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_BREACH_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_RAW_RETENTION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_ROLLUP_RETENTION: Duration = Duration::from_secs(30 * 86_400);

pub(crate) const MONITOR: Section = Section {
    header: "[monitor]",
    doc: "How the lag monitor samples every service and how long it keeps what it measured.",
    keys: &[
        key("interval", K::Duration, D::Duration(DEFAULT_INTERVAL), "How often each service is sampled."),
        key("probe_timeout", K::Duration, D::Duration(DEFAULT_PROBE_TIMEOUT), "How long one probe may take before it counts as failed."),
        key("breach_grace", K::Duration, D::Duration(DEFAULT_BREACH_GRACE), "How long RPO exposure must stay above target before it is a breach, so one slow sample pages nobody."),
        key("raw_retention", K::Duration, D::Duration(DEFAULT_RAW_RETENTION), "How long raw samples are kept."),
        key("rollup_retention", K::Duration, D::Duration(DEFAULT_ROLLUP_RETENTION), "How long per-minute rollups are kept."),
    ],
};

pub(crate) fn monitor(cx: &mut Cx, root: &Table) -> MonitorConfig {
    let table = section(cx, root, "monitor", &MONITOR.names());
    let t = table.as_ref();
    MonitorConfig {
        interval: duration_or(cx, t, "interval", DEFAULT_INTERVAL),
        probe_timeout: duration_or(cx, t, "probe_timeout", DEFAULT_PROBE_TIMEOUT),
        breach_grace: duration_or(cx, t, "breach_grace", DEFAULT_BREACH_GRACE),
        raw_retention: duration_or(cx, t, "raw_retention", DEFAULT_RAW_RETENTION),
        rollup_retention: duration_or(cx, t, "rollup_retention", DEFAULT_ROLLUP_RETENTION),
    }
}
