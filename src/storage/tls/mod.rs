//! TLS to PostgreSQL, libpq's way. Every connection ppctl opens (the pools, LISTEN,
//! NOTIFY, `db` commands, cancel requests) goes through one `PgTarget`, so each gets
//! the same connector built once at start from the URL's `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` (parsed by `config::ssl`). A file that cannot be read or
//! parsed stops the command at start (`config::SettingError`, exit 2).
//!
//! What is checked of the server's certificate (libpq's rules, `verify`):
//! `disable`: no TLS. `prefer` (the default) and `require`: encrypted, certificate not
//! checked, unless a root certificate is given or `~/.postgresql/root.crt` exists, in
//! which case the chain is checked as `verify-ca` does. `verify-ca`: the chain must lead
//! to a CA of `sslrootcert`. `verify-full`: that, and the host connected to must be
//! named in the certificate.

mod files;
mod target;
mod verify;

pub use target::{PgConnection, PgTarget};

use crate::config::ssl::{SslMode, SslParams};
use crate::config::SettingError;
use rustls::ClientConfig;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector: tokio-postgres-rustls's, with a verifier that applies `sslmode`.
#[derive(Clone)]
pub struct PgTls(MakeRustlsConnect);

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        // A Unix socket has no host name, and the server never offers TLS there; the
        // connector must still be made, so any valid name fills the slot.
        let name = if host.is_empty() { "localhost" } else { host };
        MakeTlsConnect::<S>::make_tls_connect(&mut self.0, name)
    }
}

/// Builds the connector for `ssl`, reading the certificate files now.
pub fn connector(ssl: &SslParams) -> anyhow::Result<PgTls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match ssl.mode {
        SslMode::Disable => None,
        _ => files::roots(ssl)?,
    };
    if roots.is_none() && matches!(ssl.mode, SslMode::VerifyCa | SslMode::VerifyFull) {
        return Err(SettingError(format!(
            "sslmode={} needs sslrootcert (a CA file, or system) or ~/.postgresql/root.crt",
            ssl.mode.as_str()
        ))
        .into());
    }
    let verify_full = ssl.mode == SslMode::VerifyFull;
    let verifier = verify::Verifier::for_mode(roots, verify_full, provider.clone())?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SettingError(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&ssl.cert, &ssl.key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = files::client_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SettingError(format!("sslcert/sslkey: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(PgTls(MakeRustlsConnect::new(config)))
}

#[cfg(test)]
mod tests {
    use super::PgTarget;
    use crate::config::SettingError;
    use tokio_postgres::config::SslMode as Driver;

    fn refusal(url: &str) -> String {
        let err = PgTarget::parse(url).expect_err(url);
        assert!(err.downcast_ref::<SettingError>().is_some(), "{err:#}");
        let text = format!("{err:#}");
        assert!(!text.contains("secret"), "{text}");
        text
    }

    #[test]
    fn unusable_files_and_modes_are_setting_errors() {
        let base = "postgres://u:secret@h/db?sslmode=verify-full";
        let text = refusal(&format!("{base}&sslrootcert=/nonexistent/ca.pem"));
        assert!(text.contains("sslrootcert /nonexistent/ca.pem"), "{text}");
        let not_pem = std::env::temp_dir().join(format!("ppctl-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "not a certificate").expect("write");
        let text = refusal(&format!("{base}&sslrootcert={}", not_pem.display()));
        let _ = std::fs::remove_file(&not_pem);
        assert!(text.contains("no PEM certificate"), "{text}");
        // HOME without ~/.postgresql/root.crt is assumed here, as on every test machine.
        assert!(refusal(base).contains("needs sslrootcert"));
        let text =
            refusal("postgres://u:secret@h/db?sslmode=require&sslcert=/no/c.pem&sslkey=/no/k.pem");
        assert!(text.contains("sslcert /no/c.pem"), "{text}");
        assert!(refusal("postgres://u:secret@h/db?sslmode=Require").contains("unknown sslmode"));
    }

    #[test]
    fn the_driver_sees_only_what_it_knows() {
        for (mode, driver) in [
            ("disable", Driver::Disable),
            ("prefer", Driver::Prefer),
            ("require", Driver::Require),
        ] {
            let url = format!("postgres://u:p@h/db?sslmode={mode}&connect_timeout=3");
            let target = PgTarget::parse(&url).expect(mode);
            assert_eq!(target.config().get_ssl_mode(), driver, "{mode}");
        }
        let target = PgTarget::parse("postgres://u:p@h/db").expect("no sslmode");
        assert_eq!(
            target.config().get_ssl_mode(),
            Driver::Prefer,
            "libpq's default"
        );
        let by_address =
            PgTarget::parse("postgres://u:p@/db?hostaddr=127.0.0.1").expect("hostaddr");
        assert_eq!(
            by_address.config().get_hosts().len(),
            1,
            "named by its address for TLS"
        );
    }
}
