//! A work queue that someone else declared, used as it is. The original project's
//! `amqp_setup.py` declares `pp_work_queue` as a plain durable classic queue; RabbitMQ
//! refuses to redeclare a queue with other arguments, and deleting it would lose what it
//! holds. So without `--queue-type`, ppctl consumes and publishes on such a queue as it
//! is, and says once what it lacks next to ppctl's own declaration, with the policy that
//! adds it without a redeclare. ppctl's own dead-lettering (a confirmed copy with the
//! reason, published to `<queue>.dlx`) does not depend on the queue's arguments.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

/// What an existing queue that ppctl did not declare was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Durable, with no arguments: a classic queue, as the original project declares it.
    Plain,
    /// Durable, with arguments ppctl cannot read over AMQP (another type, a limit, a TTL).
    Other,
}

/// What the work queue `queue` that refused ppctl's declaration is, found on a fresh
/// channel (the refused declare closed the last one), and that channel.
pub async fn find(connection: &Connection, queue: &str) -> anyhow::Result<(Channel, Existing)> {
    let channel = connection.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    // The original's own declaration: it succeeds only on a queue with no arguments.
    let plain = channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await;
    if plain.is_ok() {
        return Ok((channel, Existing::Plain));
    }
    // That declare closed its channel too.
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..durable
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    Ok((channel, Existing::Other))
}

/// One line: the queue is used as it is, what it lacks, and how to add it (`dlx`: the
/// dead-letter exchange ppctl publishes to; `limit`: its quorum delivery limit).
pub fn lacks(
    queue: &str,
    dlx: &str,
    limit: i64,
    found: Existing,
    refused: &anyhow::Error,
) -> String {
    let what = match found {
        Existing::Plain => "a classic queue with no arguments: it has no delivery limit (a \
                            message that crashes every consumer comes back forever) and no \
                            broker-side dead-lettering"
            .to_string(),
        Existing::Other => format!(
            "it has arguments other than ppctl's ({refused:#}): unless they include them, it \
             has no delivery limit and no broker-side dead-lettering"
        ),
    };
    let pattern = format!("^{}$", regex_escape(queue));
    let dead_lettering =
        format!("\"dead-letter-exchange\":\"{dlx}\",\"dead-letter-routing-key\":\"{queue}\"");
    // RabbitMQ 3.x does not apply a policy with delivery-limit to a classic queue at all.
    let definition = match found {
        Existing::Plain => format!("{{{dead_lettering}}}"),
        Existing::Other => {
            format!("{{{dead_lettering},\"delivery-limit\":{limit}}}")
        }
    };
    let other_type = match found {
        Existing::Plain => "",
        Existing::Other => {
            " (for a classic queue, leave delivery-limit out: a policy with it \
                            is not applied to classic queues)"
        }
    };
    format!(
        "using the existing queue {queue} as it is, {what}. ppctl still dead-letters what it \
         refuses, with the reason, through {dlx}. To add broker-side dead-lettering without \
         redeclaring the queue: rabbitmqctl set_policy ppctl-{queue} '{pattern}' \
         '{definition}' --apply-to queues{other_type}; for a replicated quorum queue with a \
         delivery limit, migrate: stop the producers, let the consumers drain it, delete it \
         (rabbitmqctl delete_queue {queue}), and start ppctl, which declares it"
    )
}

/// Escapes what a policy's regular expression would read as syntax.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_names_the_policy_and_never_the_other_queue_type() {
        let lacks = |found| {
            lacks(
                "pp_work_queue",
                "pp_work_queue.dlx",
                20,
                found,
                &anyhow::anyhow!("x"),
            )
        };
        let line = lacks(Existing::Plain);
        assert!(line.contains("no delivery limit"), "{line}");
        assert!(
            line.contains(r#"rabbitmqctl set_policy ppctl-pp_work_queue '^pp_work_queue$' '{"dead-letter-exchange":"pp_work_queue.dlx","dead-letter-routing-key":"pp_work_queue"}' --apply-to queues;"#),
            "{line}"
        );
        let other = lacks(Existing::Other);
        assert!(other.contains(r#""delivery-limit":20}'"#), "{other}");
        assert!(!line.contains("--queue-type"), "{line}");
        assert_eq!(regex_escape("a.b*c"), r"a\.b\*c");
    }
}
