//! Events: publish one or a batch (`POST /v1/events`), asynchronously (202
//! and the ids) or synchronously (`?wait=true`: wait for the outcomes, up to
//! a bounded timeout), and look up an event with its deliveries.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Ctx;
use super::auth::{Caller, Publisher, Reader};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Path, Query, parse_json, require_json_content_type};
use crate::dispatch::{AcceptError, Accepted, Dispatcher, EventOutcome, Reservation, Room};
use crate::event::{Event, EventInput, array_len};
use crate::store::LogEntry;

/// The `source` of events published over HTTP.
const HTTP_SOURCE: &str = "http";

/// Query of `POST /v1/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PublishQuery {
    /// Wait for the deliveries to finish and return their outcomes.
    #[serde(default)]
    wait: bool,
    /// With `wait=true`: how long to wait (`10s`, `2m`); default and cap:
    /// the daemon's `max_wait`.
    timeout: Option<String>,
}

/// Body of `POST /v1/events`: one event (an `EventInput`), or an array of them.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum PublishBody {
    /// One event.
    One(EventInput),
    /// A batch, accepted whole or not at all.
    Batch(Vec<EventInput>),
}

/// A `POST /v1/events` body (an event object, or an array of them), read
/// but not parsed yet.
#[derive(Debug)]
pub(crate) struct EventBody {
    headers: HeaderMap,
    bytes: Bytes,
}

impl FromRequest<Ctx> for EventBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Ctx) -> Result<Self, ApiError> {
        require_json_content_type(req.headers())?;
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, ctx).await?;
        Ok(EventBody { headers, bytes })
    }
}

impl EventBody {
    /// The events: a JSON object is one, an array a batch of at most `max`.
    fn parse(&self, max: usize) -> ApiResult<Vec<EventInput>> {
        match self.bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => parse_batch(&self.headers, &self.bytes, max),
            Some(b'{') => Ok(vec![parse_json(&self.headers, &self.bytes)?]),
            _ => Err(ApiError::bad_request(
                "the body must be an event object or an array of event objects",
            )),
        }
    }
}

/// The room a batch is sure to take in the queue, read off its body
/// before its events are built, and its number of events; `None` for a
/// body the full parse will refuse, and for a batch outside `caller`'s
/// tenants and types (a scoped token learns nothing here of the other
/// tenants' share: it is told 403 first). Blocking: a batch may name
/// thousands of (type, tenant) pairs, each routed.
fn sure_room(
    bytes: &[u8],
    caller: &Caller,
    dispatcher: &Dispatcher,
) -> Option<(Reservation, usize)> {
    let (groups, events) = sketch(bytes, dispatcher.max_batch())?;
    let scoped = groups
        .keys()
        .all(|(ty, tenant)| caller.type_allowed(ty) && caller.tenant_allowed(tenant));
    if !scoped {
        return None;
    }
    let sure = groups
        .iter()
        .map(|((ty, tenant), n)| ((ty.as_ref(), tenant.as_ref()), *n));
    Some((dispatcher.sure_room(sure), events))
}

/// Under load, holds the room a batch is sure to take before its events
/// are built, waiting until `deadline` for it (`dispatch/admission.rs`),
/// or refuses it (429): a refusal costs one pass over the body, not a
/// full accept, and a client that would retry at once waits instead.
/// `None` when the queue is not under load or the body is left to the
/// full parse.
async fn admit(
    ctx: &Ctx,
    caller: &Caller,
    body: &EventBody,
    deadline: Instant,
) -> ApiResult<Option<Room>> {
    if !ctx.dispatcher().under_pressure() {
        return Ok(None);
    }
    let (bytes, caller) = (body.bytes.clone(), caller.clone());
    let Some((sure, events)) = ctx
        .with_dispatcher(move |d| Ok::<_, ApiError>(sure_room(&bytes, &caller, d)))
        .await?
    else {
        return Ok(None);
    };
    wait_for_room(ctx, sure, events, body, deadline).await
}

/// Holds `room` for a batch of `events` events read from `body`, waiting
/// until `deadline` for it ([`Dispatcher::admit`]); a shutdown ends the
/// wait, which must not hold the graceful shutdown up.
async fn wait_for_room(
    ctx: &Ctx,
    room: Reservation,
    events: usize,
    body: &EventBody,
    deadline: Instant,
) -> ApiResult<Option<Room>> {
    let wait = deadline.saturating_duration_since(Instant::now());
    let len = body.bytes.len();
    tokio::select! {
        room = ctx.dispatcher().admit(room, events, len, wait) => Ok(room?),
        () = ctx.shutting_down() => Err(AcceptError::ShuttingDown.into()),
    }
}

