//! `ppctl raw-http METHOD PATH`: a hand-written request, the raw response printed.

use crate::cli::RawHttpArgs;
use crate::rawhttp::{self, Request};
use std::process::ExitCode;

pub async fn run(args: RawHttpArgs) -> anyhow::Result<ExitCode> {
    let mut request = Request::new(&args.method, &args.path)?;
    for line in &args.headers {
        request.headers.push(rawhttp::parse_header(line)?);
    }
    request.body = args.data.map(String::into_bytes);
    let response = rawhttp::send(&args.addr, &request).await?;
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
