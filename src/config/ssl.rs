//! libpq's TLS parameters in a PostgreSQL URL: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`), `sslrootcert`, `sslcert`, `sslkey`. tokio-postgres
//! parses only the first three modes and none of the files, so they are taken out of
//! the URL before the driver sees it; `storage::tls` builds the connector from them.

use std::path::PathBuf;

/// libpq's `sslmode`, `allow` excepted (tokio-postgres cannot try plain first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => return Err("sslmode=allow is not supported; use disable or prefer".into()),
            _ => {
                let shown: String = value.chars().take(32).collect();
                return Err(format!("unknown sslmode {shown:?}: use disable, prefer, require, verify-ca or verify-full"));
            }
        })
    }

    /// The mode as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: it encrypts or not; the checks are the connector's.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            Self::Disable => Driver::Disable,
            Self::Prefer => Driver::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Driver::Require,
        }
    }
}

/// Where the certificate authorities to trust come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file of one or more CA certificates (a cloud provider's bundle).
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trust store (libpq 16).
    System,
}

/// The TLS parameters of one URL, as written (defaults resolved by `storage::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslParams {
    pub mode: SslMode,
    pub root: Option<RootCerts>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Takes the TLS parameters out of `url`'s query; returns the URL without them. Keys
/// and values are percent-decoded, as tokio-postgres decodes them; an empty value
/// counts as absent, as in libpq. Errors name the parameter, never the URL.
pub fn take_ssl_params(url: &str) -> Result<(String, SslParams), String> {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let value = crate::redact::percent_decode(v);
        let slot = match crate::redact::percent_decode(k).as_str() {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            "sslcert" => &mut cert,
            "sslkey" => &mut key,
            _ => {
                kept.push(param);
                continue;
            }
        };
        *slot = Some(value).filter(|v| !v.is_empty());
    }
    let root = root.map(|r| match r.as_str() {
        "system" => RootCerts::System,
        _ => RootCerts::File(r.into()),
    });
    let params = SslParams {
        mode: resolve_mode(mode.as_deref(), root.as_ref())?,
        root,
        cert: cert.map(PathBuf::from),
        key: key.map(PathBuf::from),
    };
    if params.cert.is_some() != params.key.is_some() {
        return Err(
            "sslcert and sslkey go together: give both (a client certificate and its key)".into(),
        );
    }
    let rest = match kept.is_empty() {
        true => head.to_string(),
        false => format!("{head}?{}", kept.join("&")),
    };
    Ok((rest, params))
}

/// libpq's default is `prefer`, except that `sslrootcert=system` defaults to
/// `verify-full` and refuses any weaker mode (libpq 16): trusting every public CA
/// without checking the name would accept anyone's certificate.
fn resolve_mode(mode: Option<&str>, root: Option<&RootCerts>) -> Result<SslMode, String> {
    let system = root == Some(&RootCerts::System);
    let mode = match mode {
        Some(m) => SslMode::parse(m)?,
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if system && mode != SslMode::VerifyFull && mode != SslMode::Disable {
        return Err(format!(
            "sslrootcert=system needs sslmode=verify-full (got {}): the system's CAs vouch for any host",
            mode.as_str()
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(url: &str) -> Result<(String, SslParams), String> {
        take_ssl_params(url)
    }

    #[test]
    fn the_parameters_leave_the_url() {
        let (rest, p) = take(
            "postgres://u:p@h/db?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("parses");
        assert_eq!(rest, "postgres://u:p@h/db?connect_timeout=3");
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root, Some(RootCerts::File("/etc/ca.pem".into())));
        let (rest, p) =
            take("postgres://h/db?ssl%6dode=require&sslcert=c.pem&sslkey=k.pem").expect("parses");
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(
            (p.mode, p.cert, p.key),
            (SslMode::Require, Some("c.pem".into()), Some("k.pem".into()))
        );
        let (rest, p) = take("postgres://h/db").expect("parses");
        assert_eq!(
            (rest.as_str(), p.mode, p.root),
            ("postgres://h/db", SslMode::Prefer, None)
        );
    }

    #[test]
    fn libpq_defaults_and_refusals() {
        let system = take("postgres://h/db?sslrootcert=system")
            .expect("parses")
            .1;
        assert_eq!(
            (system.mode, system.root),
            (SslMode::VerifyFull, Some(RootCerts::System))
        );
        for bad in [
            "postgres://h/db?sslmode=verify_full",
            "postgres://h/db?sslmode=allow",
            "postgres://h/db?sslmode=require&sslrootcert=system",
            "postgres://h/db?sslcert=c.pem",
            "postgres://h/db?sslkey=k.pem",
        ] {
            assert!(take(bad).is_err(), "{bad}");
        }
        let err = take("postgres://h/db?sslmode=bogus").expect_err("bogus");
        assert!(
            err.contains("unknown sslmode \"bogus\"") && err.contains("verify-full"),
            "{err}"
        );
    }
}
