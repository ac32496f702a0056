//! Reading a response off the socket: the head, then a body framed by Content-Length,
//! chunked encoding or connection close, within a size limit.

use super::Response;
use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Responses larger than this are refused rather than buffered.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

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

pub(super) async fn read_response(
    stream: &mut TcpStream,
    head_only: bool,
) -> anyhow::Result<Response> {
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
