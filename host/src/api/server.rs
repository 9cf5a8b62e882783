//! The connection loop behind [`super::serve`]: the router on hyper's
//! HTTP/1.1 connections, with the timeouts `axum::serve` does not set.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never
//! fires: a client could open connections, trickle a byte of request head
//! now and then, and hold them (and a file descriptor each) forever. Here a
//! client that has not sent a complete request head within
//! [`HEADER_READ_TIMEOUT`] is disconnected, and a request body that stalls
//! for [`BODY_IDLE_TIMEOUT`] fails the request. Each connection is its own
//! task, so a slow client never holds up another. Shutdown stops accepting,
//! asks every connection to close once its request is answered, and waits.
//!
//! Connections are capped ([`Slots`]) below the process's file-descriptor
//! limit, in total and per client address, so a flood of connections
//! cannot take every descriptor (the store and the listener need theirs):
//! past a cap a new connection is closed at once. The last slots are kept
//! for health checks and admin requests ([`gate`]), so an operator can
//! still look and act while the rest are taken. A response write that
//! makes no progress for [`WRITE_STALL_TIMEOUT`] closes the connection
//! ([`StallTimeout`]), so a client that sends requests and never reads the
//! answers cannot hold its slot. [`raise_open_files_limit`] raises the
//! soft descriptor limit to the hard one at start.
//!
//! [`read_small_body`] reads small request bodies before routing: a request
//! refused before its body is read (a bad token, a missing scope) would
//! otherwise leave unread bytes behind, hyper closes such a connection, and
//! a client still writing its body gets a broken pipe or a reset instead of
//! the 401/403 that says why.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::Ctx;
use super::auth::Admin;

/// Longest a client may take to send a request line and headers. Real
/// clients send them at once; 10 s allows for a very slow network.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request body may stall between two chunks (a component upload
/// over a slow link keeps sending, so this is not a cap on its duration).
pub(crate) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an `accept` error that is not the client's (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Bodies announced at up to this many bytes are read before routing.
const PREREAD_BODY_BYTES: usize = 64 << 10;

/// Longest a response write may make no progress before the connection is
/// closed: a client that stops reading its answers (while pipelining more
/// requests, or on the live stream) gives its slot back.
pub(crate) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection admitted into the reserve has to send its request
/// head (it serves that one request only).
const RESERVED_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Most connections at once, whatever the descriptor limit.
const MAX_CONNECTIONS: usize = 16_384;
/// Descriptors kept for everything but connections (the store's files,
/// the listener, compiled-code files, the Zulip clients): up to 256, or a
/// quarter of a small limit.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft open-files limit to the hard limit (a no-op where it
/// already is, or where the platform has no such limit); returns the soft
/// limit now in force, `None` if unknown. Called once at start.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "Cannot raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connection caps derived from the descriptor limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Connections at once, in total.
    pub total: usize,
    /// Of those, the last ones, kept for health checks and admins.
    pub reserved: usize,
    /// Connections at once from one client address (outside the reserve).
    pub per_client: usize,
}

impl Caps {
    /// Caps for a process allowed `open_files` descriptors (`None`:
    /// unlimited or unknown).
    pub(crate) fn for_limit(open_files: Option<u64>) -> Caps {
        let open_files = open_files.unwrap_or(u64::MAX);
        let spare = open_files.saturating_sub(RESERVED_DESCRIPTORS.min(open_files / 4));
        let total = usize::try_from(spare)
            .unwrap_or(usize::MAX)
            .clamp(8, MAX_CONNECTIONS);
        let reserved = (total / 16).max(4);
        Caps {
            total,
            reserved,
            per_client: ((total - reserved) / 8).max(4),
        }
    }
}

/// What a connection was admitted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Anything may be asked on it.
    Open,
    /// One of the last slots: only health checks and admin requests ([`gate`]).
    Reserved,
}

