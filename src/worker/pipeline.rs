//! Whether the pipeline is paused, as the consume loop and the sweeper see it: one
//! watch, fed by LISTEN on `pp_pipeline` and by reading the one-row table every
//! second, so a missed notification (a LISTEN connection being re-made) leaves a
//! consumer running for a second at most. A database out of reach keeps the last
//! state known: the pipeline is neither paused nor resumed by an outage.

use crate::backoff::Warnings;
use crate::shutdown::Shutdown;
use crate::storage::pipeline::{self, PIPELINE_CHANNEL};
use crate::storage::{listen, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The fallback read's period.
const POLL: Duration = Duration::from_secs(1);
/// A read that takes longer is abandoned until the next one.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The pause switch as this process last read it; cheap to clone, one per user.
#[derive(Debug, Clone)]
pub struct Paused(watch::Receiver<bool>);

impl Paused {
    /// Reads the state once (a consumer that starts while paused must not consume),
    /// then follows it until shutdown.
    pub async fn follow(pool: &PgPool, shutdown: &Shutdown) -> Self {
        let first = read(pool).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read whether the pipeline is paused; starting as running until the database answers");
            false
        });
        if first {
            tracing::info!("the pipeline is paused: waiting for `ppctl pipeline resume`");
        }
        let (tx, rx) = watch::channel(first);
        let wake = Arc::new(Notify::new());
        listen::spawn(pool, PIPELINE_CHANNEL, wake.clone(), shutdown.clone());
        tokio::spawn(poll(pool.clone(), tx, wake, shutdown.clone()));
        Self(rx)
    }

    /// A switch that never changes, for tests and tools that run a worker alone.
    pub fn fixed(paused: bool) -> Self {
        let (tx, rx) = watch::channel(paused);
        // The receiver keeps the last value once the sender is gone.
        drop(tx);
        Self(rx)
    }

    pub fn is_paused(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the pipeline is paused (at once if it is); never if the switch
    /// stops being followed while running.
    pub async fn until_paused(&mut self) {
        self.until(true).await
    }

    /// Returns once the pipeline runs (at once if it does).
    pub async fn until_running(&mut self) {
        self.until(false).await
    }

    async fn until(&mut self, paused: bool) {
        if self.0.wait_for(|p| *p == paused).await.is_err() && self.is_paused() != paused {
            std::future::pending::<()>().await;
        }
    }
}

async fn read(pool: &PgPool) -> anyhow::Result<bool> {
    let read = async {
        let client = pool.get().await?;
        anyhow::Ok(pipeline::get(&client).await?.paused)
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {READ_TIMEOUT:?}"))?
}

/// Reads on every notification and every `POLL`; publishes changes.
async fn poll(pool: PgPool, tx: watch::Sender<bool>, wake: Arc<Notify>, shutdown: Shutdown) {
    let mut warnings = Warnings::new(Duration::from_secs(60));
    while !shutdown.is_triggered() {
        match read(&pool).await {
            Ok(paused) => {
                warnings.reset();
                let changed = tx.send_if_modified(|now| std::mem::replace(now, paused) != paused);
                if changed {
                    tracing::info!(
                        pipeline = pipeline::word(paused),
                        "the pipeline is {}",
                        pipeline::word(paused)
                    );
                }
            }
            Err(e) => {
                if let Some(unsaid) = warnings.failed() {
                    tracing::warn!(error = %e, unsaid, "cannot read whether the pipeline is paused; keeping the last state known");
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait() => {}
        }
    }
}
