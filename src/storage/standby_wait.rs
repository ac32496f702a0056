//! `--ack-after standby`: a batch is acknowledged only once a streaming standby has
//! flushed the WAL up to its commit (`replication` says why that matters).

use super::{DbError, PgPool};
use crate::shutdown::Shutdown;
use crate::telemetry::TELEMETRY;
use std::time::{Duration, Instant};
use tokio_postgres::GenericClient;

/// How often a waiting batch asks whether a standby has caught up: a standby on the
/// same network flushes within a millisecond of the commit, and each ask is one short
/// query on the primary.
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

/// Waits until a streaming standby has flushed the WAL up to `target`, polling the
/// primary's `pg_stat_replication`. Every `log_every` spent waiting is logged and
/// flagged in `ppctl_standby_stalled`; it never gives up on its own, because
/// acknowledging early is the very loss this wait prevents.
pub async fn wait_for_standby(
    pool: &PgPool,
    target: &WalPosition,
    log_every: Duration,
    shutdown: &Shutdown,
) -> Result<(), WaitError> {
    let started = Instant::now();
    let mut next_log = started + log_every;
    loop {
        match flushed(pool, target).await {
            Ok(true) => {
                let waited = started.elapsed();
                TELEMETRY.standby_wait.observe(waited.as_secs_f64());
                if waited >= log_every {
                    tracing::info!(waited = ?waited, lsn = %target.lsn, "a standby caught up: acknowledging");
                }
                TELEMETRY.standby_stalled.set(0);
                return Ok(());
            }
            Ok(false) => {}
            Err(Some(e)) if e.is_unavailable() => return Err(WaitError::Moved),
            Err(Some(e)) => tracing::warn!(error = %e, "cannot read pg_stat_replication"),
            Err(None) => return Err(WaitError::Moved),
        }
        if Instant::now() >= next_log {
            TELEMETRY.standby_stalled.set(1);
            tracing::warn!(waited = ?started.elapsed(), lsn = %target.lsn, "no standby has flushed this batch's commit yet: not acknowledging (--ack-after standby); is a standby connected and streaming, and may this user read pg_stat_replication (pg_read_all_stats)?");
            next_log += log_every;
        }
        tokio::select! {
            _ = pause(POLL) => {}
            _ = shutdown.wait() => return Err(WaitError::Shutdown),
        }
    }
}

/// Sleeps `d`, finer than tokio's timer (whole milliseconds): a wait rounded up to
/// 1–2 ms would be most of what a batch waits for its standby. On a blocking-pool
/// thread, so no core spins.
async fn pause(d: Duration) {
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(d)).await;
}

/// The ask: the server's timeline, and whether a streaming physical standby has flushed
/// up to `$1` (a logical walsender holds no copy of the database).
static FLUSHED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), \
                coalesce(bool_or(flush_lsn >= $1::text::pg_lsn), false) \
         FROM {} WHERE state = 'streaming'",
        super::replication::PHYSICAL_STANDBYS
    )
});

/// Whether a streaming standby has flushed up to `target`; `Err(None)` when the server
/// is on another timeline than the target's (a promotion happened).
async fn flushed(pool: &PgPool, target: &WalPosition) -> Result<bool, Option<DbError>> {
    let client = pool.get().await.map_err(Some)?;
    let stmt = client
        .prepare_cached(&FLUSHED_SQL)
        .await
        .map_err(|e| Some(e.into()))?;
    let row = client
        .query_one(&stmt, &[&target.lsn])
        .await
        .map_err(|e| Some(e.into()))?;
    if row.get::<_, String>(0) != target.timeline {
        return Err(None);
    }
    Ok(row.get(1))
}
