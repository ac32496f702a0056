//! Starting `ppctl produce` and reading back what it confirmed.

use super::*;

/// Waits (at most `timeout`) for a `produce --count n` to exit and returns how many
/// demands it confirmed: n on exit 0, else the last count it reported.
pub(super) async fn producer_confirmed(
    row: &mut Row,
    producer: &mut Proc,
    n: u64,
    timeout: Duration,
) -> u64 {
    let outcome = producer.wait(timeout).await;
    if matches!(&outcome, Ok(status) if status.success()) {
        return n;
    }
    match outcome {
        Ok(status) => row.problem(format!(
            "the producer exited with {status}: {}",
            producer.tail(5)
        )),
        Err(e) => row.problem(format!("{e:#}")),
    }
    reported_confirmed(&producer.log_text(), n).unwrap_or(0)
}

/// What a producer's log says it confirmed: "stopped after X of N demands" (its
/// error), else its last "X/N confirmed" progress line.
pub(super) fn reported_confirmed(log: &str, n: u64) -> Option<u64> {
    let stopped = log
        .rsplit("stopped after ")
        .next()
        .filter(|_| log.contains("stopped after "))
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let marker = format!("/{n} confirmed");
    let progress = log.rfind(&marker).and_then(|end| {
        let start = log[..end].rfind(|c: char| !c.is_ascii_digit())? + 1;
        log[start..end].parse().ok()
    });
    stopped.or(progress)
}

/// Starts `produce --every 0 --count n` and records the n demands as published.
pub(super) fn start_producer(env: &Env, row: &mut Row, n: u64) -> anyhow::Result<Proc> {
    row.published = n;
    Proc::spawn(
        env,
        "producer",
        &["produce", "--every", "0", "--count", &n.to_string()],
    )
}

/// Starts `produce --every EVERY --burst BURST --count n`: a stream that lasts long
/// enough for a fault to land in the middle of it.
pub(super) fn start_paced_producer(
    env: &Env,
    row: &mut Row,
    n: u64,
    every: &str,
    burst: u64,
) -> anyhow::Result<Proc> {
    row.published = n;
    let (burst, n) = (burst.to_string(), n.to_string());
    Proc::spawn(
        env,
        "producer",
        &[
            "produce", "--every", every, "--burst", &burst, "--count", &n,
        ],
    )
}
