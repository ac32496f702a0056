//! The machine's own limits for the work ppctl does, measured with the least code
//! possible: a bare confirmed publisher, an ack-only consumer, and COPY.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use ppctl::amqp::Topology;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Publishes `n` demand-sized persistent messages with confirms, 256 in flight, the
/// same window ppctl uses. Returns messages per second.
pub async fn bare_publish(url: &str, queue: &str, n: u64) -> anyhow::Result<f64> {
    let (_conn, channel) = ppctl::amqp::connect(url, "bench-bare-publisher").await?;
    Topology::new(queue).declare(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = br#"{"add_up_to":50,"done":false}"#;
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(256);
    for i in 0..n {
        if in_flight.len() == 256 {
            let confirm: lapin::PublisherConfirm = in_flight.pop_front().expect("non-empty");
            confirm.await?;
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(format!("bare-{i}").into());
        in_flight.push_back(
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await?,
        );
    }
    for confirm in in_flight {
        confirm.await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Drains `n` messages acknowledging in batches of 100 with one multiple-ack, doing
/// nothing else. Returns messages per second.
pub async fn ack_only_drain(url: &str, queue: &str, n: u64) -> anyhow::Result<f64> {
    let (_conn, channel) = ppctl::amqp::connect(url, "bench-ack-only").await?;
    channel.basic_qos(300, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let mut received = 0;
    while received < n {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await?;
        let delivery = next.ok_or_else(|| anyhow::anyhow!("consumer ended"))??;
        received += 1;
        if received % 100 == 0 || received == n {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// COPYs `n` finished works, as the consumer stores them (each with its block of four
/// event ids, its events read from the row), in one transaction. Returns works per
/// second.
pub async fn copy_works(database_url: &str, n: u64) -> anyhow::Result<f64> {
    let mut client = ppctl::storage::admin::connect(database_url).await?;
    let start = Instant::now();
    let tx = client.transaction().await?;
    // One block of event ids for the whole batch, as nextval per row would give.
    let first_event: i64 = tx
        .query_one(
            "SELECT setval('event_log_id_seq', nextval('event_log_id_seq') + 4 * $1::bigint)",
            &[&(n as i64)],
        )
        .await?
        .get(0);
    // Codes and message ids of their own, so the baseline can run more than once.
    let run = rand::random::<u32>();
    let mut works = String::with_capacity(n as usize * 100);
    for i in 0..n {
        let (code, add) = (format!("copy-{run:08x}-{i:010}"), (i % 100) as i64);
        let sum = add * (add + 1) / 2;
        let event = first_event - 4 * (n - i) as i64;
        works.push_str(&format!("{code}\t{add}\tdone\t{sum}\t{code}\t{event}\n"));
    }
    let sql =
        "COPY works (work_code, add_up_to, status, result, message_id, first_event_id) FROM STDIN";
    let sink = tx.copy_in(sql).await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(works)).await?;
    sink.as_mut().finish().await?;
    tx.commit().await?;
    let elapsed = start.elapsed();
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM events e JOIN works w ON w.id = e.work_id \
             WHERE w.work_code LIKE 'copy-%' AND e.work_code = w.work_code",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        stored == 4 * n as i64,
        "COPY baseline stored {stored} events, expected {}",
        4 * n
    );
    client
        .batch_execute("DELETE FROM works WHERE work_code LIKE 'copy-%'")
        .await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}
