//! Traces, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set:
//! then every span goes over OTLP/HTTP to that collector, configured by the standard
//! OpenTelemetry variables (service name, resource attributes, sampler, protocol,
//! headers, timeout, batch limits). Off, there is no exporter, no OpenTelemetry layer,
//! and ppctl's spans are never built (they are at debug level, below the log filter).

use super::env;
use super::export_queue::{ExportQueue, QueueLimits};
use super::otlp_client::OtlpClient;
use anyhow::{bail, Context};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter as _};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

static ON: AtomicBool = AtomicBool::new(false);
static TRACE_URL: OnceLock<Option<String>> = OnceLock::new();

/// `PP_TRACE_URL`, a trace viewer's address with `{trace_id}` in it (checked once, at
/// start: see `check_trace_url`).
pub fn trace_url(trace_id: &str) -> Option<String> {
    let template = TRACE_URL.get_or_init(|| env("PP_TRACE_URL")).as_ref()?;
    Some(template.replace("{trace_id}", trace_id))
}

/// A `PP_TRACE_URL` without `{trace_id}` would link every work to the same page.
pub fn check_trace_url() -> anyhow::Result<()> {
    match env("PP_TRACE_URL") {
        Some(t) if !t.contains("{trace_id}") => bail!("PP_TRACE_URL={t:?} must contain {{trace_id}}, e.g. http://localhost:16686/trace/{{trace_id}}"),
        _ => Ok(()),
    }
}

/// Whether this process exports traces (and so reads and writes `traceparent`).
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Flushes the spans still queued when the process ends.
pub struct Tracing {
    provider: SdkTracerProvider,
    queue: ExportQueue,
}

impl Tracing {
    /// Bounded well inside a container's stop grace period (10 s in Compose), which the
    /// process's own shutdown needs too.
    pub async fn finish(self) {
        self.queue.flush(Duration::from_secs(2)).await;
        let _ = self.provider.shutdown();
    }
}

/// The tracer for the `tracing` bridge, when the environment turns tracing on.
/// `service` names this process when neither `OTEL_SERVICE_NAME` nor a `service.name`
/// in `OTEL_RESOURCE_ATTRIBUTES` does. Bad settings are errors, not silent defaults.
pub fn start(service: &str) -> anyhow::Result<Option<(SdkTracer, Tracing)>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match env("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => bail!("OTEL_TRACES_EXPORTER={other:?}: ppctl exports traces over OTLP only (otlp, or none to turn them off)"),
    }
    let endpoint =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if endpoint.is_none() {
        return Ok(None);
    }
    let protocol = protocol()?;
    super::sampling::install_from_env()?;
    let timeout = millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")?
        .or(millis("OTEL_EXPORTER_OTLP_TIMEOUT")?)
        .unwrap_or(Duration::from_secs(10));
    let limits = QueueLimits {
        max_queue: count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?,
        max_batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?,
        delay: millis("OTEL_BSP_SCHEDULE_DELAY")?.unwrap_or(Duration::from_secs(5)),
        export_timeout: millis("OTEL_BSP_EXPORT_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
    };
    // The endpoint, headers and protocol come from the standard variables.
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient::new(timeout)?)
        .with_protocol(protocol)
        .with_timeout(timeout)
        .build()
        .context("cannot set up the OTLP trace exporter (OTEL_EXPORTER_OTLP_* settings)")?;
    let resource = resource(service);
    exporter.set_resource(&resource);
    let queue = ExportQueue::spawn(exporter, limits);
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(super::sampling::sdk_sampler())
        .with_span_processor(queue.clone())
        .build();
    let tracer = provider.tracer("ppctl");
    super::TELEMETRY.register(super::Group::Tracing);
    ON.store(true, Ordering::Relaxed);
    Ok(Some((tracer, Tracing { provider, queue })))
}

fn resource(service: &str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&"service.name".into())
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named {
        builder = builder.with_service_name(service.to_string());
    }
    builder.build()
}

/// The exporter speaks OTLP over HTTP; gRPC would need a second network stack. Unset,
/// the spec's default, protobuf: the exporter's own default is JSON whenever its JSON
/// support is compiled in, as it is here for `http/json`.
fn protocol() -> anyhow::Result<Protocol> {
    let var = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| env(name).map(|v| (name, v)));
    match var {
        None => Ok(Protocol::HttpBinary),
        Some((_, p)) if p == "http/protobuf" => Ok(Protocol::HttpBinary),
        Some((_, p)) if p == "http/json" => Ok(Protocol::HttpJson),
        Some((name, p)) => bail!("{name}={p:?}: ppctl exports OTLP over HTTP only (http/protobuf or http/json); point the endpoint at the collector's HTTP port, usually 4318"),
    }
}

fn millis(name: &str) -> anyhow::Result<Option<Duration>> {
    env(name)
        .map(|v| match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => bail!("{name}={v:?}: expected a number of milliseconds above 0"),
        })
        .transpose()
}

fn count(name: &str, default: usize) -> anyhow::Result<usize> {
    match env(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => bail!("{name}={v:?}: expected a count from 1 to 1000000"),
        },
    }
}
