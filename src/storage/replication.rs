//! Where a commit is when the primary is lost. With the usual asynchronous streaming, a
//! batch committed on the primary and acknowledged to RabbitMQ but not yet streamed is
//! gone for good once a standby is promoted: the broker forgot it, the new primary never
//! had it. With `synchronous_standby_names` the commit itself waits for a standby. When
//! the server is not set up that way, the consumer's `--ack-after standby` waits until a
//! standby has flushed the WAL up to the batch's commit before it acknowledges.

use super::{DbError, PgPool};
use crate::shutdown::Shutdown;
use crate::telemetry::TELEMETRY;
use std::time::{Duration, Instant};
use tokio_postgres::GenericClient;

/// One standby as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone)]
pub struct Standby {
    pub name: String,
    pub state: String,
    pub sync_state: String,
    /// Seconds the standby's replay is behind, when the primary has measured it.
    pub replay_lag: Option<f64>,
}

/// The replication the database runs with, from the primary's point of view.
#[derive(Debug, Clone)]
pub struct Replication {
    pub in_recovery: bool,
    pub synchronous_standby_names: String,
    pub synchronous_commit: String,
    pub standbys: Vec<Standby>,
}

impl Replication {
    /// Whether a commit is on a standby before it returns: a synchronous standby is
    /// streaming and commits wait for it.
    pub fn commits_wait_for_a_standby(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && matches!(
                self.synchronous_commit.as_str(),
                "on" | "remote_write" | "remote_apply"
            )
            && self
                .standbys
                .iter()
                .any(|s| matches!(s.sync_state.as_str(), "sync" | "quorum"))
    }

    /// One line for `db status` and the startup log: can an acknowledged work be lost?
    pub fn verdict(&self) -> String {
        if self.in_recovery {
            return "this server is a standby (in recovery): it takes no writes".into();
        }
        if self.commits_wait_for_a_standby() {
            return "synchronous: every commit waits for a standby's flush; an acknowledged work survives the loss of the primary".into();
        }
        if !self.synchronous_standby_names.trim().is_empty() {
            return format!("synchronous_standby_names = '{}' but no synchronous standby is streaming: every commit waits until one connects", self.synchronous_standby_names);
        }
        if self.standbys.is_empty() {
            return "no standby: losing this server loses the database; run consume with --ack-after commit (nothing to wait for)".into();
        }
        "asynchronous: a work acknowledged but not yet streamed is lost if a standby is promoted; set synchronous_standby_names, or run consume with --ack-after standby".into()
    }
}

/// Reads the replication settings and standbys. The standbys' positions need the
/// `pg_read_all_stats` role (or superuser); without it they show as unknown.
pub async fn status(client: &impl GenericClient) -> Result<Replication, DbError> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), \
                    current_setting('synchronous_commit')",
            &[],
        )
        .await?;
    let standbys = client
        .query(
            "SELECT coalesce(application_name, '') || ' ' || coalesce(host(client_addr), 'local'), \
                    coalesce(state, 'unknown'), coalesce(sync_state, 'unknown'), \
                    extract(epoch FROM replay_lag)::float8 \
             FROM pg_stat_replication ORDER BY application_name",
            &[],
        )
        .await?
        .iter()
        .map(|r| Standby {
            name: r.get(0),
            state: r.get(1),
            sync_state: r.get(2),
            replay_lag: r.get(3),
        })
        .collect();
    Ok(Replication {
        in_recovery: row.get(0),
        synchronous_standby_names: row.get(1),
        synchronous_commit: row.get(2),
        standbys,
    })
}

/// Logs, once the database first answers, which replication it runs with and whether
/// an acknowledged work can be lost on failover (a line for the operator, at start).
pub fn log_at_start(pool: PgPool, ack_after_standby: bool) {
    // `up` starts serve and consume on one pool: one line per process is enough.
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    tokio::spawn(async move {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(client) = pool.get().await {
                    if let Ok(r) = status(&**client).await {
                        return r;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let Ok(r) = found.await else { return };
        let standbys: Vec<String> = r
            .standbys
            .iter()
            .map(|s| format!("{} {}/{}", s.name, s.state, s.sync_state))
            .collect();
        let covered = ack_after_standby && !r.commits_wait_for_a_standby();
        tracing::info!(standbys = ?standbys, replication = %r.verdict(), ack_after_standby = covered, "database replication");
    });
}

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
/// right after it: the commit record is behind it).
pub async fn position(client: &impl GenericClient) -> Result<WalPosition, DbError> {
    let row = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text, substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
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

/// Whether a streaming standby has flushed up to `target`; `Err(None)` when the server
/// is on another timeline than the target's (a promotion happened).
async fn flushed(pool: &PgPool, target: &WalPosition) -> Result<bool, Option<DbError>> {
    let client = pool.get().await.map_err(|e| Some(e.into()))?;
    let row = client
        .query_one(
            "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), \
                    coalesce(bool_or(flush_lsn >= $1::text::pg_lsn), false) \
             FROM pg_stat_replication WHERE state = 'streaming'",
            &[&target.lsn],
        )
        .await
        .map_err(|e| Some(e.into()))?;
    if row.get::<_, String>(0) != target.timeline {
        return Err(None);
    }
    Ok(row.get(1))
}
