//! Applying migrations: checked against what the database has first (a changed file,
//! or a breaking migration this binary lacks, stops everything), then each pending one
//! in a transaction of its own, so no table stays locked past its own migration.

use super::compat::{fit, Fit};
use super::lock::{self, LockPolicy, LockWaitExceeded};
use super::outside;
use super::{checksum, Compat, Migration, LOCK_KEY, LOCK_POLL};
use crate::backoff::Backoff;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, GenericClient};

/// `run_with` with the default lock policy and no one to name a blocker.
pub async fn run(client: &mut Client, migrations: &[Migration]) -> anyhow::Result<usize> {
    run_with(client, migrations, &LockPolicy::default(), None).await
}

/// Applies the pending migrations of `migrations`; returns how many were applied.
/// Several processes may call this at once: each transaction takes a transaction-level
/// advisory lock (no session state, so it works through a transaction-pooling
/// PgBouncer too), and a migration another process applied meanwhile is skipped.
/// `watch`, a second connection, names the sessions a migration waits behind.
pub async fn run_with(
    client: &mut Client,
    migrations: &[Migration],
    policy: &LockPolicy,
    watch: Option<&Client>,
) -> anyhow::Result<usize> {
    let applied = {
        let tx = loop {
            let tx = client.transaction().await?;
            if serialised(&tx).await? {
                break tx;
            }
            tx.rollback().await?;
            tokio::time::sleep(LOCK_POLL).await;
        };
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 checksum   TEXT NOT NULL,
                 applied_on TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let applied = recorded(&tx).await?;
        tx.commit().await?;
        applied
    };
    check_recorded(&applied, migrations)?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let mut count = 0;
    for m in migrations {
        if applied.iter().any(|(v, _, _)| *v == m.version) {
            continue;
        }
        if apply_with_retry(client, m, policy, watch, pid).await? {
            tracing::info!(migration = %m.label(), compat = %m.compat, "migration applied");
            count += 1;
        }
    }
    Ok(count)
}

/// How every migration transaction starts. Waiting behind another migrator is not
/// waiting behind the application: no bound on that, nor on a migration rewriting a
/// large table (the connection's own statement_timeout would cut it).
/// False when another migrator holds the lock: the caller rolls back and asks again
/// after `LOCK_POLL`. Not waited for in one statement, nor in one transaction: a
/// `CREATE INDEX CONCURRENTLY` of the migrator holding the lock waits for every
/// transaction that had a snapshot when it looked, which such a waiter would be (a
/// deadlock).
async fn serialised(tx: &tokio_postgres::Transaction<'_>) -> Result<bool, tokio_postgres::Error> {
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    let take = format!("SELECT pg_try_advisory_xact_lock({LOCK_KEY})");
    Ok(tx.query_one(&take, &[]).await?.get::<_, bool>(0))
}

