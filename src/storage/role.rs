//! Following the primary. tokio-postgres picks a writable host only when it opens a
//! connection (`target_session_attrs=read-write`), and deadpool's recycling never asks
//! again: after a switchover a pooled connection would keep talking to the demoted
//! primary, which answers every read and refuses every write, for as long as the
//! process lives (River #1225). So when a connection meets a server that can no longer
//! take writes (read-only, in recovery, shutting down) or breaks, its pool forgets
//! every connection it opened before that moment: the pool's pre-recycle hook discards
//! them at their next checkout, and the LISTEN and NOTIFY connections reconnect. Each
//! new connection goes through `target_session_attrs` again.
//!
//! The mark belongs to a pool (`RoleState`, held by `PgPool` and its hook), not to the
//! process: a read replica answering 57P03 (starting up, `hot_standby = off`) must not
//! send the primary's connections away. The storage functions take a bare connection
//! and cannot name its pool, so an error is charged to the pool whose `scoped` future
//! met it (the replica's reads and monitor run scoped), and otherwise to every pool
//! that follows the primary: with one primary at a time they all talk to it.

use crate::telemetry::TELEMETRY;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio_postgres::error::SqlState;

/// What one pool knows of its server's role.
#[derive(Debug)]
pub struct RoleState {
    /// When a connection of the pool last met a server that can no longer take writes;
    /// also the log throttle.
    lost_at: Mutex<Option<Instant>>,
    /// The pool follows the primary (its losses are `ppctl_db_role_losses_total`), or
    /// reads from a replica.
    follows_primary: bool,
}

/// The pools that follow the primary, for errors met outside any pool's scope.
static FOLLOWERS: Mutex<Vec<Weak<RoleState>>> = Mutex::new(Vec::new());

tokio::task_local! {
    /// The pool whose connection the current future uses (`scoped`).
    static SCOPE: Arc<RoleState>;
}

impl RoleState {
    /// The state of a pool that follows the primary (every writing pool).
    pub fn follower() -> Arc<Self> {
        let state = Arc::new(Self::new(true));
        let mut followers = FOLLOWERS.lock().unwrap_or_else(|p| p.into_inner());
        followers.retain(|w| w.strong_count() > 0);
        followers.push(Arc::downgrade(&state));
        state
    }

    /// The state of a read replica's pool: its losses are its own.
    pub fn replica() -> Arc<Self> {
        Arc::new(Self::new(false))
    }

    fn new(follows_primary: bool) -> Self {
        Self {
            lost_at: Mutex::new(None),
            follows_primary,
        }
    }

    /// Records that a connection of this pool met a server that can no longer take
    /// writes (or broke): every connection the pool opened until now is to go.
    pub fn lost(&self, reason: &str) {
        self.mark(reason);
        if self.follows_primary {
            TELEMETRY.db_role_losses.inc();
        }
    }

    /// `lost` without counting it (a loss charged to several pools counts once).
    fn mark(&self, reason: &str) {
        let mut at = self.lost_at.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Many connections notice the same switchover at once: log it once per second.
        if at.is_none_or(|t| now.duration_since(t).as_secs() >= 1) {
            if self.follows_primary {
                tracing::warn!(%reason, "database server can no longer take writes (or the connection broke): reconnecting through target_session_attrs");
            } else {
                tracing::warn!(%reason, "the read replica refused or broke a connection: its pool reconnects");
            }
        }
        *at = Some(now);
    }

    /// Whether a connection opened at `opened` predates this pool's last role loss.
    pub fn outlived(&self, opened: Instant) -> bool {
        let at = self.lost_at.lock().unwrap_or_else(|p| p.into_inner());
        at.is_some_and(|t| opened <= t)
    }
}

/// Runs `future` with its database errors charged to `state`'s pool.
pub async fn scoped<F: Future>(state: Arc<RoleState>, future: F) -> F::Output {
    SCOPE.scope(state, future).await
}

/// Whether `e` says this connection's server can no longer take our writes, or that
/// the connection itself is gone. A statement that was merely cancelled, a deadlock or
/// a refused value is not: the server is still the primary.
pub fn is_role_loss(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code();
            *code == SqlState::READ_ONLY_SQL_TRANSACTION
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        None => e.is_closed(),
    }
}

