//! `ppctl work retry|cancel` over a filter instead of one id: the bulk routes through the
//! API, or the same statements straight to the database.

use super::work::Backend;
use super::Failure;
use crate::query::bulk::RawBulk;
use crate::storage::actions::Action;
use crate::storage::bulk::{self, BulkError, BulkOutcome};
use anyhow::Context;
use reqwest::Method;
use std::time::{Duration, SystemTime};

/// Either one work's id or filters: a bulk action over every work needs at least one
/// filter, so that a forgotten id never retries or cancels the whole history.
pub fn check(id: Option<i64>, raw: &RawBulk) -> Result<(), Failure> {
    let bulk_only = raw.max.is_some() || raw.dry_run.is_some();
    match (id, raw.filters_given() || bulk_only) {
        (Some(_), true) => Err(Failure::Usage(
            "give a work id or filters (--status, --since, --until, --work-code), not both".into(),
        )),
        (None, _) if !raw.filters_given() => Err(Failure::Usage(
            "give a work id, or at least one filter (--status, --since, --until, --work-code)"
                .into(),
        )),
        _ => raw.validate().map(drop).map_err(Failure::Usage),
    }
}

impl Backend {
    pub(super) async fn act_all(
        &self,
        action: Action,
        raw: &RawBulk,
    ) -> anyhow::Result<BulkOutcome> {
        match self {
            Backend::Db(client) => {
                let query = raw.validate().map_err(Failure::Usage)?;
                // No request deadline here: every batch runs, up to --max.
                let far = SystemTime::now() + Duration::from_secs(86_400);
                match bulk::apply(client, action, &query, far).await {
                    Ok(outcome) => Ok(outcome),
                    Err(BulkError::Refused(reason)) => Err(anyhow::anyhow!(reason)),
                    Err(BulkError::Db { changed, error }) => Err(super::work::db_failure(error))
                        .context(format!("{changed} works were changed before the failure")),
                }
            }
            Backend::Http(api) => {
                let path = format!("/works/{}?{}", action.as_str(), raw.to_query_string());
                api.call(Method::POST, &path, None)
                    .await?
                    .context("the API answered 404 to a bulk action")
            }
        }
    }
}
