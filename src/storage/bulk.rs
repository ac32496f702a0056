//! Bulk retry and cancel: an action over every work a search filter matches, up to a
//! maximum, in batches of `BATCH`. Each batch is one statement, committed on its own,
//! with the same SQL as one work's action (`actions::action_sql`), so each work gets
//! its event and the counters move with it. The batches walk down from the newest id,
//! so a work is changed at most once per request, even if it fails again meanwhile.

use super::actions::{action_sql, Action};
use super::search::filter_clauses;
use super::DbError;
use crate::query::bulk::BulkQuery;
use std::time::SystemTime;
use tokio_postgres::types::Type;

/// Works per statement: short row locks, and no long transaction on a busy table.
pub const BATCH: i64 = 500;

/// What a bulk action did, as the API and the CLI answer it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    /// `retry` or `cancel`.
    pub action: String,
    pub dry_run: bool,
    /// Works the action applies to, counted up to `max`.
    pub matched: i64,
    /// Works changed: 0 in a dry run.
    pub changed: i64,
    pub max: i64,
    /// More works match than this request changed (or counted): past `max`, or out of
    /// time. Ask again to go on.
    pub more: bool,
}

/// The statuses `action` applies to under `q`'s status filter, or why it applies to none.
fn statuses(action: Action, q: &BulkQuery) -> Result<Vec<&'static str>, String> {
    match q.filter.status {
        None => Ok(action.takes().to_vec()),
        Some(s) => match action.takes().iter().find(|t| **t == s.as_str()) {
            Some(t) => Ok(vec![*t]),
            None => Err(format!(
                "{} applies to {} works, not {}",
                action.as_str(),
                action.takes().join(" or "),
                s.as_str()
            )),
        },
    }
}

/// The selection of the works `action` may change, newest first, below the cursor $1,
/// in the statuses of parameter `statuses`.
fn selection(q: &BulkQuery, statuses: &str, limit: i64) -> String {
    let mut clauses = filter_clauses(&q.filter);
    clauses.push(format!("status = ANY({statuses}::text[])"));
    clauses.push("id < $1".into());
    format!(
        "SELECT id, status FROM works WHERE {} ORDER BY id DESC LIMIT {limit}",
        clauses.join(" AND ")
    )
}

/// Refused: the filter's status is one `action` cannot change (a 409).
#[derive(Debug)]
pub enum BulkError {
    Refused(String),
    /// The database failed after `changed` works were changed in committed batches.
    Db {
        changed: i64,
        error: DbError,
    },
}

/// Runs the action (or counts, for a dry run). New batches stop at `stop_at`; what was
/// changed by then is answered, with `more` set.
pub async fn apply(
    client: &tokio_postgres::Client,
    action: Action,
    q: &BulkQuery,
    stop_at: SystemTime,
) -> Result<BulkOutcome, BulkError> {
    let from = statuses(action, q).map_err(BulkError::Refused)?;
    let mut out = BulkOutcome {
        action: action.as_str().into(),
        dry_run: q.dry_run,
        matched: 0,
        changed: 0,
        max: q.max,
        more: false,
    };
    let db = |changed| move |error: DbError| BulkError::Db { changed, error };
    if q.dry_run {
        let (matched, more) = count(client, q, &from).await.map_err(db(0))?;
        (out.matched, out.more) = (matched, more);
        return Ok(out);
    }
    let mut cursor = i64::MAX;
    while out.changed < q.max {
        if SystemTime::now() >= stop_at {
            out.more = true;
            break;
        }
        let limit = BATCH.min(q.max - out.changed);
        let batch = one_batch(client, action, q, &from, cursor, limit).await;
        let (changed, taken, lowest) = batch.map_err(db(out.changed))?;
        out.changed += changed;
        // A full batch taken means more may follow, even if a work in it changed status
        // meanwhile (its lock re-read it) and so was not changed.
        match lowest {
            Some(id) if taken == limit => cursor = id,
            _ => break,
        }
    }
    out.matched = out.changed;
    if out.changed == q.max {
        out.more = count(client, q, &from).await.map_err(db(out.changed))?.0 > 0;
    }
    Ok(out)
}

/// One batch: (works changed, works taken, the lowest id it took).
async fn one_batch(
    client: &tokio_postgres::Client,
    action: Action,
    q: &BulkQuery,
    from: &[&str],
    cursor: i64,
    limit: i64,
) -> Result<(i64, i64, Option<i64>), DbError> {
    let target = format!("{} FOR UPDATE", selection(q, "$3", limit));
    let sql = action_sql(
        &target,
        "(SELECT count(*) FROM changed), (SELECT count(*) FROM target), \
         (SELECT min(id) FROM target)",
    );
    let shard = super::works::count_shard();
    let none: Option<SystemTime> = None;
    let row = client
        .query_typed(
            &sql,
            &[
                (&cursor, Type::INT8),
                (&action.makes(), Type::TEXT),
                (&from, Type::TEXT_ARRAY),
                (&action.event(), Type::TEXT),
                (&shard, Type::INT2),
                (&none, Type::TIMESTAMPTZ),
            ],
        )
        .await?;
    let row = row
        .first()
        .ok_or_else(|| DbError::Unavailable("no answer row".into()))?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Works the action applies to, up to `max`, and whether there are more.
async fn count(
    client: &tokio_postgres::Client,
    q: &BulkQuery,
    from: &[&str],
) -> Result<(i64, bool), DbError> {
    let sql = format!("SELECT count(*) FROM ({}) s", selection(q, "$2", q.max + 1));
    let cursor = i64::MAX;
    let rows = client
        .query_typed(&sql, &[(&cursor, Type::INT8), (&from, Type::TEXT_ARRAY)])
        .await?;
    let n: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
    Ok((n.min(q.max), n > q.max))
}
