//! A loopback proxy in front of RabbitMQ that makes the answer to a `basic.get` with
//! `no_ack` late: it stops that request until the test says go (so the test can change
//! the queue first), then holds back everything the broker sends for a while.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The broker the proxy forwards to.
const BROKER: &str = "127.0.0.1:5672";

type Trigger = Arc<Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>>;

pub(super) struct LateGet {
    /// `host:port` to put in an AMQP URL instead of the broker's.
    pub addr: String,
    /// Fires when the first `no_ack` get has arrived and is being held.
    pub seen: oneshot::Receiver<()>,
    /// Lets that get through; the broker's answer then comes `late`.
    pub go: oneshot::Sender<()>,
}

impl LateGet {
    pub(super) async fn start(late: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (seen_tx, seen) = oneshot::channel();
        let (go, go_rx) = oneshot::channel();
        let trigger: Trigger = Arc::new(Mutex::new(Some((seen_tx, go_rx))));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(BROKER).await else {
                    return;
                };
                tokio::spawn(pump(client, broker, trigger.clone(), late));
            }
        });
        Self { addr, seen, go }
    }
}

async fn pump(client: TcpStream, broker: TcpStream, trigger: Trigger, late: Duration) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_broker, mut to_broker) = broker.into_split();
    let held = Arc::new(AtomicBool::new(false));
    let answer_late = held.clone();
    tokio::spawn(async move {
        let mut buf = vec![0; 65536];
        let mut delayed = false;
        while let Ok(n) = from_broker.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if answer_late.load(Ordering::SeqCst) && !delayed {
                delayed = true;
                tokio::time::sleep(late).await;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    // The protocol header, then whole frames: type, channel, size, payload, 0xCE.
    let mut pending: Vec<u8> = Vec::new();
    let mut header_left = 8;
    let mut buf = vec![0; 65536];
    while let Ok(n) = from_client.read(&mut buf).await {
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        let start = header_left.min(pending.len());
        header_left -= start;
        let mut frames: Vec<Vec<u8>> = vec![pending.drain(..start).collect()];
        while pending.len() >= 7 {
            let size = u32::from_be_bytes([pending[3], pending[4], pending[5], pending[6]]);
            let whole = 7 + size as usize + 1;
            if pending.len() < whole {
                break;
            }
            frames.push(pending.drain(..whole).collect());
        }
        for frame in frames {
            if is_no_ack_get(&frame) {
                let waiting = trigger.lock().ok().and_then(|mut t| t.take());
                if let Some((seen, go)) = waiting {
                    let _ = seen.send(());
                    let _ = go.await;
                    held.store(true, Ordering::SeqCst);
                }
            }
            if to_broker.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
}

/// A method frame for basic.get (class 60, method 70) with the no-ack bit set.
fn is_no_ack_get(frame: &[u8]) -> bool {
    let payload = frame.get(7..).unwrap_or_default();
    if frame.first() != Some(&1) || payload.get(..4) != Some(&[0, 60, 0, 70]) {
        return false;
    }
    let queue_len = payload.get(6).map_or(0, |n| usize::from(*n));
    payload.get(7 + queue_len).is_some_and(|bits| bits & 1 == 1)
}
