//! ppctl's spans, in one place, with the OpenTelemetry semantic conventions' names and
//! attributes (messaging, database, HTTP). Each is `Span::none()` while tracing is off,
//! and at debug level, so the log filter never builds one. Where a trace starts or
//! crosses a process, the hop is sampled first (`sampling`) and its span built only
//! when sampled.

use super::context::{self, AmqpHeaders, Hop, REPLAY_OF_HEADER};
use super::sampling::{self, Decision};
use super::traces;
use lapin::message::Delivery;
use opentelemetry::trace::SpanKind;
use opentelemetry::Context;
use tracing::Span;

/// The decision for a hop that continues `remote` as its child (`as_child`), or starts
/// a trace of its own.
fn decide(remote: Option<&Context>, as_child: bool, name: &str, kind: SpanKind) -> Decision {
    match remote {
        Some(parent) if as_child => sampling::child(parent, name, kind),
        _ => sampling::root(name, kind),
    }
}

/// The producer's hop for one demand, from publish to the broker's confirm: a trace of
/// its own, linked to `follows` when given (a replayed dead letter's first life).
pub fn publish(queue: &str, message_id: &str, body_size: usize, follows: Option<Context>) -> Hop {
    if !traces::on() {
        return Hop::none();
    }
    let hop = Hop::decided(sampling::root("publish", SpanKind::Producer), || {
        publish_span(queue, message_id, body_size)
    });
    context::follow(&hop.span, follows, false);
    hop
}

