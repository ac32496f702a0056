//! Scenario 6: poison messages and duplicate publishes among good demands.

use super::*;
use crate::checks;
use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation};
use std::collections::{BTreeMap, BTreeSet};

/// Poison bodies (none can ever succeed); the bool says whether it gets a message_id.
fn poison_bodies() -> Vec<(Vec<u8>, bool)> {
    let mut bodies: Vec<(Vec<u8>, bool)> = [
        &b"not json"[..],
        b"",
        b"{",
        b"\xff\xfe\x00garbage",
        br#"{"add_up_to": "12"}"#,
        br#"{"add_up_to": true}"#,
        br#"{"add_up_to": null}"#,
        br#"{"add_up_to": [1]}"#,
        br#"{"add_up_to": {"n": 1}}"#,
        br#"{"add_up_to": 1.5}"#,
        br#"{"add_up_to": -1}"#,
        br#"{"add_up_to": -9223372036854775809}"#,
        br#"{"add_up_to": 4294967296}"#,
        br#"{"add_up_to": 18446744073709551616}"#,
        br#"{"add_up_to": 1e400}"#,
        br#"{"add_up_to": 999999999999999999999999999999999999999999}"#,
        br#"{"add_up_to": 1, "add_up_to": 2}"#,
        br#"{}"#,
        br#"[5]"#,
        br#"5"#,
        br#"{"add_up_to": 5"#,
    ]
    .iter()
    .map(|b| (b.to_vec(), true))
    .collect();
    // Good bodies without an idempotency key: poison only under --require-message-id,
    // which this scenario's consumer runs with (by default they are works: tests/it/original.rs).
    bodies.push((br#"{"add_up_to": 5}"#.to_vec(), false));
    bodies.push((br#"{"add_up_to": 6, "done": false}"#.to_vec(), false));
    // 1 MB bodies: junk, and JSON whose value is out of range.
    bodies.push((vec![b'x'; 1024 * 1024], true));
    let pad = "y".repeat(1024 * 1024);
    bodies.push((
        format!("{{\"add_up_to\": -1, \"pad\": \"{pad}\"}}").into_bytes(),
        true,
    ));
    bodies
}

/// Waits until the queue is drained and every message is accounted for, as a work or a
/// dead letter (so a poison message taken for a good one ends the wait too).
pub(super) async fn wait_accounted(row: &mut Row, env: &Env, db: &mut Db, expected: i64) {
    let start = Instant::now();
    loop {
        let works = db.int("SELECT count(*) FROM works").await.unwrap_or(0);
        let counts = checks::queue_counts(&env.amqp_url, &env.queue).await.ok();
        if let Some((0, dead)) = counts {
            if works + i64::from(dead) >= expected {
                return;
            }
        }
        if start.elapsed() > FINISH {
            row.problem(format!(
                "timed out: {works} works and queue counts (ready, dead) {counts:?}, expected {expected} works and dead letters in all"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scenario 6: Poison messages among good ones (and republished duplicates): every good demand
/// becomes one work with the right value, every poison message is dead-lettered.
pub(super) async fn poison_mix(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const GOOD: usize = 3000;
    const DUPLICATES: usize = 100;
    let env = setup(c, "s6", false).await?;
    let mut db = Db::new(&env.database_url);
    let mut consumer = Proc::spawn(&env, "consumer", &["consume", "--require-message-id"])?;
    let topology = ppctl::amqp::Topology::new(&env.queue);
    let (conn, channel) = ppctl::amqp::connect(&env.amqp_url, "chaos-publisher").await?;
    topology.declare(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    // What goes on the wire: (message id, body), good ones remembered with their value.
    let mut good: BTreeMap<String, i64> = BTreeMap::new();
    let mut messages: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    let mut poison = poison_bodies().into_iter().cycle();
    let poison_every = GOOD / 60;
    let mut poison_ids = BTreeSet::new();
    let mut poison_sent: BTreeMap<String, String> = BTreeMap::new();
    let mut poison_count = 0u64;
    for i in 0..GOOD {
        let id = format!("s6-good-{i:05}");
        let n = ((i as i64) * 7919) % 100_000;
        good.insert(id.clone(), n);
        messages.push((
            Some(id.clone()),
            format!("{{\"add_up_to\": {n}}}").into_bytes(),
        ));
        if i % (GOOD / DUPLICATES) == 7 {
            // The same demand again (a producer retry): one work only.
            messages.push((Some(id), format!("{{\"add_up_to\": {n}}}").into_bytes()));
        }
        if i % poison_every == 3 {
            let (body, with_id) = poison.next().context("poison")?;
            let id = with_id.then(|| format!("s6-poison-{poison_count:03}"));
            if let Some(id) = &id {
                poison_ids.insert(id.clone());
                let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
                poison_sent.insert(id.clone(), shown);
            }
            poison_count += 1;
            messages.push((id, body));
        }
    }
    // A valid demand with a 1 MB body (white space: an unknown field is refused since
    // the queue and the API share one parser) is still good.
    let pad = " ".repeat(1024 * 1024);
    good.insert("s6-good-big".into(), 77);
    messages.push((
        Some("s6-good-big".into()),
        format!("{{\"add_up_to\": 77{pad}}}").into_bytes(),
    ));
    row.published = messages.len() as u64;
    let mut confirms = Vec::with_capacity(messages.len());
    for (id, body) in &messages {
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        if let Some(id) = id {
            props = props.with_message_id(id.as_str().into());
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                env.queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        if matches!(confirm.await, Ok(Confirmation::Ack(_))) {
            row.confirmed += 1;
        }
    }
    let (confirmed, published) = (row.confirmed, row.published);
    row.check(confirmed == published, || {
        format!("only {confirmed} of {published} publishes confirmed")
    });
    let expected = (good.len() as u64 + poison_count) as i64;
    wait_accounted(row, &env, &mut db, expected).await;
    stop_all(row, &mut [&mut consumer]).await;
    note_dedup(row, &[&consumer]);
    // A poison message stored as a work is not a duplicate: it is caught below.
    let good_count = good.len() as u64;
    let ids_sent = good_count + poison_ids.len() as u64;
    finish(row, &env, &mut db, good_count, ids_sent, 0, poison_count).await;
    // Exactly the good ids, each with the value sent.
    let rows = db
        .client()
        .await?
        .query("SELECT message_id, add_up_to FROM works", &[])
        .await?;
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let missing = good.keys().filter(|id| !stored.contains_key(*id)).count();
    let wrong = good
        .iter()
        .filter(|(id, n)| stored.get(*id).is_some_and(|s| s != *n))
        .count();
    let strangers: Vec<(&String, Option<&String>)> = stored
        .keys()
        .filter(|id| !good.contains_key(*id))
        .map(|id| (id, poison_sent.get(id)))
        .collect();
    row.check(missing == 0, || {
        format!("{missing} good demands have no work")
    });
    row.check(wrong == 0, || {
        format!("{wrong} works have another add_up_to than their demand")
    });
    row.check(strangers.is_empty(), || {
        format!("works for poison messages (id, body): {strangers:?}")
    });
    // The dead-letter queue holds exactly the poison messages.
    let dead_queue = format!("{}.dead", env.queue);
    let (mut dead_ids, mut dead_without_id) = (BTreeSet::new(), 0u64);
    while let Some(msg) = channel
        .basic_get(dead_queue.as_str().into(), BasicGetOptions::default())
        .await?
    {
        match msg.delivery.properties.message_id() {
            Some(id) if !id.as_str().is_empty() => {
                dead_ids.insert(id.as_str().to_string());
            }
            _ => dead_without_id += 1,
        }
        msg.delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    row.check(dead_ids == poison_ids, || {
        let extra: Vec<_> = dead_ids.difference(&poison_ids).collect();
        let absent: Vec<_> = poison_ids.difference(&dead_ids).collect();
        format!("dead letters differ from the poison sent: extra {extra:?}, missing {absent:?}")
    });
    let without_id = poison_count - poison_ids.len() as u64;
    row.check(dead_without_id == without_id, || {
        format!("{dead_without_id} dead letters without id, expected {without_id}")
    });
    let logged = consumer
        .log_text()
        .lines()
        .filter(|l| l.contains("dead-letter"))
        .count();
    let big = messages
        .iter()
        .filter(|(_, b)| b.len() >= 1024 * 1024)
        .count();
    row.notes.push(format!(
        "{poison_count} poison messages and {DUPLICATES} duplicate publishes among {GOOD} good ones ({big} bodies of 1 MB); the consumer logged {logged} dead-letter lines"
    ));
    let _ = conn.close(200, "bye".into()).await;
    Ok(())
}
