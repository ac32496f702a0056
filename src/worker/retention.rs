//! The consumer's pruner: works that finished longer than `--retain` ago are deleted
//! hourly, by one process at a time: it holds the pruning lock for its whole run, every
//! batch of it, and the others find the lock taken and skip that round.

use crate::shutdown::Shutdown;
use crate::storage::{prune, PgPool};
use std::time::Duration;

/// The first round runs soon after start, then one every `EVERY`.
const FIRST: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes works that finished more than `retain` ago until shutdown; `None`
/// (`--retain forever`) keeps everything.
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
