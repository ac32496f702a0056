//! This worker's row in the registry (`storage::workers`): written at start and every
//! `BEAT`, with what the consume loop and the sweeper count in `Tally`. A beat is
//! bounded and its failure is logged once a minute at most: the heartbeat never holds
//! the pipeline up, and a database outage only makes the worker look gone meanwhile.

use super::pipeline::Paused;
use crate::backoff::Warnings;
use crate::shutdown::Shutdown;
use crate::storage::workers::{self, Beat, BEAT};
use crate::storage::PgPool;
use crate::telemetry::TELEMETRY;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Prune the rows of long-gone workers every this many beats (about 5 minutes).
const PRUNE_EVERY: u32 = 150;

/// What the consume loop holds, for the beats. (Works stored since start are the
/// process's counters, `TELEMETRY`: one worker per process.)
#[derive(Debug, Default)]
pub struct Tally {
    /// Deliveries taken and not yet settled on the current connection.
    pub deliveries_held: AtomicU64,
}

/// Who this worker is, for its row.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: String,
    pub queue: String,
    pub prefetch: u16,
}

/// The running heartbeat; `stop` writes the last beat.
pub struct Registry {
    done: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Registry {
    /// Starts beating. After `shutdown` the beats say `stopping` until `stop`.
    pub fn spawn(
        pool: PgPool,
        me: Identity,
        tally: Arc<Tally>,
        paused: Paused,
        shutdown: Shutdown,
    ) -> Self {
        let done = Arc::new(Notify::new());
        let task = tokio::spawn(beat_until(pool, me, tally, paused, shutdown, done.clone()));
        Self { done, task }
    }

    /// The worker has finished: its row says `stopped` (shown as gone at once).
    pub async fn stop(self) {
        self.done.notify_one();
        let _ = self.task.await;
    }
}

async fn beat_until(
    pool: PgPool,
    me: Identity,
    tally: Arc<Tally>,
    paused: Paused,
    shutdown: Shutdown,
    done: Arc<Notify>,
) {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let mut warnings = Warnings::new(Duration::from_secs(60));
    let mut beats = 0u32;
    let mut stopping = false;
    loop {
        let state = if stopping {
            "stopping"
        } else if paused.is_paused() {
            "paused"
        } else {
            "running"
        };
        beat(&pool, &me, &host, &tally, state, &mut warnings).await;
        if beats.is_multiple_of(PRUNE_EVERY) {
            prune(&pool).await;
        }
        beats = beats.wrapping_add(1);
        tokio::select! {
            _ = tokio::time::sleep(BEAT) => {}
            // Said at once, not at the next beat.
            _ = shutdown.wait(), if !stopping => stopping = true,
            _ = done.notified() => break,
        }
    }
    beat(&pool, &me, &host, &tally, "stopped", &mut warnings).await;
}

async fn beat(
    pool: &PgPool,
    me: &Identity,
    host: &str,
    tally: &Tally,
    state: &'static str,
    warnings: &mut Warnings,
) {
    let t = &TELEMETRY;
    let row = Beat {
        id: &me.id,
        host,
        pid: std::process::id(),
        queue: &me.queue,
        prefetch: me.prefetch,
        works_stored: t.works_stored.get() + t.swept.get(),
        in_flight: tally.deliveries_held.load(Ordering::Relaxed),
        state,
    };
    let write = async {
        let client = pool.get().await?;
        workers::beat(&client, &row).await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(BEAT, write).await {
        Ok(Ok(())) => warnings.reset(),
        outcome => {
            let error = match outcome {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("no answer within {BEAT:?}"),
            };
            if let Some(unsaid) = warnings.failed() {
                tracing::warn!(%error, unsaid, "worker heartbeat failed; the worker goes on (it shows as gone until a beat gets through)");
            }
        }
    }
}

async fn prune(pool: &PgPool) {
    let pruned = async {
        workers::prune(&pool.get().await?)
            .await
            .map_err(anyhow::Error::from)
    };
    match tokio::time::timeout(BEAT, pruned).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(rows = n, "pruned the rows of workers gone for a day"),
        Ok(Err(e)) => tracing::debug!(error = %e, "pruning gone workers failed; next time"),
        _ => {}
    }
}
