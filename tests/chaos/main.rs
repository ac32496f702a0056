//! Fault injection: `make chaos` (`cargo test --features chaos --test chaos`).
//!
//! The suite starts its own PostgreSQL cluster and RabbitMQ node (temp directories,
//! free ports: the shared services on 5432/5672 are never touched), drives the real
//! `ppctl` binary as processes, and kills, signals and restarts things mid-stream:
//!
//! 1. kill -9 a consumer mid-work, start another;
//! 2. SIGKILL and restart RabbitMQ under a running producer and consumer;
//! 3. SIGKILL and restart PostgreSQL under a consumer and the API (503, then 200);
//! 4. three consumers plus API works being swept, one consumer killed holding leases;
//! 5. SIGTERM during an in-flight batch;
//! 6. poison messages (and duplicate publishes) among good ones;
//! 7. SIGKILL the RabbitMQ node leading the quorum queue, then start it again;
//! 8. a rolling restart of all three RabbitMQ nodes under load;
//! 9. PostgreSQL frozen with SIGSTOP for 20 s: the API answers (503) within 5 s;
//! 10. the RabbitMQ node every client is connected to frozen with SIGSTOP: heartbeats
//!     notice, clients move to another node;
//! 11. hostile messages (NUL or non-UTF-8 message_id, non-UTF-8 and 100 KB headers, no
//!     message_id, 1 MB bodies) published with Python's pika among 3,000 good ones;
//! 12. a synchronous PostgreSQL primary SIGKILLed under a producer, two consumers and API
//!     POSTs, the standby promoted: nothing lost, no process exits, 201 again;
//! 13. a switchover: the old primary read-only, the standby caught up and promoted;
//!     writers (and listeners) move within a bound, /health never says healthy meanwhile;
//! 14. the replica behind `serve --database-read-url` SIGKILLed under a GET load: reads
//!     fall back to the primary, none fails after 5 s;
//! 15. an asynchronous primary lost under full load (replication held for 1 s first),
//!     twice: the table shows the acknowledged demands lost acking after commit (15a),
//!     and 0 with `consume --ack-after standby` (15b);
//! 16. the synchronous standby SIGKILLed, so that every commit on the primary waits (the
//!     trap of a promoted server that kept `synchronous_standby_names`): `db status`
//!     names it, reads go on, nothing is lost once a new standby is cloned;
//! 17. scenario 12 over TLS on both links (`sslmode=verify-full`, `amqps://`), then the
//!     broker SIGKILLed and restarted mid-stream as well: nothing lost, and the servers
//!     list every ppctl session and broker connection as encrypted;
//! 18. a network partition: the synchronous primary's packets dropped both ways
//!     (iptables, loopback), the standby promoted, the old primary fenced (restarted
//!     read-only) and the partition healed with it up: nothing lost, no restart, no row
//!     written to the old primary after the promotion;
//! 19. a consumer delivering webhooks SIGKILLed with POSTs in flight (a slow receiver),
//!     the receiver stopped and started again on its port: every finished work's webhook
//!     delivered at least once (0 missed, by webhook-id), duplicates counted.
//!
//! Scenarios 7, 8 and 10 run on a three-node RabbitMQ cluster (own node names, ports,
//! directories and cookie), started only when one of them is selected. Scenarios 12-18
//! each start a private PostgreSQL primary and streaming standby of their own (initdb,
//! `pg_basebackup -R -X stream`), and give the processes both hosts in `DATABASE_URL`;
//! 17's pair takes TCP clients over TLS only, and it has a TLS-only RabbitMQ node of
//! its own (certificates made by openssl at run time: tests/support/tls_certs.rs).
//!
//! Each scenario then checks, from the database and the broker, that every confirmed
//! demand has exactly one finished work with the right sum and complete events, that
//! nothing was done twice, that poison went to the dead-letter queue, and measures the
//! recovery time and the longest stall (sampled: the longest time the done count stood
//! still while demands were outstanding). The table is printed and written to `target/chaos-report.txt`; any
//! loss or duplicate fails the run. Process and server logs are kept in
//! `target/chaos-logs/`.
//!
//! `api_bad_input` sends thousands of generated malformed requests to `ppctl serve`.
//!
//! Environment knobs for iterating: `CHAOS_SCENARIOS=1,3` runs only those scenarios;
//! `CHAOS_BAD_INPUT_CASES=500` shrinks the bad-input run; `CHAOS_S2_QUEUE_AGE=0` makes
//! scenario 2 kill the broker seconds after its quorum queue is declared (RabbitMQ 3.10
//! then loses the queue's leader: see outage.rs).