/// Parses a batch, refused whole (`BatchTooLarge`) at its `max + 1`th
/// event: a body of a million tiny events is not built first, at ~200
/// bytes each. Only a refused batch is counted in full, for the message.
fn parse_batch(headers: &HeaderMap, bytes: &[u8], max: usize) -> ApiResult<Vec<EventInput>> {
    let over = Cell::new(false);
    let mut events = Vec::new();
    match each_of(bytes, max, &over, |event| events.push(event)) {
        Ok(_) => Ok(events),
        Err(_) if over.get() => Err(AcceptError::BatchTooLarge {
            len: array_len(bytes).max(max + 1),
            max,
        }
        .into()),
        // It failed before its `max + 1`th event, so parsing it again for
        // the message (with the path to the fault) builds no more.
        Err(_) => parse_json(headers, bytes),
    }
}

/// What [`Dispatcher::sure_room`](crate::dispatch::Dispatcher::sure_room) needs of an
/// event; the rest, the payload too, is skipped, not copied.
#[derive(Deserialize)]
struct Sketch<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    tenant: Cow<'a, str>,
    #[serde(default)]
    idempotency_key: Option<IgnoredAny>,
}

/// A body's (type, tenant) pairs, each with its events that have no
/// idempotency key (new events, whatever else). The producer names them,
/// so a hasher that resists collisions.
type Groups<'a> = HashMap<(Cow<'a, str>, Cow<'a, str>), usize>;

/// A body's events by (type, tenant), and their number; `None` unless it
/// is a well-formed event or batch of at most `max` (the full parse then
/// says what is wrong).
fn sketch<'a>(bytes: &'a [u8], max: usize) -> Option<(Groups<'a>, usize)> {
    let mut groups = Groups::new();
    let mut add = |e: Sketch<'a>| {
        *groups.entry((e.event_type, e.tenant)).or_insert(0) +=
            usize::from(e.idempotency_key.is_none());
    };
    let events = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => each_of(bytes, max, &Cell::new(false), &mut add).ok()?,
        _ => {
            add(serde_json::from_slice(bytes).ok()?);
            1
        }
    };
    Some((groups, events))
}

/// Parses `bytes` as a JSON array of at most `max` elements, each handed
/// to `add`; their number. Past `max` it fails, and sets `over`.
fn each_of<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    max: usize,
    over: &Cell<bool>,
    mut add: impl FnMut(T),
) -> serde_json::Result<usize> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seq = EachOf {
        max,
        over,
        add: &mut add,
        element: PhantomData,
    };
    let n = seq.deserialize(&mut de)?;
    de.end()?;
    Ok(n)
}

/// [`each_of`]'s visitor.
struct EachOf<'f, T, F> {
    max: usize,
    over: &'f Cell<bool>,
    add: &'f mut F,
    element: PhantomData<fn() -> T>,
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for EachOf<'_, T, F> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for EachOf<'_, T, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of at most {} events", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(element) = seq.next_element()? {
            if n == self.max {
                self.over.set(true);
                return Err(A::Error::custom("too many events"));
            }
            (self.add)(element);
            n += 1;
        }
        Ok(n)
    }
}

/// Body of a `POST /v1/events` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublishResponse {
    /// One per event, in request order.
    events: Vec<Accepted>,
    /// With `wait=true`: what happened to each event.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcomes: Option<Vec<EventOutcome>>,
}

/// How long a `wait=true` request waits: `timeout`, capped by `max_wait`.
fn wait_timeout(q: &PublishQuery, max_wait: Duration) -> ApiResult<Option<Duration>> {
    match (q.wait, &q.timeout) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::bad_request(
            "`timeout` only applies with `wait=true`",
        )),
        (true, None) => Ok(Some(max_wait)),
        (true, Some(t)) => {
            let d = humantime::parse_duration(t).map_err(|e| {
                ApiError::bad_request(format!("`timeout` {t:?} is not a duration like `10s`: {e}"))
            })?;
            Ok(Some(d.min(max_wait)))
        }
    }
}

