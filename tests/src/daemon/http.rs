//! The harness's HTTP side: a blocking client for the admin API ([`Http`]),
//! its answers ([`Reply`], with the error-shape check) and a reader of the
//! live Server-Sent Events stream ([`SseStream`]).

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::WAIT;

/// A request body.
#[derive(Debug)]
pub enum Body {
    /// No body.
    None,
    /// JSON, `Content-Type: application/json`.
    Json(Value),
    /// Raw bytes with a content type.
    Raw(&'static str, Vec<u8>),
    /// `multipart/form-data` parts: name and bytes.
    Multipart(Vec<(String, Vec<u8>)>),
}

/// A blocking facade over reqwest's async client (the daemon's own client
/// crate, with the features the daemon already uses).
#[derive(Debug)]
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A client whose requests time out after [`WAIT`] plus a margin (a
    /// `?wait=true` publish may legitimately take the daemon's `max_wait`).
    pub fn new() -> Http {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the test client");
        let client = reqwest::Client::builder()
            .connect_timeout(WAIT)
            .build()
            .expect("a reqwest client");
        Http { rt, client }
    }

    /// One request; the whole exchange is bounded by [`WAIT`] × 3.
    pub fn send(
        &self,
        base: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> Reply {
        let mut req = self.client.request(method.clone(), format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => req.header(reqwest::header::CONTENT_TYPE, ct).body(bytes),
            Body::Multipart(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for (name, bytes) in parts {
                    form = form.part(name, reqwest::multipart::Part::bytes(bytes));
                }
                req.multipart(form)
            }
        };
        self.exchange(format!("{method} {path}"), req)
    }

    /// A `GET` with one raw header (for malformed `Authorization` values).
    pub fn send_with_header(&self, base: &str, path: &str, name: &str, value: &str) -> Reply {
        let req = self.client.get(format!("{base}{path}")).header(name, value);
        self.exchange(format!("GET {path} with {name}: {value}"), req)
    }

    fn exchange(&self, what: String, req: reqwest::RequestBuilder) -> Reply {
        let exchange = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, headers, text))
        };
        let (status, headers, text) = self
            .rt
            .block_on(async { tokio::time::timeout(WAIT * 3, exchange).await })
            .unwrap_or_else(|_| panic!("{what}: no answer within {:?}", WAIT * 3))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            what,
            status,
            headers,
            text,
            json,
        }
    }

    /// Opens a Server-Sent Events stream and waits for its headers.
    pub fn stream(&self, base: &str, path: &str, token: &str) -> SseStream<'_> {
        let req = self
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send();
        let resp = self
            .rt
            .block_on(async { tokio::time::timeout(WAIT, req).await })
            .unwrap_or_else(|_| panic!("GET {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "GET {path}: {ct}");
        SseStream {
            http: self,
            resp,
            buf: String::new(),
            ended: false,
        }
    }
}

/// One answer of the daemon.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `METHOD /path`, for messages.
    pub what: String,
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`null` if it is not JSON).
    pub json: Value,
}

impl Reply {
    /// Asserts the status; returns `self` for more checks.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{self}");
        self
    }

    /// Asserts an error answer in the one error shape,
    /// `{"error": {"code", "message"}}`, with `status` and `code`; returns
    /// the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self}");
        let ct = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "content type {ct:?}: {self}"
        );
        let obj = self.json.as_object().unwrap_or_else(|| panic!("{self}"));
        assert_eq!(obj.len(), 1, "only `error` at the top: {self}");
        let err = self.json["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{self}"));
        assert_eq!(err.len(), 2, "`error` has `code` and `message`: {self}");
        assert_eq!(self.json["error"]["code"], code, "{self}");
        let message = self.json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{self}"));
        assert!(!message.is_empty(), "{self}");
        message.to_string()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body: String = self.text.chars().take(4000).collect();
        write!(f, "{} answered {}: {body}", self.what, self.status)
    }
}

/// An open `text/event-stream` response.
#[derive(Debug)]
pub struct SseStream<'h> {
    http: &'h Http,
    resp: reqwest::Response,
    buf: String,
    ended: bool,
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `event:` name (`message` when absent).
    pub event: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

impl SseStream<'_> {
    /// Whether the server ended the stream (or the connection broke).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next event (comments skipped), or `None` if none comes within
    /// `timeout` or the stream ends (see [`SseStream::ended`]).
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let chunk = self
                .http
                .rt
                .block_on(async { tokio::time::timeout_at(deadline, self.resp.chunk()).await });
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// Parses one complete event off the front of the buffer.
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            self.buf = self.buf.replace("\r\n", "\n");
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim_start().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            if !data.is_empty() {
                return Some(SseEvent {
                    event,
                    data: data.join("\n"),
                });
            }
        }
    }
}
