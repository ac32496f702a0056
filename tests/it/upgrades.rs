//! Upgrades without downtime, the migration half: a migration behind an open
//! transaction waits at most `lock_timeout` at a time and retries (queries on the table
//! are never held longer), gives up within `--max-wait` naming the blocker, and an
//! older binary keeps using a database ahead of it by additive migrations only.
//! `PP_TEST_EXTRA_MIGRATIONS` (debug builds) makes the `ppctl` binary a newer one.

use super::helpers::*;
use ppctl::storage::migrate::{self, Compat, Migration, MIGRATIONS};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A directory of test-only migrations, removed when dropped.
pub(super) struct ExtraMigrations(pub std::path::PathBuf);

impl ExtraMigrations {
    /// `files`: `(NNNN_name.sql, text)`; a first line `-- compat: additive` declares it.
    pub(super) fn new(files: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("ppctl-extra-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("extra migrations dir");
        for (name, sql) in files {
            std::fs::write(dir.join(name), sql).expect("write a migration");
        }
        Self(dir)
    }
}

impl Drop for ExtraMigrations {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The additive migration a newer ppctl would bring: a nullable column on `works`.
pub(super) const ADD_NOTE: (&str, &str) = (
    "0100_rolling_note.sql",
    "-- compat: additive\nALTER TABLE works ADD COLUMN rolling_note text;\n",
);

/// `ppctl db migrate` as the newer binary, logs on stderr.
pub(super) fn migrate_as_newer(db: &TestDb, extra: &ExtraMigrations, flags: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(["db", "migrate", "--database-url", &db.url])
        .args(flags)
        .env("PP_TEST_EXTRA_MIGRATIONS", &extra.0)
        .env("RUST_LOG", "info")
        .env_remove("PP_MIGRATE_LOCK_TIMEOUT")
        .env_remove("PP_MIGRATE_MAX_WAIT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl db migrate")
}

/// A transaction holding ACCESS SHARE on `works` (what any open reader holds), and the
/// pid of its session.
async fn open_reader(db: &TestDb) -> (tokio_postgres::Client, i32) {
    let client = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    client
        .batch_execute("BEGIN; LOCK TABLE works IN ACCESS SHARE MODE")
        .await
        .expect("lock");
    let pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    (client, pid)
}

async fn has_note_column(db: &TestDb) -> bool {
    db.count(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'works'::regclass \
         AND attname = 'rolling_note'",
    )
    .await
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_behind_an_open_transaction_gives_way_and_retries() {
    let db = TestDb::new().await;
    let extra = ExtraMigrations::new(&[ADD_NOTE]);
    let (reader, reader_pid) = open_reader(&db).await;
    let third = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    let lock_timeout = Duration::from_secs(1);
    let migrating = migrate_as_newer(&db, &extra, &["--lock-timeout", "1s"]);
    // Queries on `works` from a third session, for 5 s, while migrate tries.
    let (mut slowest, watched) = (Duration::ZERO, Instant::now());
    while watched.elapsed() < Duration::from_secs(5) {
        let started = Instant::now();
        third
            .query_one("SELECT count(*) FROM works", &[])
            .await
            .expect("a query on works");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("slowest query on works while migrate retried: {slowest:?}");
    assert!(
        slowest < lock_timeout + Duration::from_millis(700),
        "a query on works waited {slowest:?} behind the migration (lock_timeout {lock_timeout:?})"
    );
    assert!(!has_note_column(&db).await, "applied through a lock?");
    reader.batch_execute("COMMIT").await.expect("commit");
    let ended = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), migrating.wait_with_output())
        .await
        .expect("migrate finishes once the transaction ends")
        .expect("output");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    eprintln!(
        "migrate finished {:?} after the transaction ended",
        ended.elapsed()
    );
    assert!(
        ended.elapsed() < Duration::from_secs(8),
        "{:?}",
        ended.elapsed()
    );
    assert!(stdout.contains("1 migration(s) applied"), "{stdout}");
    let retries = stderr.matches("retrying").count();
    assert!(
        retries >= 2,
        "migrate said it retried {retries} times: {stderr}"
    );
    assert!(
        stderr.contains(&format!("blocked by pid {reader_pid} ")),
        "the blocker is not named: {stderr}"
    );
    assert!(has_note_column(&db).await);
    let declared = db
        .count("SELECT count(*) FROM schema_migrations WHERE version = 100 AND additive")
        .await;
    assert_eq!(declared, 1, "recorded as additive for older binaries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_never_gets_its_locks_gives_up_naming_the_blocker() {
    let db = TestDb::new().await;
    let extra = ExtraMigrations::new(&[ADD_NOTE]);
    let (_reader, reader_pid) = open_reader(&db).await;
    let started = Instant::now();
    let flags = ["--lock-timeout", "300ms", "--max-wait", "3s"];
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        migrate_as_newer(&db, &extra, &flags).wait_with_output(),
    )
    .await
    .expect("gives up")
    .expect("output");
    let took = started.elapsed();
    let (_, stderr) = outputs(&out);
    eprintln!("gave up after {took:?} (--max-wait 3s)");
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        took > Duration::from_millis(2500) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: migration 0100_rolling_note could not take its locks within 3s")
            && last.contains(&format!("pid {reader_pid} ")),
        "{stderr}"
    );
    assert!(!has_note_column(&db).await);
}

/// The additive migration as a newer binary records it, and the breaking one.
fn newer(compat: Compat) -> Vec<Migration> {
    let mut list = MIGRATIONS.to_vec();
    list.push(Migration {
        version: 100,
        name: "rolling_note",
        sql: "ALTER TABLE works ADD COLUMN rolling_note text",
        compat,
    });
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_binary_uses_a_database_ahead_of_it_by_additive_migrations_only() {
    for (compat, admitted) in [(Compat::Additive, true), (Compat::Breaking, false)] {
        let db = TestDb::new().await;
        let mut client = ppctl::storage::admin::connect(&db.url)
            .await
            .expect("connect");
        migrate::run(&mut client, &newer(compat))
            .await
            .expect("the newer binary migrates");
        // This test process is the older binary: MIGRATIONS only. A fresh pool makes
        // new connections, each checked.
        let pool = ppctl::storage::pool(&db.url, 2).expect("pool");
        let checked = pool.get().await;
        assert_eq!(checked.is_ok(), admitted, "{compat:?}: {:?}", checked.err());
        // And its `db migrate` finds nothing to do, or refuses.
        let rerun = migrate::run(&mut client, MIGRATIONS).await;
        assert_eq!(rerun.is_ok(), admitted, "{compat:?}: {rerun:?}");
        // `db status` of the older binary (the test binary has no extra migrations).
        let status = ppctl(&["db", "status", "--database-url", &db.url]).await;
        let (stdout, stderr) = outputs(&status);
        assert!(status.status.success(), "{stderr}");
        let (line, counted) = match compat {
            Compat::Additive => ("additive: this ppctl keeps working", "  works: 0"),
            Compat::Breaking => ("breaking: upgrade this ppctl", "works: not counted"),
        };
        assert!(
            stdout.contains("migration 0100_rolling_note: applied at"),
            "{stdout}"
        );
        assert!(
            stdout.contains(line) && stdout.contains(counted),
            "{stdout}"
        );
    }
}

/// Each migration is its own transaction now: migrators started together on an empty
/// database share the work, and each migration is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrators_started_together_on_an_empty_database_apply_each_migration_once() {
    let (db, _) = super::migrations::database_at(0).await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move {
                let mut client = ppctl::storage::admin::connect(&url).await.expect("connect");
                migrate::run(&mut client, MIGRATIONS)
                    .await
                    .expect("migrate")
            })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        applied += run.await.expect("join");
    }
    assert_eq!(applied, MIGRATIONS.len(), "applied in all");
    let recorded = db.count("SELECT count(*) FROM schema_migrations").await;
    assert_eq!(recorded, MIGRATIONS.len() as i64);
}

