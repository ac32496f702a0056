//! The pipeline's pause switch: one row, `pipeline_state`. A change notifies
//! `PIPELINE_CHANNEL` at its commit, so consumers and sweepers hear it at once; they
//! also read it every second (`worker::pipeline`), for a notification they missed.

use super::DbError;
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};

/// Payload: `paused` or `running`. Sent by `set` in the same transaction as the change.
pub const PIPELINE_CHANNEL: &str = "pp_pipeline";

/// The state as `GET /pipeline` and `ppctl pipeline status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineState {
    /// `paused`: no consumer takes a delivery and no sweeper claims a work; the API
    /// still accepts works, which wait as pending. `running` otherwise.
    #[schema(pattern = "^(paused|running)$")]
    pub state: String,
    pub paused: bool,
    /// Unix seconds of the last pause or resume.
    pub changed_on: i64,
}

impl PipelineState {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        let paused: bool = row.get(0);
        Self {
            state: word(paused).to_string(),
            paused,
            changed_on: row.get(1),
        }
    }
}

/// `paused` or `running`.
pub fn word(paused: bool) -> &'static str {
    if paused {
        "paused"
    } else {
        "running"
    }
}

/// The current state.
pub async fn get(client: &impl GenericClient) -> Result<PipelineState, DbError> {
    const SQL: &str = "SELECT paused, extract(epoch FROM changed_on)::bigint FROM pipeline_state";
    let stmt = client.prepare_cached(SQL).await?;
    Ok(PipelineState::from_row(
        &client.query_one(&stmt, &[]).await?,
    ))
}

const SET_SQL: &str = "\
    WITH changed AS ( \
        UPDATE pipeline_state SET paused = $1, \
               changed_on = CASE WHEN paused = $1 THEN changed_on ELSE now() END \
        RETURNING paused, changed_on) \
    SELECT paused, extract(epoch FROM changed_on)::bigint, \
           pg_notify('pp_pipeline', CASE WHEN paused THEN 'paused' ELSE 'running' END) \
    FROM changed";

/// Pauses or resumes; the time changes only when the state does. Listeners hear it at
/// commit.
pub async fn set(client: &impl GenericClient, paused: bool) -> Result<PipelineState, DbError> {
    let stmt = client.prepare_cached(SET_SQL).await?;
    Ok(PipelineState::from_row(
        &client.query_one(&stmt, &[&paused]).await?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notification_goes_to_the_listened_channel() {
        assert!(super::SET_SQL.contains(&format!("'{}'", super::PIPELINE_CHANNEL)));
        assert_eq!(super::word(true), "paused");
    }
}
