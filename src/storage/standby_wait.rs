//! `--ack-after standby`: a batch is acknowledged only once a streaming standby has
//! flushed the WAL up to its commit (`replication` says why that matters). One watcher
//! per process asks the primary how far its standbys have flushed, while any batch
//! waits, and tells every waiting batch at once: one query per poll however many
//! batches wait, where each batch used to poll for itself.

use super::{DbError, PgPool};
use crate::shutdown::Shutdown;
use crate::telemetry::TELEMETRY;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio_postgres::GenericClient;

/// How often the watcher asks while a batch waits: a standby on the same network
/// flushes within a millisecond of the commit, and each ask is one short query on the
/// primary.
const POLL: Duration = Duration::from_micros(300);

/// A position in one server's WAL history: after a promotion the new primary writes on
/// a new timeline, so a position read on the old one means nothing there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalPosition {
    pub lsn: String,
    pub timeline: String,
}

/// The position a commit just made on `client` reached (read on the same connection,
/// right after it). The insert position, not the write position: with
/// `synchronous_commit = off` (per role, per database, or in the URL's options) the
/// commit record may not be written yet, and `pg_current_wal_lsn()` would lie before it.
pub async fn position(client: &impl GenericClient) -> Result<WalPosition, DbError> {
    let row = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text, \
                    substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)",
            &[],
        )
        .await?;
    Ok(WalPosition {
        lsn: row.get(0),
        timeline: row.get(1),
    })
}

/// Why a wait for a standby ended without one.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The primary changed: the commit may not be on the new one. Store again (the
    /// stores are idempotent by message_id) and wait for the new position.
    #[error("the primary changed while waiting for a standby's flush")]
    Moved,
    #[error("shutting down while waiting for a standby's flush")]
    Shutdown,
}

/// What the watcher last read, numbered so that a waiter acts on a failure only if it
/// was read after the wait began.
#[derive(Debug, Clone, Default)]
struct Seen {
    poll: u64,
    /// The server's timeline and its standbys' furthest flush (0: none streaming);
    /// `None`: the primary could not be asked (gone, or no longer the primary).
    flushed: Option<(String, u64)>,
}

/// The process's one standby watcher (cheap to clone).
#[derive(Clone)]
pub struct StandbyWatch {
    seen: watch::Receiver<Seen>,
    waiting: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl StandbyWatch {
    /// Starts the watcher on `pool`; it stops at shutdown.
    pub fn spawn(pool: PgPool, shutdown: Shutdown) -> Self {
        let (tx, seen) = watch::channel(Seen::default());
        let watch = Self {
            seen,
            waiting: Arc::default(),
            wake: Arc::default(),
        };
        tokio::spawn(poll(pool, tx, watch.clone(), shutdown));
        watch
    }

    /// Waits until a streaming standby has flushed the WAL up to `target`. Every
    /// `log_every` spent waiting is logged and flagged in `ppctl_standby_stalled`; it
    /// never gives up on its own, because acknowledging early is the very loss this
    /// wait prevents.
    pub async fn wait(
        &self,
        target: &WalPosition,
        log_every: Duration,
        shutdown: &Shutdown,
    ) -> Result<(), WaitError> {
        let lsn = parse_lsn(&target.lsn).ok_or(WaitError::Moved)?;
        let _waiting = Waiting::new(self);
        let mut seen = self.seen.clone();
        let began = seen.borrow_and_update().poll;
        let started = Instant::now();
        let mut next_log = started + log_every;
        loop {
            let now = seen.borrow_and_update().clone();
            match &now.flushed {
                Some((timeline, _)) if now.poll > began && *timeline != target.timeline => {
                    return Err(WaitError::Moved)
                }
                Some((timeline, flushed)) if *timeline == target.timeline && *flushed >= lsn => {
                    let waited = started.elapsed();
                    TELEMETRY.standby_wait.observe(waited.as_secs_f64());
                    if waited >= log_every {
                        tracing::info!(waited = ?waited, lsn = %target.lsn, "a standby caught up: acknowledging");
                    }
                    TELEMETRY.standby_stalled.set(0);
                    return Ok(());
                }
                None if now.poll > began => return Err(WaitError::Moved),
                _ => {}
            }
            tokio::select! {
                changed = seen.changed() => if changed.is_err() { return Err(WaitError::Shutdown) },
                _ = tokio::time::sleep_until(next_log.into()) => {
                    TELEMETRY.standby_stalled.set(1);
                    tracing::warn!(waited = ?started.elapsed(), lsn = %target.lsn, "no standby has flushed this batch's commit yet: not acknowledging (--ack-after standby); is a standby connected and streaming, and may this user read pg_stat_replication (pg_read_all_stats)?");
                    next_log += log_every;
                }
                _ = shutdown.wait() => return Err(WaitError::Shutdown),
            }
        }
    }
}

/// Counts a waiting batch for the watcher, however the wait ends.
struct Waiting<'a>(&'a StandbyWatch);

impl<'a> Waiting<'a> {
    fn new(watch: &'a StandbyWatch) -> Self {
        watch.waiting.fetch_add(1, Ordering::SeqCst);
        watch.wake.notify_one();
        Self(watch)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The watcher: asks while anyone waits, sleeps on `wake` otherwise.
async fn poll(pool: PgPool, tx: watch::Sender<Seen>, watch: StandbyWatch, shutdown: Shutdown) {
    let mut polls = 0;
    loop {
        if watch.waiting.load(Ordering::SeqCst) == 0 {
            tokio::select! {
                _ = watch.wake.notified() => {}
                _ = shutdown.wait() => return,
            }
            continue;
        }
        polls += 1;
        let flushed = match flushed(&pool).await {
            Ok(flushed) => Some(flushed),
            Err(e) if e.is_unavailable() => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pg_stat_replication");
                tx.borrow().flushed.clone()
            }
        };
        tx.send_replace(Seen {
            poll: polls,
            flushed,
        });
        tokio::select! {
            _ = pause(POLL) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Sleeps `d`, finer than tokio's timer (whole milliseconds): a wait rounded up to
/// 1–2 ms would be most of what a batch waits for its standby. On a blocking-pool
/// thread, so no core spins.
async fn pause(d: Duration) {
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(d)).await;
}

/// The ask: the server's timeline, and how far its streaming physical standbys have
/// flushed, the furthest (a logical walsender holds no copy of the database).
static FLUSHED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), \
                coalesce(max(flush_lsn), '0/0')::text \
         FROM {} WHERE state = 'streaming'",
        super::replication::PHYSICAL_STANDBYS
    )
});

async fn flushed(pool: &PgPool) -> Result<(String, u64), DbError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&FLUSHED_SQL).await?;
    let row = client.query_one(&stmt, &[]).await?;
    let lsn: String = row.get(1);
    Ok((row.get(0), parse_lsn(&lsn).unwrap_or(0)))
}

/// `X/Y`, PostgreSQL's text form of a WAL position, as a number.
fn parse_lsn(lsn: &str) -> Option<u64> {
    let (high, low) = lsn.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u64::from(u32::MAX) && low <= u64::from(u32::MAX)).then_some(high << 32 | low)
}

#[cfg(test)]
mod tests {
    use super::parse_lsn;

    #[test]
    fn wal_positions_compare_as_numbers() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        assert!(parse_lsn("0/16B3748") > parse_lsn("0/16B374"));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("12"), None);
    }
}
