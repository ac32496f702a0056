//! Operators' actions on one work: retry a failed or expired one (back to pending, with
//! fresh attempts), cancel a pending or scheduled one. Each writes its event in the same statement
//! as the change, and refuses, with the reason, a work whose status does not allow it.

use super::retry::Failed;
use super::{works, DbError};
use crate::model::{var, Work};
use deadpool_postgres::GenericClient;
use std::time::SystemTime;

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed(Work),
    NotFound,
    /// The work's status does not allow the action: the reason, for a 409.
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A failed or expired work back to `pending`, with a `work/retried` event. Its
    /// sweep window starts again now (the window counts from the last change).
    Retry,
    /// A pending or scheduled work to `cancelled`, with a `work/cancelled` event. A
    /// running work is refused: its worker would finish it anyway.
    Cancel,
}

impl Action {
    /// The statuses it changes works from.
    pub fn takes(self) -> &'static [&'static str] {
        match self {
            Action::Retry => &["failed", "expired"],
            Action::Cancel => &["pending", "scheduled"],
        }
    }

    /// The status it changes them to.
    pub fn makes(self) -> &'static str {
        match self {
            Action::Retry => "pending",
            Action::Cancel => "cancelled",
        }
    }

    pub(super) fn event(self) -> &'static str {
        match self {
            Action::Retry => var::RETRIED,
            Action::Cancel => var::CANCELLED,
        }
    }

    /// Its name in routes and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
        }
    }
}

/// The action's one statement over `target`, a locking query of `id, status` rows, with
/// `answer` as its result: one work's action and the bulk's batches differ only there.
/// Parameters: $2 the new status, $3 the statuses it may change, $4 the event, $5 the
/// counters' shard, $6 the deadline or NULL; `target` may use $1. Each changed work gets
/// its event, and the terminal counters move with it, in the same statement.
pub(super) fn action_sql(target: &str, answer: &str) -> String {
    format!(
        "WITH in_time AS (SELECT $6::timestamptz IS NULL OR clock_timestamp() < $6 AS ok), \
        target AS ({target}), \
        changed AS ( \
            UPDATE works w SET status = $2, attempts = 0, locked_by = NULL, \
                   locked_until = NULL, updated_on = now() \
            FROM target t, in_time WHERE w.id = t.id AND t.status = ANY($3::text[]) \
                AND in_time.ok \
            RETURNING w.id), \
        was AS (SELECT c.id, t.status FROM changed c JOIN target t USING (id)), \
        ev AS ( \
            INSERT INTO event_log (work_id, variable, value) \
            SELECT id, $4, 'was ' || status FROM was), \
        counted AS ( \
            UPDATE work_counts SET \
                failed = failed - (SELECT count(*) FROM was WHERE status = 'failed'), \
                expired = expired - (SELECT count(*) FROM was WHERE status = 'expired'), \
                cancelled = cancelled + (SELECT count(*) FROM changed WHERE $2 = 'cancelled') \
            WHERE shard = $5) \
        SELECT {answer}"
    )
}

static ONE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    action_sql(
        "SELECT id, status FROM works WHERE id = $1 FOR UPDATE",
        "(SELECT status FROM target), (SELECT count(*) FROM changed), (SELECT ok FROM in_time)",
    )
});

/// Applies `action` to work `id`. With a `deadline` (the database's clock), the change is
/// made only if the database runs it before then, as for a created work: a client told
/// 503 must not see the action happen later.
pub async fn apply(
    client: &impl GenericClient,
    id: i64,
    action: Action,
    deadline: Option<SystemTime>,
) -> Result<Outcome, DbError> {
    attempt(client, id, action, deadline, false)
        .await
        .map_err(|f| f.error)
}

/// `apply`, as an attempt of `retry::once_more`. A second attempt (`again`) that finds
/// the work already in the action's target status answers it changed: the first one
/// may have committed before its connection broke, and applying it twice is refused
/// by the status check anyway.
pub async fn attempt(
    client: &impl GenericClient,
    id: i64,
    action: Action,
    deadline: Option<SystemTime>,
    again: bool,
) -> Result<Outcome, Failed> {
    let (from, to, event) = (action.takes(), action.makes(), action.event());
    let stmt = client.prepare_cached(&ONE_SQL).await?;
    let shard = super::works::count_shard();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&id, &to, &from, &event, &shard, &deadline];
    let row = client.query_one(&stmt, &params).await?;
    let (was, changed, in_time): (Option<String>, i64, bool) = (row.get(0), row.get(1), row.get(2));
    if !in_time {
        return Err(DbError::Unavailable(
            "the database ran the action after its deadline; nothing was changed".into(),
        )
        .into());
    }
    let Some(was) = was else {
        return Ok(Outcome::NotFound);
    };
    if changed == 0 && !(again && was == to) {
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
