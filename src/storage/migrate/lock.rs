//! Taking a migration's locks without stalling the application. An `ALTER TABLE` waits
//! for an ACCESS EXCLUSIVE lock behind any open transaction on the table, and every
//! later query on it queues behind that wait: unbounded, one idle transaction stops
//! the API. So each attempt waits at most `lock_timeout`, gives its place up, and tries
//! again after a pause (in which the queued queries run), until `max_wait`.

use std::future::Future;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// How long a migration may wait for its locks.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    /// One attempt's wait: also the longest a query on the table waits behind it.
    pub lock_timeout: Duration,
    /// All attempts together; then `db migrate` gives up (exit 4) naming the blocker.
    pub max_wait: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(2),
            max_wait: Duration::from_secs(120),
        }
    }
}

/// Every attempt timed out on its locks for `max_wait`.
#[derive(Debug, thiserror::Error)]
#[error(
    "migration {migration} could not take its locks within {}s (each attempt waits at most \
     lock_timeout {}ms, then gives way): {blocker}; end that transaction, or retry later",
    max_wait.as_secs(), lock_timeout.as_millis()
)]
pub struct LockWaitExceeded {
    pub migration: String,
    pub max_wait: Duration,
    pub lock_timeout: Duration,
    pub blocker: String,
}

/// The attempt timed out waiting for a lock (SQLSTATE 55P03).
pub(super) fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Runs `attempt` (on the connection whose backend is `pid`) and, from `watch`, asks
/// every 200 ms whom it waits behind: the last answer, once the attempt is over. The
/// waiter cannot ask itself, and once it gives up the wait is gone.
pub(super) async fn watched<F: Future>(
    attempt: F,
    watch: Option<&Client>,
    pid: i32,
) -> (F::Output, Option<String>) {
    let Some(watch) = watch else {
        return (attempt.await, None);
    };
    tokio::pin!(attempt);
    let mut seen = None;
    loop {
        tokio::select! {
            out = &mut attempt => return (out, seen),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let asked = tokio::time::timeout(Duration::from_secs(1), blockers(watch, pid));
                if let Ok(Some(found)) = asked.await {
                    seen = Some(found);
                }
            }
        }
    }
}

/// The sessions `pid` waits behind, for a log line: who and how long their
/// transaction has been open, never their query text (it may hold anyone's data).
async fn blockers(watch: &Client, pid: i32) -> Option<String> {
    let rows = watch
        .query(
            "SELECT pid, coalesce(usename::text, '?'), coalesce(application_name, ''), \
                    coalesce(state, '?'), \
                    coalesce(extract(epoch FROM now() - xact_start), 0)::float8 \
             FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids($1)) ORDER BY pid",
            &[&pid],
        )
        .await
        .ok()?;
    let named: Vec<String> = rows
        .iter()
        .map(|r| {
            let (who, user, app, state, open): (i32, String, String, String, f64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            format!("pid {who} (user {user}, application '{app}', {state}, transaction open {open:.0}s)")
        })
        .collect();
    (!named.is_empty()).then(|| format!("blocked by {}", named.join(", ")))
}
