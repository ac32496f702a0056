//! Every search is served by an index, under custom and generic plans alike: a
//! sequential scan of `works`, or an index scan that filters its way through much of the
//! history, grows with it. 1M works, every combination of filters, `EXPLAIN ANALYZE
//! EXECUTE` under both `plan_cache_mode`s.

use super::helpers::*;
use super::migrations::database_at;
use super::totals::{counts, every_status, exact_counts};
use ppctl::model::WorkStatus;
use ppctl::query::WorkQuery;
use ppctl::storage::claims::CLAIM_SQL;
use ppctl::storage::migrate::{self, MIGRATIONS};
use ppctl::storage::search::search_sql;
use ppctl::storage::works::COUNTS_SQL;

const WORKS: i64 = 100_000;
/// The searches' history: at 100k works even a generic plan found the 20 `api-` works by
/// their index; at 1M it walked the primary key through all of them (100 ms).
const HISTORY: i64 = 1_000_000;
/// More rows than this read and thrown away by one plan node is a scan of history.
const MAX_FILTERED: i64 = HISTORY / 50;

/// Works 26 s apart, mostly done, a few of every other status; one in 50,000 made through the
/// API (`api-`), spread over the whole history: 20 in 1M once showed a generic plan
/// walking the primary key backwards through all of it to find them.
const LOAD: &str = "\
    INSERT INTO works (work_code, add_up_to, status, result, message_id, created_on, updated_on) \
    SELECT CASE WHEN i % 50000 = 0 THEN 'api-' ELSE 'consumer-' END || lpad(i::text, 10, '0'), \
           i % 100, s.status, CASE WHEN s.status = 'done' THEN (i % 100) * (i % 100 + 1) / 2 END, \
           CASE WHEN i % 50000 <> 0 THEN md5(i::text) END, \
           now() - (($1::bigint - i) * interval '26 seconds'), now() - (($1::bigint - i) * interval '26 seconds') \
    FROM generate_series(1, $1::bigint) AS i, \
    LATERAL (SELECT CASE i % 97 WHEN 1 THEN 'failed' WHEN 2 THEN 'pending' WHEN 3 THEN 'expired' \
                    WHEN 4 THEN 'cancelled' WHEN 5 THEN 'running' ELSE 'done' END AS status) AS s";

