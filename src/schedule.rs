//! Periodic schedules: a name, when (`--every` a fixed interval, or `--cron` an
//! expression read in UTC by the croner crate) and the `add_up_to` of the work each
//! occurrence (slot) makes. Slots of `every` fall on multiples of the interval since
//! the Unix epoch, so every consumer computes the same ones.
//! Missed slots are not backfilled (as Oban's Cron plugin and River's periodic jobs
//! without RunOnStart): a slot is inserted only while it is at most `GRACE` late, so a
//! restart loses nothing while a long outage is not replayed as a burst.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How late a slot may be inserted; older ones are skipped.
pub const GRACE: Duration = Duration::from_secs(60);

/// The shortest `--every` taken.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Longest schedule name: it goes into work codes (`cron-<name>-<10 random>`).
pub const MAX_NAME: usize = 40;

/// What `parse_name` takes, for the OpenAPI document.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,39}$";

/// When a schedule's slots fall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    Every(Duration),
    Cron(String),
}

/// A schedule's name: 1 to 40 of lowercase letters, digits, `-` and `_`, starting with
/// a letter or digit.
pub fn parse_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    match ok {
        true => Ok(name.to_string()),
        false => Err(format!(
            "a schedule name is 1 to {MAX_NAME} of a-z, 0-9, - and _, starting with a letter or digit"
        )),
    }
}

/// `--every`: a humantime duration of at least `MIN_EVERY`, whole seconds.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("every must be a duration such as 1h or 90s ({e})"))?;
    if d < MIN_EVERY || d.subsec_nanos() != 0 {
        return Err("every must be whole seconds, at least 1s".into());
    }
    Ok(d)
}

/// `--cron`: 5 fields (minute to weekday) or 6 (seconds first), names, L, W, #.
pub fn parse_cron(s: &str) -> Result<String, String> {
    croner::Cron::from_str(s.trim())
        .map(|_| s.trim().to_string())
        .map_err(|e| format!("cron: {e}"))
}

impl When {
    /// From the two fields a request or the command line gives: exactly one.
    pub fn from_fields(every: Option<&str>, cron: Option<&str>) -> Result<When, String> {
        match (every, cron) {
            (Some(e), None) => parse_every(e).map(When::Every),
            (None, Some(c)) => parse_cron(c).map(When::Cron),
            _ => Err("give every or cron, one of them".into()),
        }
    }

    /// The slots after `after` (exclusive) up to `until` (inclusive), oldest first, at
    /// most `max`.
    pub fn slots(&self, after: SystemTime, until: SystemTime, max: usize) -> Vec<SystemTime> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < max {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    out.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        out
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        match self {
            When::Every(every) => {
                let step = every.as_secs().max(1);
                let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
                Some(UNIX_EPOCH + Duration::from_secs((secs / step + 1) * step))
            }
            When::Cron(expr) => {
                let cron = croner::Cron::from_str(expr).ok()?;
                let at: chrono::DateTime<chrono::Utc> = t.into();
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(next.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        crate::run_at::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn names_every_and_cron_are_checked() {
        assert!(parse_name("nightly_report-2").is_ok());
        for bad in ["", "-x", "Upper", "a b", "é", &"x".repeat(41)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_every("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_every("500ms").is_err());
        assert!(parse_every("soon").is_err());
        assert!(parse_cron("0 * * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok(), "seconds first");
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every hour").is_err());
        assert!(When::from_fields(Some("1h"), Some("0 * * * *")).is_err());
        assert!(When::from_fields(None, None).is_err());
    }

    #[test]
    fn slots_fall_on_the_epoch_grid_and_on_cron_times_in_utc() {
        let every = When::Every(Duration::from_secs(3600));
        let slots = every.slots(at("2026-12-05T10:30:00Z"), at("2026-12-05T13:00:00Z"), 10);
        let want = [
            "2026-12-05T11:00:00Z",
            "2026-12-05T12:00:00Z",
            "2026-12-05T13:00:00Z",
        ];
        assert_eq!(slots, want.map(at).to_vec());
        let cron = When::Cron("15 * * * *".into());
        let slots = cron.slots(at("2026-12-05T10:15:00Z"), at("2026-12-05T12:00:00Z"), 10);
        assert_eq!(slots, ["2026-12-05T11:15:00Z"].map(at).to_vec());
        assert_eq!(
            every
                .slots(at("2026-12-05T10:30:00Z"), at("2026-12-06T00:00:00Z"), 2)
                .len(),
            2
        );
    }
}
