//! `[failover]` and `[services.failover]`: the operation driver's lease and
//! the global brake on automatic failover, and per service whether it fails
//! over by itself, its fence hook and the guard's timing. One module because
//! each table refuses the other's keys with a hint pointing there.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::common::{bounded_duration, keys_here_or_elsewhere};
use crate::model::{FailoverPolicy, FailoverSettings, RejoinPolicy, Tier};
use crate::reader::{Cx, Field, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::suggest;

const DEFAULT_LEASE: Duration = Duration::from_secs(15);
const DEFAULT_AUTOMATIC_LIMIT: u32 = 3;
const DEFAULT_AUTOMATIC_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub(crate) const FAILOVER: Section = Section {
    header: "[failover]",
    doc: "How operations (failovers, switchovers, drills) are driven, and the global brake on automatic failover.",
    keys: &[
        key("lease", K::Duration, D::Duration(DEFAULT_LEASE), "How long an operation driver's lease lasts without renewal, 1s..=10m; a driver that dies is replaced after at most this long."),
        key("automatic_limit", K::Integer, D::Integer(DEFAULT_AUTOMATIC_LIMIT as i64), "At most this many automatic failovers, across all services, within `automatic_window`; 0 turns automatic failover off everywhere."),
        key("automatic_window", K::Duration, D::Duration(DEFAULT_AUTOMATIC_WINDOW), "The sliding window of `automatic_limit`."),
    ],
};

/// Short enough that a dead driver is replaced quickly, long enough that a
/// slow step (a fence hook, a promotion) renews it in time.
const LEASE_RANGE: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(600);

/// `[failover]`: the lease of operation drivers and the global brake on
/// automatic failover. `None` when anything is wrong (reported).
pub(crate) fn failover_settings(cx: &mut Cx, root: &Table) -> Option<FailoverSettings> {
    let defaults = FailoverSettings::default();
    let Some(field) = root.get("failover") else {
        return Some(defaults);
    };
    let table = cx.table(&field)?;
    keys_here_or_elsewhere(
        cx,
        &table,
        &FAILOVER.names(),
        &SERVICE_FAILOVER.names(),
        "this is set per service, in [services.failover]",
    );
    let lease = bounded_duration(cx, &table, "lease", defaults.lease, LEASE_RANGE);
    let automatic_limit = match table.get("automatic_limit") {
        None => Some(defaults.automatic_limit),
        Some(f) => cx.integer(&f).and_then(|limit| {
            let n = u32::try_from(limit.value).ok();
            if n.is_none() {
                cx.error(
                    &limit.span,
                    &f.path,
                    format!("{} is not a count of failovers", limit.value),
                    Some(format!(
                        "use 0 to turn automatic failover off everywhere, or a small count; the default is {}",
                        defaults.automatic_limit
                    )),
                );
            }
            n
        }),
    };
    let automatic_window = table
        .get("automatic_window")
        .map_or(Some(defaults.automatic_window), |f| {
            cx.duration(&f).map(|d| d.value)
        });
    Some(FailoverSettings {
        lease: lease?,
        automatic_limit: automatic_limit?,
        automatic_window: automatic_window?,
    })
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            lease: DEFAULT_LEASE,
            automatic_limit: DEFAULT_AUTOMATIC_LIMIT,
            automatic_window: DEFAULT_AUTOMATIC_WINDOW,
        }
    }
}

const DEFAULT_FENCE_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MIN_DOWN: Duration = Duration::from_secs(3);
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(15 * 60);

pub(crate) const SERVICE_FAILOVER: Section = Section {
    header: "[services.failover]",
    doc: "When and how one service fails over.",
    keys: &[
        key("automatic", K::Boolean, D::Derived("`true` for hot, `false` for warm and cold"), "Whether drctl fails over by itself when the primary is lost."),
        key("fence_hook", K::Strings, D::Unset, "A command run to fence an unreachable primary: argv, no shell; `{service}`, `{region}` (the region fenced) and `{operation}` are replaced in every argument."),
        key("fence_hook_timeout", K::Duration, D::Duration(DEFAULT_FENCE_HOOK_TIMEOUT), "How long the fence hook may run before it counts as failed."),
        key("min_down", K::Duration, D::Duration(DEFAULT_MIN_DOWN), "Failed probes (`[services.health] failures` in a row) must also span at least this long before the primary counts as lost."),
        key("cooldown", K::Duration, D::Duration(DEFAULT_COOLDOWN), "No second automatic failover of this service within this long after one."),
        key("rejoin", K::Choice(&["auto", "manual"]), D::Text("auto"), "`auto`: after a switchover, and after a failover once the old primary's host answers again, drctl rewinds (or re-clones) the old primary as a standby of the new one, through its agent or on drctl's host; `manual`: it stays fenced until `drctl rejoin`."),
    ],
};

/// What drctl replaces in each argument of a fence hook.
const FENCE_HOOK_PLACEHOLDERS: &[&str] = &["{service}", "{region}", "{operation}"];

