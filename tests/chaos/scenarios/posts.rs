//! API clients of the failover scenarios (12, 13): POST /works every 100 ms through
//! the fault, and the judging of what they were answered and what was stored.

use super::*;
use anyhow::Context;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
/// A POST /works is judged unanswered after this (scenario 9 asks for 5 s).
const POST_TIMEOUT: Duration = Duration::from_secs(8);

/// One POST /works: when it was sent, how long it took, its status (None: no answer
/// within POST_TIMEOUT or a broken connection), the id it created, and what a client
/// retrying it sends again (its Idempotency-Key and body).
pub(super) struct Post {
    pub sent: Instant,
    pub took: Duration,
    pub status: Option<u16>,
    pub id: Option<i64>,
    key: String,
    body: String,
}

/// What a POST /works was answered: its status, the work's id if it has one, and
/// whether the server says it is the work an earlier request with the key made.
type Answer = (u16, Option<i64>, bool);

/// POST /works with an Idempotency-Key.
async fn post(addr: &str, key: &str, body: &str) -> anyhow::Result<Answer> {
    let headers = [
        ("Idempotency-Key", key),
        ("Content-Type", "application/json"),
    ];
    let answer = http_with(addr, "POST", "/works", &headers, Some(body), POST_TIMEOUT).await?;
    let id = matches!(answer.status, 200 | 201)
        .then(|| serde_json::from_slice::<serde_json::Value>(&answer.body).ok()?["id"].as_i64())
        .flatten();
    let replayed = answer.header("idempotent-replayed") == Some("true");
    Ok((answer.status, id, replayed))
}

/// POST /works every 100 ms (one at a time) until stopped: a client that keeps asking
/// through the failover.
pub(super) struct Poster {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Post>>,
}

impl Poster {
    pub fn start(addr: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.to_string());
        let task = tokio::spawn(async move {
            let mut posts = Vec::new();
            let client = rand::random::<u64>();
            for i in 0u64.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let sent = Instant::now();
                let body = format!("{{\"add_up_to\": {}}}", i * 7919 % 100_000);
                let key = format!("chaos-{client:016x}-{i}");
                let answer = post(&addr, &key, &body).await;
                let status = answer.as_ref().ok().map(|(s, _, _)| *s);
                let id = answer
                    .ok()
                    .filter(|(s, _, _)| *s == 201)
                    .and_then(|(_, id, _)| id);
                let took = sent.elapsed();
                posts.push(Post {
                    sent,
                    took,
                    status,
                    id,
                    key,
                    body,
                });
                tokio::time::sleep(Duration::from_millis(100).saturating_sub(took)).await;
            }
            posts
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> anyhow::Result<Vec<Post>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the API poster")
    }
}

/// Judges the POSTs sent around a fault at `fault`, repaired at `fixed` (named: the
/// promotion, a new standby): none may answer 500 or go unanswered (503 is right while
/// no server takes writes), and the first 201 after the fault is reported. Returns the
/// ids created.
pub(super) fn judge_posts(
    row: &mut Row,
    posts: &[Post],
    fault: Instant,
    (fixed, fix): (Instant, &str),
) -> Vec<i64> {
    row.published += posts.len() as u64;
    let mut refused = 0;
    let mut bad = Vec::new();
    for p in posts {
        match p.status {
            Some(201) => {}
            Some(503) => refused += 1,
            other => bad.push(format!(
                "{other:?} after {:.1}s, sent {:+.1}s from the fault",
                p.took.as_secs_f64(),
                secs_between(fault, p.sent)
            )),
        }
    }
    // "Again": the first 201 sent after the first refusal that followed the fault (a
    // switchover may take effect a moment after it is ordered).
    let after: Vec<&Post> = posts.iter().filter(|p| p.sent >= fault).collect();
    let refused_at = after
        .iter()
        .position(|p| p.status != Some(201))
        .unwrap_or(0);
    let again = after[refused_at..]
        .iter()
        .find(|p| p.status == Some(201))
        .map(|p| secs_between(fault, p.sent + p.took));
    row.notes.push(format!(
        "{} POST /works: {} answered 201, {refused} answered 503; 201 again {} after the fault ({} after {fix})",
        posts.len(),
        posts.iter().filter(|p| p.status == Some(201)).count(),
        again.map_or("never".into(), |s| format!("{s:.1}s")),
        again.map_or("-".into(), |s| format!("{:.1}s", (s - secs_between(fault, fixed)).max(0.0)))
    ));
    row.check(bad.is_empty(), || {
        format!(
            "{} POST /works neither 201 nor 503 (a 500, another status, or no answer within {POST_TIMEOUT:?}): {}",
            bad.len(),
            bad.iter().take(6).cloned().collect::<Vec<_>>().join("; ")
        )
    });
    row.check(again.is_some(), || {
        "POST /works never answered 201 after the fault".into()
    });
    posts.iter().filter_map(|p| p.id).collect()
}

/// Seconds from `a` to `b`, negative when `b` is earlier.
pub(super) fn secs_between(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64()
    } else {
        -(a - b).as_secs_f64()
    }
}

/// The API works expected at the end. Every POST not answered 201 is retried once
/// with its Idempotency-Key, as a client that was told 503 (or nothing) would: it must
/// get a work (200 or 201), and the one its first attempt made if that one committed
/// after all; then every work stored is one a client was given, and each id answered
/// 201 is stored.
pub(super) async fn api_expected(
    row: &mut Row,
    db: &mut Db,
    addr: &str,
    posts: &[Post],
    created: &[i64],
) -> anyhow::Result<u64> {
    let mut given: HashSet<i64> = created.iter().copied().collect();
    let (mut replayed, mut made, mut failed) = (0, 0, Vec::new());
    for p in posts.iter().filter(|p| p.status != Some(201)) {
        match post(addr, &p.key, &p.body).await {
            Ok((200 | 201, Some(id), true)) if given.insert(id) => replayed += 1,
            Ok((200 | 201, Some(id), false)) if given.insert(id) => made += 1,
            other => failed.push(format!("{other:?}")),
        }
    }
    if replayed + made > 0 {
        row.notes.push(format!(
            "{} POST /works not answered 201, retried with their Idempotency-Key: {replayed} found the work their first attempt had committed after all, {made} made it now",
            replayed + made
        ));
    }
    row.check(failed.is_empty(), || {
        format!(
            "{} retried POSTs got no work: {}",
            failed.len(),
            failed
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    let sql = "SELECT id FROM works WHERE message_id IS NULL";
    let stored: HashSet<i64> = db
        .client()
        .await?
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let created_set: HashSet<i64> = created.iter().copied().collect();
    let missing = created_set.difference(&stored).count();
    let orphans = stored.difference(&given).count();
    row.check(orphans == 0, || {
        format!("{orphans} API works exist that no client was given, even after retrying with its key: a retry would have made a second")
    });
    row.check(missing == 0, || {
        format!("LOSS: {missing} works answered 201 are not in the new primary")
    });
    Ok(stored.len() as u64)
}
