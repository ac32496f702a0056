//! A pooled connection whose statement may be cut off. When a request passes its bound
//! (the API answers 503 at 4 s) or a batch store is aborted with its AMQP connection,
//! the future holding the connection is dropped, but the statement it sent goes on
//! running in the server; returned to the pool as usual, the connection would make the
//! next request queue behind it (for up to the 30 s `statement_timeout`). So a
//! connection dropped mid-use is taken out of the pool and its statement cancelled
//! (PostgreSQL's cancel request, on a connection of its own); only one that finished
//! (`done`) goes back.

use super::tls::PgTls;
use super::{Client, PgPool};
use std::ops::Deref;

/// The connection, and the TLS connector its cancel request goes through (a server
/// that takes only TLS refuses a plain one).
pub struct InFlight(Option<Client>, PgTls);

impl InFlight {
    /// A connection from `pool`, watched.
    pub async fn checkout(pool: &PgPool) -> Result<Self, super::DbError> {
        Ok(Self(Some(pool.get().await?), pool.target().tls()))
    }

    /// A connection from `pool` opened after `after`: older idle ones are closed and
    /// taken out of the pool on the way (they may be on the server that just failed).
    pub async fn checkout_opened_after(
        pool: &PgPool,
        after: std::time::Instant,
    ) -> Result<Self, super::DbError> {
        // Each pass closes one older idle connection; the pool has at most max_size.
        for _ in 0..pool.status().max_size {
            let client = pool.get().await?;
            if deadpool_postgres::Object::metrics(&client).created > after {
                return Ok(Self(Some(client), pool.target().tls()));
            }
            drop(deadpool_postgres::Object::take(client));
        }
        Self::checkout(pool).await
    }

    /// The statements finished: the connection goes back to the pool.
    pub fn done(mut self) {
        self.0.take();
    }
}

impl Deref for InFlight {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Only `done` and `drop` empty it, and both consume the value.
        self.0
            .as_ref()
            .expect("an InFlight holds its connection until done or dropped")
    }
}

impl std::ops::DerefMut for InFlight {
    fn deref_mut(&mut self) -> &mut Client {
        self.0
            .as_mut()
            .expect("an InFlight holds its connection until done or dropped")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        // Out of the pool for good: closed once the cancel has been sent.
        let detached = deadpool_postgres::Object::take(client);
        let token = detached.cancel_token();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!("a statement was cut off: cancelling it and closing its connection");
        let tls = self.1.clone();
        runtime.spawn(async move {
            let _ = token.cancel_query(tls).await;
            drop(detached);
        });
    }
}
