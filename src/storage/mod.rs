//! PostgreSQL: the pool, migrations, and the queries on works, events and claims.

pub mod actions;
pub mod admin;
pub mod bulk;
pub mod claims;
pub mod clock;
pub mod connect;
pub mod error;
pub mod idempotent;
pub mod inflight;
pub mod listen;
pub mod lsn;
pub mod migrate;
pub mod notify;
pub mod pipeline;
pub mod prune;
pub mod replica;
pub mod replica_check;
pub mod replication;
pub mod retry;
pub mod role;
pub mod schedules;
pub mod search;
pub mod standby_wait;
pub mod stats;
pub mod tls;
pub mod webhook_walk;
pub mod webhooks;
pub mod workers;
pub mod works;

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use deadpool_postgres::Client;
pub use error::DbError;
pub use tls::PgTarget;

/// The connection pool, and the target it connects to. A LISTEN needs a connection of
/// its own that a pool cannot lend (pooled connections drop notifications), a cancel
/// request needs the TLS connector, and deadpool gives neither back, so the target
/// travels with the pool. Derefs to the deadpool `Pool` for everything else.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    target: PgTarget,
    /// Every host's failure of the pool's last failed connect (deadpool carries only a
    /// driver error, and that names one host).
    failed: Failed,
    role: Arc<role::RoleState>,
    clock: Arc<clock::ClockOffset>,
}

type Failed = Arc<Mutex<Option<String>>>;

impl PgPool {
    /// For a dedicated connection (LISTEN, NOTIFY) and cancel requests.
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// This pool's role-lost mark, for the connections it does not lend (LISTEN, NOTIFY).
    pub fn role(&self) -> &Arc<role::RoleState> {
        &self.role
    }

    /// A deadline on this host's clock, on the clock of this pool's server.
    pub fn database_time(&self, t: SystemTime) -> SystemTime {
        self.clock.to_database_time(t)
    }

    /// Another pool of `size` connections to the same target, sharing this one's
    /// role-lost mark and clock: a role loss met by either discards the older
    /// connections of both. Serve gives each HTTP worker one, so that a connection is
    /// used on the thread that drives it (a shared pool's connections, driven on the
    /// worker that opened them, woke another thread for every statement).
    pub fn sibling(&self, size: u16) -> anyhow::Result<PgPool> {
        build(
            self.target.clone(),
            size,
            self.role.clone(),
            self.clock.clone(),
        )
    }

    /// Runs `future` with the database errors it meets charged to this pool (`role`).
    pub async fn scoped<F: std::future::Future>(&self, future: F) -> F::Output {
        role::scoped(self.role.clone(), future).await
    }

    /// deadpool's checkout, its error sorted (`DbError`); when no host gave a
    /// connection, the error names each host's failure.
    pub async fn get(&self) -> Result<Client, DbError> {
        self.pool.get().await.map_err(|e| {
            let connecting = matches!(
                e,
                PoolError::Backend(_) | PoolError::Timeout(TimeoutType::Create)
            );
            let all = connecting
                .then(|| self.failed.lock().unwrap_or_else(|p| p.into_inner()).take())
                .flatten();
            match (DbError::from(e), all) {
                (DbError::Unavailable(_), Some(all)) => DbError::Unavailable(all),
                (sorted, _) => sorted,
            }
        })
    }
}

/// deadpool's way in: every pooled connection goes through the target's connect.
struct PoolConnect {
    target: PgTarget,
    failed: Failed,
}

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        _: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        Box::pin(async move {
            let (client, connection) = self.target.connect().await.map_err(|e| {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                // Only the driver's error type passes through deadpool; `get` puts the
                // whole story back. When every host timed out there is no driver error,
                // and the driver's own "timeout" is the truth.
                e.driver
                    .unwrap_or_else(tokio_postgres::Error::__private_api_timeout)
            })?;
            let driver = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "pooled database connection closed");
                }
            });
            Ok((client, driver))
        })
    }
}

