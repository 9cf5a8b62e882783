//! A recording HTTP receiver on 127.0.0.1 for the webhook tests: it keeps
//! every request (path, headers, body bytes, arrival time) and answers each
//! path from a script of canned answers, then `200 ok`. It runs on its own
//! runtime thread, so blocking tests (the daemon harness) can drive it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The longest [`Receiver::wait_for`] waits.
pub const WAIT: Duration = Duration::from_secs(30);

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path.
    pub path: String,
    /// The headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The body as sent.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A canned answer: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    scripts: BTreeMap<String, VecDeque<Answer>>,
}

/// See the module docs. Stops when dropped.
pub struct Receiver {
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Receiver({})", self.addr)
    }
}

impl Receiver {
    /// Starts a receiver on a free port.
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let app = Router::new().fallback(answer).with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests to `path` with `answers`, in order.
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.shared
            .lock()
            .unwrap()
            .scripts
            .entry(path.to_string())
            .or_default()
            .extend(answers);
    }

    /// Every request to `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Received> {
        let shared = self.shared.lock().unwrap();
        shared
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got `n` requests; panics after [`WAIT`].
    pub fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.requests(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path} got {} of {n} requests within {WAIT:?}: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn answer(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut shared = shared.lock().unwrap();
    let (status, extra, text) = shared
        .scripts
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or((200, Vec::new(), "ok".into()));
    shared.received.push(Received {
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
        status,
    });
    let mut resp = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (k, v) in extra {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}
