//! When a demand asks to run: `run_at` (RFC 3339, any offset) or `delay` (humantime:
//! `90s`, `2h`), never both. A time at or before now runs at once, as Sidekiq's
//! `perform_at` with a past time does; more than `MAX_AHEAD` ahead is refused (a typo
//! in a year must not park a work for a decade).

use std::time::{Duration, SystemTime};

/// Farthest ahead a work may be scheduled.
pub const MAX_AHEAD: Duration = Duration::from_secs(366 * 24 * 3600);
const MAX_AHEAD_TEXT: &str = "366 days";

/// A demand's wish to run later, as it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(SystemTime),
    After(Duration),
}

impl When {
    /// From a demand's `run_at` and `delay` fields, checked against `now`.
    pub fn from_fields(
        run_at: Option<&str>,
        delay: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<When>, String> {
        let when = match (run_at, delay) {
            (Some(_), Some(_)) => return Err("give run_at or delay, not both".into()),
            (Some(at), None) => When::At(parse_rfc3339(at)?),
            (None, Some(d)) => When::After(parse_delay(d)?),
            (None, None) => return Ok(None),
        };
        when.bounded(now).map(Some)
    }

    /// Refuses a time more than `MAX_AHEAD` after `now`.
    pub fn bounded(self, now: SystemTime) -> Result<Self, String> {
        if self.run_at(now).is_some_and(|t| t > now + MAX_AHEAD) {
            return Err(format!(
                "a work can be scheduled at most {MAX_AHEAD_TEXT} ahead"
            ));
        }
        Ok(self)
    }

    /// The time to run at, or `None` when it is due already (run at once).
    pub fn run_at(self, now: SystemTime) -> Option<SystemTime> {
        let at = match self {
            When::At(t) => t,
            When::After(d) => now.checked_add(d)?,
        };
        (at > now).then_some(at)
    }

    /// As the demand wrote it, normalised: what an idempotency fingerprint compares.
    pub fn fingerprint(self) -> (&'static str, String) {
        match self {
            When::At(t) => ("run_at", rfc3339(t)),
            When::After(d) => ("delay", humantime::format_duration(d).to_string()),
        }
    }
}

/// The units `parse_delay` takes (humantime's), for the OpenAPI document's pattern.
const UNITS: &str = "ns|us|ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|\
    h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks|M|month|months|y|yr|yrs|year|years";

/// `delay` as the document states it: number-unit pairs (`90s`, `1h 30m`).
pub fn delay_pattern() -> String {
    format!("^[0-9]+ ?({UNITS})( ?[0-9]+ ?({UNITS}))*$")
}

/// An RFC 3339 time with its offset (`2026-12-05T10:00:00Z`, `...+02:00`).
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
        format!("run_at must be an RFC 3339 time such as 2026-12-05T10:00:00Z ({e})")
    })?;
    Ok(t.with_timezone(&chrono::Utc).into())
}

/// A humantime duration (`90s`, `2h 30m`), more than zero.
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("delay must be a duration such as 90s or 2h ({e})"))?;
    if d > MAX_AHEAD {
        return Err(format!("delay must be at most {MAX_AHEAD_TEXT}"));
    }
    Ok(d)
}

/// `t` as RFC 3339 in UTC, to the second; any time, 1969 too (humantime's formatter
/// panics before 1970).
pub fn rfc3339(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_at_and_delay_are_parsed_and_bounded() {
        let now = parse_rfc3339("2026-12-05T10:00:00Z").unwrap();
        let at = |s| When::from_fields(Some(s), None, now);
        let after = |s| When::from_fields(None, Some(s), now);
        let soon = at("2026-12-05T12:00:00+02:00").unwrap().unwrap();
        assert_eq!(soon.run_at(now), None, "an offset is honoured: that is now");
        let later = at("2026-12-05T10:01:00Z").unwrap().unwrap();
        assert_eq!(later.run_at(now), Some(now + Duration::from_secs(60)));
        assert_eq!(
            at("1999-01-01T00:00:00Z").unwrap().unwrap().run_at(now),
            None
        );
        assert!(at("2028-01-01T00:00:00Z").unwrap_err().contains("at most"));
        assert!(at("tomorrow").unwrap_err().contains("RFC 3339"));
        let d = after("90s").unwrap().unwrap();
        assert_eq!(d.run_at(now), Some(now + Duration::from_secs(90)));
        assert!(after("2 fortnights").is_err());
        assert!(after("400days").unwrap_err().contains("at most"));
        let both = When::from_fields(Some("2026-12-05T10:01:00Z"), Some("1s"), now);
        assert!(both.unwrap_err().contains("not both"));
        assert_eq!(When::from_fields(None, None, now), Ok(None));
        let before_1970 = at("1969-01-01T00:00:00Z").unwrap().unwrap();
        assert_eq!(before_1970.fingerprint().1, "1969-01-01T00:00:00Z");
    }
}