/// Publishes one event or a batch.
#[utoipa::path(
    post, path = "/v1/events", tag = "events", operation_id = "publish_events",
    security(("bearer" = ["publish"])),
    params(PublishQuery),
    request_body(content = PublishBody, description = "One event object, or an array of them"),
    responses(
        (status = 202, description = "Accepted; deliveries run in the background", body = PublishResponse),
        (status = 200, description = "With `wait=true`: accepted, with outcomes", body = PublishResponse),
        (status = 413, description = "The body is too large, the batch has more than `max_batch` events, or its deliveries (events times the handlers each goes to) are more than the whole queue holds (`queue_capacity`): send smaller batches", body = ErrorBody),
        (status = 429, description = "The queue is full, or a tenant of the batch holds its share of it (`tenant_queue_share`) while another tenant waits, and stayed so for `[api] queue_wait` (default 250 ms) while the request waited for room; see `Retry-After`", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    ),
)]
pub(crate) async fn publish(
    Publisher(caller): Publisher,
    State(ctx): State<Ctx>,
    Query(q): Query<PublishQuery>,
    body: EventBody,
) -> ApiResult<(StatusCode, axum::Json<PublishResponse>)> {
    let timeout = wait_timeout(&q, ctx.limits().max_wait)?;
    let deadline = Instant::now() + ctx.limits().queue_wait;
    let mut room = admit(&ctx, &caller, &body, deadline).await?;
    let events = loop {
        let inputs = body.parse(ctx.dispatcher().max_batch())?;
        caller.check_publish(&inputs)?;
        // Runs to its end even if the client hangs up meanwhile: an event
        // that became durable is counted and delivered.
        let accepted = match ctx
            .dispatcher()
            .accept_spawned(inputs, HTTP_SOURCE, room.take())
        {
            Ok(accepting) => accepting.await?,
            Err(e) => Err(e),
        };
        let mut e = match accepted {
            Ok(events) => break events,
            Err(e) => e,
        };
        // Refused for room the sketch could not count (events with
        // idempotency keys or payload filters, a body it did not read) or
        // that others took meanwhile: wait for what the batch needed,
        // then build it again.
        let needed = match &mut e {
            AcceptError::Busy { needed, .. } if Instant::now() < deadline => needed.take(),
            _ => None,
        };
        let Some((needed, events)) = needed else {
            ctx.dispatcher().refused(&e);
            return Err(e.into());
        };
        room = wait_for_room(&ctx, needed, events, &body, deadline).await?;
    };
    let Some(timeout) = timeout else {
        let body = PublishResponse {
            events,
            outcomes: None,
        };
        return Ok((StatusCode::ACCEPTED, axum::Json(body)));
    };
    let ids: Vec<String> = events.iter().map(|a| a.id.clone()).collect();
    // A shutdown ends the wait (with the outcomes so far), or a waiting
    // client would hold the graceful shutdown up for up to `max_wait`.
    let outcomes = tokio::select! {
        outcomes = ctx.dispatcher().wait_for(ids.clone(), timeout) => outcomes,
        () = ctx.shutting_down() => ctx.dispatcher().wait_for(ids, Duration::ZERO).await,
    };
    let body = PublishResponse {
        events,
        outcomes: Some(outcomes),
    };
    Ok((StatusCode::OK, axum::Json(body)))
}

/// Body of `GET /v1/events/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventDetail {
    /// The event, payload included: while deliveries are pending, and after
    /// they are final for as long as the delivery log keeps its lines
    /// (`[store] log_max_age` / `log_max_entries`); `null` once they are
    /// gone.
    event: Option<Event>,
    /// Whether no delivery of the event is pending any more (every one
    /// ok, dead-lettered or expired).
    complete: bool,
    /// Every logged attempt, oldest first.
    deliveries: Vec<LogEntry>,
}

