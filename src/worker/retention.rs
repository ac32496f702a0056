//! The consumer's pruner: works that finished longer than `--retain` ago are deleted
//! hourly (or twice per retention period when that is shorter), by one process at a
//! time: it holds the pruning lock for its whole run, every batch of it, and the others
//! find the lock taken and skip that round.

use crate::shutdown::Shutdown;
use crate::storage::{prune, PgPool};
use std::time::Duration;

/// The first round runs soon after start, then one every `EVERY`.
const FIRST: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(3600);
/// The shortest round: a tiny `--retain` must not turn the pruner into a busy loop.
const FLOOR: Duration = Duration::from_secs(10);

/// How often to prune: hourly, but at least twice per `retain`, so that a short
/// retention (`--retain 10m`) is kept to within half of itself rather than an hour.
fn every(retain: Duration) -> Duration {
    (retain / 2).clamp(FLOOR, EVERY)
}

/// Prunes works that finished more than `retain` ago until shutdown; `None`
/// (`--retain forever`) keeps everything.
pub async fn run(pool: PgPool, retain: Option<Duration>, shutdown: Shutdown) {
    let Some(retain) = retain else {
        return;
    };
    let every = every(retain);
    let mut wait = FIRST.min(every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
        wait = every;
        let pruned = tokio::select! {
            pruned = prune::prune(&pool, retain) => pruned,
            _ = shutdown.wait() => return,
        };
        match pruned {
            Ok(p) if p.works > 0 => {
                tracing::info!(works = p.works, "pruned finished works past the retention")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, next_round = ?every, "pruning failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_hourly_or_twice_per_retention() {
        let mins = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(every(mins(30 * 24 * 60)), EVERY);
        assert_eq!(every(mins(2)), mins(1));
        assert_eq!(every(Duration::from_secs(1)), FLOOR);
    }
}
