//! The totals every test compares: the running totals as the product reads them
//! (`count_by_status`) against a count of the rows, every status listed, zeros and
//! negatives included, so a total decremented twice shows as -1 instead of vanishing.

use super::helpers::*;
use ppctl::model::WorkStatus;
use ppctl::storage::works;
use std::collections::BTreeMap;

/// Works whose stored result is not n(n+1)/2 (computed in numeric: no overflow).
const WRONG_SUMS: &str = "SELECT count(*) FROM works WHERE status = 'done' \
    AND result::numeric <> add_up_to::numeric * (add_up_to + 1) / 2";
/// Done works whose events are not exactly the four steps in order.
const BAD_EVENTS: &str = "SELECT count(*) FROM works w WHERE status = 'done' AND \
    (SELECT string_agg(variable, ',' ORDER BY id) FROM events e WHERE e.work_id = w.id) \
    <> 'work/created,compute/start,compute/stop,compute/result'";
/// Result events whose value disagrees with the work's result.
const BAD_RESULT_EVENTS: &str = "SELECT count(*) FROM events e JOIN works w ON w.id = e.work_id \
    WHERE e.variable = 'compute/result' AND e.value <> w.result::text";

/// Checks the invariants every finished pipeline run must satisfy.
pub(super) async fn assert_consistent(db: &TestDb) {
    assert_eq!(db.count(WRONG_SUMS).await, 0, "wrong sums");
    assert_eq!(
        db.count(BAD_EVENTS).await,
        0,
        "works with missing or extra events"
    );
    assert_eq!(
        db.count(BAD_RESULT_EVENTS).await,
        0,
        "result events disagree with results"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE done <> (status = 'done')")
            .await,
        0
    );
    assert_eq!(
        counts(db).await,
        exact_counts(db).await,
        "the running totals"
    );
}

/// `count_by_status`, every status listed: 0 when it has no row, negatives kept.
pub(super) async fn counts(db: &TestDb) -> Vec<(String, i64)> {
    let counted = works::count_by_status(&db.client().await).await;
    every_status(counted.expect("counts"))
}

/// Counts by status the slow, obviously right way, every status listed.
pub(super) async fn exact_counts(db: &TestDb) -> Vec<(String, i64)> {
    let sql = "SELECT status, count(*) FROM works GROUP BY status ORDER BY status";
    let rows = db.client().await.query(sql, &[]).await.expect(sql);
    every_status(rows.iter().map(|r| (r.get(0), r.get(1))))
}

/// `rows` over a zero for every status; a status read twice or unknown is a failure.
pub(super) fn every_status(rows: impl IntoIterator<Item = (String, i64)>) -> Vec<(String, i64)> {
    let mut all: BTreeMap<String, Option<i64>> = WorkStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), None))
        .collect();
    for (status, n) in rows {
        let slot = all.get_mut(&status);
        let slot = slot.unwrap_or_else(|| panic!("unknown status {status:?}"));
        assert!(slot.replace(n).is_none(), "{status} counted twice");
    }
    all.into_iter().map(|(s, n)| (s, n.unwrap_or(0))).collect()
}

/// The count of `status` in `counts`.
pub(super) fn count_of(counts: &[(String, i64)], status: &str) -> i64 {
    counts
        .iter()
        .find(|(s, _)| s == status)
        .map_or(0, |(_, n)| *n)
}
