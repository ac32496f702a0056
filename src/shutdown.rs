//! Graceful shutdown: one signal, observed by every long-running task. Passed into each
//! `run` as a value (mini-redis style), so tests can trigger it without signals.

use tokio::sync::watch;

/// Observes the shutdown signal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires the shutdown signal.
#[derive(Clone, Debug)]
pub struct Trigger(std::sync::Arc<watch::Sender<bool>>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(std::sync::Arc::new(tx)), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A signal that never fires, for one-shot commands.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone: treat that as shutdown too.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// A spawned task that is aborted when this guard is dropped, so a task tied to one
/// connection (a depth monitor, a batch store) cannot outlive it when `?` returns early.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a graceful shutdown may take before the process exits anyway.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A shutdown fired by SIGINT or SIGTERM. The stop is bounded: a second signal, or
/// `GRACE` without the process having exited, ends it at once (what was not acked is
/// redelivered by the broker, so this loses nothing).
pub fn on_signals() -> (Trigger, Shutdown) {
    let (trigger, shutdown) = channel();
    let fire = trigger.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing in-flight work (again to force)");
        fire.fire();
        tokio::select! {
            _ = wait_for_signal() => tracing::warn!("second signal: exiting now"),
            _ = tokio::time::sleep(GRACE) => tracing::warn!("graceful shutdown took over {GRACE:?}: exiting now"),
        }
        std::process::exit(130);
    });
    (trigger, shutdown)
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn firing_wakes_every_waiter() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn(async move { other.wait().await });
        trigger.fire();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert!(shutdown.is_triggered());
    }
}
