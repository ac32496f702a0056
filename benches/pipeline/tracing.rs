//! The tracing phase (issue 18): what OpenTelemetry tracing costs the drain and
//! POST /works. Each mode (off; on, sampled at 0.01; on, sampled at 1.0) runs the same
//! thing in a database and queue of its own: `ppctl produce` fills the queue (traced in
//! that mode, so each demand carries its sampling decision, which the consumer's
//! parent-based sampler follows), a `ppctl consume` drain is timed from its own counter,
//! then wrk POSTs to a `ppctl serve` started in that mode (wrk sends no traceparent:
//! serve's own sampler decides). On two cores one run differs from the next by several
//! percent, so the modes are interleaved, rotated each round, and the median compared.
//! `--only tracing` runs this phase alone (see `alone`).

mod collector;
mod summary;

use crate::load::{self, HttpRun};
use crate::procs::{self, Proc};
use crate::report::Report;
use anyhow::Context;
use collector::Collector;
use std::time::Instant;

struct Sizes {
    demands: u64,
    /// Each wrk run.
    secs: u64,
    /// Every mode runs once a round.
    rounds: usize,
}

const FULL: Sizes = Sizes {
    demands: 200_000,
    secs: 10,
    rounds: 3,
};
const SMOKE: Sizes = Sizes {
    demands: 500,
    secs: 1,
    rounds: 2,
};

/// The sampling ratio of each mode; None is tracing off.
const MODES: [Option<&str>; 3] = [None, Some("0.01"), Some("1.0")];

fn label(mode: usize) -> String {
    MODES[mode].map_or("off".into(), |r| format!("on, sampled at {r}"))
}

/// The OpenTelemetry variables ppctl and its SDK read. One set in the developer's shell
/// is blanked (ppctl treats an empty one as unset) so that it cannot trace the "off"
/// runs or change the sampler, queue or protocol of the others; unset ones stay unset.
const OTEL_VARS: [&str; 16] = [
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
];

fn mode_env(mode: usize, endpoint: &str) -> Vec<(&'static str, String)> {
    let inherited = OTEL_VARS.iter().filter(|v| std::env::var_os(v).is_some());
    let mut env: Vec<_> = inherited.map(|v| (*v, String::new())).collect();
    // JSON log lines would carry trace ids in the traced runs only.
    env.push(("PP_LOG_FORMAT", "text".into()));
    if let Some(ratio) = MODES[mode] {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()));
        env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()));
        env.push(("OTEL_TRACES_SAMPLER_ARG", ratio.into()));
    }
    env
}

/// One run of one mode.
struct Run {
    mode: usize,
    produce_secs: f64,
    drain: f64,
    post: HttpRun,
    /// Spans received from produce, consume and serve.
    spans: [u64; 3],
    /// The receiver's CPU seconds during the drain and during the measured POST.
    collector_cpu: [f64; 2],
    /// Scraped from consume and serve just before each stops; None when off.
    dropped: [Option<(f64, f64)>; 2],
}

/// Needs no database or queue of the main run: each run makes and drops its own.
pub async fn alone(smoke: bool) -> anyhow::Result<()> {
    let mut report = Report::new(smoke);
    let queue = format!("pp_bench_{}", crate::suffix());
    run(&mut report, smoke, &queue, None).await?;
    report.print();
    let name = if smoke { "tracing-smoke" } else { "tracing" };
    Ok(report.save_alone(name)?)
}

