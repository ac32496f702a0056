//! The external load tools: wrk for HTTP, pgbench for the database baseline.

use anyhow::{bail, Context};
use std::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

pub fn write_script(name: &str, body: &str) -> anyhow::Result<String> {
    let path = format!("target/bench-{name}");
    std::fs::write(&path, body)?;
    Ok(path)
}

/// `wrk` with a Lua script, `conns` connections, for `secs`.
pub fn wrk(addr: &str, conns: u32, secs: u64, lua: &str) -> anyhow::Result<HttpRun> {
    wrk_script(addr, conns, secs, &write_script("wrk.lua", lua)?)
}

/// `wrk` with a script already written (`write_script`), so that several runs can go at
/// once without overwriting each other's.
pub fn wrk_script(addr: &str, conns: u32, secs: u64, script: &str) -> anyhow::Result<HttpRun> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "--timeout",
            "5s",
            "-s",
            script,
        ])
        .arg(format!("http://{addr}"))
        .output()
        .context("cannot run wrk (scripts/services.sh bench-tools installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

/// `wrk` for a throughput figure: any error or non-2xx response fails the run, so a
/// misdirected load (404s are fast) can never pass for a result.
pub fn wrk_clean(addr: &str, conns: u32, secs: u64, lua: &str) -> anyhow::Result<HttpRun> {
    let run = wrk(addr, conns, secs, lua)?;
    if run.errors > 0 {
        bail!(
            "{} of {} requests failed or were not 2xx",
            run.errors,
            run.requests
        );
    }
    Ok(run)
}

fn millis(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

pub fn parse_wrk(text: &str) -> Option<HttpRun> {
    let mut run = HttpRun::default();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", v] => run.rps = v.parse().ok()?,
            ["50%", v] => run.p50_ms = millis(v)?,
            ["99%", v] => run.p99_ms = millis(v)?,
            [n, "requests", "in", ..] => run.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|f| f.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    (run.rps > 0.0).then_some(run)
}

/// `pgbench` with a custom script: transactions per second.
pub fn pgbench(
    url: &str,
    clients: u32,
    secs: u64,
    sql: &str,
    vars: &[(&str, String)],
) -> anyhow::Result<f64> {
    let text = run_pgbench(url, clients, secs, sql, vars, &[])?;
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{text}"))
}

/// pgbench at a steady `rate` (transactions/s, open loop) for `secs`: each
/// transaction's latency counted from when it was due (its wait to start included, as
/// pgbench counts it with --rate), from its per-transaction log.
pub fn pgbench_paced(
    url: &str,
    clients: u32,
    secs: u64,
    rate: u64,
    sql: &str,
) -> anyhow::Result<crate::latency::Percentiles> {
    // A directory of its own: pgbench writes one log per thread, named after its pid.
    let dir = std::path::Path::new("target/bench-pgbench-paced");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let prefix = dir.join("log").display().to_string();
    let rate = rate.to_string();
    let args = ["-R", &rate, "--log", "--log-prefix", &prefix];
    run_pgbench(url, clients, secs, sql, &[], &args)?;
    let mut ms = Vec::new();
    for log in std::fs::read_dir(dir)? {
        // client, transaction, latency in µs (with --rate, from when it was due), ...
        for line in std::fs::read_to_string(log?.path())?.lines() {
            if let Some(us) = line.split_whitespace().nth(2) {
                ms.push(us.parse::<f64>()? / 1000.0);
            }
        }
    }
    anyhow::ensure!(!ms.is_empty(), "pgbench logged no transaction in {dir:?}");
    Ok(crate::latency::percentiles(ms))
}

/// pgbench's output; `extra` goes before the URL.
fn run_pgbench(
    url: &str,
    clients: u32,
    secs: u64,
    sql: &str,
    vars: &[(&str, String)],
    extra: &[&str],
) -> anyhow::Result<String> {
    let script = write_script("pgbench.sql", sql)?;
    let mut cmd = Command::new("pgbench");
    cmd.args([
        "-n",
        "-M",
        "prepared",
        "-c",
        &clients.to_string(),
        "-j",
        "2",
        "-T",
        &secs.to_string(),
        "-f",
        &script,
    ]);
    for (k, v) in vars {
        cmd.args(["-D", &format!("{k}={v}")]);
    }
    let output = cmd
        .args(extra)
        .arg(url)
        .output()
        .context("cannot run pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(text)
}

/// Checks the wrk parser on a known sample, so a format change fails loudly.
pub fn self_check() {
    let sample = "Running 2s test @ http://127.0.0.1:1\n  Latency Distribution\n     50%  1.20ms\n     99%   15.00ms\n  \
                  1000 requests in 2.00s, 1.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  \
                  Non-2xx or 3xx responses: 3\nRequests/sec:    500.50\n";
    let run = parse_wrk(sample).expect("parses");
    assert_eq!((run.requests, run.errors), (1000, 6));
    assert!(
        (run.p99_ms - 15.0).abs() < 1e-9
            && (run.p50_ms - 1.2).abs() < 1e-9
            && (run.rps - 500.5).abs() < 1e-9
    );
}
