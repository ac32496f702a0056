//! Progress of `produce --count`: a bar redrawn in place on a terminal, a plain line
//! every 5 s otherwise (logs, CI), so neither is flooded. Without `--count`, a log line
//! with the rate and totals every `--report-every` (30 s), so a producer that runs for
//! days still shows it is alive.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: u64,
    tty: bool,
    start: Instant,
    /// The last line drawn: when, and the count it showed. Starts at the start, so the
    /// first plain line comes 5 s in, with a rate over those 5 s.
    last: (Instant, u64),
}

impl Progress {
    pub fn new(total: u64) -> Self {
        Self::at(total, std::io::stderr().is_terminal(), Instant::now())
    }

    fn at(total: u64, tty: bool, start: Instant) -> Self {
        Self {
            total,
            tty,
            start,
            last: (start, 0),
        }
    }

    fn every(&self) -> Duration {
        if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        }
    }

    /// The line for `done` at `now`, with the rate since the last line; `None` when
    /// it is too early for another.
    fn next_line(&mut self, done: u64, now: Instant) -> Option<String> {
        let (then, before) = self.last;
        let elapsed = now.saturating_duration_since(then);
        if elapsed < self.every() {
            return None;
        }
        self.last = (now, done);
        let rate = done.saturating_sub(before) as f64 / elapsed.as_secs_f64();
        Some(self.line(done, rate))
    }

    fn line(&self, done: u64, rate: f64) -> String {
        let pct = done
            .saturating_mul(100)
            .checked_div(self.total)
            .unwrap_or(100);
        let filled = (pct as usize * 30 / 100).min(30);
        let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(30 - filled));
        format!(
            "{bar} {done}/{} confirmed ({pct}%), {rate:.0}/s",
            self.total
        )
    }

    pub fn update(&mut self, done: u64) {
        if let Some(line) = self.next_line(done, Instant::now()) {
            let mut err = std::io::stderr().lock();
            let _ = if self.tty {
                write!(err, "\r{line}")
            } else {
                writeln!(err, "{line}")
            };
        }
    }

    /// The closing line, with the average rate of the whole run; not repeated when the
    /// last plain line already showed this count.
    pub fn finish(&self, done: u64) {
        if !self.tty && self.last.1 == done && done > 0 {
            return;
        }
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-3);
        let end = if self.tty { "\r" } else { "" };
        let _ = writeln!(std::io::stderr().lock(), "{end}{}", self.line(done, rate));
    }
}

/// The periodic line of a `produce` without `--count`.
pub struct Report {
    every: Duration,
    start: Instant,
    last: (Instant, u64),
}

impl Report {
    pub fn new(every: Duration) -> Self {
        let start = Instant::now();
        Self {
            every,
            start,
            last: (start, 0),
        }
    }

    /// Logs the totals and the rate since the last line, when `every` has passed.
    pub fn update(&mut self, confirmed: u64, unconfirmed: usize) {
        let now = Instant::now();
        let (then, before) = self.last;
        let elapsed = now.saturating_duration_since(then);
        if elapsed < self.every {
            return;
        }
        self.last = (now, confirmed);
        let tenths = |per_second: f64| (per_second * 10.0).round() / 10.0;
        let rate = confirmed.saturating_sub(before) as f64 / elapsed.as_secs_f64();
        let average = confirmed as f64 / now.duration_since(self.start).as_secs_f64();
        tracing::info!(
            confirmed,
            unconfirmed,
            per_second = tenths(rate),
            average_per_second = tenths(average),
            "producing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_every_5_s_with_the_rate_since_the_last() {
        let start = Instant::now();
        let mut p = Progress::at(200, false, start);
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(p.next_line(40, at(10)), None, "no line before 5 s");
        assert_eq!(p.next_line(45, at(4_999)), None);
        let line = p.next_line(50, at(5_000)).expect("a line at 5 s");
        assert!(
            line.starts_with("[#######......................."),
            "{line}"
        );
        assert!(line.contains("50/200 confirmed (25%), 10/s"), "{line}");
        assert_eq!(p.next_line(150, at(9_000)), None);
        let line = p.next_line(150, at(10_000)).expect("a line at 10 s");
        assert!(line.ends_with("150/200 confirmed (75%), 20/s"), "{line}");
    }
}
