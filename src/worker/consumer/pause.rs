//! The consume loop's side of a pause: the consumer cancelled, what the broker had
//! already sent settled, the connection held idle until the resume.

use super::{session, Open, QueueWorker, SETUP_TIMEOUT};
use crate::worker::stores::Stores;
use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions};
use lapin::types::FieldTable;

impl QueueWorker<'_> {
    /// The pipeline was paused: cancels the consumer (`basic.cancel`), stores and
    /// acknowledges what the broker had already sent (the stream ends at the
    /// cancel-ok, after them), then holds the connection idle until resumed, and
    /// consumes again on the same channel. Nothing is left unacked meanwhile.
    pub(super) async fn pause(
        &self,
        open: &Open<'_>,
        consumer: lapin::Consumer,
        storing: &mut Stores,
        max: usize,
        safe_left: &mut u64,
    ) -> anyhow::Result<lapin::Consumer> {
        let mut consumer = consumer;
        let cancel = open
            .channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default());
        tokio::time::timeout(SETUP_TIMEOUT, cancel)
            .await
            .map_err(|_| anyhow::anyhow!("basic.cancel took over {SETUP_TIMEOUT:?}"))??;
        let mut sent = Vec::new();
        loop {
            let next = tokio::time::timeout(SETUP_TIMEOUT, consumer.next());
            match next.await {
                Ok(None) => break,
                Ok(Some(delivery)) => sent.push(session::delivery_or_error(Some(delivery))?),
                Err(_) => anyhow::bail!("no cancel-ok within {SETUP_TIMEOUT:?}"),
            }
        }
        let taken = sent.len();
        while !sent.is_empty() {
            let rest = sent.split_off(sent.len().min(max.max(1)));
            self.store(open, std::mem::replace(&mut sent, rest), storing, safe_left)
                .await?;
        }
        self.finish_all(storing, open.channel, open.dead).await?;
        tracing::info!(
            taken,
            "paused: consumer cancelled, deliveries in hand stored and acknowledged"
        );
        let mut paused = self.paused.clone();
        tokio::select! {
            _ = paused.until_running() => {}
            // The consume loop sees the shutdown next and closes the connection.
            _ = self.shutdown.wait() => return Ok(consumer),
        }
        let consumer = open
            .channel
            .basic_consume(
                self.topology.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("cannot consume again after a resume")?;
        tracing::info!(queue = %self.topology.queue, "resumed: consuming");
        Ok(consumer)
    }
}
