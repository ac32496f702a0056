//! `ppctl dead list|replay|purge`: the dead letters, straight from RabbitMQ.

use super::{emit, table, Failure};
use crate::amqp::dead::{self, DeadError, Listing, Replayed, Selection};
use crate::amqp::dead_unreadable::drop_unreadable;
use crate::amqp::{Nodes, Topology};
use crate::cli::{DeadAction, DeadArgs};

pub async fn run(args: DeadArgs) -> anyhow::Result<()> {
    let amqp = args.action.amqp();
    super::check_amqp_url(&amqp.amqp_url)?;
    let nodes = Nodes::parse(&amqp.amqp_url)?;
    let topology = Topology::chosen(&amqp.queue, amqp.queue_type);
    match args.action {
        DeadAction::List { limit, json, .. } => {
            let listing = dead::list(&nodes, &topology, limit)
                .await
                .map_err(exit_code)?;
            let out = if json {
                serde_json::to_string_pretty(&listing)? + "\n"
            } else {
                listing_text(&listing)
            };
            emit(out.as_bytes())
        }
        DeadAction::Replay { all, id, json, .. } => {
            let selection = if all {
                Selection::All
            } else {
                Selection::Ids(id)
            };
            let done = dead::replay(&nodes, &topology, &selection, None)
                .await
                .map_err(exit_code)?;
            let out = if json {
                serde_json::to_string_pretty(&done)? + "\n"
            } else {
                replay_text(&done, &topology)
            };
            emit(out.as_bytes())?;
            if !done.not_found.is_empty() {
                let ids = done.not_found.join(", ");
                return Err(Failure::NotFound(format!("no dead letter with id {ids}")).into());
            }
            Ok(())
        }
        DeadAction::Purge {
            yes, unreadable, ..
        } => {
            if !yes {
                let queue = &topology.dead_queue;
                return Err(
                    Failure::Usage(format!("refusing to purge {queue} without --yes")).into(),
                );
            }
            let queue = &topology.dead_queue;
            if unreadable {
                let done = drop_unreadable(&nodes, &topology)
                    .await
                    .map_err(exit_code)?;
                let n = done.dropped;
                return emit(
                    format!("{queue}: removed {n} unreadable dead letter(s)\n").as_bytes(),
                );
            }
            let purged = dead::purge(&nodes, &topology).await.map_err(exit_code)?;
            emit(format!("{queue}: purged {purged} dead letter(s)\n").as_bytes())
        }
    }
}

/// A broker out of reach exits 4 and a missing dead-letter queue 3, as docs/dead-letters.md says.
fn exit_code(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<DeadError>() {
        Some(DeadError::Unreachable(m)) => Failure::Unreachable(m.clone()).into(),
        Some(DeadError::NoQueue(_)) => Failure::NotFound(e.to_string()).into(),
        None => e,
    }
}

fn listing_text(listing: &Listing) -> String {
    let mut out = table::dead_letters(listing);
    let shown = listing.dead_letters.len() + listing.unreadable.len();
    out.push_str(&format!(
        "{}: {} dead letter(s), {shown} shown\n",
        listing.queue, listing.count
    ));
    let (unreadable, behind) = (&listing.unreadable, listing.behind_unreadable);
    out.push_str(&unreadable_text(unreadable, behind, "not shown"));
    out
}

fn replay_text(done: &Replayed, topology: &Topology) -> String {
    let mut out = format!(
        "replayed {} dead letter(s) to {}\n",
        done.replayed.len(),
        topology.queue
    );
    out.push_str(&unreadable_text(
        &done.unreadable,
        done.behind_unreadable,
        "skipped",
    ));
    out
}

fn unreadable_text(unreadable: &[dead::Unreadable], behind: u64, what: &str) -> String {
    let Some(first) = unreadable.first() else {
        return String::new();
    };
    format!(
        "{} unreadable dead letter(s) (the AMQP client cannot parse their properties, e.g. a \
         non-UTF-8 message_id), first at position {}: {what}; {behind} behind it cannot be \
         reached until it is removed (`ppctl dead purge --unreadable --yes`)\n",
        unreadable.len(),
        first.position
    )
}
