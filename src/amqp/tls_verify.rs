//! The two TLS pieces rustls leaves to its user: `verify=verify_none` (any server
//! certificate, as RabbitMQ's own `verify_none`), and saying in one line why a
//! handshake failed (certificate, host name, or protocol), whichever call noticed it.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// Accepts whatever certificate the server shows; the handshake's signatures are still
/// checked, so the session is encrypted, only not authenticated.
#[derive(Debug)]
pub struct AnyServerCert(Arc<CryptoProvider>);

impl AnyServerCert {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a connection failed, when TLS is the reason: the rustls error found anywhere
/// in the chain (lapin wraps it in its IO error, which hides it from `source()`).
pub fn explain(error: &anyhow::Error) -> Option<String> {
    let tls = error.chain().find_map(|cause| {
        cause.downcast_ref::<rustls::Error>().or_else(|| {
            let io = match cause.downcast_ref::<lapin::Error>() {
                Some(e) => match e.kind() {
                    lapin::ErrorKind::IOError(io) => Some(&**io),
                    _ => None,
                },
                None => cause.downcast_ref::<std::io::Error>(),
            };
            io.and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        })
    })?;
    Some(describe(tls))
}

fn describe(error: &rustls::Error) -> String {
    use rustls::Error as E;
    let what = match error {
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            "TLS host name: the server's certificate is not for the name ppctl verifies (the \
              URL's host, or server_name_indication=)"
        }
        E::InvalidCertificate(_) | E::NoCertificatesPresented => {
            "TLS certificate: the server's certificate is not trusted (cacertfile= names the CA \
             that signed it; without it, the system trust store is used)"
        }
        E::AlertReceived(_) => {
            "TLS refused by the server (it may require a client certificate: certfile= and \
             keyfile=, or one its CA signed)"
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::PeerIncompatible(_) => {
            "TLS protocol: the server did not answer in TLS, or in a TLS version or cipher \
             ppctl speaks (is the port a plain amqp:// listener?)"
        }
        _ => "TLS handshake failed",
    };
    format!("{what}: {error}")
}