/// The connections open now, in total and per client address.
#[derive(Debug)]
pub(crate) struct Slots {
    caps: Caps,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A connection's slot, given back when dropped.
pub(crate) struct Held {
    slots: Arc<Slots>,
    client: IpAddr,
    /// Whether it counts against the client's cap (reserved slots do not).
    per_client: bool,
}

impl Slots {
    pub(crate) fn new(caps: Caps) -> Arc<Slots> {
        Arc::new(Slots {
            caps,
            state: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a connection from `client`, or `None` when it must be closed
    /// (the total is at its cap). A client may hold `per_client` open
    /// connections while the total is below the reserve; past either, the
    /// connection gets a reserve slot, where what it may ask is gated, so
    /// an admin sharing an address with a flood still gets in.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Option<(Slot, Held)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_client) = &mut *state;
        if *total >= self.caps.total {
            return None;
        }
        let mine = by_client.get(&client).copied().unwrap_or(0);
        let slot = if *total < self.caps.total - self.caps.reserved && mine < self.caps.per_client {
            *by_client.entry(client).or_default() += 1;
            Slot::Open
        } else {
            Slot::Reserved
        };
        *total += 1;
        let held = Held {
            slots: self.clone(),
            client,
            per_client: slot == Slot::Open,
        };
        Some((slot, held))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.slots.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_client) = &mut *state;
        *total -= 1;
        if self.per_client
            && let Some(n) = by_client.get_mut(&self.client)
        {
            *n -= 1;
            if *n == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

/// Middleware: on a connection admitted into the reserve ([`Slot::Reserved`]:
/// the total is near its cap, or this client address is at its own),
/// serves only health checks and requests with an admin token; anything
/// else gets 503. Such a connection serves one request, sent within
/// [`RESERVED_HEADER_TIMEOUT`], and is closed.
pub(super) async fn gate(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    if req.extensions().get::<Slot>() != Some(&Slot::Reserved)
        || matches!(req.uri().path(), "/healthz" | "/readyz")
    {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if Admin::from_request_parts(&mut parts, &ctx).await.is_ok() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let mut refused = super::ApiError::unavailable(
        "the server is at its connection limit (or this client at its own); only health \
         checks and admin requests are served on this connection",
    )
    .into_response();
    refused
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// The router as a hyper service that tags each request with its
/// connection's [`Slot`].
struct Tagged {
    inner: TowerToHyperService<Router>,
    slot: Slot,
}

impl<B> hyper::service::Service<hyper::Request<B>> for Tagged
where
    TowerToHyperService<Router>: hyper::service::Service<hyper::Request<B>>,
{
    type Response =
        <TowerToHyperService<Router> as hyper::service::Service<hyper::Request<B>>>::Response;
    type Error = <TowerToHyperService<Router> as hyper::service::Service<hyper::Request<B>>>::Error;
    type Future =
        <TowerToHyperService<Router> as hyper::service::Service<hyper::Request<B>>>::Future;

    fn call(&self, mut req: hyper::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.slot);
        self.inner.call(req)
    }
}

/// A TCP stream whose writes fail once one has made no progress for
/// [`WRITE_STALL_TIMEOUT`] (reads are bounded by hyper's timeouts).
struct StallTimeout {
    inner: TcpStream,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallTimeout {
    /// Called when a write or flush is pending: fails once the stall has
    /// lasted [`WRITE_STALL_TIMEOUT`].
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client read nothing of the answer for too long",
        )))
    }

    fn progress<T>(
        &mut self,
        p: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match p {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_stall(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for StallTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(p, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(p, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Middleware: reads a body whose `Content-Length` is at most
/// [`PREREAD_BODY_BYTES`] before the request goes on, so an early refusal
/// never leaves unread bytes on the connection (see the module docs).
/// Larger and chunked bodies stream to the handler as before, and the body
/// limits still apply to what was read.
pub(super) async fn read_small_body(req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if !announced.is_some_and(|n| n > 0 && n <= PREREAD_BODY_BYTES) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, PREREAD_BODY_BYTES).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => super::ApiError::bad_request(format!("cannot read the request body: {e}"))
            .into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub(super) async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT));
    let graceful = GracefulShutdown::new();
    let caps = Caps::for_limit(rustix_open_files());
    tracing::info!(
        total = caps.total,
        per_client = caps.per_client,
        reserved = caps.reserved,
        "Connection caps"
    );
    let slots = Slots::new(caps);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer.ip()),
                Err(e) => {
                    if !is_per_connection(&e) {
                        tracing::warn!(error = %e, "Accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((slot, held)) = slots.admit(client) else {
            // Closing at once costs nothing kept; the client may retry.
            tracing::debug!(%client, "Connection refused: at the connection cap");
            drop(stream);
            continue;
        };
        // Without it, Nagle's algorithm holds a small write (an answer's
        // last bytes, a `GET /v1/stream` record) until the previous one is
        // acknowledged, and the client's delayed ACK makes that ~40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "Setting TCP_NODELAY failed");
        }
        let io = StallTimeout {
            inner: stream,
            stalled: None,
        };
        let service = Tagged {
            inner: TowerToHyperService::new(app.clone()),
            slot,
        };
        // A reserve slot is lent for one request, sent promptly: a flood
        // cannot sit on the reserve.
        let reserved = slot == Slot::Reserved;
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(if reserved {
                RESERVED_HEADER_TIMEOUT
            } else {
                HEADER_READ_TIMEOUT
            })
            .keep_alive(!reserved)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Connection closed with an error");
            }
            drop(held);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The soft open-files limit now in force.
fn rustix_open_files() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Errors that concern one connection only (the client gave up early).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_stay_below_the_descriptor_limit() {
        let c = Caps::for_limit(Some(4096));
        assert_eq!((c.total, c.reserved, c.per_client), (3840, 240, 450));
        let small = Caps::for_limit(Some(512));
        assert_eq!(
            (small.total, small.reserved, small.per_client),
            (384, 24, 45)
        );
        assert_eq!(Caps::for_limit(None).total, MAX_CONNECTIONS);
        assert!(Caps::for_limit(Some(10)).total >= 8);
    }

    #[test]
    fn slots_cap_each_client_then_keep_the_reserve() {
        let slots = Slots::new(Caps {
            total: 10,
            reserved: 2,
            per_client: 3,
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let (slot, h) = slots.admit(a).unwrap();
            assert_eq!(slot, Slot::Open);
            held.push(h);
        }
        // Past its own cap, a client only gets reserve slots.
        let (slot, h) = slots.admit(a).unwrap();
        assert_eq!(slot, Slot::Reserved);
        held.push(h);
        for _ in 0..3 {
            held.push(slots.admit(b).unwrap().1);
        }
        let c: IpAddr = "127.0.0.4".parse().unwrap();
        let (slot, h) = slots.admit(c).unwrap();
        assert_eq!(slot, Slot::Open);
        held.push(h);
        // 8 taken: the last two are the reserve, then nothing.
        for _ in 0..2 {
            let (slot, h) = slots.admit(c).unwrap();
            assert_eq!(slot, Slot::Reserved);
            held.push(h);
        }
        assert!(slots.admit(c).is_none());
        // Giving slots back frees them, per client too.
        held.truncate(0);
        let (slot, _h) = slots.admit(a).unwrap();
        assert_eq!(slot, Slot::Open);
    }
}
