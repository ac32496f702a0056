//! The tracing phase's table rows and notes: each mode's median against off's, and
//! every run as measured, so the spread behind each median can be seen.

use super::{label, Run, MODES};
use crate::report::Report;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

pub(super) fn summarize(report: &mut Report, runs: &[Run], main: Option<(f64, f64)>) {
    let of = |mode: usize, f: fn(&Run) -> f64| {
        median(runs.iter().filter(|r| r.mode == mode).map(f).collect())
    };
    let drain: Vec<f64> = (0..MODES.len()).map(|m| of(m, |r| r.drain)).collect();
    let post: Vec<f64> = (0..MODES.len()).map(|m| of(m, |r| r.post.rps)).collect();
    let off = "tracing off, same phase (medians)";
    let goal = 0.95;
    let post_name = |m| format!("POST /works req/s, 64 conns, tracing {}", label(m));
    let drain_name = |m| format!("consume drain works/s, tracing {}", label(m));
    report.ratio(&drain_name(1), drain[1], off, drain[0], goal);
    report.ratio(&post_name(1), post[1], off, post[0], goal);
    // No goal at 1.0: every span is exported to a receiver that decodes and writes it on
    // the same two cores, so the figure is as much the collector's as ppctl's.
    report.contrast(&drain_name(2), drain[2], off, drain[0]);
    report.contrast(&post_name(2), post[2], off, post[0]);
    if let Some((main_post, main_drain)) = main {
        report.note(format!(
            "tracing off in the tracing phase: drain {:.0} works/s, POST {:.0} req/s; this run's main figures: drain {main_drain:.0} ({:.2}), POST {main_post:.0} ({:.2}); each tracing run starts from an empty database, the main one from 100k works",
            drain[0], post[0], drain[0] / main_drain, post[0] / main_post
        ));
    }
    for mode in 1..MODES.len() {
        let total: u64 = runs
            .iter()
            .filter(|r| r.mode == mode)
            .flat_map(|r| r.spans)
            .sum();
        let drops: f64 = runs
            .iter()
            .filter(|r| r.mode == mode)
            .flat_map(|r| r.dropped.iter().flatten().map(|(q, e)| q + e))
            .sum();
        report.note(format!(
            "tracing {}: the receiver got {total} spans in all; consume and serve dropped {drops:.0} (by run and reason below)",
            label(mode)
        ));
    }
    for (i, r) in runs.iter().enumerate() {
        report.note(format!(
            "tracing run {} ({}): drain {:.0} works/s, POST {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms), produce {:.1} s; spans received: produce {}, consume {}, serve {} (its warm-up included); dropped: consume {}, serve {}; receiver CPU {:.1} s in the drain, {:.1} s in the POST",
            i + 1, label(r.mode), r.drain, r.post.rps, r.post.p50_ms, r.post.p99_ms, r.produce_secs,
            r.spans[0], r.spans[1], r.spans[2], drops(r.dropped[0]), drops(r.dropped[1]),
            r.collector_cpu[0], r.collector_cpu[1]
        ));
    }
}

fn drops(by_reason: Option<(f64, f64)>) -> String {
    by_reason.map_or("-".into(), |(q, e)| {
        format!("{q:.0} (queue full) + {e:.0} (export failed)")
    })
}
