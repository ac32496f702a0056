//! Queries on works and events: create, fetch, search, and the consumer's batch insert.

use super::DbError;
use crate::model::{Event, Work, WorkStatus};
use crate::query::{like_prefix, WorkQuery};
use deadpool_postgres::GenericClient;
use std::time::SystemTime;
use tokio_postgres::Row;

/// The columns every Work query selects, in the order `work_from_row` reads them.
const WORK_COLUMNS: &str = "id, work_code, add_up_to, status, result, \
    floor(extract(epoch FROM created_on))::bigint, floor(extract(epoch FROM updated_on))::bigint";

fn work_from_row(row: &Row) -> Result<Work, DbError> {
    let status: String = row.get(3);
    let status: WorkStatus = status.parse().map_err(DbError::Other)?;
    Ok(Work {
        id: row.get(0),
        work_code: row.get(1),
        add_up_to: row.get(2),
        done: status == WorkStatus::Done,
        status,
        result: row.get(4),
        created_on: row.get(5),
        updated_on: row.get(6),
    })
}

fn works_from_rows(rows: &[Row]) -> Result<Vec<Work>, DbError> {
    rows.iter().map(work_from_row).collect()
}

/// Inserts a pending work and its `work/created` event in one statement; the insert
/// trigger's NOTIFY wakes the sweepers at commit.
pub async fn create_pending(
    client: &impl GenericClient,
    work_code: &str,
    add_up_to: i64,
) -> Result<Work, DbError> {
    let sql = format!(
        "WITH w AS (INSERT INTO works (work_code, add_up_to) VALUES ($1, $2) RETURNING *), \
         e AS (INSERT INTO events (work_id, work_code, variable, created_on) \
               SELECT id, work_code, 'work/created', created_on FROM w) \
         SELECT {WORK_COLUMNS} FROM w"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let row = client.query_one(&stmt, &[&work_code, &add_up_to]).await?;
    work_from_row(&row)
}

pub async fn get(client: &impl GenericClient, id: i64) -> Result<Option<Work>, DbError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {WORK_COLUMNS} FROM works WHERE id = $1"))
        .await?;
    let row = client.query_opt(&stmt, &[&id]).await?;
    row.as_ref().map(work_from_row).transpose()
}

/// Newest first. Every filter is a parameter; absent ones are NULL and drop out.
pub async fn search(client: &impl GenericClient, q: &WorkQuery) -> Result<Vec<Work>, DbError> {
    let sql = format!(
        "SELECT {WORK_COLUMNS} FROM works \
         WHERE ($1::text IS NULL OR work_code LIKE $1) \
           AND ($2::bigint IS NULL OR created_on >= to_timestamp($2)) \
           AND ($3::bigint IS NULL OR created_on < to_timestamp($3)) \
           AND ($4::text IS NULL OR status = $4) \
           AND ($5::bigint IS NULL OR id < $5) \
         ORDER BY id DESC LIMIT $6"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let prefix = q.work_code.as_deref().map(like_prefix);
    let status = q.status.map(WorkStatus::as_str);
    let rows = client
        .query(
            &stmt,
            &[&prefix, &q.since, &q.until, &status, &q.before_id, &q.limit],
        )
        .await?;
    works_from_rows(&rows)
}

/// A work's events oldest first, or None when the work does not exist.
pub async fn events(
    client: &impl GenericClient,
    work_id: i64,
) -> Result<Option<Vec<Event>>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT e.id, e.work_id, e.work_code, e.variable, e.value, floor(extract(epoch FROM e.created_on))::bigint \
             FROM works w LEFT JOIN events e ON e.work_id = w.id WHERE w.id = $1 ORDER BY e.id",
        )
        .await?;
    let rows = client.query(&stmt, &[&work_id]).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let events = rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(0).is_some())
        .map(|r| Event {
            id: r.get(0),
            work_id: r.get(1),
            work_code: r.get(2),
            variable: r.get(3),
            value: r.get(4),
            created_on: r.get(5),
        })
        .collect();
    Ok(Some(events))
}

/// Works counted by status, for `db status`, health and metrics.
pub async fn count_by_status(client: &impl GenericClient) -> Result<Vec<(String, i64)>, DbError> {
    let stmt = client
        .prepare_cached("SELECT status, count(*) FROM works GROUP BY status ORDER BY status")
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A queued demand, computed and ready to be stored as a finished work.
#[derive(Debug, Clone)]
pub struct Finished {
    pub message_id: String,
    pub work_code: String,
    pub add_up_to: i64,
    pub result: i64,
    pub started: SystemTime,
    pub stopped: SystemTime,
}

/// Stores a batch of finished works and their four events each in one statement.
/// A `message_id` already stored is skipped (a redelivery): the returned count is of
/// works actually inserted. `batch` must not repeat a message_id.
pub async fn insert_finished(
    client: &impl GenericClient,
    batch: &[Finished],
) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH input AS ( \
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::timestamptz[]) \
                AS t(message_id, work_code, add_up_to, result, started, stopped)), \
        ins AS ( \
            INSERT INTO works (message_id, work_code, add_up_to, status, result, created_on, updated_on) \
            SELECT message_id, work_code, add_up_to, 'done', result, started, now() FROM input \
            ON CONFLICT (message_id) DO NOTHING \
            RETURNING id, work_code, message_id) \
        INSERT INTO events (work_id, work_code, variable, value, created_on) \
        SELECT ins.id, ins.work_code, e.variable, e.value, e.at \
        FROM ins JOIN input i ON i.message_id = ins.message_id \
        CROSS JOIN LATERAL (VALUES \
            (1, 'work/created', NULL::text, i.started), \
            (2, 'compute/start', NULL, i.started), \
            (3, 'compute/stop', NULL, i.stopped), \
            (4, 'compute/result', i.result::text, i.stopped)) AS e(ord, variable, value, at) \
        ORDER BY ins.id, e.ord";
    let stmt = client.prepare_cached(SQL).await?;
    let ids: Vec<&str> = batch.iter().map(|f| f.message_id.as_str()).collect();
    let codes: Vec<&str> = batch.iter().map(|f| f.work_code.as_str()).collect();
    let ns: Vec<i64> = batch.iter().map(|f| f.add_up_to).collect();
    let results: Vec<i64> = batch.iter().map(|f| f.result).collect();
    let started: Vec<SystemTime> = batch.iter().map(|f| f.started).collect();
    let stopped: Vec<SystemTime> = batch.iter().map(|f| f.stopped).collect();
    let events = client
        .execute(&stmt, &[&ids, &codes, &ns, &results, &started, &stopped])
        .await?;
    Ok(events / 4)
}