/// Records that a connection met a server that can no longer take writes, or broke:
/// charged to the scoped pool, else to every pool that follows the primary.
pub fn lost(reason: &str) {
    if SCOPE.try_with(|state| state.lost(reason)).is_ok() {
        return;
    }
    let followers: Vec<Arc<RoleState>> = {
        let followers = FOLLOWERS.lock().unwrap_or_else(|p| p.into_inner());
        followers.iter().filter_map(Weak::upgrade).collect()
    };
    for state in &followers {
        state.mark(reason);
    }
    if !followers.is_empty() {
        TELEMETRY.db_role_losses.inc();
    }
}

/// The server a connection is on, as `/health` and the logs show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ServerRole {
    /// `IP:PORT` of the server, or `local socket`.
    pub host: String,
    /// The server takes writes: not a standby, not read-only.
    pub writable: bool,
    /// `synchronous_standby_names` is set and no synchronous standby is streaming:
    /// every commit waits (a promoted server that kept the setting, a lost standby).
    /// `None`: it is set, and this role cannot see the standbys' state (no
    /// `pg_read_all_stats`): unknown, which is not the same as waiting.
    #[serde(skip)]
    pub commits_wait: Option<bool>,
    /// The TLS version of this connection (`TLSv1.3`), as the server's `pg_stat_ssl`
    /// says; `None`: unencrypted.
    #[serde(skip)]
    pub tls: Option<String>,
}

impl ServerRole {
    /// `encrypted (TLSv1.3)` or `unencrypted`, for `db status` and the logs.
    pub fn connection(&self) -> String {
        match &self.tls {
            Some(version) => format!("encrypted ({version})"),
            None => "unencrypted".into(),
        }
    }
}

/// Asks the server who it is. `transaction_read_only` is on for a standby in recovery
/// and for a primary demoted with `default_transaction_read_only`, which is exactly
/// what `target_session_attrs=read-write` checks when it connects. Whether the session
/// is encrypted is the server's word too (any role may read its own `pg_stat_ssl` row).
pub async fn server_role(
    client: &tokio_postgres::Client,
) -> Result<ServerRole, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local socket'), \
                        current_setting('transaction_read_only') = 'off', \
                        CASE WHEN current_setting('synchronous_standby_names') = '' THEN false \
                             WHEN NOT {sees} AND EXISTS (SELECT 1 FROM {standbys}) THEN NULL \
                             ELSE NOT EXISTS ( \
                                 SELECT 1 FROM {standbys} WHERE state = 'streaming' \
                                 AND sync_state IN ('sync', 'quorum')) END, \
                        (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl)",
                sees = super::replication::SEES_STANDBYS,
                standbys = super::replication::PHYSICAL_STANDBYS,
            ),
            &[],
        )
        .await?;
    Ok(ServerRole {
        host: row.get(0),
        writable: row.get(1),
        commits_wait: row.get(2),
        tls: row.get(3),
    })
}

/// For connections held outside the pools (LISTEN, NOTIFY): errors unless the server
/// still takes writes, so that the caller reconnects to the primary.
pub async fn ensure_writable(
    client: &tokio_postgres::Client,
    state: &RoleState,
) -> anyhow::Result<()> {
    let role = server_role(client).await?;
    if !role.writable {
        state.lost("a LISTEN or NOTIFY connection's server turned read-only");
        anyhow::bail!("server {} no longer takes writes", role.host);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_loss_are_outlived() {
        let state = RoleState::replica();
        let before = Instant::now();
        state.lost("test");
        let after = Instant::now();
        assert!(state.outlived(before));
        assert!(!state.outlived(after));
    }

    #[tokio::test]
    async fn a_scoped_loss_stays_in_its_pool() {
        let (follower, replica) = (RoleState::follower(), RoleState::replica());
        let before = Instant::now();
        scoped(replica.clone(), async { lost("57P03") }).await;
        assert!(replica.outlived(before));
        assert!(!follower.outlived(before));
        lost("unscoped");
        assert!(follower.outlived(before));
    }
}
