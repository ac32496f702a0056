//! `ppctl raw-http METHOD PATH`: a hand-written request, the raw response printed.

use super::Failure;
use crate::cli::RawHttpArgs;
use crate::rawhttp::{self, Request};
use std::process::ExitCode;

pub async fn run(args: RawHttpArgs) -> anyhow::Result<ExitCode> {
    // A request that cannot be written is a usage error (2); a server that cannot be
    // reached is 4; an answer that is not HTTP stays 1.
    let usage = |e: anyhow::Error| Failure::Usage(format!("{e:#}"));
    let mut request = Request::new(&args.method, &args.path).map_err(usage)?;
    for line in &args.headers {
        request
            .headers
            .push(rawhttp::parse_header(line).map_err(usage)?);
    }
    request.body = args.data.map(String::into_bytes);
    let response = rawhttp::send(&args.addr, &request)
        .await
        .map_err(|e| match e.downcast::<rawhttp::Unreachable>() {
            Ok(down) => Failure::Unreachable(down.to_string()).into(),
            Err(other) => other,
        })?;
    let mut out = response.raw;
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    super::emit(&out)?;
    if args.fail && response.status >= 400 {
        return Ok(ExitCode::from(22)); // what curl --fail uses
    }
    Ok(ExitCode::SUCCESS)
}
