//! Human durations: `"5s"`, `"30m"`, `"24h"`, `"30d"`.
//!
//! Owns reading them from config (through `humantime`, refusing zero and
//! anything above [`MAX_CONFIG_DURATION`], with a short lower-case reason) and writing them back compactly (`"1d"`,
//! `"1m 30s"`, `"250ms"`) for the API and the CLI. Everything this crate
//! serializes as a duration goes through [`format_duration`], so what the API
//! shows can be pasted back into a config file.

use std::time::Duration;

/// The longest duration a config may hold: 100 years (of 365.25 days).
///
/// Longer than any retention or interval anyone means, and far inside what
/// `chrono` can add to or subtract from "now" (about ±262,000 years):
/// `cooldown = "300000y"` once overflowed the guard's date arithmetic and
/// panicked it exactly when a failover was needed. Inner code may therefore
/// add any config duration to a current timestamp; it still uses checked
/// arithmetic, so a duration from elsewhere cannot panic it either.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// Why a config duration was refused; the message part after the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationProblem {
    Malformed(String),
    Zero,
    TooLarge,
}

/// Parses a config duration. Zero is refused: every duration in the config is
/// an interval, timeout, grace period, retention or target, and zero of any
/// of them is a mistake (a zero interval would spin, a zero target can never
/// be met). So is anything above [`MAX_CONFIG_DURATION`].
pub(crate) fn parse_config_duration(text: &str) -> Result<Duration, DurationProblem> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(DurationProblem::Zero),
        Ok(d) if d > MAX_CONFIG_DURATION => Err(DurationProblem::TooLarge),
        Ok(d) => Ok(d),
        // humantime's own overflow (beyond u64 seconds) is the same mistake.
        Err(humantime::DurationError::NumberOverflow) => Err(DurationProblem::TooLarge),
        Err(e) => Err(DurationProblem::Malformed(reason(&e))),
    }
}

/// humantime's own messages list byte positions and every unit alias; an
/// operator needs the gist.
fn reason(error: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    match error {
        E::Empty => "it is empty".to_string(),
        E::UnknownUnit { unit, .. } if unit.is_empty() => "the unit is missing".to_string(),
        E::UnknownUnit { unit, .. } => format!("\"{unit}\" is not a unit"),
        E::NumberExpected(_) => "a number is expected before each unit".to_string(),
        E::InvalidCharacter(_) => "it has an unexpected character".to_string(),
        E::NumberOverflow => "it is too large".to_string(),
    }
}

/// Formats a duration compactly in the units humantime reads back:
/// `1d`, `1h 30m`, `1m 30s`, `250ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut secs = duration.as_secs();
    for (size, unit) in UNITS {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let nanos = duration.subsec_nanos();
    if nanos > 0 {
        let (ms, us, ns) = (nanos / 1_000_000, nanos / 1_000 % 1_000, nanos % 1_000);
        if ms > 0 {
            parts.push(format!("{ms}ms"));
        }
        if us > 0 {
            parts.push(format!("{us}us"));
        }
        if ns > 0 {
            parts.push(format!("{ns}ns"));
        }
    }
    if parts.is_empty() {
        return "0s".to_string();
    }
    parts.join(" ")
}

/// Formats a duration for messages and reports: rounded to what a reader
/// needs, then written as [`format_duration`] writes it. Below a second it
/// keeps milliseconds (`250ms`); below a minute, seconds and milliseconds
/// to a tenth of a second (`1s 500ms`); above, whole seconds and only the
/// two largest units (`1m 30s`, `2h 5m`, `3d 4h`). The text still parses
/// back with humantime, so a figure in an alert can be pasted into a config.
///
/// This is drctl's one duration formatter for people (figures in seconds go
/// through [`format_secs`]): the DNS errors, the monitor's compliance
/// reasons, alerts, reports and the CLI's tables use it, and a new message
/// should too.
pub fn format_duration_short(duration: Duration) -> String {
    const SECOND_MS: u128 = 1_000;
    let ms = duration.as_millis() + u128::from(duration.subsec_nanos() % 1_000_000 >= 500_000);
    if ms < SECOND_MS {
        return format_duration(Duration::from_millis(ms as u64));
    }
    if ms < 60 * SECOND_MS {
        let tenths = (ms + 50) / 100;
        return format_duration(Duration::from_millis((tenths * 100) as u64));
    }
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() >= 500_000_000);
    let exact = format_duration(Duration::from_secs(secs));
    exact.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// A figure in seconds (as the API serves durations) for people, written
/// as [`format_duration_short`] writes it: `250ms`, `4s 500ms`, `1m 30s`.
/// A negative figure counts as zero; one too large for a `Duration` as the
/// largest.
pub fn format_secs(seconds: f64) -> String {
    format_duration_short(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX))
}

/// Microseconds (the store's unit) as seconds (the API's unit).
pub fn secs_from_us(us: Option<i64>) -> Option<f64> {
    us.map(|us| us as f64 / 1e6)
}

/// Milliseconds (an operation's measured RTO) as seconds.
pub fn secs_from_ms(ms: Option<u64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1e3)
}

/// `#[serde(serialize_with = "…")]` helper writing a duration as a human string.
pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_for_people_go_through_the_one_formatter() {
        assert_eq!(format_secs(0.12), "120ms");
        assert_eq!(format_secs(3.5), "3s 500ms");
        assert_eq!(format_secs(60.0), "1m");
        assert_eq!(format_secs(192.4), "3m 12s");
        assert_eq!(format_secs(-1.0), "0s");
        assert_eq!(secs_from_us(Some(1_500_000)), Some(1.5));
        assert_eq!(secs_from_ms(Some(250)), Some(0.25));
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        for (d, text) in [
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(30 * 86_400), "30d"),
            (Duration::from_millis(1_250), "1s 250ms"),
            (Duration::from_nanos(1_001), "1us 1ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d, "{text}");
        }
    }

    #[test]
    fn short_form_rounds_to_what_a_reader_needs() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(250_400), "250ms"),
            (Duration::from_millis(1_500), "1s 500ms"),
            (Duration::from_millis(1_549), "1s 500ms"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(59_960), "1m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(3_600 + 5 * 60 + 7), "1h 5m"),
            (Duration::from_secs(3 * 86_400 + 4 * 3_600 + 59), "3d 4h"),
            (Duration::from_secs(7 * 86_400), "7d"),
        ] {
            assert_eq!(format_duration_short(d), text, "{d:?}");
            assert!(humantime::parse_duration(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_zero_and_garbage() {
        assert_eq!(parse_config_duration("0s"), Err(DurationProblem::Zero));
        assert_eq!(
            parse_config_duration("5x"),
            Err(DurationProblem::Malformed("\"x\" is not a unit".into()))
        );
        assert_eq!(
            parse_config_duration("5"),
            Err(DurationProblem::Malformed("the unit is missing".into()))
        );
        assert!(parse_config_duration("").is_err());
        assert_eq!(
            parse_config_duration("300000y"),
            Err(DurationProblem::TooLarge)
        );
        assert_eq!(
            parse_config_duration("99999999999999999999999s"),
            Err(DurationProblem::TooLarge)
        );
        assert_eq!(parse_config_duration("36525d"), Ok(MAX_CONFIG_DURATION));
        assert_eq!(
            parse_config_duration("24h"),
            Ok(Duration::from_secs(86_400))
        );
    }
}
