//! The soak's report: the verdict, memory by third, p99 by third, and every sample, as
//! markdown beside the chart.

use super::sample::{series, Sample, NAMES};
use super::{chart, verdict};
use std::fmt::Write;
use std::time::Duration;

const MIB: f64 = 1024.0;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn pool(p: Option<(f64, f64)>) -> String {
    p.map_or("-".into(), |(used, open)| format!("{used:.0}/{open:.0}"))
}

/// The columns of `row`, printed once before the rows while the soak runs.
pub const HEADER: &str = "| t | serve RSS | consume RSS | produce RSS | GET p99 | POST p99 | publish → done p99 | confirmed/s | stored/s | done works | queue | pools | errors |\n\
                          |---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// One sample as a table row (also printed while the soak runs).
pub fn row(s: &Sample) -> String {
    let t = s.at_s as u64;
    let rss = s
        .rss_kib
        .map(|k| format!("{:.1}", k as f64 / MIB))
        .join(" | ");
    format!(
        "| {}:{:02} | {rss} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {} | {} | {}; {} | {} |",
        t / 60,
        t % 60,
        s.get.p99_ms,
        s.post.p99_ms,
        opt(s.done_p99_ms, 1),
        s.confirmed_per_s,
        s.stored_per_s,
        opt(s.done_works, 0),
        opt(s.queue_depth, 0),
        pool(s.pools[0]),
        pool(s.pools[1]),
        s.get.errors + s.post.errors + s.probes_late as u64,
    )
}

/// A per-process memory row by third; `field` picks VmRSS or RssAnon, in KiB.
fn memory(out: &mut String, samples: &[Sample], idle: &[u64], field: fn(&Sample) -> [u64; 3]) {
    for (i, name) in NAMES.iter().enumerate() {
        let points = series(samples, |s| Some(field(s)[i] as f64));
        let Some(t) = verdict::trend(&points) else {
            continue;
        };
        let start = points.first().map_or(0.0, |p| p.1);
        let idle = idle.get(i).map(|&k| k as f64 / MIB);
        let idle = opt(idle, 2);
        let [start, first, middle, last, end] =
            [start, t.first, t.middle, t.last, t.end].map(|k| format!("{:.2}", k / MIB));
        let verdict = if verdict::grew(&t) {
            "**grew**"
        } else {
            "flat"
        };
        let _ = writeln!(
            out,
            "| {name} | {idle} | {start} | {first} | {middle} | {last} | {end} | {:+.0} | {:+.1} | {verdict} |",
            t.last - t.middle,
            t.slope_per_min,
        );
    }
}

fn latency(out: &mut String, name: &str, points: &[(f64, f64)]) {
    let Some((middle, last, flat)) = verdict::p99_flat(points) else {
        return;
    };
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let flat = if flat { "flat" } else { "**rose**" };
    let _ = writeln!(
        out,
        "| {name} | {middle:.1} | {last:.1} | {max:.1} | {flat} |"
    );
}

pub fn render(samples: &[Sample], idle: &[u64], length: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut out = format!(
        "### ppctl soak, {date}, {cores} cores, {}\n\n\
         Load: `produce --every 10ms --burst {}`, `consume --retain {}` (its pruner runs every minute), \
         `serve` under wrk (4 connections of GET `/works?limit=20` then `/works/{{id}}`, 2 of POST `/works`, \
         each pausing 20 ms between requests), and {} probe demands a second timed from publish to done. \
         A sample every {} s; the first third is warm-up.\n\n![RSS and p99 over time](soak-latest.svg)\n\n",
        humantime::format_duration(length),
        super::RATE / 100,
        super::RETAIN,
        super::probe::PER_SEC,
        super::INTERVAL_SECS,
    );
    out.push_str("#### Memory (MiB; growth and slope in KiB, slope per minute after warm-up)\n\n");
    out.push_str("| process | idle | first sample | warm-up third | middle third | last third | end | last − middle | slope | after warm-up |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    memory(&mut out, samples, idle, |s| s.rss_kib);
    out.push_str("\nThe same for RssAnon (heap and stacks: the binary's own pages left out):\n\n");
    out.push_str("| process | idle | first sample | warm-up third | middle third | last third | end | last − middle | slope | after warm-up |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    memory(&mut out, samples, &[], |s| s.anon_kib);
    out.push_str("\n#### p99 per 10 s interval (ms)\n\n| series | median, middle third | median, last third | max | |\n|---|---|---|---|---|\n");
    latency(
        &mut out,
        "GET (API)",
        &series(samples, |s| Some(s.get.p99_ms)),
    );
    latency(
        &mut out,
        "POST /works",
        &series(samples, |s| Some(s.post.p99_ms)),
    );
    latency(
        &mut out,
        "publish → done",
        &series(samples, |s| s.done_p99_ms),
    );
    out.push_str(
        "\n#### Every sample\n\n\
         RSS in MiB, p99 in ms, rates per second; done works: kept in the database (it falls \
         when the pruner deletes); queue: ready messages; pools: database connections \
         in use/open (serve; consume); errors: wrk errors and non-2xx, plus probes not done within a \
         minute.\n\n",
    );
    out.push_str(HEADER);
    out.push('\n');
    for s in samples {
        let _ = writeln!(out, "{}", row(s));
    }
    out
}

/// A run of the default length or longer goes to bench/results; a shorter trial to
/// target/, so that it never replaces the committed result.
pub fn save(samples: &[Sample], idle: &[u64], length: Duration, trial: bool) -> anyhow::Result<()> {
    let dir = if trial { "target" } else { "bench/results" };
    std::fs::create_dir_all(dir)?;
    let text = render(samples, idle, length);
    println!("{text}");
    std::fs::write(format!("{dir}/soak-latest.md"), text)?;
    std::fs::write(format!("{dir}/soak-latest.svg"), chart::render(samples))?;
    println!("written: {dir}/soak-latest.md and {dir}/soak-latest.svg");
    Ok(())
}
