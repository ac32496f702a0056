//! Whether the read URL's server is a replica of this primary, and how far behind.
//! A server out of recovery (promoted, or a diverged old primary), a copy of another
//! cluster, or a standby on an older timeline (still following a demoted primary)
//! answers reads with data the primary does not have: it is not used, and `/health`
//! says why. All of it is readable by an ordinary role: `pg_control_system()`,
//! `pg_control_checkpoint()` and `pg_walfile_name()` need no grant; only the standby's
//! streamed timeline (`pg_stat_wal_receiver.received_tli`) needs `pg_read_all_stats`,
//! and without it the timeline of its last restartpoint is used, which can be older
//! for a few minutes after a failover (the replica is then set aside, never misused).

use super::{DbError, PgPool};
use std::time::{Duration, SystemTime};

/// What the primary says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryFacts {
    pub lsn: i64,
    pub system: i64,
    pub timeline: i64,
    pub started: SystemTime,
    pub database: String,
}

/// What the read URL's server says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaFacts {
    pub in_recovery: bool,
    pub system: i64,
    pub timeline: i64,
    /// The timeline is the one it streams (else its last restartpoint's).
    pub streamed_timeline: bool,
    pub replayed: i64,
    /// Seconds since its last replayed commit (on its own clock).
    pub age: f64,
    pub started: SystemTime,
    pub database: String,
}

/// A replica fit to serve reads: its lag, and the position it has replayed (`u64::MAX`
/// when the read URL reaches the primary itself).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub lag: Duration,
    pub replayed: u64,
}

/// Asks both servers. The primary's position is read first: a replica that has
/// replayed it was at most one round trip behind.
pub async fn ask(
    primary: &PgPool,
    replica: &PgPool,
) -> Result<(PrimaryFacts, ReplicaFacts), DbError> {
    let p = primary.scoped(ask_primary(primary)).await?;
    let r = replica.scoped(ask_replica(replica)).await?;
    Ok((p, r))
}

async fn ask_primary(pool: &PgPool) -> Result<PrimaryFacts, DbError> {
    let row = pool
        .get()
        .await?
        .query_one(
            "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, \
                    (SELECT system_identifier FROM pg_control_system()), \
                    ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint, \
                    pg_postmaster_start_time(), current_database()::text",
            &[],
        )
        .await?;
    Ok(PrimaryFacts {
        lsn: row.get(0),
        system: row.get(1),
        timeline: row.get(2),
        started: row.get(3),
        database: row.get(4),
    })
}

async fn ask_replica(pool: &PgPool) -> Result<ReplicaFacts, DbError> {
    let row = pool
        .get()
        .await?
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    (SELECT system_identifier FROM pg_control_system()), \
                    coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                             (SELECT timeline_id FROM pg_control_checkpoint()))::bigint, \
                    (SELECT received_tli FROM pg_stat_wal_receiver) IS NOT NULL, \
                    coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, -1), \
                    coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, 1e9), \
                    pg_postmaster_start_time(), current_database()::text",
            &[],
        )
        .await?;
    Ok(ReplicaFacts {
        in_recovery: row.get(0),
        system: row.get(1),
        timeline: row.get(2),
        streamed_timeline: row.get(3),
        replayed: row.get(4),
        age: row.get(5),
        started: row.get(6),
        database: row.get(7),
    })
}

/// Why a replica may not serve reads, and its lag when that was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfit {
    pub reason: String,
    pub lag: Option<Duration>,
}

impl From<String> for Unfit {
    fn from(reason: String) -> Self {
        Self { reason, lag: None }
    }
}

