//! A write refused because its server stopped being the primary, or whose connection
//! broke, is tried once more on a new connection, which goes through
//! `target_session_attrs` again and so reaches the new primary (the first write after a
//! switchover then succeeds instead of answering 503).
//!
//! Whether the first attempt wrote anything cannot always be known: a connection that
//! broke after the statement (or its commit) was sent may have committed. So only a
//! write that is safe to repeat is handed to `once_more`: it is told it runs again, and
//! must then find what an earlier attempt stored (a work by its idempotency key, an
//! action already applied) rather than store it a second time.

use super::inflight::InFlight;
use super::{role, Client, DbError, PgPool};
use futures_util::future::BoxFuture;
use std::time::Instant;

/// A failed attempt, and whether its server stopped taking writes or its connection
/// broke: then a new connection may well succeed.
#[derive(Debug)]
pub struct Failed {
    pub error: DbError,
    pub role_lost: bool,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Self {
            role_lost: role::is_role_loss(&e),
            error: e.into(),
        }
    }
}

impl From<DbError> for Failed {
    fn from(error: DbError) -> Self {
        Self {
            error,
            role_lost: false,
        }
    }
}

/// Runs `write` on a connection of `pool` (`again` false), and when that attempt lost
/// its server, once more on a connection opened after the loss (`again` true). Returns
/// the value and whether it came from the second attempt. The caller's deadline bounds
/// both: each attempt's statement checks it in the database.
pub async fn once_more<T, F>(pool: &PgPool, write: F) -> Result<(T, bool), DbError>
where
    F: for<'c> Fn(&'c Client, bool) -> BoxFuture<'c, Result<T, Failed>>,
{
    let client = InFlight::checkout(pool).await?;
    let failed = match write(&client, false).await {
        Ok(value) => {
            client.done();
            return Ok((value, false));
        }
        Err(failed) if failed.role_lost => failed,
        Err(failed) => return Err(failed.error),
    };
    // Taken out of the pool, its statement cancelled (`InFlight`).
    drop(client);
    let lost_at = Instant::now();
    tracing::debug!(error = %failed.error, "a write lost its database server: trying it once more on a new connection");
    let client = InFlight::checkout_opened_after(pool, lost_at).await?;
    let value = write(&client, true).await.map_err(|f| f.error)?;
    client.done();
    Ok((value, true))
}
