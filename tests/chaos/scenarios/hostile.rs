//! Scenario 11: hostile envelopes among 3,000 good demands, published with Python's
//! pika (tests/chaos/hostile.py) because lapin cannot send non-UTF-8 short strings.
//!
//! A message_id with a NUL or invalid UTF-8 carries a good body: only the id makes it
//! unstorable. The other hostile envelopes (a non-UTF-8 or a 100 KB header value, no
//! message_id, a 1 MB body) carry a poison body too, so the expected outcome, a dead
//! letter, does not depend on whether the product reads headers at all.

use super::poison::wait_accounted;
use super::*;
use crate::infra::MARKER;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tokio::io::AsyncWriteExt;

const GOOD: usize = 3000;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chaos/hostile.py");
/// Debian's python3-pika belongs to the system interpreter, whatever is first on PATH.
const PYTHON: &str = "/usr/bin/python3";

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Hostile message `k` of kind `kind`, tagged (`x-chaos-tag`) so its dead letter can
/// be recognised whatever happened to its message_id.
fn hostile(kind: &str, k: usize) -> Value {
    let tag = format!("hostile-{k:02}-{kind}");
    let good_body = br#"{"add_up_to": 5}"#.to_vec();
    let poison = br#"{"add_up_to": -1}"#.to_vec();
    let id = |raw: &[u8]| Some(hex(raw));
    let plain_id = id(format!("s11-{tag}").as_bytes());
    let mut headers = json!({"x-chaos-tag": {"str": tag}});
    let (id, body) = match kind {
        "nul-id" => (id(format!("s11-bad\0nul-{k}").as_bytes()), good_body),
        "utf8-id" => (
            id(&[b"s11-bad\xff\xfe-".as_slice(), &[b'0' + k as u8 % 10]].concat()),
            good_body,
        ),
        "utf8-header" => {
            headers["x-bad"] = json!({"S": hex(b"bad\xff\xfe\xfd")});
            (plain_id, poison)
        }
        "big-header" => {
            headers["x-big"] = json!({"str": "h".repeat(100 * 1024)});
            (plain_id, poison)
        }
        "no-id" => (None, poison),
        _ => (plain_id, vec![b'x'; 1024 * 1024]),
    };
    json!({"id": id, "headers": headers, "body": hex(&body)})
}

/// The messages in publishing order, and the tags of the hostile ones.
fn messages() -> (Vec<Value>, BTreeSet<String>) {
    let mut kinds: Vec<&str> =
        ["nul-id", "utf8-header", "big-header", "no-id", "big-body"].repeat(5);
    // Each costs the consumer's connection up to the delivery limit: two are enough.
    kinds.extend(["utf8-id", "utf8-id"]);
    let every = GOOD / kinds.len();
    let mut out = Vec::new();
    let mut tags = BTreeSet::new();
    for i in 0..GOOD {
        let body = format!("{{\"add_up_to\": {}}}", (i * 7919) % 100_000);
        let id = format!("s11-good-{i:05}");
        out.push(json!({"id": hex(id.as_bytes()), "headers": {}, "body": hex(body.as_bytes())}));
        if i % every == 5 && i / every < kinds.len() {
            let k = i / every;
            let msg = hostile(kinds[k], k);
            tags.insert(
                msg["headers"]["x-chaos-tag"]["str"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
            out.push(msg);
        }
    }
    (out, tags)
}

/// Runs hostile.py with `job` on stdin (bounded); its JSON answer.
async fn python(env: &Env, job: &Value) -> anyhow::Result<Value> {
    let mut child = tokio::process::Command::new(PYTHON)
        .arg(SCRIPT)
        .env(MARKER, &env.run_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("run {PYTHON} {SCRIPT} (scripts/services.sh chaos-tools installs pika)")
        })?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(&serde_json::to_vec(job)?).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("hostile.py took over 120s")??;
    if !out.status.success() {
        bail!(
            "hostile.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("hostile.py answered no JSON")
}

/// Scenario 11: hostile envelopes among good demands: every good one done once, every
/// hostile one dead-lettered, no good one dead-lettered.
pub(super) async fn hostile_messages(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    let env = setup(c, "s11", false).await?;
    let mut db = Db::new(&env.database_url);
    // Declared here with the library's default queue type, as the consumer does.
    let (conn, channel) = ppctl::amqp::connect(&env.amqp_url, "chaos-declare").await?;
    ppctl::amqp::Topology::new(&env.queue)
        .declare(&channel)
        .await?;
    let _ = conn.close(200, "bye".into()).await;
    let mut consumer = Proc::spawn(&env, "consumer", &["consume"])?;
    let (msgs, tags) = messages();
    row.published = msgs.len() as u64;
    let job = json!({"mode": "publish", "url": env.amqp_url, "queue": env.queue, "messages": msgs});
    let published = Instant::now();
    let answer = python(&env, &job).await?;
    row.confirmed = answer["confirmed"].as_u64().unwrap_or(0);
    let (confirmed, sent) = (row.confirmed, row.published);
    row.check(confirmed == sent, || {
        format!(
            "only {confirmed} of {sent} publishes confirmed: {}",
            answer["failed"]
        )
    });
    row.notes.push(format!(
        "{} hostile among {GOOD} good, published in {:.1}s",
        tags.len(),
        published.elapsed().as_secs_f64()
    ));
    wait_accounted(row, &env, &mut db, (GOOD + tags.len()) as i64).await;
    stop_all(row, &mut [&mut consumer]).await;
    finish(
        row,
        &env,
        &mut db,
        GOOD as u64,
        (GOOD + tags.len()) as u64,
        0,
        tags.len() as u64,
    )
    .await;
    let strangers: Vec<String> = db
        .client()
        .await?
        .query(
            "SELECT message_id FROM works WHERE message_id NOT LIKE 's11-good-%'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    row.check(strangers.is_empty(), || {
        format!("hostile messages stored as works: {strangers:?}")
    });
    let dead = python(
        &env,
        &json!({"mode": "drain", "url": env.amqp_url, "queue": format!("{}.dead", env.queue)}),
    )
    .await?;
    let dead = dead.as_array().cloned().unwrap_or_default();
    let good_prefix = hex(b"s11-good-");
    let good_dead = dead
        .iter()
        .filter(|d| {
            d["id"]
                .as_str()
                .is_some_and(|i| i.starts_with(&good_prefix))
        })
        .count();
    row.check(good_dead == 0, || {
        format!("{good_dead} GOOD demands dead-lettered")
    });
    let dead_tags: BTreeSet<String> = dead
        .iter()
        .filter_map(|d| d["tag"].as_str().map(String::from))
        .collect();
    row.check(dead_tags == tags, || {
        let missing: Vec<_> = tags.difference(&dead_tags).collect();
        format!("hostile messages not dead-lettered: {missing:?}")
    });
    row.notes.push(format!(
        "the consumer restarted its AMQP connection {} times",
        reconnects(&consumer)
    ));
    Ok(())
}

/// Lines in the consumer's log that say it lost or re-opened its connection.
fn reconnects(consumer: &Proc) -> usize {
    consumer
        .log_text()
        .lines()
        .filter(|l| l.contains("reconnect"))
        .count()
}
