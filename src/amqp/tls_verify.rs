//! Saying in one line why a TLS handshake failed (certificate, host name, or
//! protocol), whichever call noticed it. (`verify=verify_none` is `crate::tls`'s
//! `AnyServerCert`.)

use rustls::CertificateError;

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
