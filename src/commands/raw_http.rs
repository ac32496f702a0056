//! `ppctl raw-http METHOD PATH`: a hand-written request, the raw response printed.

use crate::cli::RawHttpArgs;
use crate::rawhttp::{self, Request};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(args: RawHttpArgs) -> anyhow::Result<ExitCode> {
    let mut request = Request::new(&args.method, &args.path)?;
    for line in &args.headers {
        request.headers.push(rawhttp::parse_header(line)?);
    }
    request.body = args.data.map(String::into_bytes);
    let response = rawhttp::send(&args.addr, &request).await?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&response.raw)?;
    if !response.raw.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    if args.fail && response.status >= 400 {
        return Ok(ExitCode::from(22)); // what curl --fail uses
    }
    Ok(ExitCode::SUCCESS)
}
