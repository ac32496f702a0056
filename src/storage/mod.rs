//! PostgreSQL: the pool, migrations, and the queries on works, events and claims.

pub mod actions;
pub mod admin;
pub mod claims;
pub mod listen;
pub mod migrate;
pub mod notify;
pub mod prune;
pub mod replica;
pub mod replication;
pub mod role;
pub mod search;
pub mod stats;
pub mod works;

use crate::config::parse_database_url;
use deadpool_postgres::{HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

pub use deadpool_postgres::Client;

/// The connection pool, and the URL it connects with. A LISTEN needs a connection of its
/// own that a pool cannot lend (pooled connections drop notifications), and deadpool
/// does not give its settings back, so the URL travels with the pool. Derefs to the
/// deadpool `Pool` for everything else.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    url: Arc<str>,
}

impl PgPool {
    /// For a dedicated connection (LISTEN). Contains the password: never log it.
    pub fn database_url(&self) -> &str {
        &self.url
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
            .field("url", &crate::config::redact_url(&self.url))
            .field("status", &self.pool.status())
            .finish()
    }
}

/// How long a checkout, a connect or a recycle may take. Without these, deadpool waits
/// forever during an outage and the API hangs instead of answering 503.
const POOL_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds a pool; no connection is made until the first checkout. A connection opened
/// before the process last met a server that can no longer take writes is discarded at
/// checkout (`role`), so the next one goes through `target_session_attrs` again; the
/// check is a clock comparison, no query.
pub fn pool(database_url: &str, size: u16) -> anyhow::Result<PgPool> {
    let config = parse_database_url(database_url)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size as usize)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .pre_recycle(deadpool_postgres::Hook::sync_fn(|_, metrics| {
            if role::outlived(metrics.created) {
                return Err(HookError::message(
                    "opened before the server's role changed",
                ));
            }
            Ok(())
        }))
        .build()
        .map(|pool| PgPool {
            pool,
            url: database_url.into(),
        })
        .map_err(|e| anyhow::anyhow!("cannot build the database pool: {e}"))
}

/// What went wrong talking to the database, in the terms callers act on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or the connection broke: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the data: the input was wrong.
    #[error("rejected by the database: {0}")]
    Constraint(String),
    /// A value the database cannot represent: the input was wrong.
    #[error("invalid value: {0}")]
    InvalidInput(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if role::is_role_loss(&e) {
            // A read-only or shutting-down server, or a broken connection: an outage
            // for the caller (retry, or 503), and no pooled connection is reused.
            role::lost(&e.to_string());
            return DbError::Unavailable(e.to_string());
        }
        let Some(db) = e.as_db_error() else {
            // No server answer: the connection timed out or was never opened.
            return DbError::Unavailable(e.to_string());
        };
        let code = db.code();
        let class = &code.code()[..2];
        if class == "23" {
            DbError::Constraint(db.message().to_string())
        } else if class == "22" {
            // data exceptions: a value the database cannot hold (NUL in text, ...)
            DbError::InvalidInput(db.message().to_string())
        } else if matches!(class, "08" | "28" | "40" | "53" | "57")
            || *code == SqlState::UNDEFINED_DATABASE
        {
            // connection exceptions, a login refused (wrong password, missing
            // database), serialization failures and deadlocks, insufficient resources,
            // operator intervention (statement timeouts included)
            DbError::Unavailable(db.message().to_string())
        } else {
            DbError::Other(db.message().to_string())
        }
    }
}

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }

    /// The data itself was refused: retrying the same data cannot succeed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, DbError::Constraint(_) | DbError::InvalidInput(_))
    }
}
