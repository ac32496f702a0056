//! The filter of a bulk retry or cancel: the search's filters (status, since, until,
//! work_code prefix), a maximum and a dry run. It is validated by the search's own
//! rules, so a bulk action touches exactly the works the same search lists.

use super::{RawQuery, WorkQuery};

pub const DEFAULT_MAX: i64 = 1000;
pub const MAX_MAX: i64 = 100_000;

/// A validated bulk action's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkQuery {
    /// The works it may change; `limit` and `before_id` are unused.
    pub filter: WorkQuery,
    /// At most this many works are changed (or counted, in a dry run).
    pub max: i64,
    pub dry_run: bool,
}

/// The bulk filter as text, as it arrives in a query string or on the command line.
#[derive(Debug, Clone, Default, serde::Deserialize, clap::Args, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RawBulk {
    /// Work code prefix, matched literally, as in the search; at most 100 characters.
    #[arg(long)]
    #[param(max_length = 100, pattern = "^[^\\u0000]*$", example = "api-")]
    pub work_code: Option<String>,
    /// Created at or after: a duration back from now (`1h`) or a Unix time.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before: a duration back from now or a Unix time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only works in this status. Retry takes failed and expired works, cancel pending
    /// and scheduled ones: a status the action cannot change is a 409.
    #[arg(long)]
    #[param(value_type = Option<crate::model::WorkStatus>)]
    pub status: Option<String>,
    /// 1..=100000, default 1000: the most works changed (or counted) by one request.
    #[arg(long)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub max: Option<String>,
    /// `true`: change nothing, count the works that would be changed (up to `max`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[param(value_type = Option<bool>)]
    pub dry_run: Option<String>,
}

impl RawBulk {
    pub fn validate(&self) -> Result<BulkQuery, String> {
        let search = RawQuery {
            work_code: self.work_code.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            status: self.status.clone(),
            ..RawQuery::default()
        };
        let filter = search.validate()?;
        let max = match self.max.as_deref() {
            None => DEFAULT_MAX,
            Some(m) => match m.parse::<i64>() {
                Ok(n) if (1..=MAX_MAX).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "max must be an integer between 1 and {MAX_MAX}, got {m:?}"
                    ))
                }
            },
        };
        let dry_run = match self.dry_run.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("dry_run must be true or false, got {other:?}")),
        };
        Ok(BulkQuery {
            filter,
            max,
            dry_run,
        })
    }

    /// The CLI's rule: one work's id or filters, not both; and a bulk action over every
    /// work needs at least one filter, so a forgotten id never acts on the whole history.
    pub fn check_with_id(&self, id: Option<i64>) -> Result<(), String> {
        let bulk_only = self.max.is_some() || self.dry_run.is_some();
        match (id, self.filters_given() || bulk_only) {
            (Some(_), true) => Err(
                "give a work id or filters (--status, --since, --until, --work-code), not both"
                    .into(),
            ),
            (None, _) if !self.filters_given() => Err(
                "give a work id, or at least one filter (--status, --since, --until, --work-code)"
                    .into(),
            ),
            _ => self.validate().map(drop),
        }
    }

    /// Whether any filter is given: the CLI refuses a bulk action over every work.
    pub fn filters_given(&self) -> bool {
        [&self.work_code, &self.since, &self.until, &self.status]
            .iter()
            .any(|f| f.is_some())
    }

    /// Query-string form (for `--via http`), percent-encoded.
    pub fn to_query_string(&self) -> String {
        let pairs = [
            ("work_code", &self.work_code),
            ("since", &self.since),
            ("until", &self.until),
            ("status", &self.status),
            ("max", &self.max),
            ("dry_run", &self.dry_run),
        ];
        super::query_string(&pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_dry_run_are_checked() {
        let ok = RawBulk::default().validate().expect("defaults");
        assert_eq!((ok.max, ok.dry_run), (DEFAULT_MAX, false));
        for bad in ["0", "100001", "x"] {
            let raw = RawBulk {
                max: Some(bad.into()),
                ..RawBulk::default()
            };
            assert!(raw.validate().is_err(), "{bad}");
        }
        let raw = RawBulk {
            dry_run: Some("yes".into()),
            ..RawBulk::default()
        };
        assert!(raw.validate().is_err());
    }

    #[test]
    fn the_search_rules_apply() {
        let raw = RawBulk {
            status: Some("weird".into()),
            ..RawBulk::default()
        };
        assert!(raw.validate().is_err());
        let raw = RawBulk {
            status: Some("failed".into()),
            since: Some("1h".into()),
            ..RawBulk::default()
        };
        assert!(raw.filters_given());
        assert_eq!(raw.to_query_string(), "since=1h&status=failed");
    }
}
