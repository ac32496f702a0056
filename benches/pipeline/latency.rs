//! End-to-end latency: from publish (or POST) to the work stored as done, at a steady
//! rate. The done time is the database's own `updated_on` of the finished work.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use ppctl::amqp::Topology;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
    /// Requests answered 503 (not in the samples).
    pub refused: usize,
    /// Works done per second, from the first send to the last done: below the rate
    /// sent, the pipeline could not keep up with it.
    pub done_per_s: f64,
}

pub fn percentiles(mut ms: Vec<f64>) -> Percentiles {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Percentiles {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        samples: ms.len(),
        refused: 0,
        done_per_s: f64::NAN,
    }
}

pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sends `rate` per second for `secs`, calling `send(i)` for each on its schedule;
/// returns `(what it gave, sent_at)` for every send.
async fn steady<F, Fut, T>(rate: u64, secs: u64, mut send: F) -> anyhow::Result<Vec<(T, f64)>>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let total = rate * secs;
    let mut sent = Vec::with_capacity(total as usize);
    let start = Instant::now();
    for i in 0..total {
        // Where message i belongs on the schedule.
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let at = unix_secs(SystemTime::now());
        sent.push((send(i).await?, at));
    }
    Ok(sent)
}

/// Waits until every key has a done work and returns the latencies. `unfinished`, when
/// given, counts the works still to do, cheaply: the keys are looked up only once it
/// finds none. (50,000 keys looked up five times a second took CPU from the backlog
/// being measured.)
async fn collect(
    database_url: &str,
    sql: &str,
    unfinished: Option<&str>,
    sent: &[(String, f64)],
) -> anyhow::Result<Percentiles> {
    let client = ppctl::storage::admin::connect(database_url).await?;
    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = match unfinished {
            Some(count) => client.query_one(count, &[]).await?.get(0),
            None => 0,
        };
        let rows = if left == 0 {
            client.query(sql, &[&keys]).await?
        } else {
            Vec::new()
        };
        if rows.len() == sent.len() {
            let done: std::collections::HashMap<String, f64> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let ms = sent
                .iter()
                .filter_map(|(k, at)| done.get(k).map(|d| (d - at) * 1000.0))
                .collect();
            let first = sent.iter().map(|(_, at)| *at).fold(f64::INFINITY, f64::min);
            let last = done.values().copied().fold(f64::NEG_INFINITY, f64::max);
            return Ok(Percentiles {
                done_per_s: sent.len() as f64 / (last - first),
                ..percentiles(ms)
            });
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {} works done after 60 s ({left} still to do)",
            rows.len(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publish -> done through the queue, at `rate`/s for `secs`, with a running consumer.
pub async fn queue_latency(
    amqp_url: &str,
    queue: &str,
    database_url: &str,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Percentiles> {
    let (_conn, channel) = ppctl::amqp::connect(amqp_url, "bench-latency").await?;
    Topology::new(queue).declare(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let channel = &channel;
    let sent = steady(rate, secs, |i| async move {
        let id = format!("lat-{i}");
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(id.as_str().into());
        // Confirms are awaited later by the broker's order; not awaiting keeps the pace.
        drop(
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    br#"{"add_up_to":10}"#,
                    props,
                )
                .await?,
        );
        Ok(id)
    })
    .await?;
    let sql = "SELECT message_id, extract(epoch FROM updated_on)::float8 FROM works \
               WHERE message_id = ANY($1) AND status = 'done'";
    collect(database_url, sql, None, &sent).await
}

/// POST /works -> done (swept through NOTIFY), at `rate`/s for `secs`. Each POST is a
/// task of its own on a keep-alive client, so the pace holds above one request's round
/// trip (a synchronous standby's commit takes longer than 1/5,000 s).
pub async fn api_latency(
    addr: &str,
    database_url: &str,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Percentiles> {
    // Idle connections are let go well before the server's keep-alive (5 s) ends them:
    // a POST sent on one the server is closing fails with "connection closed before
    // message completed" (it did, once, at 5,000/s).
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://{addr}/works");
    let posts = steady(rate, secs, |_| {
        let (client, url) = (client.clone(), url.clone());
        async move { Ok(tokio::spawn(post(client, url))) }
    })
    .await?;
    let mut sent = Vec::with_capacity(posts.len());
    let mut refused = 0;
    for (task, at) in posts {
        match task.await?? {
            Some(code) => sent.push((code, at)),
            None => refused += 1,
        }
    }
    let sql = "SELECT work_code, extract(epoch FROM updated_on)::float8 FROM works \
               WHERE work_code = ANY($1) AND status = 'done'";
    // The run's works are the only ones to do: the caller starts each run from none.
    let unfinished = "SELECT count(*) FROM works WHERE status IN ('pending', 'running')";
    let mut latency = collect(database_url, sql, Some(unfinished), &sent).await?;
    latency.refused = refused;
    Ok(latency)
}

/// One POST; the work's code, or None when the API answered 503 (past its bound: the
/// rate is more than the server takes, which the caller reports).
async fn post(client: reqwest::Client, url: String) -> anyhow::Result<Option<String>> {
    let response = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(r#"{"add_up_to": 10}"#)
        .send()
        .await?;
    let status = response.status();
    if status == 503 {
        return Ok(None);
    }
    anyhow::ensure!(status == 201, "POST /works answered {status}");
    let work: ppctl::model::Work = serde_json::from_slice(&response.bytes().await?)?;
    Ok(Some(work.work_code))
}
