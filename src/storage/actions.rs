//! Operators' actions on one work: retry a failed or expired one (back to pending, with
//! fresh attempts), cancel a pending one. Each writes its event in the same statement
//! as the change, and refuses, with the reason, a work whose status does not allow it.

use super::{works, DbError};
use crate::model::{var, Work};
use deadpool_postgres::GenericClient;

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed(Work),
    NotFound,
    /// The work's status does not allow the action: the reason, for a 409.
    Refused(String),
}

/// A failed or expired work back to `pending`, with a `work/retried` event. Its sweep
/// window starts again now (the window counts from the last change).
pub async fn retry(client: &impl GenericClient, id: i64) -> Result<Outcome, DbError> {
    act(client, id, &["failed", "expired"], "pending", var::RETRIED).await
}

/// A pending work to `cancelled`, with a `work/cancelled` event. A running work is
/// refused: its worker would finish it anyway.
pub async fn cancel(client: &impl GenericClient, id: i64) -> Result<Outcome, DbError> {
    act(client, id, &["pending"], "cancelled", var::CANCELLED).await
}

async fn act(
    client: &impl GenericClient,
    id: i64,
    from: &[&str],
    to: &str,
    event: &str,
) -> Result<Outcome, DbError> {
    const SQL: &str = "\
        WITH target AS (SELECT id, status FROM works WHERE id = $1 FOR UPDATE), \
        changed AS ( \
            UPDATE works w SET status = $2, attempts = 0, locked_by = NULL, \
                   locked_until = NULL, updated_on = now() \
            FROM target t WHERE w.id = t.id AND t.status = ANY($3::text[]) \
            RETURNING w.id, w.work_code), \
        ev AS ( \
            INSERT INTO event_log (work_id, variable, value) \
            SELECT c.id, $4, 'was ' || t.status FROM changed c, target t) \
        SELECT (SELECT status FROM target), (SELECT count(*) FROM changed)";
    let stmt = client.prepare_cached(SQL).await?;
    let row = client.query_one(&stmt, &[&id, &to, &from, &event]).await?;
    let (was, changed): (Option<String>, i64) = (row.get(0), row.get(1));
    let Some(was) = was else {
        return Ok(Outcome::NotFound);
    };
    if changed == 0 {
        return Ok(Outcome::Refused(format!(
            "work {id} is {was}; only {} works can be made {to}",
            from.join(" or ")
        )));
    }
    match works::get(client, id).await? {
        Some(work) => Ok(Outcome::Changed(work)),
        None => Ok(Outcome::NotFound),
    }
}
