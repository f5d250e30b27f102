//! Time as this tool needs it: whole seconds since the Unix epoch (what AWS and our caches
//! store), and RFC 3339 text (what AWS tools read and logs show).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    epoch(SystemTime::now())
}

/// Seconds since the epoch of `t` (0 before the epoch).
pub fn epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `SystemTime` of `secs` since the epoch (the epoch itself for negative values).
pub fn system_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// RFC 3339 (`2024-01-02T03:04:05Z`), the form AWS tools read; "" when out of range.
pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses RFC 3339 text to seconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Now, in RFC 3339 with sub-second precision: log line timestamps.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// An expiry for people: RFC 3339, or "never" for a session without one.
pub fn expiry(secs: Option<i64>) -> String {
    match secs {
        None => "never".into(),
        Some(s) => match rfc3339(s) {
            t if t.is_empty() => s.to_string(),
            t => t,
        },
    }
}

/// A duration for people: "45 s", "12 min", "3 h 20 min".
pub fn human_secs(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        for (secs, want) in [
            (-3, "0 s"),
            (45, "45 s"),
            (600, "10 min"),
            (7200, "2 h"),
            (12_000, "3 h 20 min"),
        ] {
            assert_eq!(human_secs(secs), want);
        }
    }

    #[test]
    fn epoch_seconds_and_rfc3339_round_trip() {
        assert_eq!(rfc3339(60), "1970-01-01T00:01:00Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(epoch(system_time(1_700_000_000)), 1_700_000_000);
        assert_eq!(epoch(system_time(-5)), 0);
        assert_eq!(expiry(None), "never");
        assert_eq!(expiry(Some(0)), "1970-01-01T00:00:00Z");
        assert!(now() > 1_700_000_000);
    }
}
