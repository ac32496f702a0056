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
