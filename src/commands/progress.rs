//! Progress of `produce --count`: a bar redrawn in place on a terminal, a plain line
//! every few seconds otherwise (logs, CI), so neither is flooded.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: u64,
    tty: bool,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        Self {
            total,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: None,
        }
    }

    fn line(&self, done: u64) -> String {
        let pct = done
            .saturating_mul(100)
            .checked_div(self.total)
            .unwrap_or(100);
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-3);
        let filled = (pct as usize * 30 / 100).min(30);
        let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(30 - filled));
        format!(
            "{bar} {done}/{} confirmed ({pct}%), {rate:.0}/s",
            self.total
        )
    }

    pub fn update(&mut self, done: u64) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{}", self.line(done))
        } else {
            writeln!(err, "{}", self.line(done))
        };
    }

    pub fn finish(&self, done: u64) {
        let end = if self.tty { "\r" } else { "" };
        let _ = writeln!(std::io::stderr().lock(), "{end}{}", self.line(done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_count_and_percentage() {
        let p = Progress {
            total: 200,
            tty: false,
            start: Instant::now(),
            last: None,
        };
        let line = p.line(50);
        assert!(
            line.starts_with("[#######......................."),
            "{line}"
        );
        assert!(line.contains("50/200 confirmed (25%)"), "{line}");
    }
}
