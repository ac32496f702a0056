//! Read your writes. A write through the API answers with the position of its commit
//! in the primary's WAL (an LSN, PostgreSQL's `X/Y` text form); a read that carries
//! it is served by a replica only once the replica has replayed that far, so a client
//! reading from a lagging replica still sees its own writes.

use super::DbError;
use std::fmt;
use std::str::FromStr;

/// A position in the WAL, as PostgreSQL writes it (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;

    /// Two groups of 1 to 8 hex digits around a slash, as `pg_lsn` takes them.
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || format!("not a WAL position (like 0/16B3748): {s:.40}");
        let (high, low) = s.split_once('/').ok_or_else(invalid)?;
        let half = |part: &str| {
            let hex = (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| u32::from_str_radix(part, 16).ok()).flatten()
        };
        match (half(high), half(low)) {
            (Some(high), Some(low)) => Ok(Lsn(u64::from(high) << 32 | u64::from(low))),
            _ => Err(invalid()),
        }
    }
}

/// The WAL position just committed on this connection: read right after the commit,
/// on the same connection, so it is at or past the commit record (the insert
/// position, not the write position: with `synchronous_commit = off` the commit
/// record can lie past what has been written).
pub async fn after_commit(client: &tokio_postgres::Client) -> Result<Lsn, DbError> {
    let row = client
        .query_one(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .await?;
    Ok(Lsn(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_postgres_text() {
        for text in ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let lsn: Lsn = text.parse().expect(text);
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("1/0".parse::<Lsn>(), Ok(Lsn(1 << 32)));
        assert!(
            "0/16b3748".parse::<Lsn>().is_ok(),
            "lower case, as pg_lsn takes it"
        );
    }

    #[test]
    fn refuses_what_is_not_a_position() {
        for bad in [
            "",
            "0",
            "/1",
            "1/",
            "x/1",
            "1/2/3",
            "123456789/0",
            " 0/1",
            "-1/0",
            "+1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
    }
}
