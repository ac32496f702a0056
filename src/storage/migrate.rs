//! Schema migrations: `sql/NNNN_name.sql`, embedded in the binary, each applied in a
//! transaction of its own (or none: `outside`, for `CREATE INDEX CONCURRENTLY`) under
//! an advisory lock, with a short `lock_timeout` and retries (`lock`), and recorded
//! with a checksum and whether binaries built before it keep working against it
//! (`compat`: expand/contract, so upgrades can roll).

mod apply;
mod compat;
mod extra;
mod lock;
mod outside;
mod wait;

pub use apply::{applied, run, run_with};
pub use compat::{fit, mismatch, Fit, APPLIED_SQL};
pub use lock::{LockPolicy, LockWaitExceeded};
pub use wait::until_schema_fits;

/// The migrators' advisory lock, taken in and outside a transaction alike. Any fixed
/// key will do; it only has to be the same in every ppctl process.
const LOCK_KEY: i64 = 0x7070_6374_6c00_0001;

/// How often a migrator asks for the lock another one holds.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A migration as compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
    /// Whether a binary built before this migration keeps working once it is applied.
    pub compat: Compat,
}

/// What a migration promises the binaries that predate it, recorded in
/// `schema_migrations.additive` so that such a binary, which lacks the file, can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// Expand: new tables, nullable columns, indexes. Older binaries keep running, so the
    /// migration can be applied before the binaries are rolled.
    Additive,
    /// Contract: a dropped or renamed column, a changed meaning. Every binary built
    /// before it refuses the database until it is replaced.
    Breaking,
}

impl std::fmt::Display for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compat::Additive => "additive",
            Compat::Breaking => "breaking",
        })
    }
}

impl Migration {
    /// `0009_declared_compatibility`, as in the file's name.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// Every migration, in order. Add new files here; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../sql/0001_init.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 2,
        name: "expired_cancelled",
        sql: include_str!("../../sql/0002_expired_cancelled.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 3,
        name: "counts_and_search",
        sql: include_str!("../../sql/0003_counts_and_search.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 4,
        name: "queue_events_in_the_work",
        sql: include_str!("../../sql/0004_queue_events_in_the_work.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 5,
        name: "one_work_code_index",
        sql: include_str!("../../sql/0005_one_work_code_index.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 6,
        name: "terminal_counts",
        sql: include_str!("../../sql/0006_terminal_counts.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 7,
        name: "api_created_event_in_the_work",
        sql: include_str!("../../sql/0007_api_created_event_in_the_work.sql"),
        compat: Compat::Breaking,
    },
    Migration {
        version: 8,
        name: "trace_parent",
        sql: include_str!("../../sql/0008_trace_parent.sql"),
        compat: Compat::Additive,
    },
    Migration {
        version: 9,
        name: "declared_compatibility",
        sql: include_str!("../../sql/0009_declared_compatibility.sql"),
        compat: Compat::Additive,
    },
    // Additive: binaries that predate it keep working (they never read the table).
    Migration {
        version: 10,
        name: "idempotency_keys",
        sql: include_str!("../../sql/0010_idempotency_keys.sql"),
        compat: Compat::Additive,
    },
    // Additive: two new tables that older binaries never read.
    Migration {
        version: 11,
        name: "workers_and_pause",
        sql: include_str!("../../sql/0011_workers_and_pause.sql"),
        compat: Compat::Additive,
    },
    // Additive (0012, 0014, 0015): older binaries never write `scheduled` nor read
    // run_at or the schedule tables; the status CHECK only grows.
    Migration {
        version: 12,
        name: "scheduled_works",
        sql: include_str!("../../sql/0012_scheduled_works.sql"),
        compat: Compat::Additive,
    },
    // Additive: older binaries never read the outbox, and its triggers write under them.
    Migration {
        version: 13,
        name: "webhook_outbox",
        sql: include_str!("../../sql/0013_webhook_outbox.sql"),
        compat: Compat::Additive,
    },
    Migration {
        version: 14,
        name: "scheduled_status_valid",
        sql: include_str!("../../sql/0014_scheduled_status_valid.sql"),
        compat: Compat::Additive,
    },
    Migration {
        version: 15,
        name: "scheduled_run_at_index",
        sql: include_str!("../../sql/0015_scheduled_run_at_index.sql"),
        compat: Compat::Additive,
    },
    // Additive: older binaries read and retry `webhook_deliveries` as before and never
    // read the log; what they list misses the deliveries that succeeded at once.
    Migration {
        version: 16,
        name: "webhook_outbox_log",
        sql: include_str!("../../sql/0016_webhook_outbox_log.sql"),
        compat: Compat::Additive,
    },
];

/// Every migration this binary applies and checks against: `MIGRATIONS`, and in debug
/// builds the test-only ones of `PP_TEST_EXTRA_MIGRATIONS` (`extra`), which make this
/// binary stand in for a newer one.
pub fn all() -> &'static [Migration] {
    static ALL: std::sync::OnceLock<Vec<Migration>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| [MIGRATIONS, &extra::load()].concat())
}

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
}
