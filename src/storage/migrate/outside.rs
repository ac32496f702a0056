//! Migrations that cannot run in a transaction: `CREATE INDEX CONCURRENTLY` (which
//! never blocks the table's readers and writers, where a plain `CREATE INDEX` blocks
//! every write for the whole build). A file holding the line `-- ppctl: no-transaction`
//! is one such statement. It runs under the session's advisory lock (a transaction-
//! pooling PgBouncer cannot keep that: run `db migrate` against the server itself),
//! with the same `lock_timeout` and retries; a build given up leaves an invalid index
//! behind, which the next attempt drops before it builds again.

use super::{checksum, Compat, Migration};
use std::time::Duration;
use tokio_postgres::Client;

const MARKER: &str = "-- ppctl: no-transaction";

/// The migration must run outside a transaction.
pub fn is_outside(m: &Migration) -> bool {
    m.sql.lines().any(|line| line.trim() == MARKER)
}

/// One attempt; false when another process applied it meanwhile. `leftovers`: the
/// invalid indexes earlier attempts left, dropped first.
pub(super) async fn apply_one(
    client: &mut Client,
    m: &Migration,
    lock_timeout: Duration,
    leftovers: &mut Vec<String>,
) -> Result<bool, tokio_postgres::Error> {
    client.batch_execute("SET statement_timeout = 0").await?;
    // Polled, as `apply` does: a statement waiting for the lock would hold a snapshot
    // that this session's own CREATE INDEX CONCURRENTLY then waits for.
    let take = format!("SELECT pg_try_advisory_lock({})", super::LOCK_KEY);
    while !client.query_one(&take, &[]).await?.get::<_, bool>(0) {
        tokio::time::sleep(super::LOCK_POLL).await;
    }
    let ms = lock_timeout.as_millis().max(1);
    client
        .batch_execute(&format!("SET lock_timeout = '{ms}ms'"))
        .await?;
    let result = attempt(client, m, leftovers).await;
    let reset = client
        .batch_execute(&format!(
            "RESET lock_timeout; RESET statement_timeout; SELECT pg_advisory_unlock({})",
            super::LOCK_KEY
        ))
        .await;
    let applied = result?;
    reset?;
    Ok(applied)
}

async fn attempt(
    client: &mut Client,
    m: &Migration,
    leftovers: &mut Vec<String>,
) -> Result<bool, tokio_postgres::Error> {
    let done = "SELECT EXISTS (SELECT FROM schema_migrations WHERE version = $1)";
    if client
        .query_one(done, &[&m.version])
        .await?
        .get::<_, bool>(0)
    {
        return Ok(false);
    }
    // Another migrator's given-up build leaves its invalid index too.
    let invalid = invalid_indexes(client).await?;
    leftovers.extend(invalid.into_iter().filter(|i| created_by(m.sql, i)));
    leftovers.dedup();
    while let Some(index) = leftovers.last() {
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
        client.batch_execute(&drop).await?;
        leftovers.pop();
    }
    let before = invalid_indexes(client).await?;
    if let Err(e) = client.batch_execute(m.sql).await {
        let after = invalid_indexes(client).await?;
        leftovers.extend(after.into_iter().filter(|i| !before.contains(i)));
        return Err(e);
    }
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum, additive) VALUES ($1, $2, $3, $4)",
        &[
            &m.version,
            &m.name,
            &checksum(m.sql),
            &(m.compat == Compat::Additive),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether the migration's SQL builds the index `name` (`... INDEX CONCURRENTLY name`).
fn created_by(sql: &str, name: &str) -> bool {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0].eq_ignore_ascii_case("CONCURRENTLY") && w[1] == name)
}

/// Every invalid index, by its quoted, schema-qualified name where needed.
async fn invalid_indexes(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
