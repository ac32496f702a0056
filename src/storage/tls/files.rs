//! The certificate files a URL names, read once at start. An unreadable or unparsable
//! file is a `SettingError` naming the parameter and the path (never the URL).

use crate::config::ssl::{RootCerts, SslParams};
use crate::config::SettingError;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn bad(param: &str, path: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    SettingError(format!("{param} {}: {why}", path.display())).into()
}

/// The CAs to check the server's chain against: `sslrootcert`, else libpq's default
/// file `~/.postgresql/root.crt` when it exists, else none (no check).
pub fn roots(ssl: &SslParams) -> anyhow::Result<Option<Arc<RootCertStore>>> {
    let root = match &ssl.root {
        Some(root) => root.clone(),
        None => match default_root() {
            Some(path) => RootCerts::File(path),
            None => return Ok(None),
        },
    };
    let mut store = RootCertStore::empty();
    match root {
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or("no certificate found".to_string(), |e| e.to_string());
                return Err(SettingError(format!(
                    "sslrootcert=system: the system trust store is empty ({why})"
                ))
                .into());
            }
        }
        RootCerts::File(path) => {
            for cert in certificates("sslrootcert", &path)? {
                store.add(cert).map_err(|e| bad("sslrootcert", &path, e))?;
            }
        }
    }
    Ok(Some(Arc::new(store)))
}

fn default_root() -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.exists().then_some(path)
}

/// Every certificate of a PEM file; none is an error.
fn certificates(param: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| bad(param, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(param, path, e))?;
    if certs.is_empty() {
        return Err(bad(param, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// `sslcert` (the client's certificate, intermediates may follow) and `sslkey` (PKCS#8,
/// PKCS#1 or SEC1 PEM, unencrypted).
pub fn client_identity(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = certificates("sslcert", cert)?;
    let pem = std::fs::read(key).map_err(|e| bad("sslkey", key, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad("sslkey", key, e))?;
    Ok((chain, key_der))
}
