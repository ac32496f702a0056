//! Schema migrations: `sql/NNNN_name.sql`, embedded in the binary, applied in order in
//! one transaction under an advisory lock, and recorded with a checksum.

use anyhow::{bail, Context};
use tokio_postgres::Client;

/// A migration as compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Add new files here; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../sql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "expired_cancelled",
        sql: include_str!("../../sql/0002_expired_cancelled.sql"),
    },
    Migration {
        version: 3,
        name: "counts_and_search",
        sql: include_str!("../../sql/0003_counts_and_search.sql"),
    },
    Migration {
        version: 4,
        name: "queue_events_in_the_work",
        sql: include_str!("../../sql/0004_queue_events_in_the_work.sql"),
    },
    Migration {
        version: 5,
        name: "one_work_code_index",
        sql: include_str!("../../sql/0005_one_work_code_index.sql"),
    },
    Migration {
        version: 6,
        name: "terminal_counts",
        sql: include_str!("../../sql/0006_terminal_counts.sql"),
    },
    Migration {
        version: 7,
        name: "api_created_event_in_the_work",
        sql: include_str!("../../sql/0007_api_created_event_in_the_work.sql"),
    },
    Migration {
        version: 8,
        name: "trace_parent",
        sql: include_str!("../../sql/0008_trace_parent.sql"),
    },
    // Additive: binaries that predate it keep working (they never read the table).
    Migration {
        version: 10,
        name: "idempotency_keys",
        sql: include_str!("../../sql/0010_idempotency_keys.sql"),
    },
];

/// Any fixed key will do; it only has to be the same in every ppctl process.
const LOCK_KEY: i64 = 0x7070_6374_6c00_0001;

/// FNV-1a, 64 bits: stable across builds and platforms, which is all a change detector
/// needs (this is not a security boundary).
pub fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Applies the pending migrations of `migrations`; returns how many were applied.
/// Several processes may call this at once: the advisory lock serialises them and the
/// later ones find nothing to do.
pub async fn run(client: &mut Client, migrations: &[Migration]) -> anyhow::Result<usize> {
    let tx = client
        .transaction()
        .await
        .context("cannot start the migration transaction")?;
    // A migration rewriting a large table may rightly run longer than the statement
    // timeout every connection carries; waiting on the lock behind another migrator too.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             checksum   TEXT NOT NULL,
             applied_on TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied = tx
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut count = 0;
    for m in migrations {
        let found = applied.iter().find(|row| row.get::<_, i32>(0) == m.version);
        match found {
            Some(row) if row.get::<_, String>(2) != checksum(m.sql) => bail!(
                "migration {:04}_{} was changed after it was applied (checksum {} in the database, {} in this binary); \
                 add a new migration instead of editing an applied one",
                m.version,
                m.name,
                row.get::<_, String>(2),
                checksum(m.sql)
            ),
            Some(_) => {}
            None => {
                tx.batch_execute(m.sql).await.with_context(|| format!("migration {:04}_{} failed", m.version, m.name))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&m.version, &m.name, &checksum(m.sql)],
                )
                .await?;
                count += 1;
            }
        }
    }
    let known: Vec<i32> = migrations.iter().map(|m| m.version).collect();
    if let Some(row) = applied
        .iter()
        .find(|row| !known.contains(&row.get::<_, i32>(0)))
    {
        bail!("the database has migration {} which this binary does not know: is it older than the schema?", row.get::<_, i32>(0));
    }
    tx.commit().await?;
    Ok(count)
}

/// `(version, name, applied_on as Unix seconds)` of every applied migration.
pub async fn applied(client: &Client) -> anyhow::Result<Vec<(i32, String, i64)>> {
    let rows = client
        .query(
            "SELECT version, name, floor(extract(epoch FROM applied_on))::bigint FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Why this binary must not write to a database with these migrations applied, if it
/// must not: a binary older than the schema would keep the running totals wrong, and
/// one newer than it would meet missing tables.
pub fn mismatch(applied: &[i32], known: &[Migration]) -> Option<String> {
    if let Some(v) = applied
        .iter()
        .find(|v| !known.iter().any(|m| m.version == **v))
    {
        return Some(format!("the database has migration {v:04}, which this ppctl does not know (it was built before it): upgrade ppctl"));
    }
    let pending: Vec<String> = known
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{:04}_{}", m.version, m.name))
        .collect();
    (!pending.is_empty()).then(|| {
        format!(
            "migrations not applied: {}; run `ppctl db setup` (or `ppctl db migrate`)",
            pending.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_checksums_differ() {
        // In order; a gap may wait for a migration merged from another branch.
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        assert_eq!(MIGRATIONS[0].version, 1);
        assert_eq!(checksum("a"), checksum("a"));
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum(""), "cbf29ce484222325");
    }

    #[test]
    fn a_schema_ahead_or_behind_the_binary_is_a_mismatch() {
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(mismatch(&all, MIGRATIONS), None);
        let behind = mismatch(&all[..all.len() - 1], MIGRATIONS).unwrap_or_default();
        assert!(behind.contains("ppctl db setup"), "{behind}");
        let ahead = mismatch(&[all.as_slice(), &[9999]].concat(), MIGRATIONS).unwrap_or_default();
        assert!(ahead.contains("upgrade ppctl"), "{ahead}");
    }
}
