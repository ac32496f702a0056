//! `scripts/lint-sql.sh` (squawk under .squawk.toml, as `make test` runs it) passes
//! sql/ and a safe additive migration, and fails the unsafe ones a new migration could
//! bring: each would hold `works` while the application waits.

use super::helpers::*;
use super::upgrades::{ExtraMigrations, ADD_NOTE};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lint-sql.sh");

/// Exit code and output of the lint on `files` (none: sql/).
async fn lint(files: &[std::path::PathBuf]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(SCRIPT)
        .args(files)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run scripts/lint-sql.sh");
    let (stdout, stderr) = outputs(&out);
    (out.status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_lint_passes_sql_and_fails_unsafe_migrations() {
    let (code, said) = lint(&[]).await;
    assert_eq!(code, Some(0), "sql/ fails the lint: {said}");
    let unsafe_ones = [
        (
            "0100_index_without_concurrently.sql",
            "CREATE INDEX works_note ON works (status, id);\n",
            "require-concurrent-index-creation",
        ),
        (
            "0101_volatile_default.sql",
            "ALTER TABLE works ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();\n",
            "adding-field-with-default",
        ),
        (
            "0102_not_null_added_in_place.sql",
            "ALTER TABLE works ALTER COLUMN trace_parent SET NOT NULL;\n",
            "adding-not-nullable-field",
        ),
    ];
    let files: Vec<(&str, &str)> = unsafe_ones.iter().map(|(f, s, _)| (*f, *s)).collect();
    let dir = ExtraMigrations::new(&[&files[..], &[ADD_NOTE]].concat());
    for (file, _, rule) in unsafe_ones {
        let (code, said) = lint(&[dir.0.join(file)]).await;
        assert_eq!(code, Some(1), "{file} passed the lint: {said}");
        assert!(said.contains(rule), "{file}: {rule} not reported: {said}");
    }
    let (code, said) = lint(&[dir.0.join(ADD_NOTE.0)]).await;
    assert_eq!(code, Some(0), "a nullable column fails the lint: {said}");
    let concurrently = ExtraMigrations::new(&[(
        "0103_index_concurrently.sql",
        "-- compat: additive\n-- ppctl: no-transaction\n\
         CREATE INDEX CONCURRENTLY works_note ON works (status, id);\n",
    )]);
    let (code, said) = lint(&[concurrently.0.join("0103_index_concurrently.sql")]).await;
    assert_eq!(
        code,
        Some(0),
        "an index built concurrently fails the lint: {said}"
    );
}
