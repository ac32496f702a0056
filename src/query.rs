//! The work search filter, shared by `GET /works`, `ppctl work search` and storage, so
//! every way in validates the same way.

use crate::model::WorkStatus;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// A validated search. Times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkQuery {
    pub work_code: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub status: Option<WorkStatus>,
    pub limit: i64,
    pub before_id: Option<i64>,
}

/// The search as text, as it arrives in a query string or on the command line.
#[derive(Debug, Clone, Default, serde::Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    /// Work code prefix, e.g. `api-` or `consumer-AbC`.
    #[arg(long)]
    pub work_code: Option<String>,
    /// Created at or after: a duration back from now (`6h`) or a Unix time.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before: a duration back from now (`1h`) or a Unix time.
    #[arg(long)]
    pub until: Option<String>,
    /// pending, running, done, failed, expired or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// 1..=1000, default 100.
    #[arg(long)]
    pub limit: Option<String>,
    /// Paging: only works with a smaller id (pass the last id of the previous page).
    #[arg(long)]
    pub before_id: Option<String>,
}

impl RawQuery {
    pub fn validate(&self) -> Result<WorkQuery, String> {
        let texts = [
            &self.work_code,
            &self.since,
            &self.until,
            &self.status,
            &self.limit,
            &self.before_id,
        ];
        if texts
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            return Err("parameters must not contain NUL characters".into());
        }
        let work_code = match &self.work_code {
            Some(p) if p.len() > 100 => {
                return Err("work_code prefix is longer than 100 characters".into())
            }
            Some(p) if p.is_empty() => None,
            other => other.clone(),
        };
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "limit must be an integer between 1 and {MAX_LIMIT}, got {l:?}"
                    ))
                }
            },
        };
        let before_id = match &self.before_id {
            None => None,
            Some(b) => Some(
                b.parse::<i64>()
                    .map_err(|_| format!("before_id must be an integer, got {b:?}"))?,
            ),
        };
        let query = WorkQuery {
            work_code,
            since: self
                .since
                .as_deref()
                .map(|s| parse_time("since", s))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| parse_time("until", s))
                .transpose()?,
            status: self.status.as_deref().map(str::parse).transpose()?,
            limit,
            before_id,
        };
        Ok(query)
    }

    /// Query-string form (for `--via http`), percent-encoded.
    pub fn to_query_string(&self) -> String {
        let pairs = [
            ("work_code", &self.work_code),
            ("since", &self.since),
            ("until", &self.until),
            ("status", &self.status),
            ("limit", &self.limit),
            ("before_id", &self.before_id),
        ];
        let parts: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
            .collect();
        parts.join("&")
    }
}

/// The Unix seconds PostgreSQL's timestamptz can hold that anyone means: years 1..=9999.
const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A Unix time (all digits) or a duration back from now (`6h`, `30m`).
pub fn parse_time(name: &str, s: &str) -> Result<i64, String> {
    let unix = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i64>().ok()
    } else {
        let back = humantime::parse_duration(s)
            .map_err(|_| format!("{name} must be a duration like 6h or a Unix time, got {s:?}"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        i64::try_from(now)
            .ok()
            .zip(i64::try_from(back.as_secs()).ok())
            .map(|(now, back)| now - back)
    };
    unix.filter(|t| TIME_RANGE.contains(t))
        .ok_or_else(|| format!("{name} {s:?} is out of range (years 1 to 9999)"))
}

/// Escapes LIKE's wildcards so a user's prefix matches literally.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(f: impl FnOnce(&mut RawQuery)) -> RawQuery {
        let mut q = RawQuery::default();
        f(&mut q);
        q
    }

    #[test]
    fn defaults_and_limits() {
        assert_eq!(
            RawQuery::default().validate().map(|q| q.limit),
            Ok(DEFAULT_LIMIT)
        );
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(
                raw(|q| q.limit = Some(bad.into())).validate().is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            raw(|q| q.limit = Some("1000".into()))
                .validate()
                .map(|q| q.limit),
            Ok(1000)
        );
    }

    #[test]
    fn times_are_durations_or_unix_seconds() {
        assert_eq!(parse_time("since", "1634115736"), Ok(1634115736));
        let six_hours_ago = parse_time("since", "6h").expect("duration");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!((now - 6 * 3600 - six_hours_ago).abs() <= 1);
        assert!(parse_time("since", "yesterday").is_err());
        assert!(parse_time("since", "99999999999999999999999").is_err());
        assert!(parse_time("since", "99999999999999").is_err());
        assert!(parse_time("since", "1000000years").is_err());
        assert_eq!(parse_time("until", "253402300799"), Ok(253402300799));
    }

    #[test]
    fn statuses_and_ids_are_checked() {
        assert!(raw(|q| q.status = Some("weird".into())).validate().is_err());
        assert!(raw(|q| q.before_id = Some("x".into())).validate().is_err());
        let q = raw(|q| q.status = Some("done".into()))
            .validate()
            .expect("valid");
        assert_eq!(q.status, Some(WorkStatus::Done));
    }

    #[test]
    fn nul_characters_are_refused() {
        assert!(raw(|q| q.work_code = Some("api\0".into()))
            .validate()
            .is_err());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_prefix("api-"), "api-%");
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
    }

    #[test]
    fn query_strings_are_encoded() {
        let q = raw(|q| {
            q.work_code = Some("a b&c".into());
            q.since = Some("6h".into());
        });
        assert_eq!(q.to_query_string(), "work_code=a%20b%26c&since=6h");
    }
}
