//! Polling the database through outages: a connection that reconnects on demand,
//! bounded waits, and the recovery-time measurement.

use anyhow::{bail, Context};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

/// Polls `check` every 50 ms until it returns Some, at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database connection that reconnects on demand, for polling through outages.
pub struct Db {
    url: String,
    client: Option<Client>,
}

impl Db {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.into(),
            client: None,
        }
    }

    async fn connect(&mut self) -> Option<&Client> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut config: tokio_postgres::Config = self.url.parse().ok()?;
            config.connect_timeout(Duration::from_secs(1));
            let (client, conn) =
                tokio::time::timeout(Duration::from_secs(2), config.connect(NoTls))
                    .await
                    .ok()?
                    .ok()?;
            tokio::spawn(conn);
            self.client = Some(client);
        }
        self.client.as_ref()
    }

    /// One integer from `sql`, or None while the database is unreachable.
    pub async fn int(&mut self, sql: &str) -> Option<i64> {
        let client = self.connect().await?;
        match tokio::time::timeout(Duration::from_secs(5), client.query_one(sql, &[])).await {
            Ok(Ok(row)) => row
                .try_get::<_, i64>(0)
                .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
                .ok(),
            _ => {
                self.client = None;
                None
            }
        }
    }

    /// Like `int`, but an error when the database does not answer within 30s.
    pub async fn must(&mut self, sql: &str) -> anyhow::Result<i64> {
        let start = Instant::now();
        loop {
            if let Some(v) = self.int(sql).await {
                return Ok(v);
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the database did not answer {sql}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn client(&mut self) -> anyhow::Result<&Client> {
        self.must("SELECT 1").await?;
        self.connect().await.context("database connection")
    }
}

impl Db {
    /// Polls `sql` until `pred` holds, at most `timeout`; returns the last value.
    pub async fn wait_until(
        &mut self,
        what: &str,
        sql: &str,
        pred: impl Fn(i64) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<i64> {
        let start = Instant::now();
        let mut last = None;
        loop {
            if let Some(v) = self.int(sql).await {
                if pred(v) {
                    return Ok(v);
                }
                last = Some(v);
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {what} (last value {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_done(
        &mut self,
        what: &str,
        pred: impl Fn(i64) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<i64> {
        self.wait_until(
            what,
            "SELECT count(*) FROM works WHERE status = 'done'",
            pred,
            timeout,
        )
        .await
    }
}

/// Waits until the done count exceeds `base`; returns seconds since `fault`.
pub async fn recovery(
    db: &mut Db,
    base: i64,
    fault: Instant,
    timeout: Duration,
) -> anyhow::Result<f64> {
    db.wait_done("progress to resume", |n| n > base, timeout)
        .await?;
    Ok(fault.elapsed().as_secs_f64())
}
