//! A process newer than its database waits for `ppctl db migrate` before it takes any
//! work: its queries would meet a schema without what they need. Deliveries stay in
//! the queue for the processes that can store them (the older binaries of a rolling
//! deploy), instead of being held unacked by one that cannot.

use crate::shutdown::Shutdown;
use crate::storage::{DbError, PgPool};
use std::time::Duration;

/// How often a waiting process asks again: one new connection each time.
const POLL: Duration = Duration::from_secs(1);

/// Returns once a new connection passes the schema check (`migrate::fit`), or the
/// process is shutting down. Logs once when it starts waiting and once when it stops.
/// Any other failure (the database out of reach) is left to the caller's own retries.
pub async fn until_schema_fits(pool: &PgPool, shutdown: &Shutdown) {
    let mut waiting = false;
    while !shutdown.is_triggered() {
        match pool.get().await {
            Err(DbError::Schema(why)) => {
                if !std::mem::replace(&mut waiting, true) {
                    tracing::warn!(%why, "waiting for the database schema before taking work");
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.wait() => {}
                }
            }
            _ => break,
        }
    }
    if waiting {
        tracing::info!("the database schema fits this ppctl now: taking work");
    }
}
