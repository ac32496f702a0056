//! GET /openapi.json (generated from the handlers) against the running app: every
//! documented operation exists, every route the app registers (`ppctl::http::ROUTES`)
//! is documented, every other method on a documented path is a 405 naming the
//! documented ones, and the document's references all resolve.

use super::helpers::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (METHOD, path template) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: unexpected key {method}"
            );
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

/// A path template made concrete: `{id}` becomes an id that exists.
fn target(template: &str, id: i64) -> String {
    template.replace("{id}", &id.to_string())
}

/// Whether the answer is the default service's: the app has no such route.
fn is_no_route(status: u16, body: &[u8]) -> bool {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    status == 404
        && json["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no route"))
}

/// Sends a request and reads only the status line: an event stream never ends.
async fn stream_status(app: &TestApp, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut head = vec![0; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut head))
        .await
        .expect("the stream answers at once")
        .expect("read");
    String::from_utf8_lossy(&head[..n]).into_owned()
}

async fn send(app: &TestApp, method: &str, path: &str) -> ppctl::rawhttp::Response {
    let mut request = ppctl::rawhttp::Request::new(method, path).expect("request");
    if method == "POST" {
        request.body = Some(b"{}".to_vec());
    }
    ppctl::rawhttp::send(&app.addr.to_string(), &request)
        .await
        .expect("response")
}

/// The methods an `Allow` header lists, upper case.
fn allowed(response: &ppctl::rawhttp::Response) -> BTreeSet<String> {
    let header = response.header("allow").unwrap_or_default();
    header
        .split(',')
        .map(|m| m.trim().to_uppercase())
        .filter(|m| !m.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let response = send(&app, "GET", "/openapi.json").await;
    assert_eq!(response.status, 200);
    let doc: Value = serde_json::from_slice(&response.body).expect("the document is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));

    let documented = operations(&doc);
    let registered: BTreeSet<(String, String)> = ppctl::http::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in /openapi.json: {undocumented:?}"
    );
    assert!(
        unregistered.is_empty(),
        "documented but not in http::ROUTES: {unregistered:?}"
    );

    // A real work, so `{id}` routes answer 200 rather than a 404 that might hide a typo.
    let created = send(&app, "POST", "/works").await;
    assert_eq!(created.status, 201);
    let id = serde_json::from_slice::<Value>(&created.body).expect("work")["id"]
        .as_i64()
        .expect("id");

    for (method, template) in &documented {
        let path = target(template, id);
        let op = &doc["paths"][template][method.to_lowercase()];
        if op["responses"]["200"]["content"]["text/event-stream"].is_object() {
            let head = stream_status(&app, &path).await.to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{method} {path}: {head}");
            assert!(head.contains("content-type: text/event-stream"), "{head}");
            continue;
        }
        let response = send(&app, method, &path).await;
        let status = response.status;
        assert!(
            !is_no_route(status, &response.body) && status != 405,
            "{method} {path} is documented but has no route ({status})"
        );
        let documented_status = op["responses"][status.to_string()].is_object();
        assert!(
            documented_status,
            "{method} {path} answered {status}, which is not documented"
        );
    }

    // The converse, for what a list cannot show: no other method answers on these paths.
    // It gets a 405 whose Allow header names the documented methods.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for template in paths {
        let methods: BTreeSet<String> = documented
            .iter()
            .filter(|(_, p)| p == template)
            .map(|(m, _)| m.clone())
            .collect();
        for method in METHODS.map(str::to_uppercase) {
            if methods.contains(&method) {
                continue;
            }
            let response = send(&app, &method, &target(template, id)).await;
            let status = response.status;
            assert_eq!(status, 405, "{method} {template} is not documented");
            assert_eq!(
                allowed(&response),
                methods,
                "{method} {template}: Allow header"
            );
        }
    }
}

/// Every `$ref` in the document points at something in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_in_the_document_resolves() {
    let doc: Value = serde_json::from_str(&ppctl::http::openapi::render(true)).expect("JSON");
    fn walk(doc: &Value, node: &Value, refs: &mut usize) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("local reference");
                    assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
                    *refs += 1;
                }
                map.values().for_each(|v| walk(doc, v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, refs)),
            _ => {}
        }
    }
    let mut refs = 0;
    walk(&doc, &doc, &mut refs);
    assert!(
        refs > 10,
        "only {refs} references: is the document complete?"
    );
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            assert!(
                op["responses"].is_object(),
                "{method} {template}: no responses"
            );
            let has_id = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "id" && p["in"] == "path"));
            assert_eq!(
                template.contains("{id}"),
                has_id,
                "{method} {template}: path parameter"
            );
        }
    }
}
