//! Periodic schedules in PostgreSQL (migration 0012): add, list, remove, and the
//! inserter's step. One inserter at a time per schedule: the step locks the schedule's
//! row (`FOR UPDATE SKIP LOCKED`: another consumer holding it is doing the work), and
//! each slot's work is gated by the unique key (name, slot) of `schedule_runs`, so a
//! slot makes exactly one work whatever the number of consumers and restarts.

use super::DbError;
use crate::model::var;
use crate::schedule::{When, GRACE};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use std::time::{Duration, SystemTime};
use utoipa::ToSchema;

/// A schedule as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Schedule {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,39}$")]
    pub name: String,
    /// Seconds between slots (slots on multiples of it since the Unix epoch); or null.
    #[schema(required = true)]
    pub every_secs: Option<i64>,
    /// A cron expression, read in UTC; or null.
    #[schema(required = true)]
    pub cron: Option<String>,
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    pub add_up_to: i64,
    /// Unix seconds.
    pub created_on: i64,
    /// The last slot handled (Unix seconds), null before the first.
    #[schema(required = true)]
    pub last_slot: Option<i64>,
    /// The next slot (Unix seconds).
    #[schema(required = true)]
    pub next_slot: Option<i64>,
}

const COLUMNS: &str = "name, every_secs, cron, add_up_to, \
    floor(extract(epoch FROM created_on))::bigint, floor(extract(epoch FROM last_slot))::bigint";

fn from_row(row: &tokio_postgres::Row) -> Schedule {
    let (every_secs, cron): (Option<i64>, Option<String>) = (row.get(1), row.get(2));
    let last: Option<i64> = row.get(5);
    let created: i64 = row.get(4);
    let next_slot = when_of(every_secs, cron.as_deref()).and_then(|w| {
        let from = last.unwrap_or(created).max(unix(SystemTime::now()) - 1);
        w.next_after(SystemTime::UNIX_EPOCH + Duration::from_secs(from.max(0) as u64))
            .map(unix)
    });
    Schedule {
        name: row.get(0),
        every_secs,
        cron,
        add_up_to: row.get(3),
        created_on: created,
        last_slot: last,
        next_slot,
    }
}

