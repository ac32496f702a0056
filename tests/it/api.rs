//! The HTTP API: every route of the contract, its error cases, health, metrics and the
//! bearer token, through the project's own HTTP client.

use super::helpers::*;
use ppctl::rawhttp::{self, Request, Response};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const WORK_KEYS: [&str; 8] = [
    "add_up_to",
    "created_on",
    "done",
    "id",
    "result",
    "status",
    "updated_on",
    "work_code",
];

/// Sends a request with extra headers and returns the whole response (headers, raw).
async fn send(
    app: &TestApp,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut request = Request::new(method, target).expect("request");
    for (name, value) in headers {
        request.headers.push((name.to_string(), value.to_string()));
    }
    request.body = body.map(<[u8]>::to_vec);
    rawhttp::send(&app.addr.to_string(), &request)
        .await
        .unwrap_or_else(|e| panic!("{method} {target}: {e:#}"))
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&response.body)
        )
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A Work: exactly the contract's keys, an `api-` code, integer timestamps.
fn assert_api_work(work: &Value) {
    let object = work
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {work}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, WORK_KEYS, "{work}");
    let code = work["work_code"].as_str().expect("work_code is a string");
    let tail = code
        .strip_prefix("api-")
        .unwrap_or_else(|| panic!("{code}"));
    assert_eq!(tail.len(), 10, "{code}");
    assert!(tail.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
    for key in ["id", "add_up_to", "created_on", "updated_on"] {
        assert!(work[key].is_i64(), "{key} is not an integer: {work}");
    }
    assert!(work["done"].is_boolean(), "{work}");
}

fn assert_pending(work: &Value) {
    assert_api_work(work);
    assert_eq!(work["status"], "pending", "{work}");
    assert_eq!(work["done"], false, "{work}");
    assert_eq!(work["result"], Value::Null, "{work}");
}

/// A 4xx/5xx answer with the contract's `{"error": "..."}` body.
fn assert_error(what: &str, (status, body): &(u16, Value), expected: u16) {
    assert_eq!(*status, expected, "{what}: {body}");
    let message = body["error"].as_str();
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "{what}: no error message in {body}"
    );
}

async fn create(app: &TestApp, add_up_to: i64) -> Value {
    let body = json!({ "add_up_to": add_up_to }).to_string();
    let (status, work) = app.call("POST", "/works", Some(&body)).await;
    assert_eq!(status, 201, "{work}");
    work
}

async fn search(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.call("GET", &format!("/works?{query}"), None).await;
    assert_eq!(status, 200, "GET /works?{query}: {body}");
    body.as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"))
        .clone()
}

