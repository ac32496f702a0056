//! One attempt: the Work JSON POSTed with the Standard Webhooks headers, bounded at
//! `ATTEMPT_TIMEOUT`. Redirects are not followed (a receiver that moved answers 3xx,
//! which is not delivered, and an operator sees it), as Svix and GitHub do.

use super::endpoint::Endpoint;
use anyhow::Context;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most one attempt may take, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx.
    Delivered(u16),
    /// Any other answer.
    Refused(u16),
    /// No answer: refused connection, timeout, TLS failure.
    NoAnswer(String),
}

pub struct Sender {
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl Sender {
    pub fn new(endpoint: Endpoint) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ppctl-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the webhook HTTP client")?;
        Ok(Self { http, endpoint })
    }

    /// The receiver's URL, password hidden.
    pub fn shown(&self) -> String {
        self.endpoint.shown()
    }

    /// POSTs `body` as delivery `webhook_id`, signed with this attempt's timestamp.
    pub async fn send(&self, webhook_id: &str, body: Vec<u8>) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signature = self.endpoint.secret.sign(webhook_id, timestamp, &body);
        let request = self
            .http
            .post(self.endpoint.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                Attempt::Delivered(response.status().as_u16())
            }
            Ok(response) => Attempt::Refused(response.status().as_u16()),
            // Without the URL, whose password must not reach the table or a log.
            Err(e) => Attempt::NoAnswer(no_answer(&e.without_url())),
        }
    }
}

fn no_answer(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {ATTEMPT_TIMEOUT:?}");
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
