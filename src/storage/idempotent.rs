//! Creating a work at most once per request. Every API create carries a key: the
//! client's `Idempotency-Key`, stored in `idempotency_keys` in the same statement as
//! the work (migration 0010), or else the work code the server drew for the request,
//! which `works` holds uniquely already. A create that meets its key stored returns the
//! stored work instead of making a second one; the unique index decides between
//! concurrent requests with one key (the later waits for the earlier's commit, then
//! reads it).

use super::retry::Failed;
use super::works::{work_from_row, WORK_COLUMNS};
use super::DbError;
use crate::model::Work;
use deadpool_postgres::GenericClient;
use std::time::SystemTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// The work a request asks for.
#[derive(Debug, Clone)]
pub struct NewWork {
    pub work_code: String,
    pub add_up_to: i64,
    /// After this (on the database's clock: `PgPool::database_time`) nothing may be
    /// stored: the client was told 503.
    pub deadline: Option<SystemTime>,
    pub trace_parent: Option<String>,
    /// The client's `Idempotency-Key`, and the request's fingerprint (what it asked).
    pub key: Option<(String, String)>,
    /// Asked to run later: stored `scheduled` with a `work/scheduled` event.
    pub run_at: Option<SystemTime>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored by this statement.
    New(Work),
    /// Stored already under the request's key: by an earlier request with the same key
    /// and fingerprint, or by this request's own earlier attempt.
    Found(Work),
    /// The client's key is stored for a request that asked for something else.
    KeyReused,
}

/// Inserts the work and its key in one statement; when the key (or, on a second
/// attempt, the work code) is stored already, reads what it stored. A first attempt
/// never reads by work code: there a stored code is another request's.
pub async fn create(
    client: &impl GenericClient,
    new: &NewWork,
    again: bool,
) -> Result<Created, Failed> {
    let row = match insert(client, new).await {
        Ok(row) => row,
        Err(e) if duplicate(&e) => {
            return match (&new.key, again) {
                (Some((key, fingerprint)), _) => by_key(client, key, fingerprint).await,
                (None, true) => by_code(client, new).await,
                (None, false) => Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    match row {
        Some(row) => Ok(Created::New(work_from_row(&row)?)),
        None => Err(DbError::Unavailable(
            "the database ran the insert after its deadline; nothing was created".into(),
        )
        .into()),
    }
}

/// The work's row, or none when the database ran the statement past the deadline.
/// Without a client key the statement does not name `idempotency_keys`: a binary
/// rolled out before migration 0010 is applied still creates those works.
async fn insert(
    client: &impl GenericClient,
    new: &NewWork,
) -> Result<Option<Row>, tokio_postgres::Error> {
    if let Some(run_at) = new.run_at {
        return insert_scheduled(client, new, run_at).await;
    }
    let work = format!(
        "INSERT INTO works (work_code, add_up_to, first_event_id, trace_parent) \
         SELECT $1, $2, nextval('event_log_id_seq'), $4 \
         WHERE $3::timestamptz IS NULL OR clock_timestamp() < $3 \
         RETURNING {WORK_COLUMNS}"
    );
    let deadline = new.deadline;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&new.work_code, &new.add_up_to, &deadline, &new.trace_parent];
    let sql = match &new.key {
        None => work,
        Some((key, fingerprint)) => {
            params.push(key);
            params.push(fingerprint);
            format!(
                "WITH new AS ({work}), \
                 keyed AS (INSERT INTO idempotency_keys (key, fingerprint, work_id) \
                     SELECT $5, $6, id FROM new) \
                 SELECT * FROM new"
            )
        }
    };
    let stmt = client.prepare_cached(&sql).await?;
    client.query_opt(&stmt, &params).await
}

/// `insert` for a work asked for later: status `scheduled` and its `work/scheduled`
/// event (after `work/created`, which the row's first event id gives).
async fn insert_scheduled(
    client: &impl GenericClient,
    new: &NewWork,
    run_at: SystemTime,
) -> Result<Option<Row>, tokio_postgres::Error> {
    let (key, fingerprint) = match &new.key {
        Some((k, f)) => (Some(k.as_str()), Some(f.as_str())),
        None => (None, None),
    };
    let deadline = new.deadline;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &new.work_code,
        &new.add_up_to,
        &deadline,
        &new.trace_parent,
        &run_at,
        &crate::model::var::SCHEDULED,
        &key,
        &fingerprint,
    ];
    let sql = format!(
        "WITH new AS ( \
             INSERT INTO works (work_code, add_up_to, first_event_id, trace_parent, status, run_at) \
             SELECT $1, $2, nextval('event_log_id_seq'), $4, 'scheduled', $5 \
             WHERE $3::timestamptz IS NULL OR clock_timestamp() < $3 \
             RETURNING {WORK_COLUMNS}), \
         ev AS (INSERT INTO event_log (work_id, variable, value) \
             SELECT id, $6, to_char($5::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM new), \
         keyed AS (INSERT INTO idempotency_keys (key, fingerprint, work_id) \
             SELECT $7, $8, id FROM new WHERE $7::text IS NOT NULL) \
         SELECT * FROM new"
    );
    let stmt = client.prepare_cached(&sql).await?;
    client.query_opt(&stmt, &params).await
}

/// The work stored under the client's key: found when the request asked for the same
/// thing, refused when it asked for something else.
async fn by_key(
    client: &impl GenericClient,
    key: &str,
    fingerprint: &str,
) -> Result<Created, Failed> {
    let sql = format!(
        "SELECT {WORK_COLUMNS}, k.fingerprint FROM works, LATERAL \
             (SELECT fingerprint, work_id FROM idempotency_keys WHERE key = $1) k \
         WHERE works.id = k.work_id"
    );
    let stmt = client.prepare_cached(&sql).await?;
    match client.query_opt(&stmt, &[&key]).await? {
        Some(row) if row.get::<_, &str>(9) == fingerprint => {
            Ok(Created::Found(work_from_row(&row)?))
        }
        Some(_) => Ok(Created::KeyReused),
        // Its work was pruned in between, or another request's code was drawn.
        None => Err(DbError::Unavailable("the key's work just went; try again".into()).into()),
    }
}

/// The work this request's earlier attempt stored under its work code.
async fn by_code(client: &impl GenericClient, new: &NewWork) -> Result<Created, Failed> {
    let sql = format!("SELECT {WORK_COLUMNS} FROM works WHERE work_code = $1");
    let stmt = client.prepare_cached(&sql).await?;
    let row = client.query_opt(&stmt, &[&new.work_code]).await?;
    match row.as_ref().map(work_from_row).transpose()? {
        Some(work) if work.add_up_to == new.add_up_to => Ok(Created::Found(work)),
        _ => {
            Err(DbError::Other(format!("work code {} is another request's", new.work_code)).into())
        }
    }
}

/// Whether `e` is the unique index of a key refusing a second row: the client's key,
/// or the work code.
fn duplicate(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && matches!(
                db.constraint(),
                Some("idempotency_keys_pkey" | "works_work_code_unique")
            )
    })
}