fn when_of(every_secs: Option<i64>, cron: Option<&str>) -> Option<When> {
    match (every_secs, cron) {
        (Some(s), _) => Some(When::Every(Duration::from_secs(s.max(1) as u64))),
        (None, Some(c)) => Some(When::Cron(c.to_string())),
        _ => None,
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Adds a schedule; `None` when one by that name exists already.
pub async fn add(
    client: &impl GenericClient,
    name: &str,
    when: &When,
    add_up_to: i64,
) -> Result<Option<Schedule>, DbError> {
    let (every, cron) = match when {
        When::Every(d) => (Some(d.as_secs() as i64), None),
        When::Cron(c) => (None, Some(c.as_str())),
    };
    let sql = format!(
        "INSERT INTO schedules (name, every_secs, cron, add_up_to) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}"
    );
    let row = client
        .query_opt(&sql, &[&name, &every, &cron, &add_up_to])
        .await?;
    Ok(row.as_ref().map(from_row))
}

pub async fn list(client: &impl GenericClient) -> Result<Vec<Schedule>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY name");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Removes a schedule and its slot records: what it was, or `None` when there was
/// none. Works it made stay (they are ordinary works).
pub async fn remove(client: &impl GenericClient, name: &str) -> Result<Option<Schedule>, DbError> {
    let sql = format!(
        "WITH runs AS (DELETE FROM schedule_runs WHERE name = $1) \
         DELETE FROM schedules WHERE name = $1 RETURNING {COLUMNS}"
    );
    let row = client.query_opt(&sql, &[&name]).await?;
    Ok(row.as_ref().map(from_row))
}

/// What one inserter step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Works inserted, one per new slot.
    pub inserted: u64,
    /// Slots more than `GRACE` late, skipped (not backfilled).
    pub skipped: u64,
    /// Until the earliest next slot of the schedules seen.
    pub next_in: Option<Duration>,
}

/// Most slots one schedule inserts per step (a 1 s schedule after a minute's gap).
const MAX_SLOTS: usize = 120;

/// Most skipped slots counted per step.
const MAX_COUNTED: usize = 10_000;

/// One inserter step, in one transaction: each schedule this process can lock gets a
/// pending work for each of its slots due since its last one (up to `GRACE` late; older
/// ones are skipped), then its `last_slot` moves on. Times are the database's.
pub async fn tick(client: &mut deadpool_postgres::Client) -> Result<Tick, DbError> {
    let tx = client.transaction().await?;
    let now: SystemTime = tx.query_one("SELECT now()", &[]).await?.get(0);
    let rows = tx
        .query(
            "SELECT name, every_secs, cron, add_up_to, created_on, last_slot \
             FROM schedules ORDER BY name FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    let mut out = Tick::default();
    for row in &rows {
        let one = step_one(&tx, row, now).await?;
        out.inserted += one.inserted;
        out.skipped += one.skipped;
        out.next_in = match (out.next_in, one.next_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    tx.commit().await?;
    Ok(out)
}

/// One locked schedule's step: its due slots' works, then its `last_slot` moved on.
async fn step_one(
    tx: &impl GenericClient,
    row: &tokio_postgres::Row,
    now: SystemTime,
) -> Result<Tick, DbError> {
    let name: &str = row.get(0);
    let Some(when) = when_of(row.get(1), row.get(2)) else {
        return Ok(Tick::default());
    };
    let created: SystemTime = row.get(4);
    let last: SystemTime = row.get::<_, Option<SystemTime>>(5).unwrap_or(created);
    let from = last.max(now - GRACE);
    let mut out = Tick {
        // Counted for the log, up to a bound: a year of 1 s slots is not worth a loop.
        skipped: when.slots(last, from, MAX_COUNTED).len() as u64,
        ..Tick::default()
    };
    let slots = when.slots(from, now, MAX_SLOTS);
    for slot in &slots {
        out.inserted += insert_slot(tx, name, *slot, row.get(3)).await?;
    }
    let moved = slots.last().copied().unwrap_or(from).max(last);
    let sql = "UPDATE schedules SET last_slot = $2 WHERE name = $1";
    tx.execute(sql, &[&name, &moved]).await?;
    out.next_in = when
        .next_after(moved.max(now))
        .and_then(|t| t.duration_since(now).ok());
    Ok(out)
}

/// The slot's work, unless its (name, slot) is stored already: 1 if inserted.
async fn insert_slot(
    tx: &impl GenericClient,
    name: &str,
    slot: SystemTime,
    add_up_to: i64,
) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH run AS (INSERT INTO schedule_runs (name, slot) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING RETURNING name), \
        w AS (INSERT INTO works (work_code, add_up_to, first_event_id) \
              SELECT $3, $4, nextval('event_log_id_seq') FROM run RETURNING id), \
        ev AS (INSERT INTO event_log (work_id, variable, value) SELECT id, $5, $6 FROM w) \
        SELECT id FROM w";
    let code = crate::model::schedule_work_code(name);
    let value = format!("{name} {}", crate::run_at::rfc3339(slot));
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&name, &slot, &code, &add_up_to, &var::SLOT, &value];
    let Some(row) = tx.query_opt(SQL, &params).await? else {
        return Ok(0);
    };
    let id: i64 = row.get(0);
    tx.execute(
        "UPDATE schedule_runs SET work_id = $3 WHERE name = $1 AND slot = $2",
        &[&name, &slot, &id],
    )
    .await?;
    Ok(1)
}

/// Forgets slot records a day old: no step looks back past `GRACE`.
pub async fn prune_runs(client: &impl GenericClient) -> Result<u64, DbError> {
    let sql = "DELETE FROM schedule_runs WHERE slot < now() - interval '1 day'";
    Ok(client.execute(sql, &[]).await?)
}