/// Whether the replica may serve reads, or why not.
pub fn judge(p: &PrimaryFacts, r: &ReplicaFacts, max_lag: Duration) -> Result<Fit, Unfit> {
    if r.system != p.system {
        return Err(format!(
            "a copy of another database cluster (system identifier {}, the primary's is {})",
            r.system, p.system
        )
        .into());
    }
    if !r.in_recovery {
        // The read URL may reach the primary itself (a multi-host read URL after a
        // switchover): that server is never behind. Any other writable server has
        // writes the primary lacks.
        let same_server = r.timeline == p.timeline && r.started == p.started;
        if same_server && r.database == p.database {
            return Ok(Fit {
                lag: Duration::ZERO,
                replayed: u64::MAX,
            });
        }
        if same_server {
            return Err(format!(
                "database {:?} on the primary's own server, not the primary's {:?}",
                r.database, p.database
            )
            .into());
        }
        let reason =
            "not in recovery: a primary of its own (promoted?), not a replica of this primary";
        return Err(String::from(reason).into());
    }
    if r.timeline < p.timeline {
        let source = if r.streamed_timeline {
            "streams"
        } else {
            "last restartpoint is on"
        };
        return Err(format!(
            "follows an older timeline: it {source} timeline {}, the primary is on {}",
            r.timeline, p.timeline
        )
        .into());
    }
    let lag = if r.replayed >= p.lsn {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(r.age.clamp(0.0, 1e9))
    };
    if lag > max_lag {
        let reason = format!(
            "replay lag {:.1}s is over --max-replica-lag {:.1}s",
            lag.as_secs_f64(),
            max_lag.as_secs_f64()
        );
        return Err(Unfit {
            reason,
            lag: Some(lag),
        });
    }
    Ok(Fit {
        lag,
        replayed: u64::try_from(r.replayed).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PrimaryFacts, ReplicaFacts) {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let p = PrimaryFacts {
            lsn: 100,
            system: 7,
            timeline: 2,
            started,
            database: "app".into(),
        };
        let r = ReplicaFacts {
            in_recovery: true,
            system: 7,
            timeline: 2,
            streamed_timeline: true,
            replayed: 100,
            age: 30.0,
            started: started + Duration::from_secs(5),
            database: "app".into(),
        };
        (p, r)
    }

    const BOUND: Duration = Duration::from_secs(5);

    #[test]
    fn a_caught_up_standby_serves() {
        let (p, r) = pair();
        assert_eq!(
            judge(&p, &r, BOUND),
            Ok(Fit {
                lag: Duration::ZERO,
                replayed: 100
            })
        );
        let behind = ReplicaFacts {
            replayed: 90,
            age: 1.0,
            ..r
        };
        assert_eq!(
            judge(&p, &behind, BOUND).map(|f| f.lag),
            Ok(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_promoted_copy_another_cluster_or_an_old_timeline_does_not() {
        let (p, r) = pair();
        let promoted = ReplicaFacts {
            in_recovery: false,
            timeline: 3,
            ..r.clone()
        };
        assert!(judge(&p, &promoted, BOUND)
            .unwrap_err()
            .reason
            .contains("not in recovery"));
        let diverged = ReplicaFacts {
            in_recovery: false,
            ..r.clone()
        };
        assert!(
            judge(&p, &diverged, BOUND).is_err(),
            "same timeline, another server"
        );
        let other = ReplicaFacts {
            system: 8,
            ..r.clone()
        };
        assert!(judge(&p, &other, BOUND)
            .unwrap_err()
            .reason
            .contains("another database cluster"));
        let old = ReplicaFacts {
            timeline: 1,
            ..r.clone()
        };
        assert!(judge(&p, &old, BOUND)
            .unwrap_err()
            .reason
            .contains("older timeline"));
        let slow = ReplicaFacts {
            replayed: 90,
            age: 9.0,
            ..r
        };
        assert!(judge(&p, &slow, BOUND).unwrap_err().reason.contains("lag"));
    }

    #[test]
    fn the_primary_itself_is_never_behind() {
        let (p, _) = pair();
        let itself = ReplicaFacts {
            in_recovery: false,
            system: p.system,
            timeline: p.timeline,
            streamed_timeline: false,
            replayed: -1,
            age: 1e9,
            started: p.started,
            database: p.database.clone(),
        };
        assert_eq!(judge(&p, &itself, BOUND).map(|f| f.replayed), Ok(u64::MAX));
        let other_database = ReplicaFacts {
            database: "other".into(),
            ..itself
        };
        let refused = judge(&p, &other_database, BOUND).unwrap_err().reason;
        assert!(refused.contains("primary's own server"), "{refused}");
    }
}
