//! Talking to `ppctl serve` from a scenario: one bounded request, waiting for health.

use super::*;
use crate::db::wait_for;
use anyhow::Context;

/// One GET or POST through the project's raw HTTP client, bounded by `timeout`.
pub(crate) async fn http(
    addr: &str,
    method: &str,
    target: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let response = http_with(addr, method, target, &[], body, timeout).await?;
    Ok((response.status, response.body))
}

/// The same, with request headers; the whole response.
pub(crate) async fn http_with(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ppctl::rawhttp::Response> {
    let mut request = ppctl::rawhttp::Request::new(method, target)?;
    request.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request.body = body.map(|b| b.as_bytes().to_vec());
    tokio::time::timeout(timeout, ppctl::rawhttp::send(addr, &request))
        .await
        .with_context(|| format!("{method} {target} did not answer within {timeout:?}"))?
}

pub(crate) async fn wait_healthy(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_for("GET /health to answer 200", timeout, || async {
        let answer = http(addr, "GET", "/health", None, Duration::from_secs(5)).await;
        matches!(answer, Ok((200, _))).then_some(())
    })
    .await
}
