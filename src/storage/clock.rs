//! The database's clock, as seen from this host. A request's deadline is this host's
//! clock, but the statement that must not run after it is judged by the database's
//! `clock_timestamp()`: a few seconds of skew between the two would turn every create
//! into a 503 (or let a late one through). Each new pooled connection measures the
//! offset once (one round trip, at connect, which also checks the schema), and
//! deadlines are shifted by it. The offset belongs to its pool (`PgPool::clock`): a
//! read replica's clock must not move the primary's deadlines.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// One pool's (and its siblings') server clock minus this host's, in microseconds, as
/// last measured.
#[derive(Debug, Default)]
pub struct ClockOffset(AtomicI64);

/// Checks a fresh pooled connection in one round trip: measures the clock offset (the
/// database's time against the middle of the round trip that read it) and reads the
/// applied migrations. Returns why this binary must not use the database, if it must
/// not (`migrate::fit`: a database ahead by additive migrations is used); a missing
/// `schema_migrations` is the error itself.
pub async fn check_new_connection(
    client: &tokio_postgres::Client,
    offset: &ClockOffset,
) -> Result<Option<String>, tokio_postgres::Error> {
    let (sent, started) = (SystemTime::now(), Instant::now());
    let query = format!("SELECT clock_timestamp(), {}", super::migrate::APPLIED_SQL);
    let row = client.query_one(query.as_str(), &[]).await?;
    let database: SystemTime = row.get(0);
    let local = sent + started.elapsed() / 2;
    offset
        .0
        .store(offset_micros(database, local), Ordering::Relaxed);
    Ok(schema_refusal(&row))
}

/// The schema half of the check (`migrate::fit`): the migrations applied, against
/// every migration this binary knows.
fn schema_refusal(row: &tokio_postgres::Row) -> Option<String> {
    let (versions, additive): (Vec<i32>, Vec<Option<bool>>) = (row.get(1), row.get(2));
    let applied: Vec<(i32, Option<bool>)> = versions.into_iter().zip(additive).collect();
    super::migrate::mismatch(&applied, super::migrate::all())
}

fn offset_micros(database: SystemTime, local: SystemTime) -> i64 {
    match database.duration_since(local) {
        Ok(ahead) => i64::try_from(ahead.as_micros()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

impl ClockOffset {
    /// This host's time `t`, on this pool's server's clock.
    pub fn to_database_time(&self, t: SystemTime) -> SystemTime {
        let offset = self.0.load(Ordering::Relaxed);
        let shift = Duration::from_micros(offset.unsigned_abs());
        if offset >= 0 {
            t + shift
        } else {
            t - shift
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_go_both_ways() {
        let now = SystemTime::now();
        let ahead = now + Duration::from_secs(3);
        assert_eq!(offset_micros(ahead, now), 3_000_000);
        assert_eq!(offset_micros(now, ahead), -3_000_000);
    }
}
