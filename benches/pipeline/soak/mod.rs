//! `make soak` (`cargo bench --bench pipeline -- --soak`): real `serve`, `consume` and
//! `produce` under a steady load for `SOAK` (10m by default), sampled every 10 s, to tell
//! a leak from warm-up. Not in CI: it is as long as it must be to show a trend.

mod chart;
mod probe;
mod sample;
mod table;
pub mod verdict;

use crate::procs::{self, Proc};
use crate::{load, AMQP};
use anyhow::Context;
use sample::{Counters, Sample, Watched};
use std::time::{Duration, Instant};

/// Demands a second from `ppctl produce`: a tick every 10 ms of `RATE / 100`.
const RATE: u64 = 1_800;
const INTERVAL_SECS: u64 = 10;
/// Short enough that the pruner deletes (every minute) during a 10-minute soak.
const RETAIN: &str = "2m";
/// Each wrk connection waits this long between requests: 4 GET connections make at
/// most 200 req/s and 2 POST ones 100, a bounded load beside the queue's.
const PACE: &str = "delay = function() return 20 end\n";
/// A page of the newest works, then one of them by the id just read: both the search and
/// the lookup are timed, and the lookup never misses (the newest are never pruned).
const GET_LUA: &str = r#"local id, lookup = nil, false
request = function()
  lookup = not lookup
  if lookup and id then return wrk.format("GET", "/works/" .. id) end
  return wrk.format("GET", "/works?limit=20")
end
response = function(status, headers, body) id = body:match('"id":%s*(%d+)') end
"#;

/// The soak's length: `SOAK` as a humantime duration (`90s`, `1h`), 10 minutes without it.
fn length() -> anyhow::Result<Duration> {
    let text = std::env::var("SOAK").unwrap_or_else(|_| "10m".into());
    let length =
        humantime::parse_duration(&text).with_context(|| format!("SOAK={text}: not a duration"))?;
    anyhow::ensure!(
        length >= Duration::from_secs(3 * INTERVAL_SECS),
        "SOAK={text}: at least 30s (warm-up, middle and last thirds of 10 s samples)"
    );
    Ok(length)
}

pub async fn run(db_url: &str, queue: &str) -> anyhow::Result<()> {
    let length = length()?;
    let watched = start(db_url, queue).await?;
    let idle: Vec<u64> = watched
        .procs
        .iter()
        .map(|p| p.status_kib("VmRSS:").unwrap_or(0))
        .collect();
    let samples = soak(&watched, db_url, queue, length).await;
    let [serve, consume, produce] = watched.procs;
    // Stopped before the samples' error is looked at: a clean stop is part of the result.
    for proc in [produce, consume, serve] {
        proc.stop()?;
    }
    let samples = samples?;
    let trial = length < Duration::from_secs(600);
    table::save(&samples, &idle, length, trial)
}

/// Starts serve, consume (pruning every minute) and produce, and waits for the API.
async fn start(db_url: &str, queue: &str) -> anyhow::Result<Watched> {
    let addr = format!("127.0.0.1:{}", procs::free_port()?);
    let env = procs::env(db_url, queue, &addr);
    let consume_m = format!("127.0.0.1:{}", procs::free_port()?);
    let produce_m = format!("127.0.0.1:{}", procs::free_port()?);
    let serve = Proc::spawn("serve", &["serve"], &env)?;
    procs::wait_healthy(&addr).await?;
    let consume_args = ["consume", "--metrics-addr", &consume_m, "--retain", RETAIN];
    let consume = Proc::spawn("consume", &consume_args, &env)?;
    let burst = (RATE / 100).to_string();
    let produce_args = ["produce", "--every", "10ms", "--burst", &burst];
    let produce = Proc::spawn(
        "produce",
        &[&produce_args[..], &["--metrics-addr", &produce_m]].concat(),
        &env,
    )?;
    procs::wait_counter(&consume_m, "ppctl_works_stored_total", 1).await?;
    Ok(Watched {
        procs: [serve, consume, produce],
        metrics: [addr, consume_m, produce_m],
    })
}

/// Runs the API load and the probes, one sample per interval, until `length` is up.
async fn soak(
    w: &Watched,
    db_url: &str,
    queue: &str,
    length: Duration,
) -> anyhow::Result<Vec<Sample>> {
    let start = Instant::now();
    let until = start + length;
    let mut probes = probe::Probes::start(AMQP, queue, until).await?;
    let db = ppctl::storage::admin::connect(db_url).await?;
    let get = load::write_script("soak-get.lua", &format!("{GET_LUA}{PACE}"))?;
    let post = load::write_script("soak-post.lua", &format!("{}{PACE}", crate::POST_LUA))?;
    let mut last = w
        .read(&mut Sample::default(), Counters::default(), 1.0)
        .await;
    let (mut samples, mut at) = (Vec::new(), start);
    println!("{}", table::HEADER);
    while Instant::now() + Duration::from_secs(INTERVAL_SECS) <= until {
        let (get, post) =
            tokio::try_join!(wrk(&w.metrics[0], 4, &get), wrk(&w.metrics[0], 2, &post))?;
        let mut s = Sample {
            get,
            post,
            at_s: start.elapsed().as_secs_f64(),
            ..Sample::default()
        };
        last = w.read(&mut s, last, at.elapsed().as_secs_f64()).await;
        at = Instant::now();
        let p = probes.interval(&db).await?;
        (s.done_p99_ms, s.probes_late) = (p.p99_ms, p.late);
        println!("{}", table::row(&s));
        samples.push(s);
    }
    probes.stop().await?;
    Ok(samples)
}

/// One interval of wrk, off the runtime's threads (wrk is a blocking child process).
async fn wrk(addr: &str, conns: u32, script: &str) -> anyhow::Result<load::HttpRun> {
    let (addr, script) = (addr.to_string(), script.to_string());
    tokio::task::spawn_blocking(move || load::wrk_script(&addr, conns, INTERVAL_SECS, &script))
        .await?
}
