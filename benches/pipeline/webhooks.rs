//! The webhooks phase (issue 24): what the outbox and its deliverer cost the drain.
//! Each run has a database and queue of its own: `ppctl produce` fills the queue, then a
//! `ppctl consume` drain is timed from its own counter, without a webhook URL (the
//! triggers find recording off) or with one (every stored work also writes a delivery
//! in the same transaction, and the deliverer POSTs it, signed, to a receiver in this
//! process that answers 200 at once). Modes alternate, rotated each round; medians are
//! compared. The time until every webhook was delivered is noted.

use crate::procs::{self, Proc};
use crate::report::Report;
use anyhow::Context;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Sizes {
    demands: u64,
    rounds: usize,
}

const FULL: Sizes = Sizes {
    demands: 100_000,
    rounds: 3,
};
const SMOKE: Sizes = Sizes {
    demands: 500,
    rounds: 1,
};

/// A Standard Webhooks secret for the runs (24 bytes of base64).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `--only webhooks`: this phase alone (its table to target/, never over bench/results).
pub async fn alone(smoke: bool) -> anyhow::Result<()> {
    let mut report = Report::new(smoke);
    let queue = format!("pp_bench_{}", crate::suffix());
    run(&mut report, smoke, &queue).await?;
    report.print();
    let name = if smoke { "webhooks-smoke" } else { "webhooks" };
    Ok(report.save_alone(name)?)
}

pub async fn run(report: &mut Report, smoke: bool, queue: &str) -> anyhow::Result<()> {
    let s = if smoke { SMOKE } else { FULL };
    let receiver = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", receiver.local_addr()?);
    let server = tokio::spawn(accept(receiver));
    let (mut off, mut on, mut delivered_after) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..s.rounds {
        for k in 0..2 {
            let with_url = (round + k) % 2 == 1;
            let queue = format!("{queue}.hook{}", off.len() + on.len());
            let (drain, after) = one(s.demands, with_url.then_some(url.as_str()), &queue).await?;
            match with_url {
                true => {
                    on.push(drain);
                    delivered_after.push(after);
                }
                false => off.push(drain),
            }
        }
    }
    server.abort();
    report.ratio(
        "consume drain works/s, webhook URL set",
        median(&mut on),
        "consume drain, no webhook (recording off)",
        median(&mut off),
        0.8,
    );
    report.note(format!(
        "webhooks phase: {} rounds of {} demands; with a URL, the last webhook was delivered {:.1} s (median) after the drain ended",
        s.rounds,
        s.demands,
        median(&mut delivered_after)
    ));
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// One drain: works/s, and with a URL the seconds from the drain's end until every
/// webhook was delivered.
async fn one(n: u64, url: Option<&str>, queue: &str) -> anyhow::Result<(f64, f64)> {
    let db = format!("{}/ppctl_bench_hook_{}", crate::PG, crate::suffix());
    ppctl::storage::admin::setup(&db)
        .await
        .context("is PostgreSQL up? run scripts/services.sh")?;
    let result = measure(n, url, &db, queue).await;
    let _ = ppctl::storage::admin::drop_database(&db).await;
    crate::delete_queues(crate::AMQP, &[queue.to_string()]).await;
    result
}

async fn measure(n: u64, url: Option<&str>, db: &str, queue: &str) -> anyhow::Result<(f64, f64)> {
    let addr = format!("127.0.0.1:{}", procs::free_port()?);
    let mut env = procs::env(db, queue, &addr);
    if let Some(url) = url {
        env.push(("PP_WEBHOOK_URL", url.to_string()));
        env.push(("PP_WEBHOOK_SECRET", SECRET.to_string()));
    }
    let count = n.to_string();
    Proc::run(
        "hook-produce",
        &["produce", "--every", "0", "--count", &count],
        &env,
    )?;
    crate::checkpoint(db).await?;
    let metrics = format!("127.0.0.1:{}", procs::free_port()?);
    let start = Instant::now();
    let consume = Proc::spawn(
        "hook-consume",
        &["consume", "--metrics-addr", &metrics],
        &env,
    )?;
    procs::wait_counter(&metrics, "ppctl_works_stored_total", n).await?;
    let drain = n as f64 / start.elapsed().as_secs_f64();
    let ended = Instant::now();
    if url.is_some() {
        let delivered = "ppctl_webhook_deliveries_total{outcome=\"delivered\"}";
        procs::wait_counter(&metrics, delivered, n).await?;
    }
    let after = ended.elapsed().as_secs_f64();
    consume.stop()?;
    Ok((drain, after))
}

/// The receiver: HTTP/1.1 keep-alive, 200 at once to every request.
async fn accept(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(answer(stream));
    }
}

async fn answer(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(used) = complete_request(&buffer) else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        buffer.drain(..used);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        if stream.write_all(ok).await.is_err() {
            return;
        }
    }
}

/// The length of the first complete request in `buffer` (head and body), if any.
fn complete_request(buffer: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = request.parse(buffer).ok()? else {
        return None;
    };
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    (buffer.len() >= head + length).then_some(head + length)
}
