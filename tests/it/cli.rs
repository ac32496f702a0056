//! The real `ppctl` binary: `work` through the API and the database, exit codes,
//! error messages, `db`, and `--help`.

use super::helpers::*;
use ppctl::storage::{admin, migrate};
use serde_json::Value;
use std::process::Output;

pub const DB_DOWN: &str = "postgres://postgres:postgres@127.0.0.1:1/x";
pub const API_DOWN: &str = "http://127.0.0.1:1";

/// Runs `ppctl` and insists on success; returns stdout.
pub async fn ok(args: &[&str]) -> String {
    let output = ppctl(args).await;
    let (stdout, stderr) = outputs(&output);
    assert!(
        output.status.success(),
        "ppctl {args:?} failed ({}): {stderr}",
        output.status
    );
    stdout
}

/// Runs `ppctl --json` and parses what it prints.
async fn json(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = ok(&args).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("ppctl {args:?}: not JSON ({e}): {stdout}"))
}

/// Runs `ppctl`, insists on failure with `code` (any non-zero when None); returns stderr.
pub async fn fails(args: &[&str], code: Option<i32>) -> String {
    let output: Output = ppctl(args).await;
    let (stdout, stderr) = outputs(&output);
    match code {
        Some(code) => assert_eq!(
            output.status.code(),
            Some(code),
            "ppctl {args:?}: stdout {stdout:?}, stderr {stderr:?}"
        ),
        None => assert!(
            !output.status.success(),
            "ppctl {args:?} succeeded: {stdout}"
        ),
    }
    assert!(
        !stderr.trim().is_empty(),
        "ppctl {args:?}: nothing on stderr"
    );
    stderr
}

