//! `since` and `until`: a Unix time or a duration back from now. The grammar is small
//! and exact so that the OpenAPI document can state it as one pattern (`pattern()`) and
//! the server accepts precisely what that pattern matches: a client (or Schemathesis)
//! that builds a value from the document is never refused.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unit names in humantime's spellings (`6h`, `30min`, `2 days`), so the durations the
/// CLI took before keep working; a unit is the whole run of letters after a number.
const UNITS: [(&str, i64); 31] = [
    ("s", 1),
    ("sec", 1),
    ("secs", 1),
    ("second", 1),
    ("seconds", 1),
    ("m", 60),
    ("min", 60),
    ("mins", 60),
    ("minute", 60),
    ("minutes", 60),
    ("h", 3600),
    ("hr", 3600),
    ("hrs", 3600),
    ("hour", 3600),
    ("hours", 3600),
    ("d", 86_400),
    ("day", 86_400),
    ("days", 86_400),
    ("w", 604_800),
    ("wk", 604_800),
    ("wks", 604_800),
    ("week", 604_800),
    ("weeks", 604_800),
    ("M", 2_630_016), // 30.44 days, as humantime counts a month
    ("month", 2_630_016),
    ("months", 2_630_016),
    ("y", 31_557_600), // 365.25 days
    ("yr", 31_557_600),
    ("yrs", 31_557_600),
    ("year", 31_557_600),
    ("years", 31_557_600),
];

/// What `parse` accepts, as an ECMA-262 pattern for the document: empty (no bound),
/// digits (a Unix time), or number-unit pairs, optionally separated by one space.
pub fn pattern() -> String {
    let units = UNITS.map(|(unit, _)| unit).join("|");
    format!("^$|^[0-9]+$|^[0-9]+ ?({units})( ?[0-9]+ ?({units}))*$")
}

/// The Unix seconds PostgreSQL's timestamptz can hold that anyone means: years 1..=9999.
/// Times beyond are clamped to it: `since=1000000years` means "since the beginning".
pub const RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// `None` for an empty value (no bound, as an empty form field means), else Unix seconds.
pub fn parse(name: &str, s: &str) -> Result<Option<i64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!("{name} must be a Unix time or a duration back from now like 6h, 30min or 1h 30m, got {s:?}")
    };
    let unix = if s.bytes().all(|b| b.is_ascii_digit()) {
        number(s.as_bytes())
    } else {
        now().saturating_sub(duration(s.as_bytes()).ok_or_else(bad)?)
    };
    Ok(Some(unix.clamp(*RANGE.start(), *RANGE.end())))
}

/// Digits as a number, saturating: they are clamped to `RANGE` anyway.
fn number(digits: &[u8]) -> i64 {
    digits.iter().fold(0i64, |n, d| {
        n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
    })
}

/// The seconds in `1h 30m`, saturating; `None` when it does not follow the grammar.
fn duration(s: &[u8]) -> Option<i64> {
    let mut total = 0i64;
    let mut rest = s;
    loop {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n = number(&rest[..digits]);
        rest = &rest[digits..];
        rest = rest.strip_prefix(b" ").unwrap_or(rest);
        let letters = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = std::str::from_utf8(&rest[..letters]).ok()?;
        let (_, secs) = UNITS.iter().find(|(name, _)| *name == unit)?;
        total = total.saturating_add(n.saturating_mul(*secs));
        rest = &rest[letters..];
        match rest {
            [] => return Some(total),
            [b' ', next, ..] if next.is_ascii_digit() => rest = &rest[1..],
            [next, ..] if next.is_ascii_digit() => {}
            _ => return None,
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back(s: &str) -> Option<i64> {
        parse("since", s).ok().flatten().map(|t| now() - t)
    }

    #[test]
    fn durations_and_unix_times() {
        assert_eq!(parse("since", "1634115736"), Ok(Some(1634115736)));
        assert_eq!(parse("since", ""), Ok(None));
        for (text, secs) in [
            ("6h", 6 * 3600),
            ("30min", 1800),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("2 days", 2 * 86_400),
            ("1w2d", 9 * 86_400),
        ] {
            let got = back(text).expect(text);
            assert!((got - secs).abs() <= 1, "{text}: {got}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "yesterday",
            "h",
            "6 h ",
            " 6h",
            "6h ",
            "1.5h",
            "6hh",
            "-1h",
            "6h,",
            "6H",
            "1µs",
            "6h  1m",
        ] {
            assert!(parse("since", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_beyond_the_range_are_clamped() {
        let (first, last) = (Some(*RANGE.start()), Some(*RANGE.end()));
        assert_eq!(parse("until", "99999999999999999999999").ok(), Some(last));
        assert_eq!(parse("since", "1000000years").ok(), Some(first));
        assert_eq!(parse("since", "99999999999999999999y").ok(), Some(first));
        assert_eq!(parse("until", "253402300799").ok(), Some(last));
    }
}