/// `(version, checksum, additive)` of every applied migration.
async fn recorded(client: &impl GenericClient) -> anyhow::Result<Vec<(i32, String, Option<bool>)>> {
    let rows = client
        .query(
            "SELECT version, checksum, (to_jsonb(s) ->> 'additive')::boolean \
             FROM schema_migrations s ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// A changed applied migration, or a breaking one this binary lacks, is an error
/// before anything is applied; additive ones it lacks are said and left alone.
fn check_recorded(
    applied: &[(i32, String, Option<bool>)],
    migrations: &[Migration],
) -> anyhow::Result<()> {
    for m in migrations {
        if let Some((_, sum, _)) = applied.iter().find(|(v, _, _)| *v == m.version) {
            if *sum != checksum(m.sql) {
                bail!(
                    "migration {} was changed after it was applied (checksum {sum} in the database, {} in this binary); \
                     add a new migration instead of editing an applied one",
                    m.label(),
                    checksum(m.sql)
                );
            }
        }
    }
    let versions: Vec<(i32, Option<bool>)> = applied.iter().map(|(v, _, a)| (*v, *a)).collect();
    match fit(&versions, migrations) {
        Fit::AheadBreaking(v) => bail!(
            "the database has migration {v} which this binary does not know and which is not \
             declared additive: is it older than the schema? upgrade ppctl"
        ),
        Fit::AheadAdditive(ahead) => tracing::info!(
            ?ahead,
            "the database has additive migrations this ppctl does not know: it keeps working against them"
        ),
        Fit::Exact | Fit::Behind(_) => {}
    }
    Ok(())
}

/// One migration, retried while its locks are taken, within `policy.max_wait`; false
/// when another process applied it meanwhile.
async fn apply_with_retry(
    client: &mut Client,
    m: &Migration,
    policy: &LockPolicy,
    watch: Option<&Client>,
    pid: i32,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut leftovers = Vec::new();
    // Whom an earlier attempt waited behind: a last attempt shorter than the watcher's
    // first look (200 ms) sees no one, and the give-up line must still name them.
    let mut last_seen: Option<String> = None;
    loop {
        // The last attempt gets what is left of max_wait, so the total never passes it.
        let wait = policy
            .lock_timeout
            .min(policy.max_wait.saturating_sub(started.elapsed()));
        let attempt = async {
            match outside::is_outside(m) {
                true => outside::apply_one(client, m, wait, &mut leftovers).await,
                false => apply_one(client, m, wait).await,
            }
        };
        let (result, blocker) = lock::watched(attempt, watch, pid).await;
        let e = match result {
            Ok(applied) => return Ok(applied),
            Err(e) if lock::is_lock_timeout(&e) => e,
            Err(e) => return Err(e).with_context(|| format!("migration {} failed", m.label())),
        };
        last_seen = blocker.or(last_seen);
        let blocker = last_seen
            .clone()
            .unwrap_or_else(|| format!("{e}; the blocking session was not seen"));
        // An attempt shorter than this would only add noise.
        let shortest = policy.lock_timeout.min(Duration::from_millis(100));
        // The pause shrinks so that a last attempt still fits in max_wait: a full
        // backoff step that would not fit gave up over a second early (1.8 s of 3 s).
        let left = policy
            .max_wait
            .saturating_sub(started.elapsed())
            .saturating_sub(shortest);
        let pause = backoff.next_delay().min(left);
        if left.is_zero() {
            return Err(LockWaitExceeded {
                migration: m.label(),
                max_wait: policy.max_wait,
                lock_timeout: policy.lock_timeout,
                blocker,
            }
            .into());
        }
        tracing::warn!(
            migration = %m.label(), %blocker, lock_timeout = ?policy.lock_timeout, retry_in = ?pause,
            "migration: its locks were not free within lock_timeout; gave way to the queries queued behind it, retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

/// One attempt in one transaction: the SQL, then its record (with its declaration, once
/// 0009 has made a place for it). False when another process applied it meanwhile.
async fn apply_one(
    client: &mut Client,
    m: &Migration,
    lock_timeout: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let tx = loop {
        let tx = client.transaction().await?;
        if serialised(&tx).await? {
            break tx;
        }
        tx.rollback().await?;
        tokio::time::sleep(LOCK_POLL).await;
    };
    let ms = lock_timeout.as_millis().max(1);
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{ms}ms'"))
        .await?;
    let done = "SELECT EXISTS (SELECT FROM schema_migrations WHERE version = $1)";
    if tx.query_one(done, &[&m.version]).await?.get::<_, bool>(0) {
        return Ok(false);
    }
    tx.batch_execute(m.sql).await?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        &[&m.version, &m.name, &checksum(m.sql)],
    )
    .await?;
    let declared: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass \
             AND attname = 'additive' AND NOT attisdropped)",
            &[],
        )
        .await?
        .get(0);
    if declared {
        tx.execute(
            "UPDATE schema_migrations SET additive = $2 WHERE version = $1",
            &[&m.version, &(m.compat == Compat::Additive)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// An applied migration, as `ppctl db status` shows it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i32,
    pub name: String,
    /// Unix seconds.
    pub applied_on: i64,
    /// What it declared; None when applied before 0009.
    pub additive: Option<bool>,
}

/// Every applied migration, in order.
pub async fn applied(client: &Client) -> anyhow::Result<Vec<Applied>> {
    let rows = client
        .query(
            "SELECT version, name, floor(extract(epoch FROM applied_on))::bigint, \
                    (to_jsonb(s) ->> 'additive')::boolean \
             FROM schema_migrations s ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            applied_on: r.get(2),
            additive: r.get(3),
        })
        .collect())
}
