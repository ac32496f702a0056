//! Scenario 19: a consumer delivering webhooks is SIGKILLed while its POSTs are in
//! flight (the receiver answers slowly), and the receiver goes away and comes back on
//! the same port. Another consumer must deliver every finished work's webhook at least
//! once (0 missed, by webhook-id); the duplicates, same id, are counted in the notes.

use super::*;
use crate::webhook_receiver::{verify, Receiver};
use base64::Engine;
use std::collections::{HashMap, HashSet};

/// The killed consumer's claims are taken again once their lease (30 s) ends.
const DELIVER: Duration = Duration::from_secs(180);

fn consume_args<'a>(url: &'a str, secret: &'a str) -> [&'a str; 11] {
    [
        "consume",
        "--work-delay",
        "1ms",
        "--webhook-url",
        url,
        "--webhook-secret",
        secret,
        "--webhook-backoff-max",
        "1s",
        "--sweep-every",
        "1s",
    ]
}

pub(super) async fn consumer_dies_mid_delivery(
    c: &mut Cluster,
    row: &mut Row,
) -> anyhow::Result<()> {
    const N: u64 = 2000;
    let env = setup(c, "s19", false).await?;
    let mut db = Db::new(&env.database_url);
    let mut receiver = Receiver::start().await;
    receiver.delay(Duration::from_millis(300));
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    );
    let url = receiver.url();
    let mut c1 = Proc::spawn(&env, "consumer1", &consume_args(&url, &secret))?;
    let mut producer = start_producer(&env, row, N)?;
    crate::db::wait_for("200 webhooks received", FINISH, || async {
        (receiver.received().len() >= 200).then_some(())
    })
    .await?;
    c1.kill9().await?;
    let cut = receiver
        .received()
        .iter()
        .filter(|r| r.answered == 0)
        .count();
    receiver.stop();
    row.notes.push(format!(
        "consumer SIGKILLed with {cut} POSTs in flight; receiver stopped"
    ));
    let mut c2 = Proc::spawn(&env, "consumer2", &consume_args(&url, &secret))?;
    drain_all(row, &mut db, &mut producer, N).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.delay(Duration::ZERO);
    receiver.restart().await;
    let finished = db
        .must("SELECT count(*) FROM works WHERE status = 'done'")
        .await?;
    let delivered = || {
        let ok = receiver
            .received()
            .into_iter()
            .filter(|r| r.answered == 204);
        ok.map(|r| r.work().0).collect::<HashSet<i64>>().len() as i64
    };
    let waited = crate::db::wait_for("every webhook delivered", DELIVER, || async {
        (delivered() >= finished).then_some(())
    })
    .await;
    soft(row, waited);
    judge_webhooks(row, &receiver, &secret, finished);
    stop_all(row, &mut [&mut c2]).await;
    note_dedup(row, &[&c1, &c2]);
    finish(row, &env, &mut db, row.confirmed, N, 0, 0).await;
    Ok(())
}

/// 0 missed, every signature valid, one work per webhook-id; duplicates noted.
fn judge_webhooks(row: &mut Row, receiver: &Receiver, secret: &str, finished: i64) {
    let received = receiver.received();
    let mut work_of: HashMap<&str, i64> = HashMap::new();
    let (mut delivered, mut answered) = (HashSet::new(), 0);
    for r in &received {
        row.check(verify(secret, r), || format!("bad signature on {}", r.id));
        let work = r.work().0;
        let first = *work_of.entry(r.id.as_str()).or_insert(work);
        row.check(first == work, || {
            format!("webhook-id {} carried works {first} and {work}", r.id)
        });
        if r.answered == 204 {
            delivered.insert(work);
            answered += 1;
        }
    }
    let missed = finished - delivered.len() as i64;
    row.check(missed == 0, || {
        format!("{missed} finished works never delivered")
    });
    row.notes.push(format!(
        "webhooks: {finished} works, {} POSTs, {answered} answered 2xx, {} duplicates (same id), {missed} missed",
        received.len(),
        answered - delivered.len()
    ));
}
