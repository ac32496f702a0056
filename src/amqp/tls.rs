//! `amqps://`: the trust an AMQP URL asks for, in the RabbitMQ URI spec's query
//! parameters (`cacertfile`, `certfile`, `keyfile`, `verify`, `server_name_indication`),
//! turned into a rustls client configuration once, at start. Every file is read then:
//! a path that cannot be read or parsed is a one-line error before anything connects,
//! not a reconnect loop. The configuration is built here rather than through lapin's
//! `OwnedTLSConfig`, which can only add roots to the system's and neither skip
//! verification nor choose the name to verify.

use crate::tls::AnyServerCert;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The query parameters ppctl reads for TLS; any of them on an `amqp://` URL is refused
/// (the operator meant TLS and would not get it).
const TLS_KEYS: [&str; 5] = [
    "cacertfile",
    "certfile",
    "keyfile",
    "verify",
    "server_name_indication",
];

/// `verify=verify_peer` (the default) or `verify=verify_none`, as in RabbitMQ's own
/// `ssl_options.verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Peer,
    None,
}

/// What one URL's query asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TlsParams {
    pub cacertfile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub verify: Option<Verify>,
    pub server_name_indication: Option<String>,
}

/// A node's TLS: the rustls configuration and the name its certificate must carry
/// (sent as SNI when it is a DNS name).
#[derive(Clone)]
pub struct Tls {
    pub connector: lapin::tcp::RustlsConnector,
    pub server_name: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsParams {
    /// The TLS parameters of a parsed URL. Errors name the parameter, never the URL.
    pub fn from_url(url: &url::Url) -> Result<Self, String> {
        let mut params = Self::default();
        for (key, value) in url.query_pairs() {
            let path = || Some(PathBuf::from(value.as_ref()));
            match key.as_ref() {
                "cacertfile" => params.cacertfile = path(),
                "certfile" => params.certfile = path(),
                "keyfile" => params.keyfile = path(),
                "verify" => params.verify = Some(parse_verify(&value)?),
                "server_name_indication" => {
                    ServerName::try_from(value.as_ref()).map_err(|_| {
                        format!("server_name_indication={value} is not a host name")
                    })?;
                    params.server_name_indication = Some(value.into_owned());
                }
                _ => {}
            }
        }
        let tls_key = url
            .query_pairs()
            .find(|(k, _)| TLS_KEYS.contains(&k.as_ref()));
        if let (Some((key, _)), "amqp") = (tls_key, url.scheme()) {
            return Err(format!(
                "{key}= is a TLS parameter: use amqps://, not amqp://"
            ));
        }
        match (&params.certfile, &params.keyfile) {
            (Some(_), None) => Err("certfile= needs keyfile= (the client key, PEM)".into()),
            (None, Some(_)) => Err("keyfile= needs certfile= (the client certificate, PEM)".into()),
            _ => Ok(params),
        }
    }

    /// Reads the files and builds the client configuration; `host` is the URL's host,
    /// verified unless `server_name_indication` names another.
    pub fn build(&self, host: &str) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let builder = match self.verify.unwrap_or(Verify::Peer) {
            Verify::Peer => {
                let verifier = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider)
                    .build()
                    .map_err(|e| format!("TLS trust store: {e}"))?;
                builder.with_webpki_verifier(verifier)
            }
            Verify::None => {
                // Unused, but read all the same: a wrong path is found at start.
                if let Some(path) = &self.cacertfile {
                    read_certs("cacertfile", path)?;
                }
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(provider)))
            }
        };
        let config = match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs("certfile", cert)?, read_key(key)?)
                .map_err(|e| {
                    format!("certfile= and keyfile= do not make a client identity: {e}")
                })?,
            _ => builder.with_no_client_auth(),
        };
        let server_name = self.server_name_indication.as_deref().unwrap_or(host);
        Ok(Tls {
            connector: Arc::new(config).into(),
            server_name: server_name.to_string(),
        })
    }

    /// `cacertfile`'s certificates alone, or the system's trust store without it (or
    /// Mozilla's roots where the system has none).
    fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        let mut roots = RootCertStore::empty();
        match &self.cacertfile {
            Some(path) => {
                for cert in read_certs("cacertfile", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("cacertfile={}: {e}", path.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    // No ca-certificates (a slim image): the public CAs a managed broker
                    // uses are Mozilla's, as `work --via http` trusts.
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
            }
        }
        Ok(Arc::new(roots))
    }
}

fn parse_verify(value: &str) -> Result<Verify, String> {
    match value {
        "verify_peer" => Ok(Verify::Peer),
        "verify_none" => Ok(Verify::None),
        other => Err(format!("verify={other} is not verify_peer or verify_none")),
    }
}

/// Every PEM certificate in the file; none at all is an error.
fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {key}={shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}={shown} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{key}={shown} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The first private key in the file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read keyfile={shown}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("keyfile={shown} holds no unencrypted PEM private key ({e})"))
}
