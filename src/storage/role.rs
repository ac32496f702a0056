//! Following the primary. tokio-postgres picks a writable host only when it opens a
//! connection (`target_session_attrs=read-write`), and deadpool's recycling never asks
//! again: after a switchover a pooled connection would keep talking to the demoted
//! primary, which answers every read and refuses every write, for as long as the
//! process lives (River #1225). So when any connection meets a server that can no
//! longer take writes (read-only, in recovery, shutting down) or breaks, the whole
//! process forgets every connection opened before that moment: the pools' pre-recycle
//! hook discards them at their next checkout, and the LISTEN and NOTIFY connections
//! reconnect. Each new connection goes through `target_session_attrs` again.
//!
//! The mark is process-wide rather than per host: deadpool does not say which host a
//! connection reached, and with one primary at a time every writing connection is on
//! the same host anyway. A replica pool's connections opened before a mark are
//! reopened too, which costs a few connects and nothing else.

use crate::telemetry::TELEMETRY;
use std::sync::Mutex;
use std::time::Instant;
use tokio_postgres::error::SqlState;

/// When a connection last met a server that can no longer take writes.
static LOST_AT: Mutex<Option<Instant>> = Mutex::new(None);

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

/// Records that the server behind a connection stopped being a writable primary:
/// every connection opened until now is to be discarded.
pub fn lost(reason: &str) {
    let mut at = LOST_AT.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    // Many connections notice the same switchover at once: log it once per second.
    if at.is_none_or(|t| now.duration_since(t).as_secs() >= 1) {
        tracing::warn!(%reason, "database server can no longer take writes (or the connection broke): reconnecting through target_session_attrs");
    }
    *at = Some(now);
    TELEMETRY.db_role_losses.inc();
}

/// Whether a connection opened at `opened` predates the last role loss.
pub fn outlived(opened: Instant) -> bool {
    let at = LOST_AT.lock().unwrap_or_else(|p| p.into_inner());
    at.is_some_and(|t| opened <= t)
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
pub async fn ensure_writable(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let role = server_role(client).await?;
    if !role.writable {
        lost("a LISTEN or NOTIFY connection's server turned read-only");
        anyhow::bail!("server {} no longer takes writes", role.host);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_loss_are_outlived() {
        let before = Instant::now();
        lost("test");
        let after = Instant::now();
        assert!(outlived(before));
        assert!(!outlived(after));
    }
}
