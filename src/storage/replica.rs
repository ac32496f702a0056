//! Reads from a replica (`serve --database-read-url`), within a lag bound, falling back
//! to the primary. A monitor measures the replica's lag every `CHECK_EVERY`; a read
//! goes to the replica only while that lag is under `--max-replica-lag`, and any read
//! the replica fails to answer is asked of the primary at once, the replica then set
//! aside until the monitor sees it healthy again. Without a read URL every read goes
//! to the primary, exactly as before.

use super::inflight::InFlight;
use super::{Client, DbError, PgPool};
use crate::shutdown::Shutdown;
use crate::telemetry::TELEMETRY;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the monitor measures the replica.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The pools read-only routes may use.
#[derive(Clone)]
pub struct Reads {
    primary: PgPool,
    replica: Option<Arc<Replica>>,
}

struct Replica {
    pool: PgPool,
    max_lag: Duration,
    /// Reads go to the replica: it answered the last check within the lag bound.
    usable: AtomicBool,
    /// The last measured lag, in milliseconds (`u64::MAX`: unreachable).
    lag_ms: AtomicU64,
}

/// Where a read was answered, for `/health` and the 404 that must be asked twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Primary,
    Replica,
}

/// The replica as `/health` reports it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReplicaHealth {
    /// Read-only routes are served by the replica now (else by the primary).
    pub in_use: bool,
    /// Its replay lag at the last check, in seconds; null when it did not answer.
    pub lag_seconds: Option<f64>,
    pub max_lag_seconds: f64,
}

impl Reads {
    /// Reads from the primary only.
    pub fn primary(primary: PgPool) -> Self {
        Self {
            primary,
            replica: None,
        }
    }

    /// Reads from `replica` while it keeps within `max_lag`; the monitor runs until
    /// shutdown. Until its first check, reads go to the primary.
    pub fn with_replica(
        primary: PgPool,
        replica: PgPool,
        max_lag: Duration,
        shutdown: Shutdown,
    ) -> Self {
        let replica = Arc::new(Replica {
            pool: replica,
            max_lag,
            usable: AtomicBool::new(false),
            lag_ms: AtomicU64::new(u64::MAX),
        });
        tokio::spawn(monitor(primary.clone(), replica.clone(), shutdown));
        Self {
            primary,
            replica: Some(replica),
        }
    }

    pub fn replica_pool(&self) -> Option<&PgPool> {
        self.replica.as_ref().map(|r| &r.pool)
    }

    pub fn health(&self) -> Option<ReplicaHealth> {
        self.replica.as_ref().map(|r| {
            let lag = r.lag_ms.load(Ordering::Relaxed);
            ReplicaHealth {
                in_use: r.usable.load(Ordering::Relaxed),
                lag_seconds: (lag != u64::MAX).then(|| lag as f64 / 1000.0),
                max_lag_seconds: r.max_lag.as_secs_f64(),
            }
        })
    }

    /// Runs `read` on the replica when it is in use, else (or when the replica fails
    /// to answer) on the primary. Returns where it was answered. A read cut off (its
    /// request passed the bound) leaves no statement running on a pooled connection.
    pub async fn run<T, F>(&self, read: F) -> Result<(T, Source), DbError>
    where
        F: for<'c> Fn(&'c Client) -> BoxFuture<'c, Result<T, DbError>>,
    {
        if let Some(replica) = self
            .replica
            .as_ref()
            .filter(|r| r.usable.load(Ordering::Relaxed))
        {
            match run_on(&replica.pool, &read).await {
                Ok(value) => return Ok((value, Source::Replica)),
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "the replica did not answer: reading from the primary");
                    replica.set_usable(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((run_on(&self.primary, &read).await?, Source::Primary))
    }

    /// Like `run`, but an answer of "nothing" from the replica is asked of the primary
    /// too: a client must be able to read back the id it was just given, which the
    /// replica may not have replayed yet.
    pub async fn run_found<T, F>(&self, read: F) -> Result<Option<T>, DbError>
    where
        F: for<'c> Fn(&'c Client) -> BoxFuture<'c, Result<Option<T>, DbError>>,
    {
        match self.run(&read).await? {
            (None, Source::Replica) => run_on(&self.primary, &read).await,
            (value, _) => Ok(value),
        }
    }
}

/// One read on a connection of `pool`.
async fn run_on<T, F>(pool: &PgPool, read: &F) -> Result<T, DbError>
where
    F: for<'c> Fn(&'c Client) -> BoxFuture<'c, Result<T, DbError>>,
{
    let client = InFlight::checkout(pool).await?;
    let value = read(&client).await?;
    client.done();
    Ok(value)
}

impl Replica {
    fn set_usable(&self, usable: bool) {
        if self.usable.swap(usable, Ordering::Relaxed) != usable {
            tracing::info!(
                usable,
                "read-only routes now read from the {}",
                if usable { "replica" } else { "primary" }
            );
        }
        TELEMETRY.replica_in_use.set(i64::from(usable));
    }
}

/// Measures the replica's lag until shutdown: caught up when it has replayed the
/// primary's current WAL position, else the age of its last replayed transaction.
async fn monitor(primary: PgPool, replica: Arc<Replica>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let lag = tokio::time::timeout(CHECK_EVERY * 4, measure(&primary, &replica.pool)).await;
        match lag {
            Ok(Ok(lag)) => {
                replica
                    .lag_ms
                    .store(lag.as_millis() as u64, Ordering::Relaxed);
                TELEMETRY.replica_lag_seconds.set(lag.as_secs_f64());
                replica.set_usable(lag <= replica.max_lag);
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot measure the replica's lag");
                replica.lag_ms.store(u64::MAX, Ordering::Relaxed);
                replica.set_usable(false);
            }
            Err(_) => {
                replica.lag_ms.store(u64::MAX, Ordering::Relaxed);
                replica.set_usable(false);
            }
        }
    }
}

/// The replica's lag. The primary's position is read first: a replica that has
/// replayed it was at most one round trip behind.
async fn measure(primary: &PgPool, replica: &PgPool) -> Result<Duration, DbError> {
    let target: i64 = primary
        .get()
        .await?
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
        .await?
        .get(0);
    let row = replica
        .get()
        .await?
        .query_one(
            // A read URL that reaches a primary (not in recovery) is never behind.
            "SELECT CASE WHEN pg_is_in_recovery() \
                    THEN coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, -1) \
                    ELSE 9223372036854775807 END, \
                    coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, 1e9)",
            &[],
        )
        .await?;
    let (replayed, age): (i64, f64) = (row.get(0), row.get(1));
    if replayed >= target {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_secs_f64(age.clamp(0.0, 1e9)))
}
