//! The receiver's URL and secret, checked before anything starts: a bad one is a
//! one-line usage error (exit 2) that shows the URL with its password hidden and never
//! the secret.

use super::sign::Secret;
use crate::redact::redact_url;
use reqwest::Url;

/// Where and how deliveries are sent.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: Url,
    pub secret: Secret,
}

impl Endpoint {
    /// `None` without a URL (webhooks off in this process). A URL needs a secret.
    pub fn parse(url: Option<&str>, secret: Option<&str>) -> Result<Option<Endpoint>, String> {
        let Some(text) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let shown = redact_url(text);
        let bad = |why: &str| format!("--webhook-url {shown} {why}");
        let url = Url::parse(text).map_err(|e| bad(&format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must start with http:// or https://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        if url.fragment().is_some() {
            return Err(bad("must not have a #fragment"));
        }
        let secret = match secret.map(str::trim).filter(|s| !s.is_empty()) {
            Some(secret) => Secret::parse(secret).map_err(|e| format!("PP_WEBHOOK_SECRET {e}"))?,
            None => {
                return Err(
                    "--webhook-url needs a signing secret: PP_WEBHOOK_SECRET=whsec_<base64>".into(),
                )
            }
        };
        Ok(Some(Endpoint { url, secret }))
    }

    /// The URL as logs and errors may show it.
    pub fn shown(&self) -> String {
        redact_url(self.url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn urls_and_secrets_are_checked_and_passwords_hidden() {
        assert!(matches!(Endpoint::parse(None, Some(SECRET)), Ok(None)));
        let ok = Endpoint::parse(Some("https://u:pw1@hooks.example/in?x=1"), Some(SECRET));
        let ok = ok.ok().flatten().expect("valid");
        assert!(!ok.shown().contains("pw1"));
        for (url, secret) in [
            ("ftp://u:pw1@h/", Some(SECRET)),
            ("http://u:pw1@", Some(SECRET)),
            ("https://u:pw1@h/#frag", Some(SECRET)),
            ("not a url u:pw1@h", Some(SECRET)),
            ("https://u:pw1@h/", None),
            ("https://u:pw1@h/", Some("whsec_pw1")),
        ] {
            let error = Endpoint::parse(Some(url), secret).err().unwrap_or_default();
            assert!(!error.is_empty(), "{url}");
            assert!(!error.contains("pw1") && !error.contains("MfKQ"), "{error}");
        }
    }
}
