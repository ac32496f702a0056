//! One soak interval's figures: what each process holds in memory, what the API's and
//! the queue's clients waited, how far behind the consumer is, and its pools' use.

use crate::load::HttpRun;
use crate::procs::{sample, scrape, Proc};

/// The processes watched, in the order of every per-process column.
pub const NAMES: [&str; 3] = ["serve", "consume", "produce"];

#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the load started, at the end of the interval.
    pub at_s: f64,
    pub rss_kib: [u64; 3],
    pub anon_kib: [u64; 3],
    pub get: HttpRun,
    pub post: HttpRun,
    pub done_p99_ms: Option<f64>,
    pub probes_late: usize,
    /// Works stored by the consumer and demands confirmed to the producer, per second
    /// over the interval.
    pub stored_per_s: f64,
    pub confirmed_per_s: f64,
    /// Done works kept (serve's `ppctl_works`): it falls when the pruner deletes.
    pub done_works: Option<f64>,
    /// Ready messages in the work queue (the consumer's `ppctl_queue_depth`).
    pub queue_depth: Option<f64>,
    /// Pooled connections (in use, open): serve's and consume's.
    pub pools: [Option<(f64, f64)>; 2],
}

/// Where each process's `/metrics` answers: serve's API address, and the workers'
/// `--metrics-addr`.
pub struct Watched {
    pub procs: [Proc; 3],
    pub metrics: [String; 3],
}

/// The counters read from one scrape of each process, for rates over an interval.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    stored: f64,
    confirmed: f64,
}

impl Watched {
    /// Fills `s` with memory, queue depth and pool use, and returns the counters now.
    pub async fn read(&self, s: &mut Sample, last: Counters, secs: f64) -> Counters {
        for (i, proc) in self.procs.iter().enumerate() {
            s.rss_kib[i] = proc.status_kib("VmRSS:").unwrap_or(0);
            s.anon_kib[i] = proc.status_kib("RssAnon:").unwrap_or(0);
        }
        let [serve, consume, produce] = &self.metrics;
        let (serve, consume, produce) =
            tokio::join!(scrape(serve), scrape(consume), scrape(produce));
        let (serve, consume, produce) = (
            serve.unwrap_or_default(),
            consume.unwrap_or_default(),
            produce.unwrap_or_default(),
        );
        s.queue_depth = sample(&consume, "ppctl_queue_depth");
        s.done_works = sample(&serve, r#"ppctl_works{status="done"}"#);
        s.pools = [pool(&serve), pool(&consume)];
        let now = Counters {
            stored: sample(&consume, "ppctl_works_stored_total").unwrap_or(last.stored),
            confirmed: sample(&produce, "ppctl_confirmed_total").unwrap_or(last.confirmed),
        };
        s.stored_per_s = (now.stored - last.stored) / secs;
        s.confirmed_per_s = (now.confirmed - last.confirmed) / secs;
        now
    }
}

fn pool(text: &str) -> Option<(f64, f64)> {
    let open = sample(text, r#"ppctl_db_pool_connections{state="open"}"#)?;
    let idle = sample(text, r#"ppctl_db_pool_connections{state="idle"}"#)?;
    Some((open - idle, open))
}

/// One figure of every sample as (seconds, value), skipping intervals without it.
pub fn series(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| f(s).map(|v| (s.at_s, v)))
        .collect()
}
