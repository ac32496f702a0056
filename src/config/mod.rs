//! Connection settings shared by every subcommand, and the redaction that keeps
//! passwords out of logs and error messages.

use anyhow::Context;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres:postgres@127.0.0.1:5432/personalproject";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_QUEUE: &str = "pp_work_queue";
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:3000";
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:3000";

pub use crate::redact::redact_url;

pub mod ssl;

/// A PostgreSQL URL taken apart: what tokio-postgres reads, and libpq's TLS parameters
/// that it does not (`storage::tls` turns those into the connector).
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub config: tokio_postgres::Config,
    pub ssl: ssl::SslParams,
}

/// A setting that can never work (a malformed URL, an unknown `sslmode`, a certificate
/// file that cannot be read): the command stops at start with exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(pub String);

/// Parses `DATABASE_URL` (or the read replica's) into a driver config and its TLS
/// parameters; the error never repeats the URL itself.
pub fn parse_database_url(url: &str) -> anyhow::Result<DatabaseUrl> {
    let bad = |why: String| anyhow::Error::new(SettingError(why));
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // Not echoed, even redacted: a value in some other form may be anything.
        return Err(bad(
            "DATABASE_URL must be a postgres:// URL (libpq's key=value form is not accepted)"
                .into(),
        ));
    }
    let shown = redact_url(url);
    let (rest, ssl) =
        ssl::take_ssl_params(url).map_err(|e| bad(format!("DATABASE_URL {shown}: {e}")))?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| bad(format!("invalid DATABASE_URL {shown}: {e}")))?;
    if config.get_dbname().is_none() {
        return Err(bad(format!("DATABASE_URL {shown} names no database")));
    }
    config.ssl_mode(ssl.mode.driver_mode());
    name_hosts_by_address(&mut config);
    if config.get_hosts().is_empty() {
        // libpq would use its default socket; tokio-postgres has none to use.
        return Err(bad(format!("DATABASE_URL {shown} names no host")));
    }
    let per_host = connect_timeout(&rest).map_err(|e| bad(format!("DATABASE_URL {shown}: {e}")))?;
    config.connect_timeout(per_host);
    bound_waits(&mut config);
    config.application_name("ppctl");
    Ok(DatabaseUrl { config, ssl })
}

/// With `hostaddr` and no `host`, libpq checks the certificate against the address;
/// tokio-postgres would refuse to negotiate TLS at all for want of a name.
fn name_hosts_by_address(config: &mut tokio_postgres::Config) {
    if config.get_hosts().is_empty() {
        let addrs: Vec<String> = config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        for addr in addrs {
            config.host(&addr);
        }
    }
}

/// How long one host may take to connect when the URL does not say (TCP, TLS, start-up
/// and the `target_session_attrs` check, per host): libpq's minimum, so that a dark host
/// 1 leaves an API request (3 s to its insert) the time to reach host 2.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The URL's `connect_timeout`, libpq's meaning: whole seconds per host, 1 read as 2.
/// libpq waits forever on 0 or less; here that is refused, since a dark host would then
/// hold every connection (tokio-postgres would silently drop such a value).
fn connect_timeout(url: &str) -> Result<Duration, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let value = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| crate::redact::percent_decode(k) == "connect_timeout")
        .map(|(_, v)| crate::redact::percent_decode(v))
        .next_back();
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_CONNECT_TIMEOUT);
    };
    let shown: String = value.chars().take(32).collect();
    match value.trim().parse::<i64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs.max(2) as u64)),
        Ok(_) => Err(format!(
            "connect_timeout={shown} would wait forever on a dark host; give seconds (at least 2)"
        )),
        Err(_) => Err(format!(
            "connect_timeout {shown:?} is not a whole number of seconds"
        )),
    }
}

/// Server-side cap on one statement, unless DATABASE_URL sets its own in `options`.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// Bounds every other wait on the database: each statement (server side), and a peer
/// that vanished (TCP keepalives, and a cap on unacknowledged sends), so that no
/// connection, pooled or LISTEN, waits forever on a dead server. (The connect is
/// bounded per host by `storage::connect`.)
fn bound_waits(config: &mut tokio_postgres::Config) {
    // A host that went dark mid-connection (a partition, a lost VM) answers nothing, not
    // even a reset: these give its connections up within about 6 s, idle or waiting for
    // a reply (probes unanswered) or sending (data unacknowledged). A slow or frozen
    // server is not cut: its kernel still acknowledges and answers the probes.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(3));
    config.keepalives_interval(Duration::from_secs(1));
    config.keepalives_retries(3);
    config.tcp_user_timeout(Duration::from_secs(6));
    let options = config.get_options().unwrap_or_default().to_string();
    if !options.contains("statement_timeout") {
        let timeout = format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}");
        config.options(format!("{options} {timeout}").trim());
    }
}

/// Parses a duration like `5s`, `250ms`, `6h`, or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); try 5s, 250ms or 6h"))
}

/// Validates a queue name: AMQP short strings are at most 255 bytes and the `.dead`
/// and `.dlx` suffixes are appended to it.
pub fn parse_queue_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 200 || s.starts_with("amq.") {
        return Err(format!(
            "invalid queue name {s:?}: 1..=200 bytes, not starting with amq."
        ));
    }
    Ok(s.to_string())
}

pub fn database_name(url: &str) -> anyhow::Result<String> {
    let parsed = parse_database_url(url)?;
    parsed
        .config
        .get_dbname()
        .map(str::to_string)
        .context("DATABASE_URL names no database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_errors_do_not_leak_the_password() {
        let err = parse_database_url("postgres://u:secret@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        for other in ["mysql://u:secret@h/db", "host=h password=secret"] {
            let err = parse_database_url(other).unwrap_err().to_string();
            assert!(
                err.contains("postgres:// URL") && !err.contains("secret"),
                "{err}"
            );
        }
        let config = parse_database_url(DEFAULT_DATABASE_URL)
            .expect("default URL")
            .config;
        assert_eq!(config.get_options(), Some("-c statement_timeout=30000"));
        assert!(config.get_keepalives());
        let own = parse_database_url("postgres://h/db?options=-c%20statement_timeout%3D0")
            .expect("URL with options")
            .config;
        assert_eq!(own.get_options(), Some("-c statement_timeout=0"));
    }

    #[test]
    fn connect_timeout_has_libpqs_meaning() {
        let per_host = |url: &str| {
            parse_database_url(url)
                .map(|u| u.config.get_connect_timeout().copied())
                .map_err(|e| e.to_string())
        };
        let default = Some(DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(per_host("postgres://h/db"), Ok(default));
        let ten = Some(Duration::from_secs(10));
        assert_eq!(per_host("postgres://h1,h2/db?connect_timeout=10"), Ok(ten));
        let two = Some(Duration::from_secs(2));
        assert_eq!(per_host("postgres://h/db?connect_timeout=1"), Ok(two));
        let err = per_host("postgres:///db").expect_err("no host");
        assert!(err.contains("names no host"), "{err}");
        for bad in ["0", "-3", "soon", "2.5"] {
            let err = per_host(&format!("postgres://u:secret@h/db?connect_timeout={bad}"))
                .expect_err(bad);
            assert!(
                err.contains("connect_timeout") && !err.contains("secret"),
                "{err}"
            );
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_queue_name("amq.x").is_err());
        assert!(parse_queue_name("").is_err());
    }
}