fn ids(works: &[Value]) -> Vec<i64> {
    works
        .iter()
        .map(|w| w["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_201_with_location_and_a_pending_work() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let response = send(&app, "POST", "/works", &[], Some(br#"{"add_up_to": 4}"#)).await;
    assert_eq!(response.status, 201);
    let work = json_of(&response);
    assert_pending(&work);
    assert_eq!(work["add_up_to"], 4);
    let id = work["id"].as_i64().expect("id");
    assert_eq!(
        response.header("location"),
        Some(format!("/works/{id}").as_str())
    );
    assert!(response
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let created = work["created_on"].as_i64().expect("created_on");
    assert!(
        (created - now()).abs() < 3600,
        "created_on {created} is not now"
    );
    // It is stored, not just echoed.
    assert_eq!(db.count("SELECT count(*) FROM works").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_without_add_up_to_picks_1_to_100() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for body in [None, Some(""), Some("{}"), Some("  \n")] {
        let (status, work) = app.call("POST", "/works", body).await;
        assert_eq!(status, 201, "{body:?}: {work}");
        assert_pending(&work);
        let n = work["add_up_to"].as_i64().expect("add_up_to");
        assert!((1..=100).contains(&n), "{body:?}: add_up_to {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_bad_bodies_with_400() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let bad = [
        "{",
        "not json",
        "null",
        r#"{"add_up_to": "4"}"#,
        r#"{"add_up_to": -1}"#,
        r#"{"add_up_to": 4294967296}"#,
        r#"{"add_up_to": 99999999999999999999999999}"#,
        r#"{"add_up_to": 2.5}"#,
        r#"{"add_up_to": true}"#,
        r#"{"add_up_to": 4, "extra": 1}"#,
        r#"{"add_upto": 4}"#,
        "[]",
    ];
    for body in bad {
        let answer = app.call("POST", "/works", Some(body)).await;
        assert_error(body, &answer, 400);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM works").await,
        0,
        "a bad body made a work"
    );
}

/// serde reads a struct from a JSON array too (`[4]` as `{"add_up_to": 4}`); the
/// contract's body is an object, so an array is a wrong type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_json_array_that_serde_would_read_as_the_struct() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for body in ["[4]", "[null]"] {
        let answer = app.call("POST", "/works", Some(body)).await;
        assert_error(body, &answer, 400);
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_accepts_both_ends_of_the_range() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for n in [0, 4_294_967_295i64] {
        let work = create(&app, n).await;
        assert_pending(&work);
        assert_eq!(work["add_up_to"], n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_an_oversize_body_with_413() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let body = format!(r#"{{"add_up_to": 4, "pad": "{}"}}"#, "x".repeat(100 * 1024));
    let response = send(&app, "POST", "/works", &[], Some(body.as_bytes())).await;
    assert_error("100 KB body", &(response.status, json_of(&response)), 413);
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_returns_the_work_or_a_json_error() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let work = create(&app, 4).await;
    let id = work["id"].as_i64().expect("id");
    let (status, fetched) = app.call("GET", &format!("/works/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, work);
    assert_error(
        "unknown id",
        &app.call("GET", &format!("/works/{}", id + 1000), None)
            .await,
        404,
    );
    assert_error("abc", &app.call("GET", "/works/abc", None).await, 400);
    assert_error(
        "id beyond i64",
        &app.call("GET", "/works/99999999999999999999", None).await,
        400,
    );
    assert_error("1.5", &app.call("GET", "/works/1.5", None).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_api_work_has_one_created_event() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let work = create(&app, 4).await;
    let id = work["id"].as_i64().expect("id");
    let (status, events) = app.call("GET", &format!("/works/{id}/events"), None).await;
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().expect("array");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    let mut keys: Vec<&str> = event
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_on",
            "id",
            "value",
            "variable",
            "work_code",
            "work_id"
        ]
    );
    assert_eq!(event["variable"], "work/created");
    assert_eq!(event["work_id"], id);
    assert_eq!(event["work_code"], work["work_code"]);
    assert!(
        event["id"].is_i64() && event["created_on"].is_i64(),
        "{event}"
    );
    assert_error(
        "unknown id",
        &app.call("GET", &format!("/works/{}/events", id + 1000), None)
            .await,
        404,
    );
    assert_error(
        "abc",
        &app.call("GET", "/works/abc/events", None).await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_newest_first_and_filters_by_prefix_and_status() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mut created = Vec::new();
    for n in 1..=4 {
        created.push(create(&app, n).await);
    }
    let all = search(&app, "").await;
    let mut expected = ids(&created);
    expected.reverse();
    assert_eq!(ids(&all), expected, "newest first");
    assert_eq!(all[0], created[3], "search returns the same Work shape");

    // A prefix of one code: exactly the works whose code starts with it.
    let code = created[1]["work_code"].as_str().expect("code");
    for prefix in [&code[..6], code] {
        let found = search(&app, &format!("work_code={prefix}")).await;
        let mut matching: Vec<i64> = created
            .iter()
            .filter(|w| {
                w["work_code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(prefix))
            })
            .map(|w| w["id"].as_i64().expect("id"))
            .collect();
        matching.reverse();
        assert_eq!(ids(&found), matching, "prefix {prefix}");
    }
    assert_eq!(
        search(&app, "work_code=consumer-").await,
        Vec::<Value>::new()
    );

    // Finish one work behind the API's back: the status filter must tell them apart.
    let done_id = created[2]["id"].as_i64().expect("id");
    db.client()
        .await
        .execute(
            "UPDATE works SET status = 'done', result = 6 WHERE id = $1",
            &[&done_id],
        )
        .await
        .expect("update");
    let pending = search(&app, "status=pending").await;
    assert_eq!(pending.len(), 3);
    assert!(!ids(&pending).contains(&done_id));
    let done = search(&app, "status=done").await;
    assert_eq!(ids(&done), [done_id]);
    assert_eq!(
        (&done[0]["done"], &done[0]["result"]),
        (&json!(true), &json!(6))
    );
    assert_error(
        "status=weird",
        &app.call("GET", "/works?status=weird", None).await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_limit_is_checked_and_before_id_pages() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mut created = Vec::new();
    for n in 1..=5 {
        created.push(create(&app, n).await["id"].as_i64().expect("id"));
    }
    created.reverse(); // newest first, as the search answers
    for limit in ["0", "1001", "x", "-1", ""] {
        assert_error(
            &format!("limit={limit}"),
            &app.call("GET", &format!("/works?limit={limit}"), None)
                .await,
            400,
        );
    }
    assert_eq!(ids(&search(&app, "limit=1").await), created[..1]);
    assert_eq!(ids(&search(&app, "limit=1000").await), created);

    let mut pages = Vec::new();
    let mut query = "limit=2".to_string();
    loop {
        let page = ids(&search(&app, &query).await);
        let Some(last) = page.last().copied() else {
            break;
        };
        assert!(page.len() <= 2, "{page:?}");
        pages.extend(page);
        query = format!("limit=2&before_id={last}");
    }
    assert_eq!(pages, created, "pages overlap or miss works");
    assert_error(
        "before_id=x",
        &app.call("GET", "/works?before_id=x", None).await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_by_time() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let first = create(&app, 1).await;
    let second = create(&app, 2).await;
    let both = vec![second.clone(), first];
    let future = now() + 3600;
    let none = Vec::<Value>::new();
    assert_eq!(search(&app, "since=6h").await, both);
    assert_eq!(search(&app, &format!("since={}", now() - 3600)).await, both);
    assert_eq!(search(&app, &format!("since={future}")).await, none);
    assert_eq!(search(&app, "until=1h").await, none);
    assert_eq!(search(&app, &format!("until={future}")).await, both);
    let combined = format!("since=6h&until={future}&work_code=api-&limit=1");
    assert_eq!(search(&app, &combined).await, [second]);
}

/// A work's reported `created_on` must work as a search bound for that same work:
/// `since=<created_on>` includes it and `until=<created_on>` excludes it, whatever the
/// sub-second part of the stored time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_bounds_agree_with_reported_created_on() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let none = Vec::<Value>::new();
    for stored in ["1700000000.2", "1700000000.7"] {
        let id = create(&app, 1).await["id"].as_i64().expect("id");
        db.client()
            .await
            .execute(
                &format!("UPDATE works SET created_on = to_timestamp({stored}) WHERE id = $1"),
                &[&id],
            )
            .await
            .expect("update");
        let (_, work) = app.call("GET", &format!("/works/{id}"), None).await;
        let created = work["created_on"].as_i64().expect("created_on");
        let code = work["work_code"].as_str().expect("code");
        let since = search(&app, &format!("work_code={code}&since={created}")).await;
        assert_eq!(
            since,
            std::slice::from_ref(&work),
            "stored {stored}, reported {created}: since excludes it"
        );
        let until = search(&app, &format!("work_code={code}&until={created}")).await;
        assert_eq!(
            until, none,
            "stored {stored}, reported {created}: until includes it"
        );
        assert_eq!(
            created, 1_700_000_000,
            "Unix seconds truncate, as `date +%s` does"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_refuses_bad_parameters() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for query in [
        "since=yesterday",
        "until=soon",
        "since=6%20h%20",
        "until=1.5h",
        "foo=1",
        "work_code=api-&foo=1",
        "status=Done",
    ] {
        assert_error(
            query,
            &app.call("GET", &format!("/works?{query}"), None).await,
            400,
        );
    }
}

/// Unix times and durations beyond what PostgreSQL's timestamp can hold (years 1 to
/// 9999) are clamped to it, never an internal error: they mean "since the beginning" or
/// "until the end", and the document's pattern cannot say where the range ends. An empty
/// value is no bound, as an empty form field means.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_clamps_times_beyond_the_timestamp_range() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let work = create(&app, 4).await;
    for (query, found) in [
        ("since=99999999999999", false),
        ("since=99999999999999999999999", false),
        ("until=9223372036854775807", true),
        ("since=1000000years", true),
        ("since=99999999999999999999y", true),
        ("until=1000000years", false),
        ("since=&until=", true),
        ("since=0&until=", true),
    ] {
        for route in ["/works", "/work/search"] {
            let (status, works) = app.call("GET", &format!("{route}?{query}"), None).await;
            assert_eq!(status, 200, "{route}?{query}: {works}");
            let listed = works.as_array().is_some_and(|w| w.contains(&work));
            assert_eq!(listed, found, "{route}?{query}: {works}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_like_wildcards_literally() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for n in 1..=3 {
        create(&app, n).await;
    }
    assert_eq!(search(&app, "work_code=api-").await.len(), 3);
    // `%` and `_` are LIKE wildcards: unescaped, each of these would match every work.
    // The prefix is written into the SQL as a literal: quotes and backslashes (which
    // would end an `E''` literal early if either were not doubled) are matched as text.
    let quoted = [
        "api%27",
        "api%5C%27%3B%20DROP%20TABLE%20works%3B--",
        "%5C",
        "%27%27",
    ];
    for prefix in ["api%25", "api_", "a_i-", "%25", "_", "api%5C"]
        .iter()
        .chain(&quoted)
    {
        assert_eq!(
            search(&app, &format!("work_code={prefix}")).await,
            Vec::<Value>::new(),
            "work_code={prefix}"
        );
    }
    assert_eq!(
        search(&app, "work_code=api-").await.len(),
        3,
        "works intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_routes_keep_the_original_clients_working() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (status, work) = app.call("POST", "/work", Some(r#"{"add_up_to": 5}"#)).await;
    assert_eq!(status, 200, "legacy create answers 200, not 201: {work}");
    assert_pending(&work);
    assert_eq!(work["add_up_to"], 5);
    let id = work["id"].as_i64().expect("id");
    let legacy = send(&app, "GET", &format!("/work/{id}"), &[], None).await;
    let current = send(&app, "GET", &format!("/works/{id}"), &[], None).await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body, current.body, "the same JSON, byte for byte");
    assert_eq!(json_of(&legacy), work);

    let other = create(&app, 6).await;
    let code = work["work_code"].as_str().expect("code");
    let (status, found) = app
        .call("GET", &format!("/work/search?work_code={code}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(found, json!([work]), "a bare array of the matching works");
    let (_, all) = app.call("GET", "/work/search?work_code=api-", None).await;
    assert_eq!(all, json!([other, work]));
    assert_error(
        "legacy unknown id",
        &app.call("GET", &format!("/work/{}", id + 1000), None).await,
        404,
    );
    assert_error(
        "legacy bad body",
        &app.call("POST", "/work", Some(r#"{"add_up_to": -1}"#))
            .await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_connected_database() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (status, body) = app.call("GET", "/health", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "connected");
    assert!(
        body["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_503_not_a_500_or_a_hang() {
    let pool =
        ppctl::storage::pool("postgres://postgres:postgres@127.0.0.1:1/nope", 2).expect("pool");
    let app = TestApp::spawn_with(pool, None).await;
    let (status, body) = app.call("GET", "/health", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    for (method, target, body) in [
        ("GET", "/works/1", None),
        ("GET", "/works/1/events", None),
        ("GET", "/works?since=6h", None),
        ("POST", "/works", Some(r#"{"add_up_to": 4}"#)),
        ("GET", "/work/1", None),
    ] {
        let answer = app.call(method, target, body).await;
        assert_error(&format!("{method} {target}"), &answer, 503);
        let message = answer.1["error"].as_str().unwrap_or_default();
        assert!(
            !message.contains("postgres") && !message.contains("127.0.0.1"),
            "internals leaked: {message}"
        );
    }
    // Input is still checked first: a bad request is the client's fault, not an outage.
    assert_error("abc", &app.call("GET", "/works/abc", None).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let work = create(&app, 3).await;
    let id = work["id"].as_i64().expect("id");
    app.call("GET", &format!("/works/{id}"), None).await;
    let response = send(&app, "GET", "/metrics", &[], None).await;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let text = String::from_utf8(response.body).expect("UTF-8");
    assert!(
        text.contains("ppctl_http_request_duration_seconds_count"),
        "{text}"
    );
    assert!(text.contains("ppctl_works{status=\"pending\"} 1"), "{text}");
    // A status with no works is reported at 0, not left out.
    assert!(text.contains("ppctl_works{status=\"running\"} 0"), "{text}");
    assert!(text.contains("ppctl_nacked_total 0"), "{text}");
    // One registry: every series once, each with its HELP and TYPE.
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(typed.len() >= 15, "{text}");
    for name in &typed {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP:\n{text}"
        );
        let declared = format!("# TYPE {name} ");
        assert_eq!(text.matches(&declared).count(), 1, "{name} twice:\n{text}");
    }
    // Series are labelled by route pattern, so ids cannot grow the label set.
    assert!(text.contains("route=\"/works/{id}\""), "{text}");
    assert!(!text.contains(&format!("route=\"/works/{id}\"")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    assert_error("/nope", &app.call("GET", "/nope", None).await, 404);
    assert_error(
        "/works/1/x",
        &app.call("GET", "/works/1/x", None).await,
        404,
    );
    for (method, target) in [
        ("DELETE", "/works/1"),
        ("PUT", "/works"),
        ("PATCH", "/health"),
    ] {
        let (status, body) = app.call(method, target, None).await;
        assert!(
            (400..500).contains(&status),
            "{method} {target}: {status} {body}"
        );
        assert!(body["error"].is_string(), "{method} {target}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_guards_the_post_routes_only() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(db.pool.clone(), Some("s3cret".into())).await;
    let body = Some(&br#"{"add_up_to": 4}"#[..]);
    for (target, auth) in [
        ("/works", None),
        ("/works", Some("Bearer wrong")),
        ("/works", Some("Bearer s3cre")),
        ("/works", Some("Bearer s3cret2")),
        ("/works", Some("s3cret")),
        ("/work", None),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let response = send(&app, "POST", target, &headers, body).await;
        assert_error(
            &format!("POST {target} with {auth:?}"),
            &(response.status, json_of(&response)),
            401,
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
    let authorized = [("Authorization", "Bearer s3cret")];
    let response = send(&app, "POST", "/works", &authorized, body).await;
    assert_eq!(response.status, 201);
    let work = json_of(&response);
    let response = send(&app, "POST", "/work", &authorized, body).await;
    assert_eq!(response.status, 200);
    // Reads need no token.
    let id = work["id"].as_i64().expect("id");
    assert_eq!(
        app.call("GET", &format!("/works/{id}"), None).await,
        (200, work)
    );
    assert_eq!(search(&app, "").await.len(), 2);
    assert_eq!(app.call("GET", "/health", None).await.0, 200);
}