fn publish_span(queue: &str, message_id: &str, body_size: usize) -> Span {
    tracing::debug_span!(
        "publish",
        otel.name = %format_args!("publish {queue}"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "publish",
        messaging.operation.name = "publish",
        messaging.destination.name = queue,
        messaging.rabbitmq.destination.routing_key = queue,
        messaging.message.id = message_id,
        messaging.message.body.size = body_size as i64,
    )
}

/// The consumer's hop for one delivery, from its arrival to its ack: the child of its
/// publish on a first delivery, a new trace linked to it on a redelivery (a later
/// attempt must not stretch the first one's trace). A replayed dead letter is the child
/// of the replay's publish, and also links to the demand it was.
pub fn process(queue: &str, delivery: &Delivery) -> Hop {
    if !traces::on() {
        return Hop::none();
    }
    let headers = AmqpHeaders(delivery.properties.headers().as_ref());
    let remote = context::remote(&headers);
    let first = !delivery.redelivered;
    let decision = decide(remote.as_ref(), first, "process", SpanKind::Consumer);
    let hop = Hop::decided(decision, || process_span(queue, delivery));
    if hop.span.is_none() {
        return hop;
    }
    context::follow(&hop.span, remote, first);
    let original = headers
        .0
        .and_then(|h| match h.inner().get(REPLAY_OF_HEADER) {
            Some(lapin::types::AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        });
    if let Some(cx) = original.and_then(context::stored) {
        use opentelemetry::trace::TraceContextExt;
        context::link(&hop.span, cx.span().span_context(), "replay-of");
    }
    hop
}

fn process_span(queue: &str, delivery: &Delivery) -> Span {
    let id = delivery.properties.message_id().as_ref();
    tracing::debug_span!(
        "process",
        otel.name = %format_args!("process {queue}"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = queue,
        messaging.message.id = id.map(|i| i.as_str()),
        messaging.message.body.size = delivery.data.len() as i64,
        messaging.rabbitmq.message.delivery_tag = delivery.delivery_tag as i64,
        ppctl.redelivered = delivery.redelivered,
    )
}

/// One statement on the works table, in the current span (the API's insert); none when
/// that span was not sampled (it was never built).
pub fn db(operation: &'static str) -> Span {
    if !traces::on() || Span::current().is_none() {
        return Span::none();
    }
    db_span(operation)
}

fn db_span(operation: &'static str) -> Span {
    tracing::debug_span!(
        "db",
        otel.name = %format_args!("{operation} works"),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = "works",
        db.query.summary = %format_args!("{operation} works"),
    )
}

/// One statement for a batch of works (the consumer's insert, the sweeper's update): a
/// database span in a trace of its own, linked to each work's span (a batch belongs to
/// no single trace). Called outside any span. Only a batch that holds a sampled work has
/// one: an idle sweep's empty update, every second, was a quarter of all spans exported,
/// and a batch of unsampled works would be a root sampled on its own.
pub fn db_batch(operation: &'static str, works: &[Span]) -> Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces::on() {
        return Span::none();
    }
    let sampled: Vec<_> = works
        .iter()
        .map(|work| work.context().span().span_context().clone())
        .filter(|sc| sc.is_valid() && sc.is_sampled())
        .collect();
    if sampled.is_empty() {
        return Span::none();
    }
    let span = db_span(operation);
    span.set_attribute("db.operation.batch.size", works.len() as i64);
    for sc in &sampled {
        context::link(&span, sc, "batched");
    }
    span
}

/// The sweeper's compute of an API work, in the trace of the request that created it
/// on its first attempt; a later attempt links to it instead. Not built when unsampled:
/// nothing goes on from here but the batch's span, which links only sampled works.
pub fn compute(work_id: i64, work_code: &str, attempt: i32, trace_parent: Option<&str>) -> Span {
    if !traces::on() {
        return Span::none();
    }
    let remote = trace_parent.and_then(context::stored);
    let first = attempt <= 1;
    if decide(remote.as_ref(), first, "compute", SpanKind::Internal) != Decision::Sampled {
        return Span::none();
    }
    let span = tracing::debug_span!(
        "compute",
        otel.name = "compute work",
        otel.kind = "internal",
        ppctl.work.id = work_id,
        ppctl.work.code = work_code,
        ppctl.work.attempt = attempt,
    );
    context::follow(&span, remote, first);
    span
}

/// Marks a span failed, with the reason as its status message.
pub fn failed(span: &Span, reason: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.set_status(opentelemetry::trace::Status::error(reason.to_string()));
}

/// The API's hop for one request, continuing the caller's trace (`traceparent`).
/// Named `{method} {route}` once routing has matched.
pub fn http_server(req: &actix_web::dev::ServiceRequest) -> Hop {
    if !traces::on() {
        return Hop::none();
    }
    let remote = context::remote(&context::HttpHeaders(req.headers()));
    let decision = decide(remote.as_ref(), true, "request", SpanKind::Server);
    let hop = Hop::decided(decision, || http_server_span(req));
    context::follow(&hop.span, remote, true);
    hop
}

fn http_server_span(req: &actix_web::dev::ServiceRequest) -> Span {
    let info = req.connection_info();
    // Host and port as the client addressed them.
    let authority = info.host().parse::<http::uri::Authority>().ok();
    let host = authority.as_ref().map_or(info.host(), |a| a.host());
    let port = authority.as_ref().and_then(|a| a.port_u16()).map(i64::from);
    tracing::debug_span!(
        "request",
        otel.name = %req.method(),
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = req.path(),
        url.scheme = info.scheme(),
        server.address = host,
        server.port = port,
        client.address = req.peer_addr().map(|a| a.ip().to_string()),
        user_agent.original = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok()),
    )
}

/// Records what the server answered on its request's span, renamed `{method} {route}`
/// now that routing has matched (the name is the OpenTelemetry span's by then).
pub fn http_answered(span: &Span, method: &str, route: Option<&str>, status: u16) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_none() {
        return;
    }
    if let Some(route) = route {
        span.set_attribute("http.route", route.to_string());
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
    }
    status_code(span, status, status >= 500);
}

/// The HTTP status on a span, an error when `failed` (5xx for a server, 4xx and 5xx for a
/// client).
pub fn status_code(span: &Span, status: u16, failed: bool) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.set_attribute("http.response.status_code", i64::from(status));
    if failed {
        span.set_status(opentelemetry::trace::Status::error(status.to_string()));
    }
}

/// A CLI's hop for one request to the API; its context goes in the request's headers.
pub fn http_client(method: &str, url: &str) -> Hop {
    if !traces::on() {
        return Hop::none();
    }
    Hop::decided(sampling::root("request", SpanKind::Client), || {
        tracing::debug_span!(
            "request",
            otel.name = method,
            otel.kind = "client",
            http.request.method = method,
            url.full = url,
        )
    })
}
