//! Live work changes for the dashboard, as Server-Sent Events. One LISTEN connection per
//! server feeds a broadcast channel that every open `/works/stream` response reads. The
//! connection is opened by the first subscriber and closed with the last, so a server
//! without an open dashboard (and every test that never opens one) holds none. At most
//! `max_streams` are open at once (`--max-streams`): each holds a connection and a
//! task for as long as its client stays, so without a cap clients could exhaust them.

use crate::shutdown::{self, Shutdown, Trigger};
use crate::storage::listen::{self, Notice, Sink};
use crate::storage::lsn::Lsn;
use crate::storage::PgPool;
use actix_web::web::Bytes;
use futures_util::Stream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// A comment this often keeps proxies and browsers from timing an idle stream out.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Notifications a slow client may fall behind by before it is told to re-read
/// everything (a `resync`) instead of getting each one.
const BACKLOG: usize = 256;
/// How soon a browser reconnects after losing the stream (the SSE `retry:` field).
const RETRY_MS: u32 = 2000;

pub struct Hub {
    pool: PgPool,
    /// The server's: ends every stream.
    shutdown: Shutdown,
    max_streams: usize,
    feed: Mutex<Feed>,
}

/// The default of `--max-streams`: far more dashboards than one API serves, far fewer
/// connections than it can hold.
pub const DEFAULT_MAX_STREAMS: u16 = 64;

/// The running LISTEN task, if any, and how many streams read it.
#[derive(Default)]
struct Feed {
    tx: Option<broadcast::Sender<Notice>>,
    stop: Option<Trigger>,
    subscribers: usize,
}

impl Hub {
    pub fn new(pool: PgPool, shutdown: Shutdown, max_streams: usize) -> Arc<Self> {
        Arc::new(Self {
            pool,
            shutdown,
            max_streams,
            feed: Mutex::default(),
        })
    }

    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    fn feed(&self) -> MutexGuard<'_, Feed> {
        // The guarded data stays consistent even if a holder panicked.
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the LISTEN task unless it runs; `None` when `max_streams` are open (counted
    /// under the lock, so concurrent requests cannot overshoot). Call from within a
    /// Tokio runtime.
    pub fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let mut guard = self.feed();
        let feed = &mut *guard;
        if feed.subscribers >= self.max_streams {
            return None;
        }
        let tx = feed.tx.get_or_insert_with(|| broadcast::channel(BACKLOG).0);
        let rx = tx.subscribe();
        if feed.stop.is_none() {
            let (trigger, stop) = shutdown::channel();
            let sink = Sink::Forward(tx.clone());
            listen::spawn_sink(&self.pool, listen::CHANGES_CHANNEL, sink, stop);
            feed.stop = Some(trigger);
        }
        feed.subscribers += 1;
        Some(Subscription {
            rx,
            hub: self.clone(),
        })
    }

    /// How many streams are open (for tests and metrics).
    pub fn subscribers(&self) -> usize {
        self.feed().subscribers
    }
}

/// One stream's place in the feed; the last one dropped stops the LISTEN task.
pub struct Subscription {
    rx: broadcast::Receiver<Notice>,
    hub: Arc<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut feed = self.hub.feed();
        feed.subscribers -= 1;
        if feed.subscribers == 0 {
            feed.tx = None;
            if let Some(stop) = feed.stop.take() {
                stop.fire();
            }
        }
    }
}

/// One message of the stream, as an EventSource client reads it (the OpenAPI schema of
/// `/works/stream`'s events). Its data is `{}`, or for a `work` message
/// `{"consistency_token":"0/3000148"}`: a message says only that something changed, and
/// the client re-reads what it shows, with that token so that a lagging replica does
/// not answer the re-read.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a description, never built: `message` writes the bytes
pub struct StreamEvent {
    event: StreamEventKind,
    #[schema(
        pattern = "^\\{(\"consistency_token\":\"[0-9A-F]{1,8}/[0-9A-F]{1,8}\")?\\}$",
        example = "{}"
    )]
    data: String,
}

