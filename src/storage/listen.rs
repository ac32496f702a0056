//! LISTEN on a dedicated connection. A notification either wakes a `Notify` (the
//! sweepers only need to know that something changed) or is forwarded with its payload
//! to a broadcast channel (the dashboard's live stream, many subscribers). Reconnects
//! with backoff; what was missed while disconnected is covered by polling (sweepers) or
//! by a `Notice::Resync` telling subscribers to re-read what they show. A listener
//! follows the primary: it reconnects when its server turns read-only (checked every
//! 2 s) or when any other connection of the process saw the primary change.

use super::role::RoleState;
use super::{PgPool, PgTarget};
use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use futures_util::future::poll_fn;
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};
use tokio_postgres::AsyncMessage;

/// Payload-less: a pending work was committed (sent by `notify::Notifier`).
pub const PENDING_CHANNEL: &str = "pp_works_pending";
/// Payload-less: works were stored or changed status (sent by `notify::Notifier`).
pub const CHANGES_CHANNEL: &str = "pp_work_changes";

/// What a forwarding listener sends to its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// One notification's payload.
    Payload(String),
    /// The connection was (re)established: notifications may have been missed.
    Resync,
}

/// Where a listener delivers.
#[derive(Debug, Clone)]
pub enum Sink {
    Wake(Arc<Notify>),
    /// A send with no subscriber is not an error: the listener keeps listening.
    Forward(broadcast::Sender<Notice>),
}

impl Sink {
    fn deliver(&self, notice: Notice) {
        match self {
            // The first wake-up after connecting finds what was committed meanwhile.
            Sink::Wake(notify) => notify.notify_one(),
            Sink::Forward(tx) => {
                let _ = tx.send(notice);
            }
        }
    }
}

/// Spawns a task that wakes `notify` on every notification on `channel` until shutdown.
pub fn spawn(pool: &PgPool, channel: &'static str, notify: Arc<Notify>, shutdown: Shutdown) {
    spawn_sink(pool, channel, Sink::Wake(notify), shutdown);
}

/// Spawns a task that delivers every notification on `channel` to `sink` until shutdown.
pub fn spawn_sink(
    pool: &PgPool,
    channel: &'static str,
    sink: Sink,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    // The connection is the pool's own kind: it follows the primary with the pool.
    let (target, role) = (pool.target().clone(), pool.role().clone());
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        while !shutdown.is_triggered() {
            tokio::select! {
                result = listen_once(&target, &role, channel, &sink, &mut backoff) => {
                    if let Err(e) = result {
                        tracing::warn!(error = format!("{e:#}"), channel, "LISTEN connection lost; reconnecting");
                    }
                }
                _ = shutdown.wait() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait() => break,
            }
        }
    })
}

async fn listen_once(
    target: &PgTarget,
    role: &RoleState,
    channel: &str,
    sink: &Sink,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let (client, mut connection) = target.connect().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    super::role::ensure_writable(&client, role).await?;
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    backoff.reset();
    sink.deliver(Notice::Resync);
    let opened = std::time::Instant::now();
    let mut check = tokio::time::interval(ROLE_CHECK);
    check.tick().await;
    loop {
        tokio::select! {
            payload = rx.recv() => match payload {
                Some(payload) => sink.deliver(Notice::Payload(payload)),
                None => break,
            },
            // NOTIFY is not replicated: a LISTEN left on a demoted primary would hear
            // nothing ever again, so it follows the primary like the pools do.
            _ = check.tick() => {
                if role.outlived(opened) {
                    anyhow::bail!("another connection saw the primary change");
                }
                super::role::ensure_writable(&client, role).await?;
            }
        }
    }
    drop(client);
    driver.await??;
    anyhow::bail!("connection closed")
}

/// How often a LISTEN connection checks that its server is still the primary.
const ROLE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);
