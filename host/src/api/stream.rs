//! `GET /v1/stream`: the live feed of delivery outcomes as Server-Sent
//! Events (`event: delivery`, `data:` a `DeliveryNotice`), filtered by the
//! query and by the token's tenants, with keep-alive comments.
//!
//! A subscriber that falls behind the dispatcher's bounded channel gets an
//! `event: lagged` whose data is the number of notices it missed, and the
//! stream goes on. The stream ends when the server shuts down, and within
//! [`TOKEN_CHECK`] of its token being revoked or expiring: a token is
//! checked when the stream opens, and an open stream must not outlive it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{FutureExt, Stream, StreamExt, future};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::IntoParams;

use super::Ctx;
use super::auth::{Caller, Reader};
use super::error::{ApiResult, ErrorBody};
use super::extract::Query;
use crate::dispatch::DeliveryNotice;
use crate::event::now_ms;
use crate::manifest::pattern_matches;
use crate::store::TokenRecord;

/// Idle connections get a comment this often, so proxies keep them open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an open stream checks that its token still exists and has not
/// expired (one keyed read of the store), so a revoked or expired token's
/// stream ends within this.
const TOKEN_CHECK: Duration = Duration::from_millis(500);

/// Query of `GET /v1/stream`; every given filter must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Only this handler.
    handler: Option<String>,
    /// Only event types matching this pattern (`message`, `reaction.*`, `*`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only this tenant.
    tenant: Option<String>,
    /// Only this outcome.
    outcome: Option<String>,
}

/// Whether a notice passes the query and the token's tenant scope.
fn wanted(p: &StreamParams, caller: &Caller, n: &DeliveryNotice) -> bool {
    p.handler.as_ref().is_none_or(|h| *h == n.handler)
        && p.event_type
            .as_ref()
            .is_none_or(|t| pattern_matches(t, &n.event_type))
        && p.tenant.as_ref().is_none_or(|t| *t == n.tenant)
        && p.outcome.as_ref().is_none_or(|o| *o == n.outcome)
        && caller.tenant_allowed(&n.tenant)
}

/// The SSE event for one item of the broadcast channel.
fn to_event(item: Result<Arc<DeliveryNotice>, BroadcastStreamRecvError>) -> Event {
    match item {
        Ok(n) => match n.json() {
            Ok(json) => Event::default().event("delivery").data(json),
            Err(e) => {
                tracing::error!(error = %e, "Cannot encode a delivery notice");
                Event::default().comment("unencodable notice dropped")
            }
        },
        Err(BroadcastStreamRecvError::Lagged(missed)) => {
            Event::default().event("lagged").data(missed.to_string())
        }
    }
}

/// Follows delivery outcomes live.
#[utoipa::path(
    get, path = "/v1/stream", tag = "logs", operation_id = "stream_deliveries",
    security(("bearer" = ["read"])),
    params(StreamParams),
    responses(
        (status = 200, description = "`event: delivery` with a DeliveryNotice as `data`; \
            `event: lagged` with the number of missed notices", content_type = "text/event-stream", body = String),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn stream(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Query(p): Query<StreamParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.check_tenant_filter(p.tenant.as_deref())?;
    let token_ended = token_ended(ctx.clone(), caller.token.clone());
    let stop = future::select(Box::pin(ctx.shutting_down()), Box::pin(token_ended)).map(drop);
    let events = events(ctx.dispatcher().subscribe(), p, caller, stop);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Resolves once `token` no longer authenticates: when it has expired, or
/// when the store no longer holds it (revoked), checked every
/// [`TOKEN_CHECK`]. A failed check is not taken for a revocation.
async fn token_ended(ctx: Ctx, token: TokenRecord) {
    let mut every = tokio::time::interval(TOKEN_CHECK);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if token.expires_ms.is_some_and(|at| at <= now_ms()) {
            return;
        }
        let id = token.id.clone();
        match ctx.with_store(move |s| s.token_exists(&id)).await {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) => tracing::warn!(error = ?e, "Cannot check a stream's token"),
        }
    }
}