/// `work`: works were created or changed status (changes close together are folded
/// into one message); `resync`: changes may have been missed.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StreamEventKind {
    Work,
    Resync,
}

/// One SSE message. The NOTIFY payload is passed on only as what it must be, a WAL
/// position (`notify::statement`); anything else another process might send on the
/// channel (an older ppctl sends `{}`) is not.
fn message(event: &str, payload: Option<&str>) -> Bytes {
    match payload.and_then(|p| p.parse::<Lsn>().ok()) {
        Some(token) => Bytes::from(format!(
            "event: {event}\ndata: {{\"consistency_token\":\"{token}\"}}\n\n"
        )),
        None => Bytes::from(format!("event: {event}\ndata: {{}}\n\n")),
    }
}

/// The body of `/works/stream`: a `retry:` hint, then `event: work` per change,
/// `event: resync` when changes may have been missed (LISTEN reconnected, or this client
/// fell behind), a keep-alive comment every `KEEP_ALIVE`; it ends on server shutdown.
pub fn event_stream(
    sub: Subscription,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    let shutdown = sub.hub.shutdown.clone();
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let keep_alive = tokio::time::interval_at(start, KEEP_ALIVE);
    let hello = Bytes::from(format!("retry: {RETRY_MS}\n: connected\n\n"));
    let state = (sub, keep_alive, shutdown, Some(hello));
    futures_util::stream::unfold(state, |mut state| async move {
        let (sub, keep_alive, shutdown, hello) = &mut state;
        if let Some(hello) = hello.take() {
            return Some((Ok(hello), state));
        }
        let chunk = tokio::select! {
            _ = shutdown.wait() => return None,
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            received = sub.rx.recv() => match received {
                Ok(Notice::Payload(payload)) => message("work", Some(&payload)),
                Ok(Notice::Resync) | Err(RecvError::Lagged(_)) => message("resync", None),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(chunk), state))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_well_formed() {
        assert_eq!(
            message("work", Some("{}")),
            Bytes::from_static(b"event: work\ndata: {}\n\n")
        );
        assert_eq!(
            message("work", Some("0/3000148")),
            Bytes::from_static(b"event: work\ndata: {\"consistency_token\":\"0/3000148\"}\n\n")
        );
        assert_eq!(
            message("resync", None),
            Bytes::from_static(b"event: resync\ndata: {}\n\n")
        );
    }

    #[tokio::test]
    async fn the_last_subscriber_stops_the_feed() {
        // No database here: the LISTEN task only retries in the background.
        let hub = Hub::new(
            crate::storage::pool("postgres://u:p@127.0.0.1:1/none", 1).expect("pool"),
            Shutdown::never(),
            2,
        );
        let (a, b) = (hub.subscribe(), hub.subscribe());
        assert_eq!(hub.subscribers(), 2);
        assert!(hub.subscribe().is_none(), "a third stream is over the cap");
        drop(a);
        assert!(hub.feed().stop.is_some());
        drop(b);
        assert_eq!(hub.subscribers(), 0);
        assert!(hub.feed().stop.is_none() && hub.feed().tx.is_none());
    }

    #[tokio::test]
    async fn a_stream_ends_on_shutdown_and_leaves_the_feed() {
        use futures_util::StreamExt;
        let (trigger, shutdown) = shutdown::channel();
        let hub = Hub::new(
            crate::storage::pool("postgres://u:p@127.0.0.1:1/none", 1).expect("pool"),
            shutdown,
            1,
        );
        let mut stream = Box::pin(event_stream(hub.subscribe().expect("a slot")));
        let hello = stream.next().await.expect("hello").expect("bytes");
        assert!(hello.starts_with(b"retry: "));
        trigger.fire();
        let end = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
        assert!(matches!(end, Ok(None)), "the stream must end at shutdown");
        drop(stream);
        assert_eq!(hub.subscribers(), 0);
    }
}
