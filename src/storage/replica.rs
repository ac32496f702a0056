//! Reads from a replica (`serve --database-read-url`), within a lag bound, falling back
//! to the primary. A monitor checks the replica every `CHECK_EVERY` (`replica_check`):
//! a read goes to it only while it is a replica of this primary within
//! `--max-replica-lag`, and, for a read that carries a write's consistency token
//! (`lsn`), only once it has replayed past that write. Any read the replica fails to
//! answer is asked of the primary at once, the replica then set aside until the monitor
//! sees it fit again. Without a read URL every read goes to the primary, as before.

use super::inflight::InFlight;
use super::lsn::Lsn;
use super::replica_check::{self, Fit};
use super::{Client, DbError, PgPool};
use crate::shutdown::Shutdown;
use crate::telemetry::TELEMETRY;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the monitor checks the replica.
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
    /// Reads go to the replica: the last check found it fit.
    usable: AtomicBool,
    /// The WAL position it had replayed at the last check (no extra query per read).
    replayed: AtomicU64,
    /// The last check's lag (None: not measured) and, when unused, why.
    seen: Mutex<(Option<Duration>, Option<String>)>,
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
    /// Its replay lag at the last check, in seconds; null when it was not measured.
    pub lag_seconds: Option<f64>,
    pub max_lag_seconds: f64,
    /// Why it is not in use (unreachable, not in recovery, another cluster, an older
    /// timeline, over the lag bound); null while it is.
    pub reason: Option<String>,
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
            replayed: AtomicU64::new(0),
            seen: Mutex::new((None, Some("not checked yet".into()))),
        });
        tokio::spawn(monitor(primary.clone(), replica.clone(), shutdown));
        Self {
            primary,
            replica: Some(replica),
        }
    }

    /// The same reads with `primary` in place of this one's primary pool (an HTTP
    /// worker's own sibling pool); the replica and its monitor are shared.
    pub fn with_primary(&self, primary: PgPool) -> Self {
        Self {
            primary,
            replica: self.replica.clone(),
        }
    }

    pub fn replica_pool(&self) -> Option<&PgPool> {
        self.replica.as_ref().map(|r| &r.pool)
    }

    pub fn health(&self) -> Option<ReplicaHealth> {
        self.replica.as_ref().map(|r| {
            let (lag, reason) = r.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            ReplicaHealth {
                in_use: r.usable.load(Ordering::Relaxed),
                lag_seconds: lag.map(|lag| lag.as_secs_f64()),
                max_lag_seconds: r.max_lag.as_secs_f64(),
                reason,
            }
        })
    }

    /// Runs `read` on the replica when it is in use and has replayed past `after` (a
    /// write's consistency token), else (or when the replica fails to answer) on the
    /// primary. Returns where it was answered. A read cut off (its request passed the
    /// bound) leaves no statement running on a pooled connection.
    pub async fn run<T, F>(&self, after: Option<Lsn>, read: F) -> Result<(T, Source), DbError>
    where
        F: for<'c> Fn(&'c Client) -> BoxFuture<'c, Result<T, DbError>>,
    {
        if let Some(replica) = self.replica.as_ref().filter(|r| r.serves(after)) {
            match run_on(&replica.pool, &read).await {
                Ok(value) => return Ok((value, Source::Replica)),
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "the replica did not answer: reading from the primary");
                    replica.set_unused(format!("a read failed: {e}"), None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((run_on(&self.primary, &read).await?, Source::Primary))
    }

    /// Like `run`, but an answer of "nothing" from the replica is asked of the primary
    /// too: a client must be able to read back the id it was just given, which the
    /// replica may not have replayed yet.
    pub async fn run_found<T, F>(&self, after: Option<Lsn>, read: F) -> Result<Option<T>, DbError>
    where
        F: for<'c> Fn(&'c Client) -> BoxFuture<'c, Result<Option<T>, DbError>>,
    {
        match self.run(after, &read).await? {
            (None, Source::Replica) => run_on(&self.primary, &read).await,
            (value, _) => Ok(value),
        }
    }
}

/// One read on a connection of `pool`; what it meets is charged to that pool.
async fn run_on<T, F>(pool: &PgPool, read: &F) -> Result<T, DbError>
where
    F: for<'c> Fn(&'c Client) -> BoxFuture<'c, Result<T, DbError>>,
{
    pool.scoped(async {
        let client = InFlight::checkout(pool).await?;
        let value = read(&client).await?;
        client.done();
        Ok(value)
    })
    .await
}

impl Replica {
    /// In use, and (for a read after a write) replayed past that write.
    fn serves(&self, after: Option<Lsn>) -> bool {
        self.usable.load(Ordering::Acquire)
            && after.is_none_or(|t| self.replayed.load(Ordering::Relaxed) >= t.0)
    }

    fn set_fit(&self, fit: Fit) {
        self.replayed.store(fit.replayed, Ordering::Relaxed);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (Some(fit.lag), None);
        TELEMETRY.replica_lag_seconds.set(fit.lag.as_secs_f64());
        self.set_usable(true, None);
    }

    fn set_unused(&self, reason: String, lag: Option<Duration>) {
        // One line: a server's error carries its DETAIL on a line of its own.
        let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        self.set_usable(false, Some(&reason));
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (lag, Some(reason));
    }

    fn set_usable(&self, usable: bool, reason: Option<&str>) {
        if self.usable.swap(usable, Ordering::AcqRel) != usable {
            let to = if usable { "replica" } else { "primary" };
            tracing::info!(usable, reason, "read-only routes now read from the {to}");
        }
        TELEMETRY.replica_in_use.set(i64::from(usable));
    }
}

/// Checks the replica until shutdown (`replica_check`).
async fn monitor(primary: PgPool, replica: Arc<Replica>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let asked =
            tokio::time::timeout(CHECK_EVERY * 4, replica_check::ask(&primary, &replica.pool));
        match asked.await {
            Ok(Ok((p, r))) => match replica_check::judge(&p, &r, replica.max_lag) {
                Ok(fit) => replica.set_fit(fit),
                Err(unfit) => replica.set_unused(unfit.reason, unfit.lag),
            },
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot check the replica");
                replica.set_unused(format!("cannot check it: {e}"), None);
            }
            Err(_) => replica.set_unused(format!("no answer within {:?}", CHECK_EVERY * 4), None),
        }
    }
}
