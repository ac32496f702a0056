//! A minimal HTTP/1.1 client written by hand on a TCP socket: the request is composed
//! as text, the response read as bytes and framed by Content-Length, chunked encoding
//! or connection close. `raw-http` prints what it receives; `work --via http` uses the
//! decoded body, so one client serves both.

use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Responses larger than this are refused rather than buffered.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
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

/// Reads into `buf` until `have(buf)` or EOF; returns false at EOF.
async fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    have: impl Fn(&[u8]) -> bool,
) -> anyhow::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    while !have(buf) {
        let n = stream
            .read(&mut chunk)
            .await
            .context("connection error while reading the response")?;
        if n == 0 {
            return Ok(false);
        }
        if buf.len() + n > MAX_RESPONSE {
            bail!("response larger than {MAX_RESPONSE} bytes");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

async fn read_response(stream: &mut TcpStream, head_only: bool) -> anyhow::Result<Response> {
    let mut raw = Vec::with_capacity(4096);
    // Interim 1xx responses (100 Continue, 103 Early Hints) precede the real one: keep
    // their bytes in `raw` and read on. 101 Switching Protocols is final.
    let mut head_start = 0;
    let (body_start, status, headers) = loop {
        let head_end = |b: &[u8]| {
            b[head_start..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| head_start + p + 4)
        };
        if !fill(stream, &mut raw, |b| head_end(b).is_some()).await? {
            bail!("the server closed the connection before sending a complete response head");
        }
        let body_start = head_end(&raw).unwrap_or(raw.len());
        let (status, headers) = parse_head(&raw[head_start..body_start])?;
        if (100..200).contains(&status) && status != 101 {
            head_start = body_start;
            continue;
        }
        break (body_start, status, headers);
    };
    let mut response = Response {
        raw: Vec::new(),
        status,
        headers,
        body: Vec::new(),
    };
    let no_body = head_only || status / 100 == 1 || status == 204 || status == 304;
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response
        .header("content-length")
        .map(|v| v.trim().parse::<usize>());
    if no_body {
    } else if chunked {
        response.body = read_chunked(stream, &mut raw, body_start).await?;
    } else if let Some(length) = length {
        let length = length.context("invalid Content-Length in the response")?;
        if !fill(stream, &mut raw, |b| b.len() >= body_start + length).await? {
            bail!(
                "the server closed the connection {} bytes into a {length}-byte body",
                raw.len() - body_start
            );
        }
        raw.truncate(body_start + length);
        response.body = raw[body_start..].to_vec();
    } else {
        fill(stream, &mut raw, |_| false).await?; // delimited by connection close
        response.body = raw[body_start..].to_vec();
    }
    response.raw = raw;
    Ok(response)
}

fn parse_head(head: &[u8]) -> anyhow::Result<(u16, Vec<(String, String)>)> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => bail!("incomplete response head"),
        Err(e) => bail!("malformed response head: {e}"),
    }
    let status = parsed.code.context("response without a status code")?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok((status, headers))
}

/// Decodes a chunked body that starts at `raw[start..]`, reading more as needed.
async fn read_chunked(
    stream: &mut TcpStream,
    raw: &mut Vec<u8>,
    start: usize,
) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = start;
    loop {
        let line_end = |b: &[u8]| {
            b[pos..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| pos + p)
        };
        if !fill(stream, raw, |b| line_end(b).is_some()).await? {
            bail!("the server closed the connection inside a chunked body");
        }
        let end = line_end(raw).unwrap_or(raw.len());
        let size_text = String::from_utf8_lossy(&raw[pos..end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16)
            .with_context(|| format!("invalid chunk size {size_text:?}"))?;
        pos = end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            let trailers_end = |b: &[u8]| {
                b[pos - 2..]
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| pos - 2 + p + 4)
            };
            if !fill(stream, raw, |b| trailers_end(b).is_some()).await? {
                bail!("the server closed the connection before the end of the chunked body");
            }
            raw.truncate(trailers_end(raw).unwrap_or(raw.len()));
            return Ok(body);
        }
        if !fill(stream, raw, |b| b.len() >= pos + size + 2).await? {
            bail!("the server closed the connection inside a chunk");
        }
        if &raw[pos + size..pos + size + 2] != b"\r\n" {
            bail!("chunk of {size} bytes is not followed by CRLF");
        }
        body.extend_from_slice(&raw[pos..pos + size]);
        pos += size + 2;
    }
}
