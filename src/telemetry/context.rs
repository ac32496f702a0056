//! Trace context across processes, as W3C `traceparent` (and `tracestate`): in AMQP
//! message headers, HTTP request headers, and a work's row (so the consumer's sweep
//! continues the trace of the request that created it). Everything here does nothing
//! while tracing is off: ppctl then neither reads nor writes trace headers.

use super::traces;
use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A replayed dead letter's original `traceparent`, for the consumer's link to it.
pub const REPLAY_OF_HEADER: &str = "x-ppctl-replay-of";

/// One hop of a trace (a publish, a delivery's processing, a request): its span when
/// sampled; when not, no span, only the `traceparent` (flags 00) it passes on (see
/// `sampling`). Tracing off: neither.
#[derive(Debug, Clone)]
pub struct Hop {
    pub span: Span,
    passed_on: Option<String>,
}

impl Hop {
    pub fn none() -> Self {
        Self::sampled(Span::none())
    }

    pub fn sampled(span: Span) -> Self {
        Self {
            span,
            passed_on: None,
        }
    }

    /// Builds the span only when `decision` samples it.
    pub fn decided(decision: super::sampling::Decision, span: impl FnOnce() -> Span) -> Self {
        match decision {
            super::sampling::Decision::Sampled => Self::sampled(span()),
            super::sampling::Decision::Unsampled(traceparent) => Self {
                span: Span::none(),
                passed_on: Some(traceparent),
            },
        }
    }

    /// The context the next hop continues, as carried headers.
    pub fn headers(&self) -> HashMap<String, String> {
        match &self.passed_on {
            Some(tp) => HashMap::from([("traceparent".to_string(), tp.clone())]),
            None => headers_of(&self.span),
        }
    }

    /// The `traceparent` to store with a work.
    pub fn traceparent(&self) -> Option<String> {
        self.headers().remove("traceparent")
    }

    /// The `traceparent` a queue work stores: a sampled hop's only. Its work is finished
    /// in this hop, so an unsampled one's id would lead to no stored trace, and its 55
    /// bytes in every row cost the drain at 1% sampling what the other 99% do not use.
    pub fn sampled_traceparent(&self) -> Option<String> {
        match self.passed_on {
            Some(_) => None,
            None => self.traceparent(),
        }
    }
}

/// The span's context as carried headers (`traceparent`, `tracestate`); empty when
/// tracing is off or the span is disabled.
fn headers_of(span: &Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    if traces::on() && !span.is_none() {
        TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    }
    carrier
}

/// The `traceparent` a request's handler stores with a work: its hop's (the tracing
/// middleware keeps it in the request), sampled or not.
pub fn of_request(req: &actix_web::HttpRequest) -> Option<String> {
    use actix_web::HttpMessage;
    req.extensions().get::<Hop>().and_then(Hop::traceparent)
}

/// The remote span a carrier names, when it names a valid one.
pub fn remote(carrier: &dyn Extractor) -> Option<Context> {
    if !traces::on() {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The remote span named by a stored `traceparent`.
pub fn stored(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    remote(&carrier)
}

/// `span` continues the remote operation as its child, or, when `as_child` is false (a
/// redelivery, a replay, a retry: a later attempt must not stretch the original trace),
/// starts a trace of its own with a link to it. Call before the span is first entered.
pub fn follow(span: &Span, remote: Option<Context>, as_child: bool) {
    let Some(cx) = remote else { return };
    if as_child {
        let _ = span.set_parent(cx);
    } else {
        link(span, cx.span().span_context(), "follows");
    }
}

/// Adds a link, saying why (`ppctl.link`: follows, replay-of, batched).
pub fn link(span: &Span, to: &SpanContext, why: &'static str) {
    span.add_link_with_attributes(to.clone(), vec![KeyValue::new("ppctl.link", why)]);
}

/// The trace id in a `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// AMQP message headers as a carrier.
pub struct AmqpHeaders<'a>(pub Option<&'a FieldTable>);

impl Extractor for AmqpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0?.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .map(|t| t.inner().keys().map(|k| k.as_str()).collect())
            .unwrap_or_default()
    }
}

/// Adds the hop's context to AMQP headers.
pub fn inject_amqp(hop: &Hop, headers: &mut FieldTable) {
    for (k, v) in hop.headers() {
        headers.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
    }
}

/// HTTP request headers as a carrier.
pub struct HttpHeaders<'a>(pub &'a actix_web::http::header::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Adds the hop's context to an outgoing HTTP request.
pub fn inject_http(hop: &Hop, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    hop.headers()
        .into_iter()
        .fold(request, |r, (k, v)| r.header(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_is_read_only_from_a_well_formed_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        assert_eq!(trace_id_of("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of(&format!("00-{}-x-01", "z".repeat(32))), None);
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn amqp_headers_give_only_text_values() {
        let mut table = FieldTable::default();
        table.insert(
            "traceparent".into(),
            AMQPValue::LongString("00-a-b-01".into()),
        );
        table.insert("tracestate".into(), AMQPValue::LongLongInt(7));
        let headers = AmqpHeaders(Some(&table));
        assert_eq!(headers.get("traceparent"), Some("00-a-b-01"));
        assert_eq!(headers.get("tracestate"), None);
        assert_eq!(AmqpHeaders(None).get("traceparent"), None);
    }
}
