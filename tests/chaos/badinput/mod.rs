//! Thousands of generated malformed HTTP requests, written by hand on TCP sockets to a
//! `ppctl serve` of its own: random methods, junk paths and ids, bad query values,
//! malformed and oversize bodies, bad and huge headers, truncated requests. The
//! generation is deterministic (a fixed seed), so a failure can be replayed.
//!
//! Rules: no 5xx ever (the database is up); a well-formed request always gets an
//! answer, and when that answer is a 4xx it has a JSON `{"error": ...}` body (the
//! app's, not the framework's plain text); afterwards GET /health still answers 200.
//! Requests broken at the HTTP level may be answered by actix itself, or not at all.

mod generate;
mod values;

use crate::infra::{free_ports, PrivatePostgres, RunDir};
use crate::procs::{run_ok, Env, Proc};
use generate::{case, generate, request, targeted};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SEED: u64 = 0x00c0_ffee_ba5e_2026;
const DEFAULT_CASES: usize = 4000;
const CONCURRENCY: usize = 16;
/// The whole run stops issuing requests after this, whatever is left.
const TIME_BUDGET: Duration = Duration::from_secs(150);
/// One exchange; actix times out an incomplete request after 5 s.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(9);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Well-formed HTTP that the app routes: must answer, 4xx with a JSON body.
    App,
    /// Broken at the HTTP level: actix may answer (plain 4xx) or close.
    Proto,
    /// Cut short: any answer, or none, but never a 5xx.
    Truncated,
}

#[derive(Debug, Clone)]
struct Case {
    label: &'static str,
    bytes: Vec<u8>,
    kind: Kind,
    /// HEAD: no body to check.
    head: bool,
    /// Shut down our write side after sending (the server sees EOF).
    half_close: bool,
    /// Oversize: the server may answer early and reset the connection.
    may_drop: bool,
    /// A body that can never make a work: a 2xx is a failure.
    must_reject: bool,
}

#[derive(Debug, Default)]
struct Answer {
    status: Option<u16>,
    content_type: Option<String>,
    body: Vec<u8>,
    error: Option<String>,
}

pub struct Report {
    pub text: String,
    pub failures: Vec<String>,
}

// ---------------------------------------------------------------- the exchange

/// Response metadata once the head is complete: (head length, status, framing).
struct Head {
    len: usize,
    status: u16,
    content_type: Option<String>,
    content_length: Option<usize>,
    chunked: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let get = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_string())
            };
            Ok(Some(Head {
                len,
                status: resp.code.unwrap_or(0),
                content_type: get("content-type"),
                content_length: get("content-length").and_then(|v| v.trim().parse().ok()),
                chunked: get("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked")),
            }))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!(
            "unparseable response ({e}): {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        )),
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The final (non-1xx) response in `buf`, once complete; `eof` says no more is coming.
fn complete(buf: &mut Vec<u8>, head_only: bool, eof: bool) -> Result<Option<Answer>, String> {
    loop {
        let Some(head) = parse_head(buf)? else {
            return Ok(None);
        };
        if (100..200).contains(&head.status) {
            buf.drain(..head.len);
            continue;
        }
        let rest = &buf[head.len..];
        let answer = |body: &[u8]| Answer {
            status: Some(head.status),
            content_type: head.content_type.clone(),
            body: body.to_vec(),
            error: None,
        };
        if head_only || head.status == 204 || head.status == 304 {
            return Ok(Some(answer(&[])));
        }
        if head.chunked {
            return Ok(dechunk(rest)
                .map(|b| answer(&b))
                .or_else(|| eof.then(|| answer(rest))));
        }
        if let Some(len) = head.content_length {
            return Ok((rest.len() >= len || eof).then(|| answer(&rest[..len.min(rest.len())])));
        }
        return Ok(eof.then(|| answer(rest)));
    }
}

async fn exchange(addr: &str, case: &Case) -> Answer {
    let run = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut write_error = None;
        if let Err(e) = stream.write_all(&case.bytes).await {
            write_error = Some(format!("write: {e}"));
        }
        if case.half_close {
            let _ = stream.shutdown().await;
        }
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let (n, eof) = match stream.read(&mut chunk).await {
                Ok(0) => (0, true),
                Ok(n) => (n, false),
                Err(e) => {
                    if let Some(a) = complete(&mut buf, case.head, true)? {
                        return Ok(a);
                    }
                    return Err(format!(
                        "read: {e}{}",
                        write_error
                            .as_deref()
                            .map(|w| format!(" after {w}"))
                            .unwrap_or_default()
                    ));
                }
            };
            buf.extend_from_slice(&chunk[..n]);
            if let Some(a) = complete(&mut buf, case.head, eof)? {
                return Ok(a);
            }
            if eof {
                return Err(if buf.is_empty() {
                    "closed without a response".to_string()
                } else {
                    format!(
                        "closed mid-response: {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(200)])
                    )
                });
            }
        }
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => Answer {
            error: Some(e),
            ..Answer::default()
        },
        Err(_) => Answer {
            error: Some(format!("no response within {EXCHANGE_TIMEOUT:?}")),
            ..Answer::default()
        },
    }
}