/// Every mode, `rounds` times. `main`: the same run's main POST and drain figures,
/// to set "off" beside.
pub async fn run(
    report: &mut Report,
    smoke: bool,
    queue: &str,
    main: Option<(f64, f64)>,
) -> anyhow::Result<()> {
    let s = if smoke { SMOKE } else { FULL };
    let start = Instant::now();
    let collector = Collector::start()?;
    let mut runs = Vec::new();
    // Rotated each round: over three rounds each mode runs once first, second and third,
    // so none always goes first or always follows a 1.0 run's writeback.
    for round in 0..s.rounds {
        for k in 0..MODES.len() {
            let mode = (round + k) % MODES.len();
            let queue = format!("{queue}.trace{}", runs.len());
            runs.push(one(&s, mode, &collector, &queue).await?);
        }
    }
    drop(collector);
    summary::summarize(report, &runs, main);
    report.note(format!(
        "tracing phase: {} runs ({} rounds of off, 0.01, 1.0, rotated), {} demands and {} s of POST each, took {:.0} s",
        runs.len(),
        s.rounds,
        s.demands,
        s.secs,
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn one(s: &Sizes, mode: usize, collector: &Collector, queue: &str) -> anyhow::Result<Run> {
    let db = format!("{}/ppctl_bench_trace_{}", crate::PG, crate::suffix());
    ppctl::storage::admin::setup(&db)
        .await
        .context("is PostgreSQL up? run scripts/services.sh")?;
    let result = measure(s, mode, collector, &db, queue).await;
    let _ = ppctl::storage::admin::drop_database(&db).await;
    crate::delete_queues(crate::AMQP, &[queue.to_string()]).await;
    result
}

async fn measure(
    s: &Sizes,
    mode: usize,
    collector: &Collector,
    db: &str,
    queue: &str,
) -> anyhow::Result<Run> {
    let addr = format!("127.0.0.1:{}", procs::free_port()?);
    let mut env = procs::env(db, queue, &addr);
    env.extend(mode_env(mode, &collector.endpoint()));
    let n = s.demands;
    let count = n.to_string();
    let produce = &["produce", "--every", "0", "--count", &count];
    let produce_secs = Proc::run("trace-produce", produce, &env)?.as_secs_f64();
    let produce_spans = collector.take()?;

    // The drain as the main phase times it.
    crate::checkpoint(db).await?;
    let metrics = format!("127.0.0.1:{}", procs::free_port()?);
    let cpu = collector.cpu_secs();
    let start = Instant::now();
    let consume = Proc::spawn(
        "trace-consume",
        &["consume", "--metrics-addr", &metrics],
        &env,
    )?;
    procs::wait_counter(&metrics, "ppctl_works_stored_total", n).await?;
    let drain = n as f64 / start.elapsed().as_secs_f64();
    let drain_cpu = collector.cpu_secs() - cpu;
    let consume_dropped = dropped(&metrics).await;
    consume.stop()?;
    let done: i64 = ppctl::storage::admin::connect(db)
        .await?
        .query_one("SELECT count(*) FROM works WHERE status = 'done'", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        done == n as i64,
        "the {} drain stored {done} of {n}",
        label(mode)
    );
    let consume_spans = collector.take()?;

    // POST as the main phase measures it, after a warm-up that opens serve's pool.
    crate::checkpoint(db).await?;
    let serve = Proc::spawn("trace-serve", &["serve", "--db-pool-size", "64"], &env)?;
    procs::wait_healthy(&addr).await?;
    load::wrk_clean(&addr, 64, s.secs.min(2), crate::POST_LUA)?;
    let cpu = collector.cpu_secs();
    let post = load::wrk_clean(&addr, 64, s.secs, crate::POST_LUA)?;
    let post_cpu = collector.cpu_secs() - cpu;
    let serve_dropped = dropped(&addr).await;
    serve.stop()?;
    Ok(Run {
        mode,
        produce_secs,
        drain,
        post,
        spans: [produce_spans, consume_spans, collector.take()?],
        collector_cpu: [drain_cpu, post_cpu],
        dropped: [consume_dropped, serve_dropped],
    })
}

/// `ppctl_trace_spans_dropped_total` by reason (queue full, export failed); None when
/// the process does not export (off) or did not answer.
async fn dropped(addr: &str) -> Option<(f64, f64)> {
    let text = procs::scrape(addr).await?;
    let by = |reason| {
        let name = format!("ppctl_trace_spans_dropped_total{{reason=\"{reason}\"}}");
        procs::sample(&text, &name)
    };
    Some((by("queue_full")?, by("export_failed")?))
}
