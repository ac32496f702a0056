//! The work search filter, shared by `GET /works`, `ppctl work search` and storage, so
//! every way in validates the same way. Its parameters' OpenAPI description is derived
//! from `RawQuery` and states exactly what `validate` accepts.

pub mod bulk;
pub mod time;

use crate::model::WorkStatus;

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
#[derive(Debug, Clone, Default, serde::Deserialize, clap::Args, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RawQuery {
    /// Work code prefix, e.g. `api-` or `consumer-AbC`, matched literally (`%` and `_` are
    /// not wildcards); at most 100 characters; empty means any.
    #[arg(long)]
    #[param(max_length = 100, pattern = "^[^\\u0000]*$", example = "api-")]
    pub work_code: Option<String>,
    // The document's pattern for `since` and `until` is `time::pattern()`, set when the
    // document is built (the derive takes only a literal).
    /// Created at or after: a duration back from now (`6h`, `30min`, `1h 30m`) or a Unix
    /// time; empty means no bound. Times before year 1 or after 9999 are clamped.
    #[arg(long)]
    #[param(example = "6h")]
    pub since: Option<String>,
    /// Created before: a duration back from now (`1h`) or a Unix time; empty means no
    /// bound. Times before year 1 or after 9999 are clamped.
    #[arg(long)]
    pub until: Option<String>,
    /// pending, running, done, failed, expired, cancelled or scheduled.
    #[arg(long)]
    #[param(value_type = Option<WorkStatus>)]
    pub status: Option<String>,
    /// 1..=1000, default 100.
    #[arg(long)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Paging: only works with a smaller id (pass the last id of the previous page).
    #[arg(long)]
    #[param(value_type = Option<i64>, minimum = -9223372036854775808_i64, maximum = 9223372036854775807_i64)]
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
            // Characters, as the document's maxLength counts them, not bytes.
            Some(p) if p.chars().count() > 100 => {
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
                .map_or(Ok(None), |s| time::parse("since", s))?,
            until: self
                .until
                .as_deref()
                .map_or(Ok(None), |s| time::parse("until", s))?,
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
        query_string(&pairs)
    }
}

/// `k=v&…` of the parameters given, values percent-encoded.
pub fn query_string(pairs: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
    parts.join("&")
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
    fn empty_times_are_no_bound_and_prefixes_count_characters() {
        let q = raw(|q| {
            q.since = Some(String::new());
            q.until = Some(String::new());
        });
        assert_eq!(q.validate().map(|q| (q.since, q.until)), Ok((None, None)));
        assert!(raw(|q| q.work_code = Some("é".repeat(100)))
            .validate()
            .is_ok());
        assert!(raw(|q| q.work_code = Some("é".repeat(101)))
            .validate()
            .is_err());
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