/// An event and its deliveries.
#[utoipa::path(
    get, path = "/v1/events/{id}", tag = "events", operation_id = "show_event",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, body = EventDetail),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn show(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EventDetail>> {
    let lookup = id.clone();
    let (event, complete, mut deliveries) = ctx
        .with_dispatcher(move |d| {
            let pending = d.event(&lookup)?.map(Arc::unwrap_or_clone);
            let complete = pending.is_none();
            let event = match pending {
                Some(e) => Some(e),
                None => d.finished_event(&lookup)?,
            };
            Ok::<_, crate::store::StoreError>((event, complete, d.store().deliveries_of(&lookup)?))
        })
        .await?;
    // A tenant-scoped token sees nothing of other tenants, not even that
    // the event exists.
    let event = event.filter(|e| caller.tenant_allowed(&e.tenant));
    deliveries.retain(|d| caller.tenant_allowed(&d.tenant));
    if event.is_none() && deliveries.is_empty() {
        return Err(ApiError::not_found(format!("no event with id {id:?}")));
    }
    Ok(axum::Json(EventDetail {
        event,
        complete,
        deliveries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testutil::TestApi;
    use crate::store::{LogEntry, Scope};
    use axum::http::Method;
    use serde_json::json;

    fn q(wait: bool, timeout: Option<&str>) -> PublishQuery {
        PublishQuery {
            wait,
            timeout: timeout.map(str::to_string),
        }
    }

    #[test]
    fn timeouts_are_capped_and_checked() {
        let max = Duration::from_secs(60);
        assert_eq!(wait_timeout(&q(false, None), max).unwrap(), None);
        assert_eq!(wait_timeout(&q(true, None), max).unwrap(), Some(max));
        assert_eq!(
            wait_timeout(&q(true, Some("10s")), max).unwrap(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(wait_timeout(&q(true, Some("1h")), max).unwrap(), Some(max));
        let e = wait_timeout(&q(true, Some("soon")), max).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = wait_timeout(&q(false, Some("1s")), max).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    async fn post(
        api: &TestApi,
        uri: &str,
        token: &str,
        ct: &str,
        body: &str,
    ) -> crate::api::testutil::Reply {
        api.send(
            Method::POST,
            uri,
            Some(token),
            Some((ct, body.as_bytes().to_vec())),
        )
        .await
    }

    #[tokio::test]
    async fn one_event_or_a_batch_is_accepted() {
        let api = TestApi::new();
        let r = post(
            &api,
            "/v1/events",
            &api.publish,
            "application/json",
            r#" {"type":"ping"}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!(r.json["events"].as_array().unwrap().len(), 1);
        assert_eq!(r.json["events"][0]["duplicate"], false);
        assert!(r.json.get("outcomes").is_none());

        let batch = r#"
            [{"type":"a","tenant":"acme"},{"type":"b","idempotency_key":"k"},{"type":"b","idempotency_key":"k"}]"#;
        let r = post(
            &api,
            "/v1/events",
            &api.admin,
            "application/json; charset=utf-8",
            batch,
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        let events = r.json["events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2]["duplicate"], true);
        assert_eq!(events[1]["id"], events[2]["id"]);
    }

    #[tokio::test]
    async fn wait_returns_outcomes() {
        let api = TestApi::new();
        let r = post(
            &api,
            "/v1/events?wait=true&timeout=2s",
            &api.publish,
            "application/json",
            r#"{"type":"ping"}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let outcomes = r.json["outcomes"].as_array().unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0]["id"], r.json["events"][0]["id"]);
        // Nothing subscribes: nothing to wait for.
        assert_eq!(outcomes[0]["complete"], true);
    }

    #[tokio::test]
    async fn malformed_bodies_get_precise_errors() {
        let api = TestApi::new();
        let p = &api.publish;
        let r = post(&api, "/v1/events", p, "application/json", r#"{"type": "x""#).await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
        let r = post(&api, "/v1/events", p, "text/plain", r#"{"type":"x"}"#).await;
        let m = r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        assert!(m.contains("text/plain"), "{m}");
        let r = api.send(Method::POST, "/v1/events", Some(p), None).await;
        r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        let r = post(&api, "/v1/events", p, "application/json", r#""ping""#).await;
        let m = r.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(m.contains("array"), "{m}");
        let r = post(&api, "/v1/events", p, "application/json", "[]").await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");

        let r = post(
            &api,
            "/v1/events",
            p,
            "application/json",
            r#"[{"type":"a"},{"type":"b","tenat":"x"}]"#,
        )
        .await;
        let m = r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(m.contains("[1]") && m.contains("tenat"), "{m}");
        let r = post(
            &api,
            "/v1/events",
            p,
            "application/json",
            r#"{"type":"a b"}"#,
        )
        .await;
        let m = r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(m.contains("event 0") && m.contains("type"), "{m}");
        let many = serde_json::to_string(&vec![json!({"type": "t"}); 101]).unwrap();
        let r = post(&api, "/v1/events", p, "application/json", &many).await;
        r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }

    #[tokio::test]
    async fn a_batch_is_refused_at_its_limit_and_a_fault_before_it_named() {
        let api = TestApi::new();
        let p = &api.publish;
        let batch = |n: usize, fault: Option<usize>| {
            let events: Vec<_> = (0..n)
                .map(|i| match fault == Some(i) {
                    true => json!({"type": "t", "tenat": "x"}),
                    false => json!({"type": "t"}),
                })
                .collect();
            serde_json::to_string(&events).unwrap()
        };
        // The limit (100 here) is accepted.
        let r = post(&api, "/v1/events", p, "application/json", &batch(100, None)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!(r.json["events"].as_array().unwrap().len(), 100);
        // Past it, refused with the count of the whole batch, even when an
        // event past the limit is at fault.
        for (n, fault) in [(101, None), (150, None), (150, Some(120))] {
            let r = post(&api, "/v1/events", p, "application/json", &batch(n, fault)).await;
            let m = r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
            assert!(
                m.contains(&format!("batch of {n} events; the limit is 100")),
                "{m}"
            );
        }
        // A fault before the limit is named with its path.
        let r = post(
            &api,
            "/v1/events",
            p,
            "application/json",
            &batch(150, Some(3)),
        )
        .await;
        let m = r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(m.contains("[3]") && m.contains("tenat"), "{m}");
        // So is anything after the array.
        let body = format!("{} x", batch(100, None));
        let r = post(&api, "/v1/events", p, "application/json", &body).await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
    }

    #[tokio::test]
    async fn bad_query_strings_are_400s_naming_the_parameter() {
        let api = TestApi::new();
        let p = &api.publish;
        let body = r#"{"type":"ping"}"#;
        for (uri, needle) in [
            ("/v1/events?wiat=true", "wiat"),
            ("/v1/events?wait=maybe", "wait"),
            ("/v1/events?wait=true&timeout=soon", "timeout"),
            ("/v1/events?timeout=1s", "timeout"),
        ] {
            let r = post(&api, uri, p, "application/json", body).await;
            let m = r.error(StatusCode::BAD_REQUEST, "bad_request");
            assert!(m.contains(needle), "{uri}: {m}");
        }
    }

    #[tokio::test]
    async fn scoped_publish_tokens_stay_in_their_tenants_and_types() {
        let api = TestApi::new();
        let t = api.scoped_token(Scope::Publish, &["acme"], &["message", "reaction.*"]);
        let ok = r#"[{"type":"message","tenant":"acme"},{"type":"reaction.add","tenant":"acme"}]"#;
        let r = post(&api, "/v1/events", &t, "application/json", ok).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");

        let r = post(
            &api,
            "/v1/events",
            &t,
            "application/json",
            r#"[{"type":"message","tenant":"acme"},{"type":"message","tenant":"evil"}]"#,
        )
        .await;
        let m = r.error(StatusCode::FORBIDDEN, "forbidden");
        assert!(m.contains("event 1") && m.contains("evil"), "{m}");
        let r = post(
            &api,
            "/v1/events",
            &t,
            "application/json",
            r#"{"type":"typing","tenant":"acme"}"#,
        )
        .await;
        let m = r.error(StatusCode::FORBIDDEN, "forbidden");
        assert!(m.contains("event 0") && m.contains("typing"), "{m}");
    }

    #[tokio::test]
    async fn event_lookup_respects_tenant_scope() {
        let api = TestApi::new();
        let r = api
            .get("/v1/events/01ARZ3NDEKTSV4RRFFQ69G5FAV", &api.read)
            .await;
        r.error(StatusCode::NOT_FOUND, "not_found");

        let ev = EventInput::new("message", &json!({"x": 1}));
        let ev = EventInput {
            tenant: "acme".into(),
            ..ev
        }
        .accept("test", 0, 1024)
        .unwrap();
        api.store()
            .accept(&[(ev.clone(), vec!["h".into()])])
            .unwrap();
        let p = api.store().pending().unwrap().remove(0);
        let entry = LogEntry {
            handler: "h".into(),
            version: 1,
            event_id: ev.id.clone(),
            event_type: "message".into(),
            tenant: "acme".into(),
            outcome: "trap".into(),
            attempt: 1,
            time_ms: 5,
            ..LogEntry::default()
        };
        api.store().retry_later(&p, &entry, u64::MAX).unwrap();

        let uri = format!("/v1/events/{}", ev.id);
        let r = api.get(&uri, &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["event"]["tenant"], "acme");
        assert_eq!(r.json["deliveries"][0]["outcome"], "trap");
        let acme = api.scoped_token(Scope::Read, &["acme"], &[]);
        assert_eq!(api.get(&uri, &acme).await.status, StatusCode::OK);
        let other = api.scoped_token(Scope::Read, &["other"], &[]);
        api.get(&uri, &other)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
    }
}
