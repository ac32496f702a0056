//! docs/deploy.md, run as written: its `sql` and `sh` blocks, in order, against a private
//! TLS-only PostgreSQL and a TLS-only RabbitMQ standing in for the example hosts and CA
//! files. A block a reader would copy is a block that ran; a block run by
//! scripts/compose-test.sh must appear there word for word.

use super::scale::free_addr;
use super::tls_broker::TlsBroker;
use super::tls_server::TlsPostgres;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md");
const COMPOSE_TEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/compose-test.sh");
const BY_COMPOSE_TEST: &str = "# run by scripts/compose-test.sh";

/// A fenced block: (info string, body).
type Block = (String, String);

/// The fenced blocks of a Markdown text.
fn blocks(markdown: &str) -> Vec<Block> {
    let (mut out, mut open): (Vec<Block>, Option<Block>) = (vec![], None);
    for line in markdown.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(_), Some(block)) => out.push(block),
            (Some(info), None) => open = Some((info.trim().to_string(), String::new())),
            (None, Some((info, mut body))) => {
                body.push_str(line);
                body.push('\n');
                open = Some((info, body));
            }
            (None, None) => {}
        }
    }
    out
}

/// The example names, and what stands in for each here.
fn stand_ins(pg: &TlsPostgres, mq: &TlsBroker) -> Vec<(String, String)> {
    let closed = free_addr().replace("127.0.0.1", "localhost");
    [
        (
            "ppctl:change-me@mq.example.com:5671",
            format!("guest:guest@localhost:{}", mq.port),
        ),
        ("db.example.com:5432", format!("localhost:{}", pg.port)),
        ("pg1.example.com:5432", closed),
        ("pg2.example.com:5432", format!("localhost:{}", pg.port)),
        ("/etc/ppctl/db-ca.pem", pg.certs.ca.display().to_string()),
        ("/etc/ppctl/mq-ca.pem", mq.certs.ca.display().to_string()),
        ("127.0.0.1:3000", free_addr()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect()
}

/// Runs a `sh` block with only `ppctl` (this build) on the PATH; a command that runs until
/// stopped (`ppctl consume`, `ppctl serve`) is stopped with SIGTERM after 6 s and must
/// exit 0. Its output.
async fn run_sh(script: &str) -> String {
    let mut lines = vec!["set -eu".to_string()];
    for line in script.lines() {
        let runs_until_stopped = ["ppctl consume", "ppctl serve"]
            .iter()
            .any(|c| line.starts_with(c));
        lines.push(match runs_until_stopped {
            true => format!("timeout --foreground --preserve-status -s TERM 6 {line}"),
            false => line.to_string(),
        });
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_ppctl"))
        .parent()
        .expect("bin dir");
    let out = tokio::process::Command::new("bash")
        .args(["-c", &lines.join("\n")])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("RUST_LOG", "info,lapin=off")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the block ends")
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "docs/deploy.md block failed:\n{script}\n{text}"
    );
    text
}

/// What a block must show, beyond succeeding: the links it opened were encrypted.
fn check_output(script: &str, output: &str) {
    if script.contains("ppctl db status") {
        assert!(
            output.contains("connection: encrypted (TLS"),
            "{script}\n{output}"
        );
    }
    if script.contains("ppctl consume") {
        let line = output
            .lines()
            .find(|l| l.contains("links database="))
            .unwrap_or_default();
        let encrypted = line.contains("database=encrypted (TLS")
            && line.contains(r#"rabbitmq="encrypted (amqps://)""#);
        assert!(encrypted, "{script}\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_deploy_guide_runs_as_written() {
    let started = std::time::Instant::now();
    let (pg, mq) = (TlsPostgres::start(), TlsBroker::shared(false).await);
    println!("servers up at {:?}", started.elapsed());
    let doc = std::fs::read_to_string(DOC).expect("docs/deploy.md");
    let names = stand_ins(&pg, &mq);
    let compose_test = std::fs::read_to_string(COMPOSE_TEST).expect("compose-test.sh");
    let mut ran = 0;
    for (info, body) in blocks(&doc) {
        if body.starts_with(BY_COMPOSE_TEST) {
            // The script calls docker-compose through its `compose` function.
            for line in body.lines().skip(1) {
                let run = line.replace("docker compose ", "compose ");
                assert!(
                    compose_test.contains(&run),
                    "compose-test.sh does not run: {line}"
                );
            }
            continue;
        }
        let body = names.iter().fold(body, |b, (from, to)| b.replace(from, to));
        match info.as_str() {
            "sql" => {
                let db = body
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("-- on database "));
                let db = db.unwrap_or_else(|| panic!("a sql block names its database:\n{body}"));
                pg.psql_script(db.trim(), &body);
            }
            "sh" => check_output(&body, &run_sh(&body).await),
            other => panic!("a block of docs/deploy.md that no test runs ({other}):\n{body}"),
        }
        ran += 1;
        println!(
            "deploy.md block {ran} ({info}) done at {:?}",
            started.elapsed()
        );
    }
    assert!(ran >= 6, "only {ran} blocks ran");
    // The runtime role of section 1, given only those grants, runs the pipeline.
    let runtime = format!(
        "postgres://ppctl_runtime:change-me-too@localhost:{}/ppctl?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pg.certs.ca.display()
    );
    let amqp = mq.url(
        "localhost",
        &format!("cacertfile={}", mq.certs.ca.display()),
    );
    let script = format!(
        "export DATABASE_URL='{runtime}' AMQP_URL='{amqp}' PP_QUEUE=deploy_runtime\n\
         ppctl produce --count 5 --every 0\nppctl consume --sweep-every 100ms\n"
    );
    check_output(&script, &run_sh(&script).await);
    let done = pg.psql("ppctl", "SELECT count(*) FROM works WHERE status = 'done'");
    assert_eq!(
        done, "15",
        "10 demands of section 3 and 5 of the runtime role"
    );
    mq.ctl(&["delete_queue", "deploy_runtime"]);
}
