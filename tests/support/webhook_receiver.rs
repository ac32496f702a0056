//! A webhook receiver for the tests: a real HTTP/1.1 server on a loopback port that
//! records every POST (headers and body) and answers as the test says: 500 for the
//! first N, slowly, or not at all (stopped: connection refused), then back on the same
//! port. Signatures are checked by `verify`, which recomputes the Standard Webhooks
//! HMAC itself with the RustCrypto crates, not with ppctl's code.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One POST as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// The status this receiver answered; 0 while it has not (slow, or the sender
    /// went away first).
    pub answered: u16,
}

impl Received {
    /// The work the body announces: (id, status).
    pub fn work(&self) -> (i64, String) {
        let work: serde_json::Value = serde_json::from_slice(&self.body).expect("JSON body");
        let id = work["id"].as_i64().expect("work id");
        (id, work["status"].as_str().expect("status").to_string())
    }
}

#[derive(Default)]
struct Behaviour {
    /// Answer 500 to this many more requests.
    fail_next: usize,
    /// Wait this long before answering.
    delay: Duration,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    server: Option<JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut receiver = Receiver {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
            behaviour: Arc::default(),
            server: None,
        };
        receiver.serve(listener);
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn fail_next(&self, n: usize) {
        self.behaviour.lock().expect("lock").fail_next = n;
    }

    pub fn delay(&self, delay: Duration) {
        self.behaviour.lock().expect("lock").delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Goes away: the port refuses connections and open ones are cut.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Comes back on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (received, behaviour) = (self.received.clone(), self.behaviour.clone());
        self.server = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(answer(stream, received.clone(), behaviour.clone()));
            }
        }));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request, records it, answers, closes. A request whose sender went away
/// before the answer (killed while the receiver was slow) stays recorded unanswered.
async fn answer(
    mut stream: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (status, delay) = {
        let mut b = behaviour.lock().expect("lock");
        let fail = b.fail_next > 0;
        b.fail_next = b.fail_next.saturating_sub(1);
        (if fail { 500 } else { 204 }, b.delay)
    };
    let index = {
        let mut all = received.lock().expect("lock");
        all.push(request);
        all.len() - 1
    };
    let mut probe = [0u8; 1];
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        // The sender closed its end (EOF) or reset it: nobody to answer.
        _ = stream.read(&mut probe) => return,
    }
    let reason = if status == 500 {
        "Internal Server Error"
    } else {
        "No Content"
    };
    let response =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_ok() {
        received.lock().expect("lock")[index].answered = status;
    }
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = request.parse(&buffer) else {
            continue;
        };
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        if buffer.len() < head + length {
            continue;
        }
        return Some(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: buffer[head..head + length].to_vec(),
            answered: 0,
        });
    }
}

/// Whether `received` carries a valid Standard Webhooks signature under `secret`
/// (`whsec_<base64>`), computed here from the spec, and a timestamp within five
/// minutes of now (the spec's tolerance).
pub fn verify(secret: &str, received: &Received) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the test's secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{}.{}.", received.id, received.timestamp).as_bytes());
    mac.update(&received.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = received
        .timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() < 300);
    // The header may carry several space-separated signatures; one must match.
    fresh && received.signature.split(' ').any(|s| s == expected)
}
