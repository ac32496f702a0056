//! The API as `ppctl work --via http` sees it: reqwest over http or https (rustls),
//! bounded waits, and the API's JSON errors turned into one line and an exit code.

use super::Failure;
use crate::http::consistency;
use crate::storage::lsn::Lsn;
use crate::telemetry::{context, spans};
use anyhow::{anyhow, Context};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Connecting gives up after this; the whole call after `CALL_TIMEOUT` (the API itself
/// answers within 4 s, or 503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// The highest consistency token given or answered: sent with every later call,
    /// so reads see this client's writes (`http::consistency`).
    consistency: Mutex<Option<Lsn>>,
}

impl ApiClient {
    /// `api_url` is `http[s]://host[:port][/base]`; a bad one is a usage error (exit 2).
    pub fn new(api_url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let usage = |why: &str| Failure::Usage(format!("--api-url {api_url:?} {why}"));
        let mut base = Url::parse(api_url).map_err(|e| usage(&format!("is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(usage("must start with http:// or https://").into());
        }
        if base.host_str().is_none_or(str::is_empty) || !base.username().is_empty() {
            return Err(usage("has no usable host").into());
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(usage("must not have a query or fragment").into());
        }
        // Joined paths are relative to the base, which must then end with a slash.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("ppctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base,
            token,
            consistency: Mutex::new(None),
        })
    }

    /// Sends `token` (and any higher one an answer brings) with every later call.
    pub fn read_after(&self, token: Option<Lsn>) {
        let mut highest = self.consistency.lock().unwrap_or_else(|p| p.into_inner());
        *highest = (*highest).max(token);
    }

    /// The highest consistency token so far.
    pub fn consistency_token(&self) -> Option<Lsn> {
        *self.consistency.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One call. `Ok(None)` when the API says the work does not exist; a 404 that is
    /// not the API's (a wrong `--api-url` path) is an error, never an empty answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<Option<T>> {
        let call = self.call_keyed(method, path_and_query, body, None);
        call.await.map_err(|f| f.error)
    }

    /// A create (`POST path`), sent under one `Idempotency-Key` for every attempt, and
    /// sent again while it is answered 503 (after its `Retry-After`, at most 5 s) or
    /// cannot be sent or answered (after 1 s): `ATTEMPTS` in all, none started later
    /// than `RETRY_FOR` after the first. The key makes a repeat safe: an attempt that
    /// created the work but whose answer was lost is answered by the next one with
    /// that work. A down API still fails in about 3 s, with one line.
    pub async fn create<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<Option<T>> {
        let key = format!("ppctl-{:032x}", rand::random::<u128>());
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let sent = self.call_keyed(Method::POST, path, body.clone(), Some(&key));
            let failed = match sent.await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            match failed.again_in {
                Some(wait) if attempt < ATTEMPTS && started.elapsed() + wait < RETRY_FOR => {
                    tracing::debug!(error = %failed.error, "sending the create again in {wait:?}, with the same Idempotency-Key");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return Err(failed.error),
            }
        }
    }

