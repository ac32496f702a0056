//! The longest stall of a scenario: sampled in the background, the longest interval
//! in which the done count did not grow while demands were still outstanding.
//!
//! "Outstanding" is judged afterwards: every gap between one increase of the done count
//! and the next is time in which work existed (more was done later) and none finished.
//! Sampling starts at the first finished work, so process start-up is not a stall.

use crate::db::Db;
use crate::scenarios::DONE_SQL;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const EVERY: Duration = Duration::from_millis(150);

pub struct StallMeter {
    task: JoinHandle<()>,
    /// (longest gap so far, when the count last grew, the last count seen)
    state: Arc<Mutex<(Duration, Option<Instant>, i64)>>,
}

impl StallMeter {
    /// Samples the done count of `database_url` every ~150 ms until stopped.
    pub fn start(database_url: &str) -> Self {
        let state = Arc::new(Mutex::new((Duration::ZERO, None, 0)));
        let shared = state.clone();
        let mut db = Db::new(database_url);
        let task = tokio::spawn(async move {
            loop {
                // None while the database is down or frozen: the gap simply grows.
                if let Some(done) = db.int(DONE_SQL).await {
                    let now = Instant::now();
                    let mut s = shared.lock().expect("stall state");
                    if done > s.2 {
                        if let Some(last) = s.1 {
                            s.0 = s.0.max(now - last);
                        }
                        *s = (s.0, Some(now), done);
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        Self { task, state }
    }

    /// Stops sampling; the longest stall in seconds (None if nothing was ever done).
    /// `unfinished`: demands were still outstanding at the end (lost or stuck), so the
    /// time since the last progress is a stall too.
    pub fn stop(self, unfinished: bool) -> Option<f64> {
        self.task.abort();
        let s = self.state.lock().expect("stall state");
        let last = s.1?;
        let trailing = if unfinished {
            last.elapsed()
        } else {
            Duration::ZERO
        };
        Some(s.0.max(trailing).as_secs_f64())
    }
}

impl Drop for StallMeter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