/// Drops a database created by the binary, even when the test fails.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let url = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(admin::drop_database(&url)).ok()
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_output_is_identical_via_http_and_db() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let api = app.url();
    let http = ["--api-url", api.as_str()];
    let direct = ["--via", "db", "--database-url", db.url.as_str()];

    let work = json(&[&["work", "create", "--add-up-to", "7"][..], &http[..]].concat()).await;
    assert_eq!(work["add_up_to"], 7);
    assert_eq!(work["status"], "pending");
    assert!(work["work_code"]
        .as_str()
        .is_some_and(|c| c.starts_with("api-")));
    let id = work["id"].as_i64().expect("id").to_string();
    let other = json(&[&["work", "create", "--add-up-to", "3"][..], &direct[..]].concat()).await;
    assert_eq!(other["add_up_to"], 3);
    assert_eq!(other["status"], "pending");

    for command in [
        vec!["work", "get", id.as_str()],
        vec!["work", "search", "--work-code", "api-"],
        vec!["work", "search", "--since", "6h", "--limit", "1"],
        vec!["work", "events", id.as_str()],
    ] {
        let via_http = json(&[&command[..], &http[..]].concat()).await;
        let via_db = json(&[&command[..], &direct[..]].concat()).await;
        assert_eq!(via_http, via_db, "{command:?}");
        match command[1] {
            "get" => assert_eq!(via_http, work),
            "search" if command.contains(&"--limit") => {
                assert_eq!(via_http, Value::Array(vec![other.clone()]))
            }
            "search" => assert_eq!(via_http, Value::Array(vec![other.clone(), work.clone()])),
            _ => {
                assert_eq!(via_http.as_array().map(Vec::len), Some(1), "{via_http}");
                assert_eq!(via_http[0]["variable"], "work/created");
                assert_eq!(via_http[0]["work_id"], work["id"]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_search_prints_a_table_for_people() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let api = app.url();
    let work = json(&["work", "create", "--api-url", &api]).await;
    let code = work["work_code"].as_str().expect("code");
    for via in [
        vec!["--api-url", api.as_str()],
        vec!["--via", "db", "--database-url", db.url.as_str()],
    ] {
        let table = ok(&[&["work", "search", "--since", "6h"][..], &via[..]].concat()).await;
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(
            lines[0].contains("WORK_CODE") && lines[0].contains("STATUS"),
            "{table}"
        );
        assert!(
            lines[1].contains(code) && lines[1].contains("pending"),
            "{table}"
        );
        assert!(
            serde_json::from_str::<Value>(&table).is_err(),
            "a table, not JSON"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_work_exits_3() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let api = app.url();
    for via in [
        vec!["--api-url", api.as_str()],
        vec!["--via", "db", "--database-url", db.url.as_str()],
    ] {
        for action in ["get", "events"] {
            let stderr = fails(
                &[&["work", action, "999999"][..], &via[..]].concat(),
                Some(3),
            )
            .await;
            assert!(stderr.contains("not found"), "{via:?}: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_exits_4_with_one_line() {
    for command in [
        vec!["work", "get", "1"],
        vec!["work", "create"],
        vec!["work", "search"],
    ] {
        let stderr = fails(
            &[&command[..], &["--api-url", API_DOWN][..]].concat(),
            Some(4),
        )
        .await;
        assert_eq!(stderr.trim().lines().count(), 1, "{command:?}: {stderr}");
        assert!(stderr.contains("127.0.0.1:1"), "{command:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_exits_4_without_the_password() {
    let stderr = fails(
        &["work", "get", "1", "--via", "db", "--database-url", DB_DOWN],
        Some(4),
    )
    .await;
    assert!(
        !stderr.contains("postgres:postgres@"),
        "password leaked: {stderr}"
    );
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    for command in [
        vec!["db", "status"],
        vec!["db", "migrate"],
        vec!["db", "wait", "--timeout", "1s"],
    ] {
        let stderr = fails(
            &[&command[..], &["--database-url", DB_DOWN][..]].concat(),
            Some(4),
        )
        .await;
        assert!(
            !stderr.contains("postgres:postgres@"),
            "{command:?}: password leaked: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let api = app.url();
    let via_http = fails(
        &["work", "search", "--limit", "0", "--api-url", &api],
        Some(2),
    )
    .await;
    let via_db = fails(
        &[
            "work",
            "search",
            "--limit",
            "0",
            "--via",
            "db",
            "--database-url",
            &db.url,
        ],
        Some(2),
    )
    .await;
    assert_eq!(via_http, via_db, "both backends refuse with the same words");
    assert!(via_http.contains("limit"), "{via_http}");
    let stderr = fails(
        &["work", "search", "--status", "weird", "--api-url", &api],
        Some(2),
    )
    .await;
    assert!(stderr.contains("weird"), "{stderr}");
    let stderr = fails(
        &["work", "search", "--since", "abc", "--api-url", &api],
        Some(2),
    )
    .await;
    assert!(stderr.contains("abc"), "{stderr}");
    let stderr = fails(&["work", "get", "abc"], Some(2)).await;
    assert!(stderr.contains("abc"), "{stderr}");
    let stderr = fails(&["produce", "--every", "soon"], Some(2)).await;
    assert!(stderr.contains("soon"), "{stderr}");
    fails(
        &[
            "work",
            "create",
            "--add-up-to",
            "4294967296",
            "--api-url",
            &api,
        ],
        Some(2),
    )
    .await;
    fails(&["work", "frobnicate"], Some(2)).await;
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_status_lists_migrations_and_counts() {
    let db = TestDb::new().await;
    ppctl::storage::works::create_pending(&db.client().await, "api-cliStatus01", 4, None, None)
        .await
        .expect("create");
    let status = ok(&["db", "status", "--database-url", &db.url]).await;
    assert!(status.contains("0001_init"), "{status}");
    assert!(status.contains("applied"), "{status}");
    assert!(status.contains("works: 1"), "{status}");
    assert!(
        !status.contains("postgres:postgres@"),
        "password printed: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_setup_twice_creates_then_finds_the_database() {
    let url = format!(
        "{PG_URL}/ppctl_cli_{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    );
    let _drop = DropDatabase(url.clone());
    let first = ok(&["db", "setup", "--database-url", &url]).await;
    let applied = migrate::MIGRATIONS.len();
    assert!(
        first.contains(&format!("created, {applied} migration(s) applied")),
        "{first}"
    );
    let second = ok(&["db", "setup", "--database-url", &url]).await;
    assert!(
        second.contains("exists, 0 migration(s) applied"),
        "{second}"
    );
    let status = ok(&["db", "status", "--database-url", &url]).await;
    assert!(status.contains("works: 0"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_reset_needs_yes() {
    let db = TestDb::new().await;
    ppctl::storage::works::create_pending(&db.client().await, "api-cliReset001", 4, None, None)
        .await
        .expect("create");
    let stderr = fails(&["db", "reset", "--database-url", &db.url], Some(2)).await;
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(
        db.count("SELECT count(*) FROM works").await,
        1,
        "the database was reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_wait_gives_up_after_its_timeout() {
    let stderr = fails(
        &["db", "wait", "--timeout", "1s", "--database-url", DB_DOWN],
        Some(4),
    )
    .await;
    assert!(stderr.contains("not reachable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_wait_returns_once_the_database_answers() {
    let db = TestDb::new().await;
    let stdout = ok(&["db", "wait", "--timeout", "5s", "--database-url", &db.url]).await;
    assert!(stdout.contains("reachable"), "{stdout}");
}

/// `dead` never declares a queue: `--queue-type` is not offered in its help, yet still
/// accepted (a shared PP_QUEUE_TYPE must not break it); the commands that declare
/// offer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_hides_the_queue_type_it_does_not_use() {
    for action in ["list", "replay", "purge"] {
        let help = ok(&["dead", action, "--help"]).await;
        assert!(!help.contains("--queue-type"), "dead {action}:\n{help}");
        assert!(help.contains("--queue "), "dead {action}:\n{help}");
    }
    for command in ["consume", "produce"] {
        let help = ok(&[command, "--help"]).await;
        assert!(help.contains("--queue-type"), "{command}:\n{help}");
    }
    let (_conn, _channel) = require_rabbitmq().await;
    let stderr = fails(
        &[
            "dead",
            "list",
            "--queue-type",
            "classic",
            "--queue",
            "pp_test_never_declared",
        ],
        Some(3),
    )
    .await;
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_subcommand() {
    let help = ok(&["--help"]).await;
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for expected in [
        "serve", "produce", "consume", "work", "raw-http", "db", "up",
    ] {
        assert!(
            commands.contains(&expected),
            "{expected} missing from {commands:?}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_work_until_it_is_done() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (_, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4}"#))
        .await;
    let id = work["id"].as_i64().expect("id");
    let url = app.url();
    let watch = {
        let id = id.to_string();
        tokio::spawn(async move {
            ppctl(&["work", "watch", &id, "--api-url", &url, "--timeout", "30s"]).await
        })
    };
    // Let the watcher see `pending` first, then finish the work as a sweeper would.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let client = db.client().await;
    client
        .execute(
            "UPDATE works SET status = 'done', result = 10 WHERE id = $1",
            &[&id],
        )
        .await
        .expect("finish");
    let output = watch.await.expect("join");
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with(": pending"), "{stdout}");
    assert!(lines[1].ends_with(": done, result 10"), "{stdout}");
    // A work that never finishes: the timeout is an error.
    let (_, other) = app.call("POST", "/works", None).await;
    let other = other["id"].as_i64().expect("id").to_string();
    let stderr = fails(
        &[
            "work",
            "watch",
            &other,
            "--api-url",
            &app.url(),
            "--timeout",
            "300ms",
        ],
        Some(1),
    )
    .await;
    assert!(stderr.contains("still pending"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_version_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&["completions", shell]).await;
        assert!(
            script.contains("raw-http") && script.contains("sweep-every"),
            "{shell}: {script}"
        );
    }
    fails(&["completions", "cmd.exe"], Some(2)).await;
    let version = ok(&["--version"]).await;
    assert!(
        version.starts_with(&format!("ppctl {} (git ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}