/// What is wrong with `answer` to `case`, if anything.
fn verdict(case: &Case, answer: &Answer) -> Option<String> {
    let Some(status) = answer.status else {
        if case.kind == Kind::App && !case.may_drop {
            return Some(format!(
                "no response to a well-formed request: {}",
                answer.error.as_deref().unwrap_or("?")
            ));
        }
        return None;
    };
    if case.must_reject && (200..300).contains(&status) {
        return Some(format!(
            "{status}: a body that can never be a valid work was accepted: {}",
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        ));
    }
    if status >= 500 {
        return Some(format!(
            "{status}: {}",
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        ));
    }
    if case.head {
        return None; // a HEAD answer has no body to check
    }
    let is_json = answer
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/json"));
    let json_error = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .is_some_and(|v| v["error"].is_string());
    let must_be_json = case.kind == Kind::App || is_json;
    if (400..500).contains(&status) && must_be_json && !(is_json && json_error) {
        return Some(format!(
            "{status} without a JSON error body (content-type {:?}): {:?}",
            answer.content_type,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
        ));
    }
    None
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(240)]).into_owned();
    let text = text.replace("\r\n", "⏎");
    if bytes.len() > 240 {
        format!("{text}… ({} bytes)", bytes.len())
    } else {
        text
    }
}

// ---------------------------------------------------------------- the run

pub async fn run(pg: &PrivatePostgres, run: &RunDir, log_dir: &Path) -> Report {
    let mut failures = Vec::new();
    let mut text = String::new();
    let [port] = free_ports::<1>();
    let env = Env {
        scenario: "api".into(),
        database_url: pg.url("chaos_api"),
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        queue: "chaos_api_unused".into(),
        http_addr: Some(format!("127.0.0.1:{port}")),
        run_dir: run.path.clone(),
        log_dir: log_dir.to_path_buf(),
    };
    let addr = format!("127.0.0.1:{port}");
    if let Err(e) = run_ok(&env, "db-setup", &["db", "setup"], Duration::from_secs(60)).await {
        failures.push(format!("db setup: {e:#}"));
        return Report {
            text: failures.join("\n"),
            failures,
        };
    }
    let mut serve = match Proc::spawn(&env, "serve", &["serve"]) {
        Ok(p) => p,
        Err(e) => {
            failures.push(format!("start serve: {e:#}"));
            return Report {
                text: failures.join("\n"),
                failures,
            };
        }
    };
    let health = case("health", request("GET", "/health", &[], None), Kind::App);
    let start = Instant::now();
    while exchange(&addr, &health).await.status != Some(200) {
        if start.elapsed() > Duration::from_secs(30) {
            failures.push(format!("serve never became healthy: {}", serve.tail(10)));
            return Report {
                text: failures.join("\n"),
                failures,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let total: usize = std::env::var("CHAOS_BAD_INPUT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut cases: Vec<Case> = targeted();
    cases.truncate(total);
    while cases.len() < total {
        cases.push(generate(&mut rng));
    }
    let cases: Vec<Arc<Case>> = cases.into_iter().map(Arc::new).collect();
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut issued = 0;
    for (i, c) in cases.iter().enumerate() {
        if started.elapsed() > TIME_BUDGET {
            break;
        }
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let (c, addr) = (c.clone(), addr.clone());
        tasks.spawn(async move {
            let answer = exchange(&addr, &c).await;
            drop(permit);
            (i, answer)
        });
        issued += 1;
    }
    let mut by_status: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    let mut labels: BTreeMap<&'static str, usize> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, answer)) = joined else {
            failures.push("an exchange task panicked".into());
            continue;
        };
        let c = &cases[i];
        *labels.entry(c.label).or_default() += 1;
        let status = answer.status.map_or("none".to_string(), |s| s.to_string());
        *by_status.entry((c.kind, status)).or_default() += 1;
        if let Some(problem) = verdict(c, &answer) {
            failures.push(format!(
                "case {i} ({}, {:?}): {problem}\n    request: {}",
                c.label,
                c.kind,
                show(&c.bytes)
            ));
        }
    }
    let elapsed = started.elapsed();

    // Still serving, and still healthy.
    let after = exchange(&addr, &health).await;
    if after.status != Some(200) {
        failures.push(format!(
            "GET /health after the run: {:?} {:?}",
            after.status, after.error
        ));
    }
    if !serve.running() {
        failures.push(format!("serve exited during the run: {}", serve.tail(10)));
    } else if let Err(e) = serve.stop(Duration::from_secs(20)).await {
        failures.push(format!("stopping serve: {e:#}"));
    }
    let log = serve.log_text();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    if panics > 0 {
        failures.push(format!("serve logged {panics} panics"));
    }

    let _ = writeln!(
        text,
        "API bad input: {issued} of {total} generated requests (seed {SEED:#x}) in {:.1}s, {CONCURRENCY} at a time",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(text, "by generator: {labels:?}");
    let mut line = String::new();
    for ((kind, status), n) in &by_status {
        let _ = write!(line, " {kind:?}/{status}={n}");
    }
    let _ = writeln!(text, "by kind/status:{line}");
    let _ = writeln!(
        text,
        "GET /health afterwards: {:?}; failures: {}",
        after.status,
        failures.len()
    );
    for f in failures.iter().take(40) {
        let _ = writeln!(text, "FAIL {f}");
    }
    if failures.len() > 40 {
        let _ = writeln!(text, "... and {} more", failures.len() - 40);
    }
    Report { text, failures }
}
