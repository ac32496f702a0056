//! The OTLP exporter's HTTP client: the reqwest client the binary already has, so the
//! exporter adds no second HTTP or TLS stack. Bounded by the exporter's timeout
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`), response body included.
//!
//! A collector that is not listening yet, or answers 429, 502, 503 or 504 (the OTLP
//! specification's retryable statuses), is asked again with a growing, jittered pause,
//! within that same timeout: the services of a Compose stack start together, and a
//! collector that came up a few seconds after ppctl lost the first batches of spans. A
//! request that timed out is not repeated (the collector may have taken it).

use crate::backoff::Backoff;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct OtlpClient {
    client: reqwest::Client,
    timeout: Duration,
}

impl OtlpClient {
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { client, timeout })
    }
}

fn retryable(outcome: &Result<reqwest::Response, reqwest::Error>) -> bool {
    match outcome {
        Ok(response) => matches!(response.status().as_u16(), 429 | 502 | 503 | 504),
        Err(e) => e.is_connect(),
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let give_up = Instant::now() + self.timeout;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let response = loop {
            let outcome = self
                .client
                .request(parts.method.clone(), parts.uri.to_string())
                .headers(parts.headers.clone())
                .body(body.clone())
                .send()
                .await;
            let pause = backoff.next_delay();
            if !retryable(&outcome) || Instant::now() + pause >= give_up {
                break outcome?;
            }
            tokio::time::sleep(pause).await;
        };
        let mut builder = Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            *headers = response.headers().clone();
        }
        Ok(builder.body(response.bytes().await?)?)
    }
}
