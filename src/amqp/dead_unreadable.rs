//! `ppctl dead purge --unreadable`: removes only the dead letters lapin cannot read, so
//! the ones behind them can be listed and replayed again, in their order.
//!
//! No client call names one message, so it goes by position, twice per unreadable one:
//! a first pass finds its place (every message in front of it held unacked, then the
//! connection dies on it and they all go back in place); a second pass holds the same
//! messages again, checks they are the same ids, and takes the next one with `no_ack`,
//! which the broker removes as it sends it. Should that one be readable after all (the
//! queue changed in between: another reader held a message), it is in hand and is
//! published back to the dead-letter queue, at its tail, before anything else happens;
//! if that fails, again on a new connection; if that fails too, it is written to a file
//! (`rescue`), so it is never only text in an error.

use super::dead_reader::{publish_confirmed, Reader};
use super::{rescue, Nodes, Topology};
use anyhow::{bail, Context};
use lapin::message::BasicGetMessage;
use lapin::options::ConfirmSelectOptions;
use lapin::Channel;
use serde::Serialize;

/// What `drop_unreadable` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dropped {
    /// Unreadable dead letters removed.
    pub dropped: u64,
    /// Readable ones taken by mistake (the queue changed meanwhile), put back at the tail.
    pub moved_to_tail: Vec<Option<String>>,
}

fn id_of(message: &BasicGetMessage) -> Option<String> {
    let id = message.delivery.properties.message_id().as_ref();
    id.map(|id| id.as_str().to_string())
}

/// The queue's depth, and the ids in front of the first unreadable message (None when
/// there is none).
type Found = (u32, Option<Vec<Option<String>>>);

async fn find(nodes: &Nodes, topology: &Topology) -> anyhow::Result<Found> {
    let mut reader = Reader::open(nodes, topology).await?;
    let count = reader.count;
    let mut ids = Vec::new();
    let found = loop {
        if ids.len() >= reader.count as usize {
            break None;
        }
        match reader.next().await {
            Ok(Ok(Some(message))) => ids.push(id_of(&message)),
            Ok(Ok(None)) => break None,
            Ok(Err(())) => break Some(ids),
            Err(e) => {
                reader.close("failed").await;
                return Err(e);
            }
        }
    };
    reader.close("looked").await;
    Ok((count, found))
}

/// Removes every unreadable dead letter; the others keep their order.
pub async fn drop_unreadable(nodes: &Nodes, topology: &Topology) -> anyhow::Result<Dropped> {
    let mut done = Dropped::default();
    let mut before = u32::MAX;
    loop {
        let (count, Some(front)) = find(nodes, topology).await? else {
            return Ok(done);
        };
        // Each round removes one: a depth that did not go down means it did not.
        if count >= before {
            bail!("an unreadable dead letter was not removed (or new dead letters arrived meanwhile): {} removed so far; try again", done.dropped);
        }
        before = count;
        let mut reader = Reader::open(nodes, topology).await?;
        reader
            .channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable publisher confirms")?;
        // Held until the connection goes, then back in place.
        let mut held = Vec::with_capacity(front.len());
        for expected in &front {
            match reader.next().await {
                Ok(Ok(Some(message))) if id_of(&message) == *expected => held.push(message),
                _ => {
                    reader.close("changed").await;
                    bail!("the dead-letter queue changed while looking for unreadable messages (another reader?); nothing was removed this round: try again");
                }
            }
        }
        // Lost mid-answer, a message taken with no_ack is gone whatever it was: say so.
        let taken = reader.take().await.context(
            "the connection was lost while taking the unreadable dead letter off the queue \
             (had the queue changed meanwhile, a readable one taken instead would be lost \
             with it: check `ppctl dead list`)",
        );
        match taken? {
            Err(()) => done.dropped += 1, // the connection died on it: it was the one
            Ok(None) => {
                reader.close("gone").await;
                bail!("the unreadable dead letter is gone (purged or consumed meanwhile)");
            }
            Ok(Some(message)) => {
                put_back(nodes, topology, &reader.channel, &message).await?;
                done.moved_to_tail.push(id_of(&message));
                reader.close("moved").await;
                bail!("the dead-letter queue changed meanwhile: a readable dead letter ({:?}) was taken instead and put back at the tail; try again", id_of(&message));
            }
        }
        drop(held);
        reader.close("dropped").await;
    }
}

/// Publishes a readable message taken by mistake back to the dead-letter queue: on the
/// reader's channel, else on a new connection, else into a file; Err says which.
async fn put_back(
    nodes: &Nodes,
    topology: &Topology,
    channel: &Channel,
    message: &BasicGetMessage,
) -> anyhow::Result<()> {
    let (queue, delivery) = (&topology.dead_queue, &message.delivery);
    let props = || delivery.properties.clone();
    let first = publish_confirmed(channel, queue, &delivery.data, props()).await;
    let Err(first) = first else { return Ok(()) };
    let again = async {
        let (connection, channel) = nodes.connect("ppctl-dead put-back").await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable publisher confirms")?;
        let published = publish_confirmed(&channel, queue, &delivery.data, props()).await;
        super::dead_reader::close(&connection, "put back").await;
        published
    };
    let Err(again) = again.await else {
        return Ok(());
    };
    let id = id_of(message);
    let saved = rescue::save(queue, id.as_deref(), &delivery.properties, &delivery.data);
    let kept = match saved {
        Ok(path) => format!("it is saved, body and properties, in {}", path.display()),
        Err(e) => format!(
            "it could not be saved either ({e}); its body is {:?}",
            String::from_utf8_lossy(&delivery.data)
        ),
    };
    bail!("a readable dead letter ({id:?}) was taken off the queue by mistake and could not be put back ({first:#}; on a new connection: {again:#}): {kept}")
}
