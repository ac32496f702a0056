//! ppctl's spans, in one place, with the OpenTelemetry semantic conventions' names and
//! attributes (messaging, database, HTTP). Each is `Span::none()` while tracing is off,
//! and at debug level, so the log filter never builds one.

use super::context::{self, AmqpHeaders, REPLAY_OF_HEADER};
use super::traces;
use lapin::message::Delivery;
use tracing::Span;

/// The producer's span for one demand, from publish to the broker's confirm.
pub fn publish(queue: &str, message_id: &str, body_size: usize) -> Span {
    if !traces::on() {
        return Span::none();
    }
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

/// The consumer's span for one delivery, from its arrival to its ack: the child of its
/// publish span on a first delivery, a new trace linked to it on a redelivery (a later
/// attempt must not stretch the first one's trace). A replayed dead letter is the child
/// of the replay's publish, and also links to the demand it was.
pub fn process(queue: &str, delivery: &Delivery) -> Span {
    if !traces::on() {
        return Span::none();
    }
    let id = delivery.properties.message_id().as_ref();
    let span = tracing::debug_span!(
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
    );
    let headers = AmqpHeaders(delivery.properties.headers().as_ref());
    context::follow(&span, context::remote(&headers), !delivery.redelivered);
    let original = headers
        .0
        .and_then(|h| match h.inner().get(REPLAY_OF_HEADER) {
            Some(lapin::types::AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        });
    if let Some(cx) = original.and_then(context::stored) {
        use opentelemetry::trace::TraceContextExt;
        context::link(&span, cx.span().span_context(), "replay-of");
    }
    span
}

/// One statement on the works table, in the current span (the API's insert).
pub fn db(operation: &'static str) -> Span {
    if !traces::on() {
        return Span::none();
    }
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
    let span = db(operation);
    span.set_attribute("db.operation.batch.size", works.len() as i64);
    for sc in &sampled {
        context::link(&span, sc, "batched");
    }
    span
}

/// The sweeper's compute of an API work, in the trace of the request that created it
/// on its first attempt; a later attempt links to it instead.
pub fn compute(work_id: i64, work_code: &str, attempt: i32, trace_parent: Option<&str>) -> Span {
    if !traces::on() {
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
    context::follow(&span, trace_parent.and_then(context::stored), attempt <= 1);
    span
}

/// Marks a span failed, with the reason as its status message.
pub fn failed(span: &Span, reason: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.set_status(opentelemetry::trace::Status::error(reason.to_string()));
}

/// The API's span for one request, continuing the caller's trace (`traceparent`).
/// Named `{method} {route}` once routing has matched.
pub fn http_server(req: &actix_web::dev::ServiceRequest) -> Span {
    if !traces::on() {
        return Span::none();
    }
    let info = req.connection_info();
    // Host and port as the client addressed them.
    let authority = info.host().parse::<http::uri::Authority>().ok();
    let host = authority.as_ref().map_or(info.host(), |a| a.host());
    let port = authority.as_ref().and_then(|a| a.port_u16()).map(i64::from);
    let span = tracing::debug_span!(
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
    );
    let remote = context::remote(&context::HttpHeaders(req.headers()));
    context::follow(&span, remote, true);
    span
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

/// A CLI's span for one request to the API; its context goes in the request's headers.
pub fn http_client(method: &str, url: &str) -> Span {
    if !traces::on() {
        return Span::none();
    }
    tracing::debug_span!(
        "request",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        url.full = url,
    )
}
