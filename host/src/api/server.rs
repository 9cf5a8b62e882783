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
//! [`read_small_body`] reads small request bodies before routing: a request
//! refused before its body is read (a bad token, a missing scope) would
//! otherwise leave unread bytes behind, hyper closes such a connection, and
//! a client still writing its body gets a broken pipe or a reset instead of
//! the 401/403 that says why.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::timeout::RequestBodyTimeoutLayer;

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
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
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
        // Without it, Nagle's algorithm holds a small write (an answer's
        // last bytes, a `GET /v1/stream` record) until the previous one is
        // acknowledged, and the client's delayed ACK makes that ~40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "Setting TCP_NODELAY failed");
        }
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors that concern one connection only (the client gave up early).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}
