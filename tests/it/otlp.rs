//! A real OTLP/HTTP receiver for the tracing tests: `tests/otlp/receiver.py`, which
//! decodes what an exporter sends with PyPI's `opentelemetry-proto` (no collector binary
//! can be installed here) and writes each span as one JSON line. These helpers start it,
//! read the spans back and print a trace as a tree.
//!
//! Its python is `$PP_OTLP_PYTHON`, else the venv `scripts/services.sh otlp-tools` makes
//! (`make test` runs it): see [`python`].

use crate::helpers::random_suffix;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/receiver.py");
const INSTALL: &str = "scripts/services.sh otlp-tools";

/// The receiver's python: `$PP_OTLP_PYTHON`, else `bin/python` of the venv that
/// `scripts/services.sh otlp-tools` makes, found as that script does: `$PP_OTLP_VENV`,
/// else `${XDG_CACHE_HOME:-$HOME/.cache}/ppctl/otlp` (empty variables count as unset).
pub fn python() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(python) = var("PP_OTLP_PYTHON") {
        return python.into();
    }
    let venv = var("PP_OTLP_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(var("HOME").expect("HOME is set")).join(".cache"));
        cache.join("ppctl/otlp")
    });
    venv.join("bin/python")
}

/// A running receiver on 127.0.0.1, with its files in a temporary directory of its own;
/// killed (and the directory removed) on drop, except after a failed test, when the
/// files are kept and their path printed.
pub struct Receiver {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Receiver {
    /// Starts the receiver in `mode` (`ok`, `refuse` or `slow`); panics, naming the
    /// install command, when its python or packages are missing.
    pub fn start(mode: &str) -> Receiver {
        Self::start_with(&python(), &["--mode", mode])
    }

