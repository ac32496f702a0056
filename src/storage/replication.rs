//! Where a commit is when the primary is lost. With the usual asynchronous streaming, a
//! batch committed on the primary and acknowledged to RabbitMQ but not yet streamed is
//! gone for good once a standby is promoted: the broker forgot it, the new primary never
//! had it. With `synchronous_standby_names` the commit itself waits for a standby. When
//! the server is not set up that way, the consumer's `--ack-after standby` waits until a
//! standby has flushed the WAL up to the batch's commit before it acknowledges.

use super::{DbError, PgPool};
use std::time::Duration;
use tokio_postgres::GenericClient;

/// The grant that lets an ordinary role read the standbys' state, sync state and
/// positions (`pg_read_all_stats` alone is enough; `pg_monitor` includes it). Without
/// it `pg_stat_replication` still lists the walsenders, with those columns NULL.
pub const MONITOR_GRANT: &str = "GRANT pg_monitor TO <this role>";

/// The physical standbys among `pg_stat_replication`'s rows, as a FROM item. That view
/// lists logical walsenders too (pg_recvlogical, subscribers, Debezium), which hold no
/// copy of the database: a physical replication connection is to no database.
pub const PHYSICAL_STANDBYS: &str = "(SELECT r.* FROM pg_stat_replication r \
     JOIN pg_stat_activity a USING (pid) WHERE a.datname IS NULL) AS standbys";

/// Whether this role may read the standbys' state (superusers may).
pub const SEES_STANDBYS: &str = "pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')";

/// One standby as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone)]
pub struct Standby {
    pub name: String,
    pub state: String,
    pub sync_state: String,
    /// Seconds the standby's replay is behind, when the primary has measured it.
    pub replay_lag: Option<f64>,
}

/// The replication the database runs with, from the primary's point of view.
#[derive(Debug, Clone)]
pub struct Replication {
    pub in_recovery: bool,
    /// Whether this role can see the standbys' state (`SEES_STANDBYS`): without it, a
    /// listed standby's state is unknown, never "not streaming".
    pub visible: bool,
    pub synchronous_standby_names: String,
    pub synchronous_commit: String,
    pub standbys: Vec<Standby>,
}

impl Replication {
    /// Whether a commit is on a standby before it returns: a synchronous standby is
    /// streaming and commits wait for it.
    pub fn commits_wait_for_a_standby(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && matches!(
                self.synchronous_commit.as_str(),
                "on" | "remote_write" | "remote_apply"
            )
            && self
                .standbys
                .iter()
                .any(|s| matches!(s.sync_state.as_str(), "sync" | "quorum"))
    }

    /// One line for `db status` and the startup log: can an acknowledged work be lost?
    pub fn verdict(&self) -> String {
        if self.in_recovery {
            return "this server is a standby (in recovery): it takes no writes".into();
        }
        if self.unknown() {
            let names = &self.synchronous_standby_names;
            let set = match names.trim().is_empty() {
                true => "synchronous_standby_names is empty (asynchronous)".to_string(),
                false => format!("synchronous_standby_names = '{names}'"),
            };
            return format!("unknown (needs pg_monitor): {} standby connection(s) listed and {set}, but this role cannot see whether they stream or how far they are ({MONITOR_GRANT})", self.standbys.len());
        }
        if self.commits_wait_for_a_standby() {
            return "synchronous: every commit waits for a standby's flush; an acknowledged work survives the loss of the primary".into();
        }
        if !self.synchronous_standby_names.trim().is_empty() {
            return format!("synchronous_standby_names = '{}' but no synchronous standby is streaming: every commit waits until one connects", self.synchronous_standby_names);
        }
        if self.standbys.is_empty() {
            return "no standby: losing this server loses the database; run consume with --ack-after commit (nothing to wait for)".into();
        }
        "asynchronous: a work acknowledged but not yet streamed is lost if a standby is promoted; set synchronous_standby_names, or run consume with --ack-after standby".into()
    }

    /// Standbys are listed but this role cannot see their state (walsender rows are
    /// listed to every role; with none listed, there is no standby either way).
    pub fn unknown(&self) -> bool {
        !self.visible && !self.standbys.is_empty()
    }

    /// What will stall, as seen at start: commits that wait for a synchronous standby
    /// that is not streaming, or `--ack-after standby` with no standby to wait for.
    pub fn stalls(&self, ack_after_standby: bool) -> Option<String> {
        if self.in_recovery || self.unknown() {
            return None;
        }
        let streaming = self.standbys.iter().any(|s| s.state == "streaming");
        if !self.synchronous_standby_names.trim().is_empty() && !self.commits_wait_for_a_standby() {
            return Some(format!("every commit will stall: synchronous_standby_names = '{}' and no synchronous standby is streaming (clear it, or bring a standby back)", self.synchronous_standby_names));
        }
        (ack_after_standby && !streaming).then(|| {
            "acknowledgements will stall: --ack-after standby and no standby is streaming (start one, or run with --ack-after commit)".to_string()
        })
    }
}

/// Reads the replication settings and standbys. The standbys' state and positions need
/// the `pg_read_all_stats` role (or superuser); without it they show as unknown and
/// `visible` is false.
pub async fn status(client: &impl GenericClient) -> Result<Replication, DbError> {
    let row = client
        .query_one(
            &format!(
                "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), \
                        current_setting('synchronous_commit'), {SEES_STANDBYS}"
            ),
            &[],
        )
        .await?;
    let standbys = client
        .query(
            &format!(
                "SELECT coalesce(application_name, '') || ' ' || coalesce(host(client_addr), 'local'), \
                        coalesce(state, 'unknown'), coalesce(sync_state, 'unknown'), \
                        extract(epoch FROM replay_lag)::float8 \
                 FROM {PHYSICAL_STANDBYS} ORDER BY application_name"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| Standby {
            name: r.get(0),
            state: r.get(1),
            sync_state: r.get(2),
            replay_lag: r.get(3),
        })
        .collect();
    Ok(Replication {
        in_recovery: row.get(0),
        visible: row.get(3),
        synchronous_standby_names: row.get(1),
        synchronous_commit: row.get(2),
        standbys,
    })
}

/// Logs, once the database first answers, which replication it runs with and whether
/// an acknowledged work can be lost on failover (a line for the operator, at start).
pub fn log_at_start(pool: PgPool, ack_after_standby: bool) {
    // `up` starts serve and consume on one pool: one line per process is enough.
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    tokio::spawn(async move {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(client) = pool.get().await {
                    if let Ok(r) = status(&**client).await {
                        return r;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let Ok(r) = found.await else { return };
        let standbys: Vec<String> = r
            .standbys
            .iter()
            .map(|s| format!("{} {}/{}", s.name, s.state, s.sync_state))
            .collect();
        let covered = ack_after_standby && !r.commits_wait_for_a_standby();
        let replication = r.verdict();
        // What will stall, or cannot be judged, is a warning on one line.
        match r.stalls(ack_after_standby) {
            Some(stall) => tracing::warn!("database replication: {stall}; {replication}"),
            None if r.unknown() && !r.in_recovery => {
                tracing::warn!("database replication: {replication}")
            }
            None => {
                tracing::info!(standbys = ?standbys, replication = %replication, ack_after_standby = covered, "database replication")
            }
        }
    });
}

/// Whether this role may read the standbys' flush positions, which `--ack-after
/// standby` waits on: without that, the wait could never end.
pub async fn sees_standbys(client: &impl GenericClient) -> Result<bool, DbError> {
    let row = client
        .query_one(&format!("SELECT {SEES_STANDBYS}"), &[])
        .await?;
    Ok(row.get(0))
}
