//! The tracing phase's collector: tests/otlp/receiver.py, the OTLP/HTTP receiver the
//! tests use (no collector binary can be installed here), in the venv that
//! `scripts/services.sh otlp-tools` makes (`bench-tools` runs it). It decodes every
//! request and writes each span as a JSON line; that work shares the two cores with
//! what is measured, as a collector on the same machine would.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/receiver.py");
const SPANS: &str = "target/bench-otlp-spans.jsonl";

pub struct Collector {
    port: u16,
    child: Child,
}

impl Collector {
    /// Starts the receiver on a free port and waits for its `listening PORT` line.
    pub fn start() -> anyhow::Result<Self> {
        let python = python();
        let log = std::fs::File::create("target/bench-otlp-receiver.log")?;
        let mut child = Command::new(&python)
            .args([RECEIVER, "--out", SPANS, "--port", "0", "--mode", "ok"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run the OTLP receiver's python {python:?}: scripts/services.sh otlp-tools makes its venv (make bench does), or set PP_OTLP_PYTHON"))?;
        let mut line = String::new();
        // A python without the packages exits at once: EOF, not a hang.
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .context("reading the OTLP receiver's first line")?;
        let Some(port) = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the OTLP receiver did not start (a missing module means: scripts/services.sh otlp-tools); see target/bench-otlp-receiver.log");
        };
        let collector = Self { port, child };
        collector.take()?;
        Ok(collector)
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans received since the last call, then empties the file. Called between
    /// processes, when none is exporting: the receiver appends each request whole and
    /// answers after writing, so a process that has exited has nothing in flight. At
    /// 1.0 a drain writes hundreds of MB of lines; emptying keeps the disk out of it.
    pub fn take(&self) -> anyhow::Result<u64> {
        let mut file = match std::fs::File::open(SPANS) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut lines = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        // The receiver opens the file to append for each request, so it writes from the
        // start again.
        std::fs::File::create(SPANS)?;
        Ok(lines)
    }
}

impl Collector {
    /// The receiver's CPU time so far (user + system, its exited threads included), so
    /// a run can say how much of the two cores the collector took.
    pub fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        // After the command name, which may hold spaces: utime and stime are the 12th and
        // 13th fields, in USER_HZ ticks, which Linux fixes at 100 for userspace.
        let ticks = stat.ok().and_then(|s| {
            let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        });
        ticks.unwrap_or(0) as f64 / 100.0
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(SPANS);
    }
}

/// `$PP_OTLP_PYTHON`, else the venv's python where `scripts/services.sh otlp-tools`
/// puts it (`$PP_OTLP_VENV`, else `${XDG_CACHE_HOME:-$HOME/.cache}/ppctl/otlp`), found
/// as tests/it/otlp.rs finds it; empty variables count as unset, as in the script.
fn python() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(python) = var("PP_OTLP_PYTHON") {
        return python.into();
    }
    let venv = var("PP_OTLP_VENV").map(PathBuf::from).unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_default()).join(".cache"))
            .join("ppctl/otlp")
    });
    venv.join("bin/python")
}
