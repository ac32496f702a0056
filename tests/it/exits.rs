//! What docs/operations.md promises about exit codes and errors, for the cases clap cannot
//! see: a request that cannot be written (2), a server out of reach or answering 503
//! (4), an API that is not ppctl's, passwords in every connection-string form, and
//! `db wait` against a server that does not have the database yet.

use super::cli::{fails, ok, API_DOWN};
use super::helpers::*;
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_exits_2_for_a_bad_request_and_4_for_no_server() {
    let stderr = fails(
        &["raw-http", "GET", "health", "--addr", "127.0.0.1:1"],
        Some(2),
    )
    .await;
    assert!(stderr.contains("must start with /"), "{stderr}");
    let stderr = fails(
        &[
            "raw-http",
            "GET",
            "/health",
            "-H",
            "nocolon",
            "--addr",
            "127.0.0.1:1",
        ],
        Some(2),
    )
    .await;
    assert!(stderr.contains("nocolon"), "{stderr}");
    let stderr = fails(
        &["raw-http", "GET", "/health", "--addr", "127.0.0.1:1"],
        Some(4),
    )
    .await;
    assert!(stderr.contains("connection refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_whose_database_is_down_exits_4() {
    let pool =
        ppctl::storage::pool("postgres://postgres:postgres@127.0.0.1:1/nope", 2).expect("pool");
    let app = TestApp::spawn_with(pool, None).await;
    let api = app.url();
    for command in [["work", "get", "1"], ["work", "events", "1"]] {
        let stderr = fails(&[&command[..], &["--api-url", &api][..]].concat(), Some(4)).await;
        assert!(stderr.contains("503"), "{command:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    fails(&["work", "get", "1", "--api-url", API_DOWN], Some(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_is_not_the_api_is_an_error_not_an_empty_answer() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    // The right server, a wrong base path: every route answers "no route".
    let wrong = format!("{}/v1", app.url());
    let stderr = fails(&["work", "search", "--api-url", &wrong], Some(1)).await;
    assert!(stderr.contains("is --api-url a ppctl API?"), "{stderr}");
    // Not "work 1 not found" (exit 3): the API was never asked.
    let stderr = fails(&["work", "get", "1", "--api-url", &wrong], Some(1)).await;
    assert!(stderr.contains("404"), "{stderr}");
    let stderr = fails(&["work", "get", "1", "--api-url", "ftp://x"], Some(2)).await;
    assert!(stderr.contains("http:// or https://"), "{stderr}");
    ok(&["work", "search", "--api-url", &format!("{}/", app.url())]).await;
    // https is spoken (rustls): against this plain-HTTP API the handshake fails.
    let tls = app.url().replace("http://", "https://");
    let stderr = fails(&["work", "get", "1", "--api-url", &tls], Some(4)).await;
    assert!(stderr.contains("corrupt message"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_appear_in_any_connection_string_form() {
    for (url, code) in [
        ("postgres://postgres@127.0.0.1:1/x?password=hunter2", 4),
        ("postgresql://postgres:hunter2@127.0.0.1:1/x", 4),
        // Not a postgres:// URL: a setting error, exit 2.
        ("host=127.0.0.1 port=1 password=hunter2 dbname=x", 2),
        ("host=127.0.0.1 password='hunter2 2'", 2),
    ] {
        for command in [["db", "status"], ["db", "migrate"]] {
            let stderr = fails(
                &[&command[..], &["--database-url", url][..]].concat(),
                Some(code),
            )
            .await;
            assert!(!stderr.contains("hunter2"), "{command:?} {url}: {stderr}");
        }
        let stderr = fails(
            &["work", "get", "1", "--via", "db", "--database-url", url],
            None,
        )
        .await;
        assert!(!stderr.contains("hunter2"), "work get {url}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_wait_succeeds_on_a_server_without_the_database_so_setup_can_follow() {
    let url = format!("{PG_URL}/ppctl_absent_{}", random_suffix());
    let stdout = ok(&["db", "wait", "--timeout", "10s", "--database-url", &url]).await;
    assert!(stdout.contains("does not exist yet"), "{stdout}");
    assert!(stdout.contains("ppctl db setup"), "{stdout}");
}

/// The first log lines `serve` writes, run directly (stderr a pipe) or under `script`
/// (stderr a terminal).
async fn serve_log(db: &TestDb, terminal: bool, no_color: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_ppctl");
    let args = format!("serve --addr 127.0.0.1:0 --database-url {}", db.url);
    let mut command = if terminal {
        let mut c = tokio::process::Command::new("script");
        c.args(["-qfec", &format!("{bin} {args}"), "/dev/null"]);
        c
    } else {
        let mut c = tokio::process::Command::new(bin);
        c.args(args.split(' '));
        c
    };
    if no_color {
        command.env("NO_COLOR", "1");
    } else {
        command.env_remove("NO_COLOR");
    }
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .expect("run ppctl serve (under util-linux's script for a terminal)");
    // Under script the log comes out on stdout, the terminal's one stream.
    let stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if terminal {
        Box::new(child.stdout.take().expect("stdout"))
    } else {
        Box::new(child.stderr.take().expect("stderr"))
    };
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut log = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.contains("serving HTTP") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("serve logged within 20 s");
    let _ = child.kill().await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    let db = TestDb::new().await;
    let piped = serve_log(&db, false, false).await;
    assert!(
        piped.contains("serving HTTP") && !piped.contains('\x1b'),
        "{piped:?}"
    );
    let terminal = serve_log(&db, true, false).await;
    assert!(
        terminal.contains('\x1b'),
        "a terminal gets colour: {terminal:?}"
    );
    let no_color = serve_log(&db, true, true).await;
    assert!(
        no_color.contains("serving HTTP") && !no_color.contains('\x1b'),
        "{no_color:?}"
    );
}

/// `produce` stopped by SIGINT after its first confirms: its exit status and stderr.
async fn interrupted_produce(queue: &TestQueue, count: Option<&str>) -> (Option<i32>, String) {
    let mut args = vec![
        "produce",
        "--every",
        "200ms",
        "--queue",
        queue.name(),
        "--amqp-url",
        AMQP_URL,
    ];
    if let Some(count) = count {
        args.extend(["--count", count]);
    }
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(&args)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl produce");
    let (_conn, channel) = queue.channel().await;
    eventually(
        "the first demands confirmed",
        std::time::Duration::from_secs(20),
        || async { (queue.counts(&channel).await.0 >= 2).then_some(()) },
    )
    .await;
    let pid = child.id().expect("running").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops in time")
        .expect("status");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_count_exits_1_and_an_endless_producer_0() {
    // A queue each: demands already there would let the signal come before the
    // producer's handlers are in place.
    let (counted, endless) = (TestQueue::new(), TestQueue::new());
    let (code, stderr) = interrupted_produce(&counted, Some("100000")).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("of 100000 demands were confirmed"),
        "{stderr}"
    );
    let (code, stderr) = interrupted_produce(&endless, None).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("producer stopped"), "{stderr}");
}
