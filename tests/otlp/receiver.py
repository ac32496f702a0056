#!/usr/bin/env python3
"""A real OTLP/HTTP trace receiver for ppctl's tests: no collector binary can be installed
here, so this decodes what an exporter sends with the official opentelemetry-proto package
(PyPI) and writes every span as one JSON line, for the tests to read.

    receiver.py --out SPANS.jsonl [--requests REQS.jsonl] [--host 127.0.0.1] [--port 0]
                [--mode ok|refuse|slow] [--slow-seconds 5]

Prints `listening <port>` once ready. POST /v1/traces takes application/x-protobuf or
application/json (OTLP/JSON, hex ids), gzip or not; other types get 415. Modes: ok answers 200 with an
ExportTraceServiceResponse; refuse answers 503 to everything; slow sleeps, then 200.
Spans are decoded and written in every mode. SIGTERM exits 0.
"""

import argparse
import base64
import gzip
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF, JSON = "application/x-protobuf", "application/json"


def value(v):
    """An AnyValue as plain JSON."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def span_json(span, resource, scope):
    return {
        "service": resource.get("service.name"),
        "resource": resource,
        "scope": scope,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        "attributes": attributes(span.attributes),
        "links": [
            {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex(), "attributes": attributes(l.attributes)}
            for l in span.links
        ],
        "status": {
            "code": Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
            "message": span.status.message,
        },
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in span.events],
    }


def hex_ids_to_base64(node):
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping of bytes wants base64."""
    if isinstance(node, list):
        return [hex_ids_to_base64(x) for x in node]
    if not isinstance(node, dict):
        return node
    return {
        k: base64.b64encode(bytes.fromhex(v)).decode()
        if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
        else hex_ids_to_base64(v)
        for k, v in node.items()
    }


def decode(body, content_type):
    request = ExportTraceServiceRequest()
    if content_type == JSON:
        json_format.ParseDict(hex_ids_to_base64(json.loads(body)), request)
    else:
        request.ParseFromString(body)
    return [
        span_json(span, attributes(rs.resource.attributes), ss.scope.name)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector: every answer has a length
    args = None
    lock = threading.Lock()

    def do_POST(self):
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/traces":
            status, spans = 404, []
        elif content_type not in (PROTOBUF, JSON):
            status, spans = 415, []
        else:
            try:
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                spans = decode(body, content_type)
                status = 503 if self.args.mode == "refuse" else 200
            except Exception as e:  # a malformed request is the sender's bug: say so
                print(f"receiver: cannot decode a {content_type} request: {e}", file=sys.stderr)
                status, spans = 400, []
        self.record(content_type, spans, status)
        if status == 200 and self.args.mode == "slow":
            time.sleep(self.args.slow_seconds)
        self.answer(status, content_type)

    def record(self, content_type, spans, status):
        with self.lock:
            with open(self.args.out, "a") as out:
                out.writelines(json.dumps(s) + "\n" for s in spans)
            if self.args.requests:
                headers = {k.lower(): v for k, v in self.headers.items()}
                line = {"path": self.path, "content_type": content_type, "headers": headers,
                        "spans": len(spans), "status": status}
                with open(self.args.requests, "a") as out:
                    out.write(json.dumps(line) + "\n")

    def answer(self, status, content_type):
        if status == 200 and content_type == JSON:
            body = json_format.MessageToJson(ExportTraceServiceResponse()).encode()
        elif status == 200:
            body, content_type = ExportTraceServiceResponse().SerializeToString(), PROTOBUF
        else:
            body, content_type = json.dumps({"status": status}).encode(), JSON
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the exporter gave up waiting (mode slow): nothing to answer

    def do_GET(self):
        self.answer(404, JSON)

    def log_message(self, *_):
        pass  # quiet: the files are the record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="spans, one JSON object a line")
    parser.add_argument("--requests", help="requests, one JSON object a line")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--mode", choices=["ok", "refuse", "slow"], default="ok")
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    Handler.args = parser.parse_args()
    open(Handler.args.out, "a").close()  # an empty file means "nothing received yet"
    server = ThreadingHTTPServer((Handler.args.host, Handler.args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
