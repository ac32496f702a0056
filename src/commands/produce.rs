//! `ppctl produce`: random demands on a schedule, each confirmed by the broker before
//! it counts. Unconfirmed demands survive reconnects and are published again.

use super::Failure;
use crate::amqp::publish::{Outgoing, Publisher};
use crate::amqp::{Nodes, Topology, TopologyMismatch};
use crate::backoff::Backoff;
use crate::cli::{AmqpOpts, ProduceArgs, ProduceOpts};
use crate::shutdown::Shutdown;
use crate::telemetry::TELEMETRY;
use anyhow::bail;
use rand::Rng;
use std::collections::VecDeque;
use std::time::Duration;

/// Demands generated per round when publishing as fast as confirms allow.
const FAST_CHUNK: u64 = 2_000;

pub async fn run(args: ProduceArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    super::check_amqp_url(&args.amqp.amqp_url)?;
    if let Some(addr) = args.metrics.metrics_addr {
        crate::http::exporter::spawn(addr, None, shutdown.clone())?;
    }
    let confirmed = produce(&args.amqp, &args.produce, &shutdown, true).await?;
    tracing::info!(confirmed, "producer stopped");
    Ok(())
}

/// Publishes until `--count` demands are confirmed, or until shutdown. Returns the
/// number confirmed; errors if shutdown came before `--count` was reached. With
/// `show_progress` and a count, reports progress on stderr; without a count, logs the
/// rate and totals every `--report-every`.
pub async fn produce(
    amqp: &AmqpOpts,
    opts: &ProduceOpts,
    shutdown: &Shutdown,
    show_progress: bool,
) -> anyhow::Result<u64> {
    let topology = Topology::chosen(&amqp.queue, amqp.queue_type);
    let nodes = Nodes::parse(&amqp.amqp_url)?;
    // The first connection declares in full (and meets a queue of the other type).
    let mut declared = false;
    let mut outbox: VecDeque<Outgoing> = VecDeque::new();
    let mut publisher: Option<Publisher> = None;
    let mut backoff = Backoff::default();
    let give_up = GiveUp::new(opts.give_up_after);
    let (mut generated, mut confirmed) = (0u64, 0u64);
    let wanted = opts.count.unwrap_or(u64::MAX);
    let mut progress = opts
        .count
        .filter(|_| show_progress)
        .map(super::progress::Progress::new);
    let mut report = (show_progress && opts.count.is_none())
        .then(|| super::progress::Report::new(opts.report_every));
    let round = if opts.every.is_zero() {
        FAST_CHUNK
    } else {
        opts.burst
    };
    let mut ticker = tokio::time::interval(opts.every.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while confirmed < wanted && !shutdown.is_triggered() {
        if let Some(r) = report.as_mut() {
            r.update(confirmed, outbox.len());
        }
        if outbox.is_empty() {
            if !opts.every.is_zero() {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.wait() => break,
                }
            }
            let n = round.min(wanted - generated);
            outbox.extend((0..n).map(|_| Outgoing::demand(rand::rng().random_range(1..=100))));
            generated += n;
        }
        let current = match publisher.take() {
            Some(p) => p,
            None => match Publisher::connect(&nodes, &topology, declared).await {
                Ok(p) => {
                    declared = true;
                    p
                }
                Err(e) if e.downcast_ref::<TopologyMismatch>().is_some() => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        unconfirmed = outbox.len(),
                        "cannot reach RabbitMQ; retrying"
                    );
                    let delay = backoff.next_delay();
                    if !declared && opts.count.is_some() {
                        give_up.check(e, delay)?;
                    }
                    sleep_or_shutdown(delay, shutdown).await;
                    continue;
                }
            },
        };
        // Every demand generated is either confirmed or still in the outbox, so the loop
        // ends exactly when `wanted` are confirmed.
        let published = current.publish_confirmed(&mut outbox, &mut confirmed).await;
        if let Some(p) = progress.as_mut() {
            p.update(confirmed);
        }
        match published {
            Ok(()) => {
                backoff.reset();
                publisher = Some(current);
            }
            Err(e) => {
                TELEMETRY.reconnects.inc();
                nodes.lost();
                tracing::warn!(
                    error = format!("{e:#}"),
                    unconfirmed = outbox.len(),
                    "publishing interrupted; reconnecting"
                );
                sleep_or_shutdown(backoff.next_delay(), shutdown).await;
            }
        }
        debug_assert_eq!(confirmed + outbox.len() as u64, generated);
    }
    if let Some(p) = &progress {
        p.finish(confirmed);
    }
    if !outbox.is_empty() {
        tracing::warn!(
            unconfirmed = outbox.len(),
            "stopping with demands the broker never confirmed"
        );
    }
    if opts.count.is_some() && confirmed < wanted {
        bail!("stopped after {confirmed} of {wanted} demands were confirmed by the broker");
    }
    Ok(confirmed)
}

/// A `produce --count` that has never reached the broker (a wrong URL, port or
/// certificate) is a script that would otherwise hang: it exits 4 once `after` has
/// passed. A producer that connected once retries forever, as a service does.
struct GiveUp {
    start: std::time::Instant,
    after: Duration,
}

impl GiveUp {
    fn new(after: Duration) -> Self {
        Self {
            start: std::time::Instant::now(),
            after,
        }
    }

    /// The last error, as the exit's reason, when the next wait would end past the bound.
    fn check(&self, last: anyhow::Error, next_wait: Duration) -> anyhow::Result<()> {
        let waited = self.start.elapsed();
        if waited + next_wait < self.after {
            return Ok(());
        }
        let secs = waited.as_secs();
        Err(Failure::Unreachable(format!(
            "no connection to RabbitMQ in {secs}s; giving up: {last:#}"
        ))
        .into())
    }
}

async fn sleep_or_shutdown(delay: Duration, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.wait() => {}
    }
}