mod badinput;
mod checks;
mod db;
mod infra;
mod procs;
mod report;
mod scenarios;
mod stall;
// Shared with the integration tests (one certificate maker, no copy); the chaos suite
// uses the CA and server certificate only.
#[allow(dead_code)]
#[path = "../support/tls_certs.rs"]
mod tls_certs;
// Shared with the integration tests: the receiver that checks every signature.
#[allow(dead_code)]
#[path = "../support/webhook_receiver.rs"]
mod webhook_receiver;

use infra::{PrivatePostgres, PrivateRabbit, RunDir};
use scenarios::Cluster;
use std::path::PathBuf;
use std::time::Instant;

/// The target directory (the parent of Cargo's per-target temp dir).
fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn selected_scenarios() -> Vec<usize> {
    match std::env::var("CHAOS_SCENARIOS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .filter_map(|s| s.trim().parse::<usize>().ok())
            .filter(|n| (1..=scenarios::NAMES.len()).contains(n))
            .map(|n| n - 1)
            .collect(),
        _ => (0..scenarios::NAMES.len()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_scenarios() {
    let started = Instant::now();
    let log_dir = target_dir().join("chaos-logs");
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir).expect("create target/chaos-logs");
    let run = RunDir::new();
    let pg = PrivatePostgres::start(&run)
        .await
        .expect("start the private PostgreSQL");
    let rabbit = PrivateRabbit::start(&run)
        .await
        .expect("start the private RabbitMQ node");
    println!(
        "chaos: private PostgreSQL on :{}, RabbitMQ on :{} (up after {:.1}s), run dir {}",
        pg.port,
        rabbit.port,
        started.elapsed().as_secs_f64(),
        run.path.display()
    );
    let mut cluster = Cluster {
        pg,
        rabbit,
        rabbits: None,
        run,
        log_dir: log_dir.clone(),
        stall: None,
    };
    let mut rows = Vec::new();
    for index in selected_scenarios() {
        println!("chaos: scenario {} ...", scenarios::NAMES[index]);
        for row in scenarios::run(index, &mut cluster).await {
            println!(
                "chaos: scenario {}: {}",
                row.scenario,
                if row.problems.is_empty() {
                    "ok"
                } else {
                    "FAIL"
                }
            );
            rows.push(row);
        }
    }
    let report = report::render(&rows, started.elapsed());
    println!("\n{report}");
    let path = target_dir().join("chaos-report.txt");
    if let Err(e) = std::fs::write(&path, &report) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    infra::keep_server_logs(&cluster.run, &log_dir);
    drop(cluster);
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| r.scenario.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "chaos scenarios failed: {failed:?} (table above; logs in {})",
        log_dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bad_input() {
    let run = RunDir::new();
    let pg = PrivatePostgres::start(&run)
        .await
        .expect("start the private PostgreSQL");
    let log_dir = target_dir().join("chaos-logs");
    std::fs::create_dir_all(&log_dir).expect("create target/chaos-logs");
    let report = badinput::run(&pg, &run, &log_dir).await;
    let path = target_dir().join("chaos-report-api.txt");
    let _ = std::fs::write(&path, &report.text);
    println!("\n{}", report.text);
    drop(pg);
    drop(run);
    assert!(
        report.failures.is_empty(),
        "the API mishandled bad input ({} failures, listed above)",
        report.failures.len()
    );
}