impl std::ops::Deref for PgPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.pool
    }
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("url", &self.target.shown())
            .field("status", &self.pool.status())
            .finish()
    }
}

/// How long a checkout may wait for a free connection, or a recycle take (a connect is
/// bounded by its hosts' `connect_timeout`s). Without these, deadpool waits
/// forever during an outage and the API hangs instead of answering 503.
const POOL_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds a pool that follows the primary; no connection is made until the first
/// checkout. Each new connection is checked against the schema this binary was built
/// for, and refused (`DbError::Schema`) when the migrations differ. A connection opened
/// before the pool last met a server that can no longer take writes is discarded at
/// checkout (`role`), so the next one goes through `target_session_attrs` again; the
/// check is a clock comparison, no query.
pub fn pool(database_url: &str, size: u16) -> anyhow::Result<PgPool> {
    let target = PgTarget::parse(database_url)?;
    build(
        target,
        size,
        role::RoleState::follower(),
        Default::default(),
    )
}

/// Builds a read replica's pool (`serve --database-read-url`): what its connections
/// meet (57P03, a clock of its own) stays with it.
pub fn replica_pool(database_url: &str, size: u16) -> anyhow::Result<PgPool> {
    let target = PgTarget::parse(database_url)?;
    build(target, size, role::RoleState::replica(), Default::default())
}

fn build(
    target: PgTarget,
    size: u16,
    role: Arc<role::RoleState>,
    clock: Arc<clock::ClockOffset>,
) -> anyhow::Result<PgPool> {
    let failed = Failed::default();
    let connect = PoolConnect {
        target: target.clone(),
        failed: failed.clone(),
    };
    let manager = Manager::from_connect(
        target.config().clone(),
        connect,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // A create must outlast trying every host, or a dark host 1 is never got past.
    let create = target.connect_bound() + Duration::from_secs(1);
    let (hook_clock, hook_role) = (clock.clone(), role.clone());
    Pool::builder(manager)
        .max_size(size as usize)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(create))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
            let clock = hook_clock.clone();
            Box::pin(async move {
                match clock::check_new_connection(client, &clock).await {
                    Ok(None) => Ok(()),
                    Ok(Some(mismatch)) => Err(HookError::message(mismatch)),
                    Err(e) => Err(HookError::Backend(e)),
                }
            })
        }))
        .pre_recycle(deadpool_postgres::Hook::sync_fn(move |client, metrics| {
            if hook_role.outlived(metrics.created) {
                return Err(HookError::message(
                    "opened before the server's role changed",
                ));
            }
            // An idle connection whose server went away (a SIGKILLed primary's backends
            // end their sessions) breaks with no statement to fail: this is where it is
            // seen, so here it counts as a loss and the pool's other ones go with it.
            if client.is_closed() {
                hook_role.lost("a pooled connection broke: its server went away");
            }
            Ok(())
        }))
        .build()
        .map(|pool| {
            close_outlived(&pool, role.clone());
            PgPool {
                pool,
                target,
                failed,
                role,
                clock,
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot build the database pool: {e}"))
}

/// How often a pool closes its idle connections that predate its last role loss.
const CLOSE_OUTLIVED_EVERY: Duration = Duration::from_secs(1);

/// The checkout discards a connection that predates a role loss, but an idle one that is
/// never checked out again stays on the demoted server: an HTTP worker that got no more
/// requests kept two there through a switchover (chaos scenario 13). So every second the
/// pool closes those too, until the pool is dropped. Off a tokio runtime (no pool is
/// built there but in unit tests) nothing is started.
fn close_outlived(pool: &Pool, role: Arc<role::RoleState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = pool.weak();
    runtime.spawn(async move {
        let mut every = tokio::time::interval(CLOSE_OUTLIVED_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(pool) = weak.upgrade() else { return };
            pool.retain(|_, metrics| !role.outlived(metrics.created));
        }
    });
}
