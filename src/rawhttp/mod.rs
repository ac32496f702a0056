//! A minimal HTTP/1.1 client written by hand on a TCP socket: the request is composed
//! as text, the response read as bytes and framed by Content-Length, chunked encoding
//! or connection close. `raw-http` prints what it receives; `work --via http` uses the
//! decoded body, so one client serves both.

use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod read;
use read::read_response;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Response {
    /// Exactly the bytes received: status line, headers and body as framed on the wire.
    pub raw: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body with any chunked framing removed.
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses `Name: value`, refusing anything that would break the request's framing.
pub fn parse_header(line: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = line
        .split_once(':')
        .with_context(|| format!("header {line:?} is not `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    if !is_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        bail!("header {line:?} has an invalid name or value");
    }
    Ok((name.to_string(), value.to_string()))
}

impl Request {
    pub fn new(method: &str, target: &str) -> anyhow::Result<Self> {
        let method = method.to_ascii_uppercase();
        if !is_token(&method) {
            bail!("invalid HTTP method {method:?}");
        }
        if !(target.starts_with('/') || target == "*")
            || target.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
            bail!("invalid request target {target:?}: it must start with / and contain no spaces");
        }
        Ok(Self {
            method,
            target: target.to_string(),
            ..Self::default()
        })
    }

    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The request as it goes on the wire.
    pub fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        let mut defaults = vec![
            ("Host", host.to_string()),
            ("User-Agent", format!("ppctl/{}", env!("CARGO_PKG_VERSION"))),
        ];
        defaults.push(("Accept", "*/*".into()));
        defaults.push(("Connection", "close".into()));
        if let Some(body) = &self.body {
            defaults.push(("Content-Type", "application/json".into()));
            defaults.push(("Content-Length", body.len().to_string()));
        }
        for (k, v) in defaults.iter().filter(|(k, _)| !self.has(k)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_deref().unwrap_or_default());
        bytes
    }
}

/// The server could not be reached, or did not answer in time: as opposed to an
/// answer that is not HTTP. Callers tell the two apart (exit codes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(String);

/// Sends `request` to `addr` (`host:port`) and reads the whole response.
pub async fn send(addr: &str, request: &Request) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                Unreachable(format!("nothing listens on {addr} (connection refused)"))
            }
            _ => Unreachable(format!("cannot connect to {addr}: {e}")),
        })?;
        stream
            .write_all(&request.to_bytes(addr))
            .await
            .context("cannot send the request")?;
        read_response(&mut stream, request.method == "HEAD").await
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| {
        Unreachable(format!(
            "no complete response from {addr} within {}s",
            TIMEOUT.as_secs()
        ))
    })?
}