    /// As [`Receiver::start`], with this python and these extra receiver arguments
    /// (`--slow-seconds 2`, say).
    pub fn start_with(python: &Path, args: &[&str]) -> Receiver {
        let dir = std::env::temp_dir().join(format!("ppctl-otlp-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("create the receiver's directory");
        let stderr = std::fs::File::create(dir.join("stderr")).expect("receiver stderr");
        let mut child = Command::new(python)
            .arg(RECEIVER)
            .arg("--out")
            .arg(dir.join("spans.jsonl"))
            .arg("--requests")
            .arg(dir.join("requests.jsonl"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run the OTLP receiver's python {python:?} ({e}): make its venv with `{INSTALL}` (make test does), or set PP_OTLP_PYTHON")
            });
        match read_listening_line(&mut child, Duration::from_secs(30)) {
            Some(port) => Receiver { port, child, dir },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("the OTLP receiver ({python:?} {RECEIVER}) did not start; a missing module means its venv needs `{INSTALL}`. Its stderr:\n{stderr}")
            }
        }
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, in arrival order (the format: tests/otlp/receiver.py).
    pub fn spans(&self) -> Vec<Value> {
        read_jsonl(&self.dir.join("spans.jsonl"))
    }

    /// One line per request: path, content type, headers, span count, status answered.
    pub fn requests(&self) -> Vec<Value> {
        read_jsonl(&self.dir.join("requests.jsonl"))
    }

    /// Polls the spans every 100 ms until `pred` holds, and returns them; panics after
    /// `timeout` with every trace received. On a multi-thread runtime the wait lets the
    /// runtime's other tasks run (`block_in_place`); do not call it on a current-thread one
    /// that serves what is being traced.
    pub fn wait_for_spans(&self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let wait = || {
            let start = Instant::now();
            loop {
                let spans = self.spans();
                if pred(&spans) {
                    return spans;
                }
                if start.elapsed() > timeout {
                    panic!("the OTLP receiver did not get the spans expected within {timeout:?}; it has {}:\n{}", spans.len(), print_all(&spans));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("OTLP receiver files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The port from the receiver's `listening PORT` line, or None if it exits or stays
/// silent for `timeout`.
fn read_listening_line(child: &mut Child, timeout: Duration) -> Option<u16> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(timeout).ok()?;
    line.trim().strip_prefix("listening ")?.parse().ok()
}

/// The complete lines of a JSON-lines file (a line being written is left for next time).
fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| serde_json::from_str(line).expect("the receiver writes JSON lines"))
        .collect()
}

fn text<'a>(span: &'a Value, key: &str) -> &'a str {
    span[key].as_str().unwrap_or("")
}

/// One trace as an indented tree, children under their parent in start order:
/// `service  span-name  [KIND]`, plus ` (links: trace8/span8, ...)` for linked spans.
/// A span whose parent is not among the spans is a root.
pub fn print_tree(spans: &[Value], trace_id: &str) -> String {
    let mut trace: Vec<&Value> = spans
        .iter()
        .filter(|s| text(s, "trace_id") == trace_id)
        .collect();
    trace.sort_by_key(|s| s["start_ns"].as_u64());
    let ids: HashSet<&str> = trace.iter().map(|s| text(s, "span_id")).collect();
    let mut out = format!("trace {trace_id} ({} spans)\n", trace.len());
    for root in trace
        .iter()
        .filter(|s| !ids.contains(text(s, "parent_span_id")))
    {
        write_span(&mut out, &trace, root, 1);
    }
    out
}

fn write_span(out: &mut String, trace: &[&Value], span: &Value, depth: usize) {
    let links: Vec<String> = span["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("{:.8}/{:.8}", text(l, "trace_id"), text(l, "span_id")))
        .collect();
    let links = if links.is_empty() {
        String::new()
    } else {
        format!(" (links: {})", links.join(", "))
    };
    let (service, name, kind) = (
        text(span, "service"),
        text(span, "name"),
        text(span, "kind"),
    );
    let _ = writeln!(
        out,
        "{:width$}{service}  {name}  [{kind}]{links}",
        "",
        width = depth * 2
    );
    // The depth bound only guards against a malformed cycle of parents.
    for child in trace
        .iter()
        .filter(|c| text(c, "parent_span_id") == text(span, "span_id"))
    {
        if depth < 64 {
            write_span(out, trace, child, depth + 1);
        }
    }
}

/// Every trace among `spans`, in order of first arrival.
pub fn print_all(spans: &[Value]) -> String {
    let mut seen = HashSet::new();
    spans
        .iter()
        .map(|s| text(s, "trace_id"))
        .filter(|id| seen.insert(*id))
        .map(|id| print_tree(spans, id))
        .collect()
}

/// Builds an ExportTraceServiceRequest with opentelemetry-proto (a publish span and its
/// child, which links back to it) and POSTs it as protobuf, or as OTLP/JSON (whose ids
/// are hex, not protobuf's base64) when the second argument is `json`; prints the status.
const SEND: &str = r#"
import base64, json, sys, urllib.error, urllib.request
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
request = ExportTraceServiceRequest()
resource_spans = request.resource_spans.add()
resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value="ppctl-produce"))
scope = resource_spans.scope_spans.add()
scope.scope.name = "ppctl"
trace = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
parent = scope.spans.add(trace_id=trace, span_id=bytes.fromhex("b7ad6b7169203331"), name="pp_work_queue publish",
                         kind=Span.SPAN_KIND_PRODUCER, start_time_unix_nano=1, end_time_unix_nano=3)
parent.attributes.add(key="messaging.system", value=AnyValue(string_value="rabbitmq"))
child = scope.spans.add(trace_id=trace, span_id=bytes.fromhex("00f067aa0ba902b7"), parent_span_id=parent.span_id,
                        name="pp_work_queue process", kind=Span.SPAN_KIND_CONSUMER, start_time_unix_nano=2, end_time_unix_nano=3)
child.attributes.add(key="messaging.batch.message_count", value=AnyValue(int_value=2))
child.links.add(trace_id=trace, span_id=parent.span_id)
def hex_ids(node):
    if isinstance(node, list):
        return [hex_ids(x) for x in node]
    if isinstance(node, dict):
        return {k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hex_ids(v)
                for k, v in node.items()}
    return node
if sys.argv[2] == "json":
    body, content_type = json.dumps(hex_ids(json_format.MessageToDict(request))).encode(), "application/json"
else:
    body, content_type = request.SerializeToString(), "application/x-protobuf"
post = urllib.request.Request(sys.argv[1] + "/v1/traces", data=body, headers={"Content-Type": content_type})
try:
    print(urllib.request.urlopen(post, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
"#;

fn send_test_request(receiver: &Receiver, encoding: &str) -> String {
    let out = Command::new(python())
        .args(["-c", SEND, &receiver.endpoint(), encoding])
        .output()
        .expect("run the receiver's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_receiver_decodes_what_it_is_sent() {
    let receiver = Receiver::start("ok");
    assert_eq!(send_test_request(&receiver, "protobuf"), "200");
    let spans = receiver.wait_for_spans(Duration::from_secs(10), |s| s.len() == 2);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (publish, process) = (&spans[0], &spans[1]);
    assert_eq!(
        (text(publish, "trace_id"), text(process, "trace_id")),
        (trace, trace)
    );
    assert_eq!(text(publish, "span_id"), "b7ad6b7169203331");
    assert_eq!(text(publish, "parent_span_id"), "");
    assert_eq!(text(process, "parent_span_id"), "b7ad6b7169203331");
    assert_eq!(
        (text(publish, "kind"), text(process, "kind")),
        ("PRODUCER", "CONSUMER")
    );
    assert_eq!(process["service"], "ppctl-produce");
    assert_eq!(publish["attributes"]["messaging.system"], "rabbitmq");
    assert_eq!(process["attributes"]["messaging.batch.message_count"], 2);
    assert_eq!(process["links"][0]["span_id"], "b7ad6b7169203331");
    let tree = print_tree(&spans, trace);
    println!("{tree}");
    assert_eq!(
        tree,
        "trace 0af7651916cd43dd8448eb211c80319c (2 spans)\n  \
         ppctl-produce  pp_work_queue publish  [PRODUCER]\n    \
         ppctl-produce  pp_work_queue process  [CONSUMER] (links: 0af76519/b7ad6b71)\n"
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["content_type"], "application/x-protobuf");
    assert_eq!(
        (&requests[0]["spans"], &requests[0]["status"]),
        (&2.into(), &200.into())
    );

    // OTLP/JSON decodes to the same spans.
    assert_eq!(send_test_request(&receiver, "json"), "200");
    let spans = receiver.wait_for_spans(Duration::from_secs(10), |s| s.len() == 4);
    assert_eq!(spans[2..], spans[..2]);
    assert_eq!(receiver.requests()[1]["content_type"], "application/json");

    // A refusing collector answers 503, and still shows what it was sent.
    let refusing = Receiver::start("refuse");
    assert_eq!(send_test_request(&refusing, "protobuf"), "503");
    assert_eq!(refusing.requests()[0]["status"], 503);
    assert_eq!(refusing.spans().len(), 2);
}

#[test]
fn a_receiver_without_its_python_names_the_install_command() {
    let missing = Path::new("/nonexistent/ppctl-otlp/bin/python");
    let panic = std::panic::catch_unwind(|| Receiver::start_with(missing, &[]))
        .err()
        .expect("start fails without its python");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.contains(INSTALL), "{message}");
}
