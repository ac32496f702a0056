//! Publish → done as the soak sees it: a few probe demands a second, published by the
//! harness beside `ppctl produce`'s load, each timed from its publish to its work's
//! `updated_on`. The probes are the only demands whose publish time is known.

use crate::latency::{percentiles, unix_secs};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Probes per second: enough for a p99 per 10 s interval, too few to matter as load.
pub const PER_SEC: u64 = 20;
/// A probe not done this long after its publish is counted late and no longer waited for.
const GIVE_UP_SECS: f64 = 60.0;

/// Probes sent and not yet seen done: (message_id, unix seconds at publish).
type Sent = Arc<Mutex<Vec<(String, f64)>>>;

pub struct Probes {
    sent: Sent,
    waiting: Vec<(String, f64)>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// One interval's publish → done figures.
pub struct Interval {
    pub p99_ms: Option<f64>,
    /// Probes given up on during this interval (not done within a minute).
    pub late: usize,
}

impl Probes {
    /// Publishes probes to `queue` until `until`.
    pub async fn start(amqp_url: &str, queue: &str, until: Instant) -> anyhow::Result<Self> {
        let (conn, channel) = ppctl::amqp::connect(amqp_url, "soak-probes").await?;
        ppctl::amqp::Topology::new(queue).declare(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let sent = Sent::default();
        let (log, queue) = (sent.clone(), queue.to_string());
        let task = tokio::spawn(async move {
            // The connection lives as long as the task that publishes on it.
            let _conn = conn;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / PER_SEC));
            for i in 0u64.. {
                if tick.tick().await >= until.into() {
                    return Ok(());
                }
                let id = format!("soak-probe-{i}");
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(id.as_str().into());
                let at = unix_secs(SystemTime::now());
                // The confirm is not awaited: waiting on it would set the probes' pace.
                drop(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            br#"{"add_up_to":10}"#,
                            props,
                        )
                        .await?,
                );
                log.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push((id, at));
            }
            Ok(())
        });
        Ok(Self {
            sent,
            waiting: Vec::new(),
            task,
        })
    }

    /// The probes that became done since the last call, looked up in the database.
    pub async fn interval(&mut self, db: &tokio_postgres::Client) -> anyhow::Result<Interval> {
        if let Ok(mut sent) = self.sent.lock() {
            self.waiting.append(&mut sent);
        }
        let ids: Vec<&str> = self.waiting.iter().map(|(id, _)| id.as_str()).collect();
        let rows = db
            .query(
                "SELECT message_id, extract(epoch FROM updated_on)::float8 FROM works \
                 WHERE message_id = ANY($1) AND status = 'done'",
                &[&ids],
            )
            .await?;
        let done: std::collections::HashMap<String, f64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let now = unix_secs(SystemTime::now());
        let (mut ms, mut late) = (Vec::new(), 0);
        self.waiting.retain(|(id, at)| match done.get(id) {
            Some(d) => {
                ms.push((d - at) * 1000.0);
                false
            }
            None if now - at > GIVE_UP_SECS => {
                late += 1;
                false
            }
            None => true,
        });
        let p = percentiles(ms);
        Ok(Interval {
            p99_ms: (p.samples > 0).then_some(p.p99_ms),
            late,
        })
    }

    /// Stops publishing; an error the publisher met is reported here.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.task.abort();
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
