//! Durations given by users (`30m`, `10s`, `500ms`, `30d`, `1h30m`) and RFC 3339 timestamps
//! returned by the API.

use std::time::Duration;

/// Parses a non-negative duration such as `30m`, `10s`, `500ms`, `12h`, `30d` or `1h30m`.
/// Days count as 24 hours. Months and years are refused: their length is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration: give a number with a unit, like 30s, 10m, 12h or 30d".into());
    }
    if trimmed.starts_with('-') || trimmed.ends_with("ago") {
        return Err(format!("duration {trimmed:?} is negative: give a positive one, like 30s"));
    }
    let span: jiff::Span = trimmed.parse().map_err(|_| {
        // A plain count with a unit that cannot be read is too large, not malformed.
        let count = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim_end();
        let unit = &trimmed[count.len()..].trim_start();
        if !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()) && ["ms", "s", "m", "h", "d"].contains(unit) {
            format!("duration {trimmed:?} is far too long: give it in days, up to a few thousand, like 30d or 365d")
        } else {
            format!("cannot read duration {trimmed:?}: use a number with a unit, like 500ms, 30s, 10m, 12h or 30d")
        }
    })?;
    if span.get_years() != 0 || span.get_months() != 0 || span.get_weeks() != 0 {
        return Err(format!("duration {trimmed:?} uses weeks, months or years: give it in days, like 30d"));
    }
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|error| format!("duration {trimmed:?} is out of range: {error}"))?;
    Duration::try_from(signed).map_err(|_| format!("duration {trimmed:?} is negative: give a positive one, like 30s"))
}

/// Formats a duration for people: `1m 30s`, `250ms`.
pub fn human(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    let (days, hours, minutes, secs) = (seconds / 86_400, (seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60);
    if days > 0 {
        return if hours > 0 { format!("{days}d {hours}h") } else { format!("{days}d") };
    }
    match (hours, minutes) {
        (0, 0) => format!("{:.1}s", duration.as_secs_f64()),
        (0, _) => format!("{minutes}m {secs}s"),
        _ => format!("{hours}h {minutes}m"),
    }
}

/// Parses an RFC 3339 timestamp leniently (fractional seconds of any length, `Z` or offset).
pub fn parse_timestamp(text: &str) -> Option<jiff::Timestamp> {
    text.trim().parse().ok()
}

/// Unix seconds as RFC 3339 in UTC.
pub fn format_epoch(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map(|t| t.to_string()).unwrap_or_default()
}

/// The current time as RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_users_write() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn refuses_what_is_not_a_clear_positive_duration() {
        for bad in ["", "5", "abc", "-5s", "2 months", "1y", "3w", "10 parsecs"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("duration"), "{bad:?} gave {error:?}");
        }
        for huge in ["9999999999d", "99999999999999h", "999999999999999999ms"] {
            let error = parse_duration(huge).unwrap_err();
            assert!(error.contains("is far too long: give it in days"), "{huge:?} gave {error:?}");
        }
        for odd in ["9999999999x", "12abc", "d"] {
            assert!(parse_duration(odd).unwrap_err().contains("use a number with a unit"), "{odd:?}");
        }
    }

    #[test]
    fn human_durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human(Duration::from_secs(3700)), "1h 1m");
        assert_eq!(human(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(human(Duration::from_secs(86_400 + 7200)), "1d 2h");
    }

    #[test]
    fn timestamps_with_nanoseconds_parse() {
        let parsed = parse_timestamp("2020-11-04T21:39:49.530562231Z").unwrap();
        assert_eq!(parsed.as_second(), 1604525989);
        assert!(parse_timestamp("yesterday").is_none());
    }
}
