//! The process's log lines and, when tracing is on, its spans: one `tracing`
//! subscriber with a log layer (text for a person, or one JSON object per line for a
//! log pipeline) and, with an OTLP endpoint, the OpenTelemetry layer.

use super::traces::{self, Tracing};
use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use std::io::Write;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for a person (coloured at a terminal).
    Text,
    /// One JSON object per line: timestamp, level, target, message, fields, and the
    /// trace_id and span_id of the span it was written in (when tracing is on).
    Json,
}

/// Installs the subscriber. Tracing needs the tokio runtime (its exporting task): call
/// from within it. The returned handle flushes the last spans at exit.
pub fn init(format: LogFormat, service: &str) -> anyhow::Result<Option<Tracing>> {
    // lapin logs, at error level, the same failures ppctl reports (and retries) with
    // their context: one line per fault is enough.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,lapin=off".into());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour_logs())
            .boxed(),
        LogFormat::Json => JsonLines::default().boxed(),
    };
    traces::check_trace_url()?;
    let traced = traces::start(service)?;
    let (otel, handle) = match traced {
        Some((tracer, handle)) => {
            // Only the attributes ppctl sets: no source locations, threads or busy times.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(filter_fn(exported));
            (Some(layer), Some(handle))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init()?;
    Ok(handle)
}

/// What the OpenTelemetry layer sees: ppctl's spans (debug level, so the log filter
/// never builds them), and warnings and errors, which become events of their span.
fn exported(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.target().starts_with("ppctl")
    } else {
        *meta.level() <= Level::WARN
    }
}

/// Colour only for a person at a terminal: not in a file, a pipe or a container's log,
/// and never when NO_COLOR is set to anything (https://no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// `--log-format json`: the shape Loki, Elasticsearch and Cloud Logging ingest.
#[derive(Default)]
struct JsonLines {
    /// To read a span's OpenTelemetry ids, which the OpenTelemetry layer keeps.
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JsonLines {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Map::new();
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        line.insert("timestamp".into(), now.to_string().into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("message".into(), fields.message.into());
        line.insert("fields".into(), Value::Object(fields.rest));
        // The span the line was written in: the explicit parent, else the current one
        // (unfiltered: the log filter does not build ppctl's spans).
        let span = event
            .parent()
            .cloned()
            .or_else(|| ctx.current_span().id().cloned());
        if let Some((trace_id, span_id)) = span.and_then(|id| self.ids(&id)) {
            line.insert("trace_id".into(), trace_id.into());
            line.insert("span_id".into(), span_id.into());
        }
        let Ok(mut bytes) = serde_json::to_vec(&Value::Object(line)) else {
            return;
        };
        bytes.push(b'\n');
        // One write per line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(&bytes);
    }
}

impl JsonLines {
    fn ids(&self, span: &tracing::span::Id) -> Option<(String, String)> {
        if !traces::on() {
            return None;
        }
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(span, &dispatch)?;
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(s)) => self.message = s,
            (name, value) => {
                self.rest.insert(name.to_string(), value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}
