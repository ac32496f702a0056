//! The workers registry: each `consume` upserts its row at every heartbeat; readers
//! derive whether it is gone (no beat for `GONE_AFTER`, or stopped) and list the API
//! works each one holds under a lease (`works.locked_by` is the registry id).

use super::DbError;
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often a worker beats.
pub const BEAT: Duration = Duration::from_secs(2);
/// A worker not heard from for this long (five missed beats) is shown as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(10);
/// Rows of workers gone for this long are deleted.
pub const PRUNE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The most leased works listed, all workers together.
const MAX_HELD: i64 = 1000;

/// What a worker says about itself at each beat.
#[derive(Debug, Clone)]
pub struct Beat<'a> {
    pub id: &'a str,
    pub host: &'a str,
    pub pid: u32,
    pub queue: &'a str,
    pub prefetch: u16,
    pub works_stored: u64,
    pub in_flight: u64,
    /// `running`, `paused`, `stopping` or `stopped`.
    pub state: &'static str,
}

/// A registered worker as `GET /workers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Worker {
    /// The registry id; API works it leases name it in their lease.
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// `ppctl --version` of the worker.
    pub version: String,
    pub queue: String,
    pub prefetch: i64,
    /// Unix seconds.
    pub started_on: i64,
    /// Unix seconds of the last heartbeat.
    pub last_seen: i64,
    /// Works this worker stored or completed since it started.
    pub works_stored: i64,
    /// Queue deliveries in its hands at the last beat (the API works it holds are in
    /// `works`).
    pub in_flight: i64,
    /// `running`, `paused`, `stopping` as it last said; `stopped` after a graceful stop;
    /// `gone` when it missed its beats for 10 s (killed, or cut off).
    #[schema(pattern = "^(running|paused|stopping|stopped|gone)$")]
    pub state: String,
    /// True when stopped or gone: its row stays a day, then is pruned.
    pub gone: bool,
    /// The API works leased to it now (a gone worker's until their lease ends, when
    /// another worker claims them again).
    pub works: Vec<Held>,
}

/// An API work under a worker's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Held {
    pub id: i64,
    pub work_code: String,
    /// Unix seconds: when the lease ends and another worker may claim the work.
    pub locked_until: i64,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes the worker's row (first beat inserts it; a row pruned or never written
/// during an outage comes back at the next beat).
pub async fn beat(client: &impl GenericClient, b: &Beat<'_>) -> Result<(), DbError> {
    const SQL: &str = "\
        INSERT INTO workers (id, host, pid, version, queue, prefetch, works_stored, in_flight, state) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
        ON CONFLICT (id) DO UPDATE SET last_seen = now(), works_stored = EXCLUDED.works_stored, \
            in_flight = EXCLUDED.in_flight, state = EXCLUDED.state";
    let stmt = client.prepare_cached(SQL).await?;
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    client
        .execute(
            &stmt,
            &[
                &b.id,
                &b.host,
                &i64::from(b.pid),
                &crate::VERSION,
                &b.queue,
                &i64::from(b.prefetch),
                &count(b.works_stored),
                &count(b.in_flight),
                &b.state,
            ],
        )
        .await?;
    Ok(())
}

/// Deletes the rows of workers unseen for `PRUNE_AFTER`. Returns how many.
pub async fn prune(client: &impl GenericClient) -> Result<u64, DbError> {
    const SQL: &str = "DELETE FROM workers WHERE last_seen < now() - $1 * interval '1 millisecond'";
    Ok(client.execute(SQL, &[&millis(PRUNE_AFTER)]).await?)
}

/// Every registered worker, live ones first, then by start; each with its leases.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Worker>, DbError> {
    const SQL: &str = "\
        SELECT id, host, pid, version, queue, prefetch, \
               extract(epoch FROM started_on)::bigint, extract(epoch FROM last_seen)::bigint, \
               works_stored, in_flight, \
               CASE WHEN state = 'stopped' THEN 'stopped' \
                    WHEN last_seen < now() - $1 * interval '1 millisecond' THEN 'gone' \
                    ELSE state END AS shown \
        FROM workers ORDER BY (state = 'stopped' OR last_seen < now() - $1 * interval '1 millisecond'), started_on, id";
    let rows = client.query(SQL, &[&millis(GONE_AFTER)]).await?;
    let mut workers: Vec<Worker> = rows
        .iter()
        .map(|r| {
            let state: String = r.get(10);
            Worker {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                version: r.get(3),
                queue: r.get(4),
                prefetch: r.get(5),
                started_on: r.get(6),
                last_seen: r.get(7),
                works_stored: r.get(8),
                in_flight: r.get(9),
                gone: matches!(state.as_str(), "stopped" | "gone"),
                state,
                works: Vec::new(),
            }
        })
        .collect();
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    for (owner, held) in held_by(client, &ids).await? {
        if let Some(w) = workers.iter_mut().find(|w| w.id == owner) {
            w.works.push(held);
        }
    }
    Ok(workers)
}

/// The running API works leased to these workers (`works_not_done` covers the scan).
async fn held_by(
    client: &impl GenericClient,
    ids: &[&str],
) -> Result<Vec<(String, Held)>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    const SQL: &str = "\
        SELECT locked_by, id, work_code, extract(epoch FROM locked_until)::bigint FROM works \
        WHERE status = 'running' AND locked_by = ANY($1) AND locked_until IS NOT NULL \
        ORDER BY id LIMIT $2";
    let rows = client.query(SQL, &[&ids, &MAX_HELD]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let held = Held {
                id: r.get(1),
                work_code: r.get(2),
                locked_until: r.get(3),
            };
            (r.get(0), held)
        })
        .collect())
}

/// Live workers by shown state, for the `ppctl_workers` gauge.
pub fn count_by_state(workers: &[Worker]) -> Vec<(&'static str, i64)> {
    ["running", "paused", "stopping", "stopped", "gone"]
        .into_iter()
        .map(|s| (s, workers.iter().filter(|w| w.state == s).count() as i64))
        .collect()
}
