//! The server certificate check for each `sslmode`. rustls checks chain and name in one
//! step; libpq's `verify-ca` (and `prefer`/`require` with a root certificate) wants
//! the chain only, so a name mismatch after a good chain is accepted there. A failure
//! is reported with the host connected to, since tokio-postgres passes on only the last
//! host's error of a multi-host URL and does not say which one it was.

use crate::config::SettingError;
use crate::tls::AnyServerCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};
use std::sync::Arc;

#[derive(Debug)]
pub struct Verifier {
    chain: Arc<WebPkiServerVerifier>,
    /// `verify-full`: the host connected to must be named in the certificate.
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    /// The check for a mode: none without a root certificate (`prefer`, `require`:
    /// encrypted, not authenticated), else the chain, and the name too for
    /// `verify-full`.
    pub fn for_mode(
        roots: Option<Arc<RootCertStore>>,
        check_name: bool,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Arc<dyn ServerCertVerifier>> {
        let Some(roots) = roots else {
            return Ok(Arc::new(AnyServerCert::new(provider)));
        };
        let chain = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| SettingError(format!("sslrootcert: {e}")))?;
        Ok(Arc::new(Self {
            chain,
            check_name,
            provider,
        }))
    }
}

/// A refused certificate, said with the host it came from.
#[derive(Debug)]
struct Refused {
    host: String,
    why: CertificateError,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match self.why {
            CertificateError::UnknownIssuer => " (no CA of sslrootcert signed it)",
            _ => "",
        };
        write!(
            f,
            "the server certificate of {} was refused: {}{hint}",
            self.host, self.why
        )
    }
}

impl std::error::Error for Refused {}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // rustls checks the name last: a mismatch means the chain was good.
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(Error::InvalidCertificate(why)) => {
                let host = server_name.to_str().into_owned();
                let refused = Refused { host, why };
                Err(Error::Other(OtherError(Arc::new(refused))))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
