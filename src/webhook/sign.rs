//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! keyed with the bytes of a `whsec_<base64>` secret. The secret is never printed:
//! not by `Debug`, not in an error.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The spec's bounds on a secret's decoded length.
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_***)")
    }
}

impl Secret {
    /// `whsec_` then base64 of 24 to 64 bytes. The error says what is wrong with it,
    /// never what it is.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(encoded) = text.trim().strip_prefix("whsec_") else {
            return Err("must start with whsec_ (Standard Webhooks)".into());
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| "is not whsec_ followed by base64".to_string())?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
            return Err(format!(
                "decodes to {} bytes; Standard Webhooks secrets are {MIN_BYTES} to {MAX_BYTES}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// The `webhook-signature` header's value for one attempt.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The test vector of the Standard Webhooks libraries (standard-webhooks/
        // standard-webhooks, libraries/javascript/src/index.test.ts).
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn bad_secrets_are_refused_without_being_echoed() {
        for bad in [
            "hunter2hunter2hunter2hunter2",
            "whsec_!!!notbase64",
            "whsec_aGk=",
        ] {
            let error = Secret::parse(bad).err().unwrap_or_default();
            assert!(!error.is_empty() && !error.contains(bad), "{bad}: {error}");
        }
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
