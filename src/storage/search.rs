//! The work search: the SQL is built from the filters actually given, so each
//! combination keeps its index under custom and generic plans alike.

use super::works::{works_from_rows, WORK_COLUMNS};
use super::DbError;
use crate::model::Work;
use crate::query::{like_prefix, WorkQuery};
use deadpool_postgres::GenericClient;

/// Newest first. The WHERE clause holds only the filters given, so every combination
/// is its own cached statement and each keeps its index under a generic plan too: a
/// `$n IS NULL OR …` filter defeats most indexes, and `LIKE $1` cannot use one once the
/// planner stops looking at the value (after five runs). So the prefix is a range on the
/// `text_pattern_ops` index (LIKE stays, to be exact), and the status, one of six words
/// of ours, is written into the SQL, where the partial indexes can see it.
pub async fn search(client: &impl GenericClient, q: &WorkQuery) -> Result<Vec<Work>, DbError> {
    let (sql, params) = search_sql(q);
    let stmt = client.prepare_cached(&sql).await?;
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(Param::as_sql).collect();
    let rows = client.query(&stmt, &refs).await?;
    works_from_rows(&rows)
}

/// A search parameter: bound as itself, or written out as an SQL literal (for
/// `EXPLAIN EXECUTE`, which takes no bound parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

impl Param {
    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Int(n) => n,
        }
    }

    pub fn literal(&self) -> String {
        match self {
            Param::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Param::Int(n) => n.to_string(),
        }
    }
}

/// Adds `value` as the next parameter; returns `clause` with its `?` numbered.
fn bind(clause: &str, value: Param, params: &mut Vec<Param>) -> String {
    params.push(value);
    clause.replace('?', &format!("${}", params.len()))
}

/// The search's SQL and its parameters, in order.
pub fn search_sql(q: &WorkQuery) -> (String, Vec<Param>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    if let Some(prefix) = &q.work_code {
        clauses.push(bind(
            "work_code ~>=~ ?",
            Param::Text(prefix.clone()),
            &mut params,
        ));
        let upper = format!("{prefix}\u{10FFFF}");
        clauses.push(bind("work_code ~<~ ?", Param::Text(upper), &mut params));
        clauses.push(bind(
            "work_code LIKE ?",
            Param::Text(like_prefix(prefix)),
            &mut params,
        ));
    }
    if let Some(since) = q.since {
        clauses.push(bind(
            "created_on >= to_timestamp(?::bigint)",
            Param::Int(since),
            &mut params,
        ));
    }
    if let Some(until) = q.until {
        clauses.push(bind(
            "created_on < to_timestamp(?::bigint)",
            Param::Int(until),
            &mut params,
        ));
    }
    if let Some(status) = q.status {
        clauses.push(format!("status = '{}'", status.as_str()));
    }
    if let Some(before) = q.before_id {
        clauses.push(bind("id < ?", Param::Int(before), &mut params));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", clauses.join(" AND "))
    };
    let limit = bind("LIMIT ?", Param::Int(q.limit), &mut params);
    let sql = format!("SELECT {WORK_COLUMNS} FROM works {filter}ORDER BY id DESC {limit}");
    (sql, params)
}