/// A `-- ppctl: no-transaction` migration: `CREATE INDEX CONCURRENTLY` behind an open
/// writer gives way and retries (dropping the invalid index a given-up build leaves),
/// while writes to `works` from other sessions are never held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_built_concurrently_retries_behind_a_writer_and_never_holds_writes() {
    let db = TestDb::new().await;
    let column = ExtraMigrations::new(&[ADD_NOTE]);
    let out = migrate_as_newer(&db, &column, &[]).wait_with_output().await;
    assert!(out.expect("migrate").status.success());
    let index = (
        "0101_note_index.sql",
        "-- compat: additive\n-- ppctl: no-transaction\n\
         CREATE INDEX CONCURRENTLY works_rolling_note ON works (rolling_note);\n",
    );
    let newer = ExtraMigrations::new(&[ADD_NOTE, index]);
    let writer = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    writer
        .batch_execute(
            "BEGIN; INSERT INTO works (work_code, add_up_to) VALUES ('api-writer00001', 1)",
        )
        .await
        .expect("an open writer");
    let migrating = migrate_as_newer(&db, &newer, &["--lock-timeout", "500ms"]);
    let other = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    let (mut slowest, started) = (Duration::ZERO, Instant::now());
    for i in 0.. {
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        let at = Instant::now();
        let insert =
            format!("INSERT INTO works (work_code, add_up_to) VALUES ('api-other{i:06}', 1)");
        other
            .batch_execute(&insert)
            .await
            .expect("a write to works");
        slowest = slowest.max(at.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("slowest write to works while the index was retried: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(400),
        "a write waited {slowest:?}"
    );
    writer.batch_execute("COMMIT").await.expect("commit");
    let out = tokio::time::timeout(Duration::from_secs(20), migrating.wait_with_output())
        .await
        .expect("migrate finishes once the writer commits")
        .expect("output");
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    let valid = "SELECT count(*) FROM pg_index WHERE indexrelid = 'works_rolling_note'::regclass AND indisvalid";
    assert_eq!(db.count(valid).await, 1, "{stderr}");
    let invalid = db
        .count("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
        .await;
    assert_eq!(invalid, 0, "a given-up build's index was left behind");
}