fn combinations(now: i64) -> Vec<WorkQuery> {
    let mut all = Vec::new();
    for prefix in [None, Some("api-"), Some("consumer-00000123")] {
        for since in [None, Some(now - 6 * 3600)] {
            for until in [None, Some(now - 3600)] {
                for status in std::iter::once(None).chain(WorkStatus::ALL.map(Some)) {
                    // Paging from the first page down (a before_id far below a `since`
                    // window reads back to it: see docs/guarantees.md, reads that do not grow).
                    for before_id in [None, Some(HISTORY - 100)] {
                        all.push(WorkQuery {
                            work_code: prefix.map(str::to_string),
                            since,
                            until,
                            status,
                            limit: 20,
                            before_id,
                        });
                    }
                }
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_search_combination_uses_an_index_under_both_plan_modes() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.execute(LOAD, &[&HISTORY]).await.expect("load works");
    client
        .batch_execute("ANALYZE works")
        .await
        .expect("analyze");
    let now: i64 = client
        .query_one("SELECT extract(epoch FROM now())::bigint", &[])
        .await
        .expect("now")
        .get(0);
    let mut seq_scans = Vec::new();
    let combos = combinations(now);
    for mode in ["force_generic_plan", "force_custom_plan"] {
        client
            .batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .await
            .expect("plan_cache_mode");
        for (i, q) in combos.iter().enumerate() {
            // The search's values are in its SQL: a generic plan of it sees them too.
            let sql = search_sql(q);
            let name = format!("s{i}_{mode}");
            client
                .batch_execute(&format!("PREPARE {name} AS {sql}"))
                .await
                .expect("prepare");
            let explain = format!("EXPLAIN (ANALYZE, TIMING OFF) EXECUTE {name}");
            let plan: Vec<String> = client
                .query(&explain, &[])
                .await
                .unwrap_or_else(|e| panic!("{explain}: {e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            let filtered = most_filtered(&plan);
            if plan.iter().any(|l| l.contains("Seq Scan on works")) || filtered > MAX_FILTERED {
                seq_scans.push(format!("{mode} {q:?}\n  {}", plan.join("\n  ")));
            }
        }
    }
    println!("{} combinations x 2 plan modes checked", combos.len());
    assert!(
        seq_scans.is_empty(),
        "{} plans scan works sequentially or filter over {MAX_FILTERED} rows:\n{}",
        seq_scans.len(),
        seq_scans.join("\n")
    );
}

/// The most rows one node of an `EXPLAIN ANALYZE` plan read and threw away.
fn most_filtered(plan: &[String]) -> i64 {
    plan.iter()
        .filter_map(|l| l.trim().strip_prefix("Rows Removed by Filter: "))
        .filter_map(|n| n.trim().parse::<i64>().ok())
        .max()
        .unwrap_or(0)
}

/// LOAD's statuses, worked out here rather than counted: `i % 97` as LOAD has it, and
/// every other expired work of LOAD made cancelled (see the test), so no two finished
/// statuses share a count and a total read from the wrong column shows.
fn loaded_counts() -> Vec<(String, i64)> {
    let status = |i: i64| match i % 97 {
        1 => "failed",
        2 => "pending",
        3 if i % 2 == 0 => "cancelled",
        3 => "expired",
        4 => "cancelled",
        5 => "running",
        _ => "done",
    };
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for i in 1..=WORKS {
        *counts.entry(status(i).into()).or_default() += 1;
    }
    every_status(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_are_exact_without_scanning_the_history() {
    // A history from before the running totals, which the migrations that add them
    // (0003 done, 0006 the other finished statuses) must start from its rows.
    let (db, mut client) = database_at(2).await;
    client.execute(LOAD, &[&WORKS]).await.expect("load works");
    client
        .batch_execute(
            "UPDATE works SET status = 'cancelled' \
             WHERE status = 'expired' AND right(work_code, 10)::bigint % 2 = 0",
        )
        .await
        .expect("make the counts differ");
    migrate::run(&mut client, MIGRATIONS)
        .await
        .expect("upgrade");
    client
        .batch_execute("ANALYZE works")
        .await
        .expect("analyze");
    let expected = loaded_counts();
    assert_eq!(exact_counts(&db).await, expected, "LOAD as worked out here");
    assert_eq!(counts(&db).await, expected);
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {COUNTS_SQL}"), &[])
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !plan.iter().any(|l| l.contains("Seq Scan on works")),
        "{}",
        plan.join("\n")
    );
}

/// A claim reads what it takes, not the backlog: with 20,000 works pending, each of its
/// parts reads (status, id) in order and stops at the limit, under both plan modes.
/// Sorting every pending work per claim made a sweep slower as the backlog grew, so the
/// backlog grew faster (the bench's POST -> done at 2,000/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_reads_no_more_of_a_backlog_than_it_takes() {
    const BACKLOG: i64 = 20_000;
    let db = TestDb::new().await;
    let client = db.client().await;
    client.execute(LOAD, &[&WORKS]).await.expect("load works");
    // LOAD's pending and running works are out of the window or without a lease: a claim
    // reads past them, as many as there are. Only the backlog is left pending.
    client
        .execute(
            "DELETE FROM works WHERE status IN ('pending', 'running')",
            &[],
        )
        .await
        .expect("delete");
    client
        .execute(
            "INSERT INTO works (work_code, add_up_to) \
             SELECT 'api-backlog-' || i, 1 FROM generate_series(1, $1::bigint) AS i",
            &[&BACKLOG],
        )
        .await
        .expect("the backlog");
    client
        .batch_execute("VACUUM ANALYZE works")
        .await
        .expect("vacuum");
    for mode in ["force_generic_plan", "force_custom_plan"] {
        let plan: Vec<String> = client
            .simple_query(&format!(
                "SET plan_cache_mode = {mode}; BEGIN; \
                 PREPARE claim (text, float8, float8, int, bigint) AS {CLAIM_SQL}; \
                 EXPLAIN (ANALYZE, TIMING OFF) EXECUTE claim('planner', 30000, 21600000, 3, 100); \
                 ROLLBACK; DEALLOCATE claim"
            ))
            .await
            .expect("explain the claim")
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        // The most rows any scan of works returned or threw away.
        let returned = plan
            .iter()
            .filter(|l| l.contains(" on works"))
            .filter_map(|l| l.split("actual rows=").nth(1))
            .filter_map(|n| n.split(' ').next()?.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        let read = returned.max(most_filtered(&plan));
        assert!(
            plan.iter().any(|l| l.contains("rows=100 ")),
            "{mode}: the claim took no batch:\n{}",
            plan.join("\n")
        );
        assert!(
            read <= 2 * 100,
            "{mode}: a claim of 100 read {read} rows:\n{}",
            plan.join("\n")
        );
    }
}
