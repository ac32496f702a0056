//! LISTEN on a dedicated connection, turned into wake-ups of a `Notify`. Reconnects
//! with backoff; a notification missed while disconnected is covered by polling.

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use futures_util::future::poll_fn;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

pub const PENDING_CHANNEL: &str = "pp_works_pending";

/// Spawns a task that wakes `notify` on every notification on `channel` until shutdown.
pub fn spawn(database_url: String, channel: &'static str, notify: Arc<Notify>, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        while !shutdown.is_triggered() {
            tokio::select! {
                result = listen_once(&database_url, channel, &notify, &mut backoff) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    }
                }
                _ = shutdown.wait() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait() => break,
            }
        }
    });
}

async fn listen_once(
    url: &str,
    channel: &str,
    notify: &Notify,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let config = crate::config::parse_database_url(url)?;
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    backoff.reset();
    // Anything committed while we were not listening is found by this first wake-up.
    notify.notify_one();
    while rx.recv().await.is_some() {
        notify.notify_one();
    }
    drop(client);
    driver.await??;
    anyhow::bail!("connection closed")
}