/// `[services.failover]`, with the tier's defaults. `None` when wrong.
pub(crate) fn service_failover(
    cx: &mut Cx,
    service: &Table,
    tier: Option<Tier>,
) -> Option<FailoverPolicy> {
    let defaults = FailoverPolicy::for_tier(tier.unwrap_or(Tier::Warm));
    let Some(field) = service.get("failover") else {
        return Some(defaults);
    };
    let table = cx.table(&field)?;
    keys_here_or_elsewhere(
        cx,
        &table,
        &SERVICE_FAILOVER.names(),
        &FAILOVER.names(),
        "this is global: set it in the top-level [failover] table",
    );
    let automatic = table
        .get("automatic")
        .map_or(Some(defaults.automatic), |f| {
            cx.boolean(&f).map(|b| b.value)
        });
    let fence_hook = match table.get("fence_hook") {
        None => Some(None),
        Some(f) => fence_hook(cx, &f).map(Some),
    };
    let durations = [
        ("fence_hook_timeout", defaults.fence_hook_timeout),
        ("min_down", defaults.min_down),
        ("cooldown", defaults.cooldown),
    ]
    .map(|(key, default)| {
        table
            .get(key)
            .map_or(Some(default), |f| cx.duration(&f).map(|d| d.value))
    });
    let [fence_hook_timeout, min_down, cooldown] = durations;
    let rejoin = match table.get("rejoin") {
        None => Some(defaults.rejoin),
        Some(f) => rejoin_policy(cx, &f),
    };
    Some(FailoverPolicy {
        automatic: automatic?,
        fence_hook: fence_hook?,
        fence_hook_timeout: fence_hook_timeout?,
        min_down: min_down?,
        cooldown: cooldown?,
        rejoin: rejoin?,
    })
}

fn rejoin_policy(cx: &mut Cx, field: &Field) -> Option<RejoinPolicy> {
    let text = cx.string(field)?;
    match text.value.as_str() {
        "auto" => Some(RejoinPolicy::Auto),
        "manual" => Some(RejoinPolicy::Manual),
        other => {
            let hint = suggest::hint(other, ["auto", "manual"]).unwrap_or_else(|| {
                "write \"auto\" (drctl makes the old primary a standby again by itself) or \"manual\" (it waits for `drctl rejoin`)".into()
            });
            cx.error(
                &text.span,
                &field.path,
                format!("{other:?} is not \"auto\" or \"manual\""),
                Some(hint),
            );
            None
        }
    }
}

/// The fence hook's argv: not empty, a program first, and only the
/// placeholders drctl fills in.
pub(crate) fn fence_hook(cx: &mut Cx, field: &Field) -> Option<Vec<String>> {
    let example = "e.g. fence_hook = [\"/usr/local/bin/fence-db\", \"{service}\", \"{region}\"]";
    let elements = cx.array(
        field,
        &format!("write the command as an argv array, run without a shell: {example}"),
    )?;
    if elements.is_empty() {
        cx.error(
            &field.span,
            &field.path,
            "the command is empty",
            Some(format!(
                "name a program and its arguments, {example}; or remove the key"
            )),
        );
        return None;
    }
    let mut ok = true;
    let mut argv = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        let Some(arg) = cx.string(element) else {
            ok = false;
            continue;
        };
        if i == 0 && arg.value.trim().is_empty() {
            cx.error(
                &arg.span,
                &element.path,
                "names no program",
                Some(example.to_string()),
            );
            ok = false;
            continue;
        }
        if let Some(unknown) = unknown_placeholder(&arg.value) {
            let known = FENCE_HOOK_PLACEHOLDERS.join(", ");
            let hint = suggest::hint(&unknown, FENCE_HOOK_PLACEHOLDERS.iter().copied())
                .unwrap_or_else(|| format!("drctl fills in {known}"));
            cx.error(
                &arg.span,
                &element.path,
                format!("{unknown} is not a placeholder drctl fills in ({known})"),
                Some(hint),
            );
            ok = false;
            continue;
        }
        argv.push(arg.value);
    }
    ok.then_some(argv)
}

/// The first `{…}` in `arg` that is not one of [`FENCE_HOOK_PLACEHOLDERS`].
fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}')?;
        let placeholder = &after[..=close];
        if !FENCE_HOOK_PLACEHOLDERS.contains(&placeholder) {
            return Some(placeholder.to_string());
        }
        rest = &after[close + 1..];
    }
    None
}

impl FailoverPolicy {
    /// What a service of `tier` gets when it writes nothing.
    pub fn for_tier(tier: Tier) -> Self {
        FailoverPolicy {
            automatic: tier == Tier::Hot,
            fence_hook: None,
            fence_hook_timeout: DEFAULT_FENCE_HOOK_TIMEOUT,
            min_down: DEFAULT_MIN_DOWN,
            cooldown: DEFAULT_COOLDOWN,
            rejoin: RejoinPolicy::Auto,
        }
    }
}
