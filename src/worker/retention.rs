//! The consumer's pruner: finished works past `--retain` are deleted hourly, by one
//! process at a time (the others find the lock taken and skip that round).

use crate::shutdown::Shutdown;
use crate::storage::{prune, PgPool};
use std::time::Duration;

/// The first round runs soon after start, then one every `EVERY`.
const FIRST: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes works older than `retain` until shutdown; `None` (`--retain forever`) keeps
/// everything.
pub async fn run(pool: PgPool, retain: Option<Duration>, shutdown: Shutdown) {
    let Some(retain) = retain else {
        return;
    };
    let mut wait = FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
        wait = EVERY;
        let pruned = tokio::select! {
            pruned = prune::prune(&pool, retain) => pruned,
            _ = shutdown.wait() => return,
        };
        match pruned {
            Ok(p) if p.works > 0 => {
                tracing::info!(works = p.works, "pruned finished works past the retention")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; next round in an hour"),
        }
    }
}
