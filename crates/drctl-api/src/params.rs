//! The query parameters the routes share, checked once at the edge: a
//! point in time (`since`, `until`), a configured service (with a
//! did-you-mean), a page size, and the `next` link of a full page
//! (its values percent-encoded by `percent-encoding`).

use chrono::{DateTime, Utc};

use crate::{parse_instant, ApiError, ApiState};

pub(crate) fn parse_time(
    parameter: &'static str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    parse_instant(text, now).map_err(|reason| ApiError::InvalidParameter { parameter, reason })
}

/// The largest page a list route serves.
pub(crate) const MAX_LIMIT: u32 = 100_000;

/// `Ok` for a configured service; a 404 with a did-you-mean otherwise.
pub(crate) fn known_service(state: &ApiState, name: &str) -> Result<(), ApiError> {
    let config = &*state.config;
    if config.service(name).is_some() {
        return Ok(());
    }
    let suggestion = config
        .services
        .iter()
        .map(|s| (strsim::jaro_winkler(&s.name, name), &s.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.clone());
    Err(ApiError::ServiceNotFound {
        name: name.to_string(),
        suggestion,
    })
}

/// A list query, checked: service, period, page size.
pub(crate) struct ListWindow {
    pub service: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

impl ListWindow {
    /// The link to the next (older) page when this one came back full:
    /// the same query, `until` the oldest item's time.
    pub fn next(
        &self,
        path: &str,
        returned: usize,
        oldest: Option<DateTime<Utc>>,
        extra: &[(&str, &Option<String>)],
    ) -> Option<String> {
        if returned < self.limit as usize {
            return None;
        }
        let oldest = oldest?;
        let mut link = format!(
            "{path}?limit={}&until={}",
            self.limit,
            urlencode(&oldest.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        );
        if let Some(s) = &self.service {
            link.push_str(&format!("&service={}", urlencode(s)));
        }
        if let Some(s) = self.since {
            link.push_str(&format!(
                "&since={}",
                urlencode(&s.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            ));
        }
        for (k, v) in extra {
            if let Some(v) = v {
                link.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        Some(link)
    }
}

pub(crate) fn list_window(
    state: &ApiState,
    service: Option<String>,
    since: Option<&str>,
    until: Option<&str>,
    limit: Option<&str>,
    max: u32,
) -> Result<ListWindow, ApiError> {
    if let Some(name) = &service {
        known_service(state, name)?;
    }
    let now = Utc::now();
    Ok(ListWindow {
        service,
        since: since.map(|t| parse_time("since", t, now)).transpose()?,
        until: until.map(|t| parse_time("until", t, now)).transpose()?,
        limit: page_limit(limit, 100, max)?,
    })
}

/// `limit` of a list endpoint: 1..=max, `default` when absent.
pub(crate) fn page_limit(text: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    match text {
        None => Ok(default),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or(ApiError::InvalidParameter {
                parameter: "limit",
                reason: format!("{l:?} is not a whole number from 1 to {max}"),
            }),
    }
}

/// Every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value for a `next` link.
pub(crate) fn urlencode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::urlencode;

    #[test]
    fn a_next_link_value_keeps_only_unreserved_characters() {
        assert_eq!(
            urlencode("2026-01-31T12:00:00.000001+00:00"),
            "2026-01-31T12%3A00%3A00.000001%2B00%3A00"
        );
        assert_eq!(urlencode("a b&c=d/é~_"), "a%20b%26c%3Dd%2F%C3%A9~_");
    }
}
