//! The span processor: a bounded queue in front of the OTLP exporter, drained in
//! batches by one task. Ending a span only tries to enqueue it: when the collector is
//! down or slow the queue fills and further spans are dropped, never waited for, so
//! tracing can cost spans but never work. Drops and exports are counted in `/metrics`.
//! (The SDK's own batch processor keeps its drop count private and exports from a
//! thread of its own, where the async reqwest client has no runtime.)

use super::TELEMETRY;
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The queue's limits (`OTEL_BSP_*`, with the specification's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
    pub export_timeout: Duration,
}

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
pub struct ExportQueue {
    tx: mpsc::Sender<Msg>,
}

impl ExportQueue {
    /// Spawns the exporting task on the current tokio runtime.
    pub fn spawn<E: SpanExporter + 'static>(exporter: E, limits: QueueLimits) -> Self {
        let (tx, rx) = mpsc::channel(limits.max_queue);
        tokio::spawn(drain(exporter, rx, limits));
        Self { tx }
    }

    /// Exports what is queued now; for the end of a process.
    pub async fn flush(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        };
        let _ = tokio::time::timeout(within, flushed).await;
    }
}

impl SpanProcessor for ExportQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
            TELEMETRY.spans_dropped("queue_full").inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Flushing is async (`flush`); the SDK's synchronous call has nothing to wait on.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Collects spans into batches of at most `max_batch`, exporting each when full or
/// `delay` after its first span; one export at a time, each bounded.
async fn drain<E: SpanExporter>(exporter: E, mut rx: mpsc::Receiver<Msg>, limits: QueueLimits) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(limits.max_batch);
    let mut due = Instant::now() + limits.delay;
    let mut warned: Option<Instant> = None;
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(due.into(), rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => {
                    export(&exporter, &mut batch, limits, &mut warned).await;
                    continue;
                }
            }
        };
        match msg {
            None => break,
            Some(Msg::Span(span)) => {
                if batch.is_empty() {
                    due = Instant::now() + limits.delay;
                }
                batch.push(*span);
                if batch.len() >= limits.max_batch {
                    export(&exporter, &mut batch, limits, &mut warned).await;
                }
            }
            Some(Msg::Flush(done)) => {
                export(&exporter, &mut batch, limits, &mut warned).await;
                let _ = done.send(());
            }
        }
    }
    export(&exporter, &mut batch, limits, &mut warned).await;
}

/// How often a collector that keeps failing is reported in the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

async fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    limits: QueueLimits,
    warned: &mut Option<Instant>,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(limits.max_batch));
    let n = spans.len() as u64;
    let result = tokio::time::timeout(limits.export_timeout, exporter.export(spans))
        .await
        .unwrap_or(Err(OTelSdkError::Timeout(limits.export_timeout)));
    match result {
        Ok(()) => {
            TELEMETRY.spans_exported.inc_by(n);
        }
        Err(e) => {
            TELEMETRY.spans_dropped("export_failed").inc_by(n);
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                *warned = Some(Instant::now());
                // Not an error of ppctl's work: only the spans are lost, and counted.
                tracing::warn!(target: "ppctl::otel", error = %e, spans = n, "the trace collector refused or did not answer; these spans are dropped (counted in ppctl_trace_spans_dropped_total; said at most once a minute)");
            }
        }
    }
}