    async fn call_keyed<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
        key: Option<&str>,
    ) -> Result<Option<T>, Failed> {
        let url = self
            .base
            .join(path_and_query.trim_start_matches('/'))
            .context("cannot build the request URL")?;
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(after) = self.consistency_token() {
            request = request.header(consistency::HEADER, after.to_string());
        }
        // The API continues this span's trace (tracing on).
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        let hop = spans::http_client(method.as_str(), shown.as_str());
        let request = context::inject_http(&hop, request);
        let span = hop.span;
        let response = request.send().instrument(span.clone()).await.map_err(|e| {
            Failed::again(
                format!("cannot reach the API at {url}: {}", cause(&e)),
                None,
            )
        })?;
        let answered = response.headers().get(consistency::HEADER);
        self.read_after(answered.and_then(|v| v.to_str().ok()?.parse().ok()));
        let status = response.status();
        spans::status_code(&span, status.as_u16(), status.as_u16() >= 400);
        let retry_after = response.headers().get("retry-after").cloned();
        let bytes = response.bytes().await.map_err(|e| {
            Failed::again(format!("the API at {url} broke off: {}", cause(&e)), None)
        })?;
        let message = api_message(&bytes);
        Ok(match status {
            s if s.is_success() => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!("{method} {url} answered {s} with something other than ppctl's JSON: is --api-url a ppctl API?")
            })?,
            StatusCode::NOT_FOUND if message.as_deref().is_some_and(is_missing_work) => None,
            StatusCode::NOT_FOUND => Err(anyhow!(
                "{method} {url} answered 404 ({}): is --api-url a ppctl API?",
                message.unwrap_or_else(|| "not ppctl's JSON".into())
            ))?,
            StatusCode::SERVICE_UNAVAILABLE => Err(Failed::again(
                format!(
                    "the API answered 503: {}",
                    message.unwrap_or_else(|| "service unavailable".into())
                ),
                retry_after.as_ref(),
            ))?,
            s => Err(anyhow!(
                "the API answered {s}: {}",
                message.unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
            ))?,
        })
    }
}

/// How many times `create` sends a create at most, and for how long it starts new
/// attempts; each attempt has `CALL_TIMEOUT`.
const ATTEMPTS: u32 = 4;
const RETRY_FOR: Duration = Duration::from_secs(20);

/// The longest `Retry-After` waited; a create that cannot be sent waits 1 s.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// A call that failed, and when it may be sent again (an outage), if it may.
struct Failed {
    error: anyhow::Error,
    again_in: Option<Duration>,
}

impl Failed {
    /// The API could not be reached or was unavailable (exit 4): worth sending again,
    /// after `retry_after` (whole seconds, as ppctl sends it) or 1 s.
    fn again(message: String, retry_after: Option<&reqwest::header::HeaderValue>) -> Self {
        let seconds = retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let wait = seconds.map_or(Duration::from_secs(1), Duration::from_secs);
        Self {
            error: Failure::Unreachable(message).into(),
            again_in: Some(wait.min(MAX_WAIT)),
        }
    }
}

impl From<anyhow::Error> for Failed {
    fn from(error: anyhow::Error) -> Self {
        Self {
            error,
            again_in: None,
        }
    }
}

/// The `error` of ppctl's JSON error body.
fn api_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("error")?.as_str().map(str::to_string)
}

/// How the API says a work does not exist (its unmatched routes say "no route for").
fn is_missing_work(message: &str) -> bool {
    message.starts_with("work ") && message.ends_with(" not found")
}

/// The innermost cause: reqwest's outer message is only "error sending request".
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() {
        format!("no answer within {}s", CALL_TIMEOUT.as_secs())
    } else {
        source.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_are_checked_and_keep_their_base_path() {
        let ok = |u: &str| ApiClient::new(u, None).map(|c| c.base.to_string()).ok();
        assert_eq!(
            ok("http://127.0.0.1:3000").as_deref(),
            Some("http://127.0.0.1:3000/")
        );
        assert_eq!(ok("https://api/v1").as_deref(), Some("https://api/v1/"));
        for bad in [
            "ftp://api",
            "http://",
            "127.0.0.1:3000",
            "http://u:p@api/",
            "http://api/?x=1",
        ] {
            let err = ApiClient::new(bad, None).err().expect(bad);
            assert!(
                matches!(err.downcast_ref::<Failure>(), Some(Failure::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_apis_own_not_found_means_no_such_work() {
        assert!(is_missing_work("work 7 not found"));
        assert!(!is_missing_work("no route for GET /v1/works/7"));
        assert_eq!(
            api_message(br#"{"error":"work 7 not found"}"#).as_deref(),
            Some("work 7 not found")
        );
        assert_eq!(api_message(b"<html>404</html>"), None);
    }
}
