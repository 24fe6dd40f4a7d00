//! 5-field cron schedules of backups, verifications and restore tests, with
//! errors that say which field is wrong.

use crate::reader::{Cx, Spanned, Table};

/// The fields of a schedule in order, and what each takes, for saying which
/// one is wrong.
const CRON_FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat, where 0 and 7 are Sunday"),
];

const CRON_EXAMPLES: &str = "e.g. \"0 * * * *\" = hourly, \"30 2 * * *\" = daily at 02:30 UTC";

/// An optional schedule: `Some(None)` when absent, `None` when wrong
/// (reported).
pub(crate) fn optional_cron(cx: &mut Cx, table: &Table, key: &str) -> Option<Option<String>> {
    let Some(field) = table.get(key) else {
        return Some(None);
    };
    let text = cx.string_or(
        &field,
        Some(format!(
            "write the schedule as a string, e.g. {key} = \"0 * * * *\" (hourly)"
        )),
    )?;
    // Kept as written but for surrounding blanks, for whoever parses it next.
    check_cron(cx, &text, &field.path).then(|| Some(text.value.trim().to_string()))
}

/// Standard 5-field cron, checked with `croner`. Forms with seconds (and a
/// year) are refused rather than guessed at: "0 0 * * * *" means hourly to
/// one cron and every midnight to another, and a backup schedule that is
/// off by that much is found only when a restore is needed.
fn check_cron(cx: &mut Cx, text: &Spanned<String>, path: &str) -> bool {
    let fields: Vec<&str> = text.value.split_whitespace().collect();
    let (message, hint) = match fields.len() {
        5 => match cron_parser().parse(&text.value) {
            Ok(_) => return true,
            Err(e) => {
                let (reason, hint) = match wrong_cron_field(&fields) {
                    Some((i, e)) => {
                        let (name, takes) = CRON_FIELDS[i];
                        (
                            format!("{name} field {:?}: {}", fields[i], cron_error_text(&e)),
                            format!("the {name} field takes {takes}; {CRON_EXAMPLES}"),
                        )
                    }
                    None => (cron_error_text(&e), cron_hint()),
                };
                (
                    format!("{:?} is not a valid cron expression: {reason}", text.value),
                    hint,
                )
            }
        },
        0 => (
            "the schedule is empty".to_string(),
            format!("{}; or remove the key to run only on demand", cron_hint()),
        ),
        n @ (6 | 7) => {
            let (what, drop) = if n == 6 {
                ("seconds", "drop the seconds field")
            } else {
                ("seconds and year", "drop the seconds and year fields")
            };
            // Seconds come first and the year last in these forms.
            let five = fields[1..6].join(" ");
            let hint = if cron_parser().parse(&five).is_ok() {
                format!("{drop}: \"{five}\"")
            } else {
                format!("{drop}; {}", cron_hint())
            };
            (
                format!(
                    "{:?} has {n} fields; schedules are 5-field cron, without {what}",
                    text.value
                ),
                hint,
            )
        }
        n => {
            let hint = match cron_nickname(&text.value) {
                Some(five) => format!("write \"{five}\", its 5-field form"),
                None => cron_hint(),
            };
            let fields = if n == 1 { "field" } else { "fields" };
            (
                format!("{:?} has {n} {fields}; a cron expression has 5", text.value),
                hint,
            )
        }
    };
    cx.error(&text.span, path, message, Some(hint));
    false
}

/// How a schedule is written.
fn cron_hint() -> String {
    format!("5 fields: minute hour day-of-month month day-of-week; {CRON_EXAMPLES}")
}

/// The parser of schedules: exactly 5 fields.
fn cron_parser() -> croner::parser::CronParser {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// The first field that is wrong on its own, and croner's error for it:
/// croner's messages do not say which field they are about.
fn wrong_cron_field(fields: &[&str]) -> Option<(usize, croner::errors::CronError)> {
    let parser = cron_parser();
    (0..CRON_FIELDS.len()).find_map(|i| {
        let mut alone = ["*"; 5];
        alone[i] = fields[i];
        parser.parse(&alone.join(" ")).err().map(|e| (i, e))
    })
}

/// croner's message, lower case, without its own type names and full stop.
fn cron_error_text(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let text = match error {
        E::InvalidPattern(m) | E::ComponentError(m) => m.clone(),
        E::IllegalCharacters(m) => m.strip_prefix("CronPattern ").unwrap_or(m).to_string(),
        other => other.to_string(),
    };
    crate::error::lower_first(text.trim_end_matches('.'))
}

/// The 5-field form of cron's `@hourly`-style nicknames.
fn cron_nickname(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "@hourly" => Some("0 * * * *"),
        "@daily" | "@midnight" => Some("0 0 * * *"),
        "@weekly" => Some("0 0 * * 0"),
        "@monthly" => Some("0 0 1 * *"),
        "@yearly" | "@annually" => Some("0 0 1 1 *"),
        _ => None,
    }
}
