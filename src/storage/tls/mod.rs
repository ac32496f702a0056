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
            mode_name(ssl.mode)
        ))
        .into());
    }
    let verifier = verify::Verifier::new(roots, ssl.mode == SslMode::VerifyFull, provider.clone())?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SettingError(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
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

/// The mode as written in a URL.
pub fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}
