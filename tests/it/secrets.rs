//! Secrets stay out of what the processes print: a malformed `AMQP_URL` entry is
//! described, never echoed, by every command that reads it.

use super::cli::fails;
use super::helpers::*;

/// Nothing listens there: a command that got past the URL would fail on connecting.
const DB_DOWN: &str = "postgres://postgres:postgres@127.0.0.1:1/x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_amqp_url_is_never_echoed_with_its_password() {
    let commands: [&[&str]; 5] = [
        &["dead", "list"],
        &["produce", "--count", "1"],
        &["consume", "--database-url", DB_DOWN],
        &["serve", "--addr", "127.0.0.1:0", "--database-url", DB_DOWN],
        &["up", "--database-url", DB_DOWN],
    ];
    for url in [
        "guest:hunter2@127.0.0.1:5672",
        "amqp:/guest:hunter2@127.0.0.1:5672/%2f",
        "amqp://guest:hunter2@127.0.0.1:5672/%2f,guest:hunter2@127.0.0.1:5673",
        "amqp://guest:hun?ter2@127.0.0.1:notaport/%2f",
    ] {
        for command in commands {
            let args = [command, &["--amqp-url", url][..]].concat();
            let stderr = fails(&args, Some(2)).await;
            assert!(
                !stderr.contains("hunter2") && !stderr.contains("ter2"),
                "{command:?} with {url}: {stderr}"
            );
            assert!(stderr.contains("AMQP_URL"), "{command:?}: {stderr}");
        }
    }
}

#[test]
fn debug_output_never_shows_a_token_or_a_password() {
    let source = ppctl::http::dead::DeadLetterSource::new(
        "amqp://guest:hunter2@127.0.0.1:5672/%2f",
        ppctl::amqp::Topology::new("q"),
    )
    .expect("a valid URL");
    let config = ppctl::http::ServerConfig {
        api_token: Some("hunter2".into()),
        dead_letters: Some(source),
        ..Default::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("127.0.0.1"), "{shown}");
}

/// Dead letters hold message ids and bodies: with a token set, reading them needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_dead_letters_needs_the_token_when_one_is_set() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(db.pool.clone(), Some("s3cret".into())).await;
    let (status, body) = app.call("GET", "/dead-letters", None).await;
    assert_eq!(status, 401, "{body}");
    let mut request = ppctl::rawhttp::Request::new("GET", "/dead-letters").expect("request");
    let token = ("Authorization".to_string(), "Bearer s3cret".to_string());
    request.headers.push(token);
    let response = ppctl::rawhttp::send(&app.addr.to_string(), &request)
        .await
        .expect("response");
    // Past the token: this app has no broker to read them from.
    assert_eq!(response.status, 503);
}
