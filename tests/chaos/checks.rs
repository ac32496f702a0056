//! What every scenario checks at the end, from the database and from the broker.

use crate::db::Db;
use crate::report::Row;
use anyhow::Context;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// What the database holds at the end of a scenario.
#[derive(Debug, Default)]
pub struct Stats {
    pub works: i64,
    pub queue_works: i64,
    pub distinct_ids: i64,
    pub api_works: i64,
    pub not_done: i64,
    pub wrong_sums: i64,
    pub reclaimed: i64,
    pub bad_queue_events: i64,
    pub bad_api_events: i64,
    pub multi_results: i64,
    pub bad_result_values: i64,
}

const WORK_STATS: &str = "SELECT count(*), \
    count(*) FILTER (WHERE message_id IS NOT NULL), \
    count(DISTINCT message_id), \
    count(*) FILTER (WHERE message_id IS NULL), \
    count(*) FILTER (WHERE status <> 'done' OR NOT done OR result IS NULL), \
    count(*) FILTER (WHERE status = 'done' AND result::numeric <> add_up_to::numeric * (add_up_to + 1) / 2), \
    count(*) FILTER (WHERE message_id IS NULL AND attempts > 1) \
    FROM works";

/// Queue works: exactly the four events in id order. Swept works: created, one
/// compute/start per claim (more than one only if re-claimed), stop, result.
const EVENT_STATS: &str = "WITH agg AS ( \
      SELECT w.id, w.message_id, w.attempts, \
        string_agg(e.variable, ',' ORDER BY e.id) AS seq, \
        count(e.id) FILTER (WHERE e.variable = 'compute/result') AS results, \
        count(e.id) FILTER (WHERE e.variable = 'compute/start') AS starts, \
        bool_and((e.variable <> 'compute/result' OR e.value = w.result::text) AND e.work_code = w.work_code) AS values_ok \
      FROM works w LEFT JOIN events e ON e.work_id = w.id GROUP BY w.id) \
    SELECT \
      count(*) FILTER (WHERE message_id IS NOT NULL AND seq IS DISTINCT FROM 'work/created,compute/start,compute/stop,compute/result'), \
      count(*) FILTER (WHERE message_id IS NULL AND (seq IS NULL \
          OR seq !~ '^work/created(,compute/start)+,compute/stop,compute/result$' OR starts <> attempts)), \
      count(*) FILTER (WHERE results > 1), \
      count(*) FILTER (WHERE NOT coalesce(values_ok, false)) \
    FROM agg";

pub async fn stats(db: &mut Db) -> anyhow::Result<Stats> {
    let client = db.client().await?;
    let w = client.query_one(WORK_STATS, &[]).await?;
    let e = client.query_one(EVENT_STATS, &[]).await?;
    Ok(Stats {
        works: w.get(0),
        queue_works: w.get(1),
        distinct_ids: w.get(2),
        api_works: w.get(3),
        not_done: w.get(4),
        wrong_sums: w.get(5),
        reclaimed: w.get(6),
        bad_queue_events: e.get(0),
        bad_api_events: e.get(1),
        multi_results: e.get(2),
        bad_result_values: e.get(3),
    })
}

/// Fills the row's stored/duplicates/lost from `s` and records every broken invariant.
/// `queue_confirmed`: confirmed good demands (each must have a work);
/// `queue_published`: distinct demands sent (no more works than that may exist);
/// `api_expected`: works created by the API.
pub fn judge(
    row: &mut Row,
    s: &Stats,
    queue_confirmed: u64,
    queue_published: u64,
    api_expected: u64,
) {
    let (qe, ae) = (queue_confirmed as i64, api_expected as i64);
    row.stored = s.works as u64;
    let extra_ids = (s.distinct_ids - queue_published as i64).max(0);
    row.duplicates = (s.queue_works - s.distinct_ids + s.multi_results + extra_ids) as u64;
    row.lost = ((qe - s.distinct_ids).max(0) + (ae - s.api_works).max(0)) as u64;
    let (lost, duplicates) = (row.lost, row.duplicates);
    row.check(lost == 0, || {
        format!(
            "LOSS: {lost} confirmed demands have no work ({} queue works for {qe} demands, {} API works for {ae})",
            s.distinct_ids, s.api_works
        )
    });
    row.check(duplicates == 0, || {
        format!(
            "DUPLICATES: {duplicates} (works sharing a message_id {}, works with several results {}, unexpected message ids {extra_ids})",
            s.queue_works - s.distinct_ids,
            s.multi_results
        )
    });
    row.check(s.api_works <= ae, || {
        format!("{} API works in the database, {ae} created", s.api_works)
    });
    row.check(s.not_done == 0, || format!("{} works not done", s.not_done));
    row.check(s.wrong_sums == 0, || {
        format!("{} works with a wrong sum", s.wrong_sums)
    });
    row.check(s.bad_queue_events == 0, || {
        format!(
            "{} queue works without exactly created,start,stop,result",
            s.bad_queue_events
        )
    });
    row.check(s.bad_api_events == 0, || {
        format!(
            "{} swept works with incomplete events or a start count != attempts",
            s.bad_api_events
        )
    });
    row.check(s.bad_result_values == 0, || {
        format!(
            "{} works whose result event disagrees with the work",
            s.bad_result_values
        )
    });
    if s.reclaimed > 0 {
        row.notes.push(format!("{} swept works were re-claimed after a lease expired (one compute/start per claim, one result)", s.reclaimed));
    }
}

/// (ready messages in the queue, ready messages in its dead-letter queue), by passive
/// declares on a fresh connection.
pub async fn queue_counts(amqp_url: &str, queue: &str) -> anyhow::Result<(u32, u32)> {
    // A comma-separated list: the first node that answers (a frozen one is skipped).
    let (conn, channel) = ppctl::amqp::connect(amqp_url, "chaos-check").await?;
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut counts = [0u32; 2];
    for (i, q) in [queue.to_string(), format!("{queue}.dead")]
        .iter()
        .enumerate()
    {
        counts[i] = channel
            .queue_declare(q.as_str().into(), passive, FieldTable::default())
            .await
            .with_context(|| format!("passive declare of {q}"))?
            .message_count();
    }
    let _ = conn.close(200, "bye".into()).await;
    Ok((counts[0], counts[1]))
}

/// Checks the broker's side at the end (consumers stopped): nothing left in the queue,
/// exactly `dead_expected` dead letters.
pub async fn judge_broker(row: &mut Row, amqp_url: &str, queue: &str, dead_expected: u64) {
    match queue_counts(amqp_url, queue).await {
        Ok((ready, dead)) => {
            row.dead_lettered = u64::from(dead);
            row.check(ready == 0, || format!("{ready} messages left in the queue"));
            row.check(u64::from(dead) == dead_expected, || {
                format!("{dead} dead letters, expected {dead_expected}")
            });
        }
        Err(e) => row.problem(format!("cannot read the queue counts: {e:#}")),
    }
}