/// The SSE events of a notice channel, filtered, until `stop` resolves.
fn events(
    rx: broadcast::Receiver<Arc<DeliveryNotice>>,
    p: StreamParams,
    caller: Caller,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    BroadcastStream::new(rx)
        .filter(move |item| {
            let keep = match item {
                Ok(n) => wanted(&p, &caller, n),
                Err(BroadcastStreamRecvError::Lagged(_)) => true,
            };
            std::future::ready(keep)
        })
        .map(|item| Ok(to_event(item)))
        .take_until(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    use crate::store::Scope;

    fn notice(handler: &str, event_type: &str, tenant: &str, outcome: &str) -> DeliveryNotice {
        DeliveryNotice {
            handler: handler.into(),
            version: 1,
            event_id: "01J".into(),
            event_type: event_type.into(),
            tenant: tenant.into(),
            outcome: outcome.into(),
            error: None,
            attempt: 1,
            final_attempt: true,
            duration_us: 10,
            fuel: 100,
            memory_bytes: 65536,
            time_ms: 1,
            logs: Vec::new(),
            json: Default::default(),
        }
    }

    fn caller(tenants: &[&str]) -> Caller {
        Caller {
            token: TokenRecord {
                id: "t".into(),
                name: "t".into(),
                scopes: vec![Scope::Read],
                tenants: tenants.iter().map(|t| t.to_string()).collect(),
                event_types: vec![],
                created_ms: 0,
                expires_ms: None,
            },
        }
    }

    #[test]
    fn filters_combine_with_the_token_scope() {
        let all = StreamParams::default();
        let n = notice("greeter", "reaction.add", "acme", "ok");
        assert!(wanted(&all, &caller(&[]), &n));
        assert!(wanted(&all, &caller(&["acme"]), &n));
        assert!(!wanted(&all, &caller(&["other"]), &n));
        let by_type = StreamParams {
            event_type: Some("reaction.*".into()),
            ..StreamParams::default()
        };
        assert!(wanted(&by_type, &caller(&[]), &n));
        let other = notice("greeter", "message", "acme", "ok");
        assert!(!wanted(&by_type, &caller(&[]), &other));
        let failed = StreamParams {
            outcome: Some("trap".into()),
            handler: Some("greeter".into()),
            ..StreamParams::default()
        };
        assert!(!wanted(&failed, &caller(&[]), &n));
        assert!(wanted(
            &failed,
            &caller(&[]),
            &notice("greeter", "x", "", "trap")
        ));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_and_keeps_going() {
        let (tx, rx) = broadcast::channel(2);
        for tenant in ["acme", "acme", "other", "acme"] {
            tx.send(Arc::new(notice("greeter", "message", tenant, "ok")))
                .unwrap();
        }
        drop(tx); // the stream ends once the channel is drained
        let stream = events(
            rx,
            StreamParams::default(),
            caller(&["acme"]),
            std::future::pending(),
        );
        let body = Sse::new(stream).into_response().into_body();
        let text = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        // Capacity 2 of 4 sent: 2 missed, then `other` filtered out, then one delivery.
        assert!(text.starts_with("event: lagged\ndata: 2\n\n"), "{text}");
        assert_eq!(text.matches("event: delivery").count(), 1, "{text}");
        assert!(text.contains(r#""tenant":"acme""#), "{text}");
        assert!(!text.contains("other"), "{text}");
    }

    #[tokio::test]
    async fn every_subscriber_sends_the_notice_serialized_once() {
        let (tx, _) = broadcast::channel(4);
        let streams: Vec<_> = (0..2)
            .map(|_| {
                events(
                    tx.subscribe(),
                    StreamParams::default(),
                    caller(&[]),
                    std::future::pending(),
                )
            })
            .collect();
        let mut n = notice("greeter", "message", "acme", "trap");
        n.error = Some("line one\nline \"two\"".into());
        let n = Arc::new(n);
        tx.send(n.clone()).unwrap();
        drop(tx);
        let mut bodies = Vec::new();
        for stream in streams {
            let body = Sse::new(stream).into_response().into_body();
            let text = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            bodies.push(String::from_utf8(text.to_vec()).unwrap());
        }
        // The JSON both sent is the one the notice holds, made once.
        let json = n.json().unwrap();
        assert!(std::ptr::eq(json, n.json().unwrap()));
        let expected = format!("event: delivery\ndata: {json}\n\n");
        assert_eq!(bodies, [expected.clone(), expected]);
        // The notice's fields, nothing else; the newline stays escaped.
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["error"], "line one\nline \"two\"");
        assert_eq!(value["handler"], "greeter");
        assert!(value.get("json").is_none(), "{value}");
    }
}
