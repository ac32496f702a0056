//! Capped exponential backoff with jitter, for every reconnect loop, and the pace of
//! a quiet loop's warnings.

use rand::Rng;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The next wait: doubles each time up to `max`, with ±20% jitter so many
    /// processes do not reconnect in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    /// Call after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// For a loop whose failures would otherwise go unsaid (it retries quietly in the
/// background): the first failure is logged, then one in every `every` at most, so an
/// operator learns why without a line per attempt.
#[derive(Debug)]
pub struct Warnings {
    every: Duration,
    last: Option<Instant>,
    unsaid: u32,
}

impl Warnings {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            unsaid: 0,
        }
    }

    /// A failure: `Some(failures not logged since the last line)` when this one is to be.
    pub fn failed(&mut self) -> Option<u32> {
        if self.last.is_some_and(|last| last.elapsed() < self.every) {
            self.unsaid += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.unsaid))
    }

    /// A success: the next failure is logged at once.
    pub fn reset(&mut self) {
        self.last = None;
        self.unsaid = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_say_the_first_failure_then_one_per_interval() {
        let mut w = Warnings::new(Duration::from_secs(3600));
        assert_eq!(w.failed(), Some(0));
        assert_eq!(w.failed(), None);
        assert_eq!(w.failed(), None);
        w.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(w.failed(), Some(2));
        w.reset();
        assert_eq!(w.failed(), Some(0));
    }

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(80) && delays[0] <= Duration::from_millis(120));
        assert!(delays[5] >= Duration::from_millis(640) && delays[5] <= Duration::from_millis(960));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
