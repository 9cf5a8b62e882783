//! A fake Zulip server on 127.0.0.1 for the Zulip integration tests. It
//! speaks the documented REST protocol Hookbox uses:
//!
//! - `POST /api/v1/register` creates an event queue (for `event_types`, or
//!   all) and answers `queue_id` and `last_event_id: -1`, plus the initial
//!   state of the types in `fetch_event_types` (else of `event_types`, else
//!   of all): for `realm_user` the realm's members ([`FakeZulip::set_members`]
//!   makes a large realm, megabytes of them) and the bot's `user_id`, for
//!   `message` `max_message_id`;
//! - `GET /api/v1/users/me` answers the bot ([`BOT_USER_ID`]);
//! - `GET /api/v1/events` drops the queue's events up to `last_event_id`
//!   and answers the rest, or long-polls until one arrives and answers a
//!   `heartbeat` (a real, numbered queue event) after [`HEARTBEAT_AFTER`];
//!   an unknown queue answers 400 with the fixture `BadEventQueueIdError`;
//! - `DELETE /api/v1/events` deletes a queue;
//! - `POST /api/v1/messages`, `POST` and `DELETE
//!   /api/v1/messages/{id}/reactions` and `PATCH /api/v1/messages/{id}` are
//!   recorded and answered `success`; a message the bot sends is echoed,
//!   as Zulip does, to every queue that wants messages (sender: the bot);
//!   like Zulip, adding a reaction the bot
//!   already made answers 400 `REACTION_ALREADY_EXISTS` and removing one it
//!   did not make 400 `REACTION_DOES_NOT_EXIST` (fixture
//!   `zulip-reaction-errors.json`).
//!
//! Every request must carry HTTP Basic auth with the configured email and
//! key (else 401 with the fixture `InvalidApiKeyError`). Tests drive it:
//! [`FakeZulip::push`] an event into every queue that wants its type,
//! [`FakeZulip::expire_queues`] (the server forgot them),
//! [`FakeZulip::rate_limit_polls`] (429 with the fixture
//! `RateLimitedError` body and `Retry-After`), [`FakeZulip::fail_sends`];
//! and read what happened: registrations, polls, sent requests. Every wait
//! is bounded by [`WAIT`] and panics naming what it waited for.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The longest any wait of the fake's helpers lasts.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long a long poll waits for events before it is answered with a
/// heartbeat (Zulip waits about a minute; tests want it short).
pub const HEARTBEAT_AFTER: Duration = Duration::from_millis(200);

/// The bot's user id on the fake server.
pub const BOT_USER_ID: u64 = 9001;

/// The error bodies of `tests/fixtures/zulip/zulip-events-api-examples.json`.
pub fn fixture_examples() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/zulip/zulip-events-api-examples.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect("fixture JSON")
}

/// The fixture events (`tests/fixtures/zulip/zulip-events.json`).
pub fn fixture_events() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(crate::ZULIP_EVENTS).expect("fixture"))
        .expect("fixture JSON")
}

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: Method,
    /// The path, e.g. `/api/v1/messages`.
    pub path: String,
    /// Query and form parameters together.
    pub params: BTreeMap<String, String>,
    /// The HTTP status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Debug)]
struct Queue {
    event_types: Option<Vec<String>>,
    events: VecDeque<Value>,
    next_id: i64,
}

impl Queue {
    /// Appends an event with the queue's next id, as Zulip's queue does.
    fn push(&mut self, mut event: Value) {
        event["id"] = json!(self.next_id);
        self.next_id += 1;
        self.events.push_back(event);
    }
}

#[derive(Debug, Default)]
struct Inner {
    queues: BTreeMap<String, Queue>,
    queue_count: u64,
    /// `event_types` of each `register`, in order (`None`: all).
    registrations: Vec<Option<Vec<String>>>,
    /// Answers to the next `GET /events`: 429 with this `Retry-After`.
    rate_limits: VecDeque<f64>,
    /// Answers to the next sends (messages, reactions, edits).
    send_failures: VecDeque<(u16, Value)>,
    /// The next sends are answered 429 with this `Retry-After`.
    send_rate_limits: VecDeque<f64>,
    /// The bot's reactions: (message id, emoji name).
    reactions: std::collections::BTreeSet<(u64, String)>,
    requests: Vec<Request>,
    /// Members of the realm (beside the bot), for `realm_user` state.
    members: usize,
    /// Every event answered by `GET /events`, by queue, as sent.
    served: Vec<(String, Value)>,
    next_message_id: u64,
}

struct Fake {
    auth: String,
    email: String,
    inner: Mutex<Inner>,
    changed: Notify,
    examples: Value,
}

/// See the module docs. Stops serving when dropped.
pub struct FakeZulip {
    addr: SocketAddr,
    fake: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeZulip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeZulip")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakeZulip {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeZulip {
    /// Serves on a free port of 127.0.0.1, accepting `email` / `key`.
    pub async fn start(email: &str, key: &str) -> FakeZulip {
        let fake = Arc::new(Fake {
            auth: format!("Basic {}", base64(format!("{email}:{key}").as_bytes())),
            email: email.to_string(),
            inner: Mutex::default(),
            changed: Notify::new(),
            examples: fixture_examples(),
        });
        let app = Router::new()
            .route("/api/v1/register", post(register))
            .route("/api/v1/users/me", axum::routing::get(me))
            .route(
                "/api/v1/events",
                axum::routing::get(events).delete(delete_queue),
            )
            .route("/api/v1/messages", post(send_message))
            .route(
                "/api/v1/messages/{id}/reactions",
                post(add_reaction).delete(remove_reaction),
            )
            .route("/api/v1/messages/{id}", patch(update_message))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake Zulip server");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake Zulip server");
        });
        FakeZulip { addr, fake, task }
    }

    /// The base URL to configure as the realm's `site`.
    pub fn site(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.fake.lock()
    }

    /// Adds `event` (its `id` replaced) to every queue that wants its type.
    pub fn push(&self, event: Value) {
        let ty = event["type"].as_str().unwrap_or_default().to_string();
        let mut inner = self.inner();
        for q in inner.queues.values_mut() {
            if q.event_types.as_ref().is_none_or(|t| t.contains(&ty)) {
                q.push(event.clone());
            }
        }
        drop(inner);
        self.fake.changed.notify_waiters();
    }

    /// Forgets every queue, as a server does after a restart or when a
    /// queue was idle too long.
    pub fn expire_queues(&self) {
        self.inner().queues.clear();
        self.fake.changed.notify_waiters();
    }

    /// The next `n` polls are answered 429 with `Retry-After: retry_after`.
    pub fn rate_limit_polls(&self, n: usize, retry_after: f64) {
        self.inner()
            .rate_limits
            .extend(std::iter::repeat_n(retry_after, n));
        self.fake.changed.notify_waiters();
    }

    /// Makes the realm have `n` members besides the bot (each about 400
    /// bytes of `realm_user` state, as Zulip describes a user).
    pub fn set_members(&self, n: usize) {
        self.inner().members = n;
    }

    /// The next `n` sends (messages, reactions, edits) are answered 429
    /// with `Retry-After: retry_after` (seconds, fractions allowed) and
    /// the fixture `RateLimitedError` body.
    pub fn rate_limit_sends(&self, n: usize, retry_after: f64) {
        self.inner()
            .send_rate_limits
            .extend(std::iter::repeat_n(retry_after, n));
    }

    /// The next sends are answered with these statuses and bodies.
    pub fn fail_sends(&self, failures: impl IntoIterator<Item = (u16, Value)>) {
        self.inner().send_failures.extend(failures);
    }

    /// `event_types` of each registration so far.
    pub fn registrations(&self) -> Vec<Option<Vec<String>>> {
        self.inner().registrations.clone()
    }

    /// The ids of the queues that exist now.
    pub fn queue_ids(&self) -> Vec<String> {
        self.inner().queues.keys().cloned().collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.inner().requests.clone()
    }

    /// The requests to `path` (any method) so far.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The events answered by polls, as `(queue id, event)`, in order.
    pub fn served(&self) -> Vec<(String, Value)> {
        self.inner().served.clone()
    }

    /// Waits until `done` holds for the fake's request log, or panics
    /// naming `what` after [`WAIT`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&FakeZulip) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "fake Zulip: timed out waiting for {what}; requests: {:#?}",
                self.requests().iter().rev().take(10).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Fake {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, method: Method, path: &str, params: BTreeMap<String, String>, status: u16) {
        self.lock().requests.push(Request {
            method,
            path: path.to_string(),
            params,
            status,
            at: Instant::now(),
        });
    }

    /// The `message` event Zulip puts in the bot's queues for a message the
    /// bot sent (`sender_id` the bot, content rendered as HTML).
    fn echo(&self, id: u64, p: &BTreeMap<String, String>) -> Value {
        let content = format!("<p>{}</p>", p.get("content").cloned().unwrap_or_default());
        let mut message = json!({
            "id": id,
            "sender_id": BOT_USER_ID,
            "sender_email": self.email,
            "sender_full_name": "Hookbox Bot",
            "content": content,
            "content_type": "text/html",
            "timestamp": 1_700_000_000u64 + id,
            "client": "ZulipPython",
        });
        if p.get("type").map(String::as_str) == Some("stream") {
            let to = p.get("to").cloned().unwrap_or_default();
            message["type"] = json!("stream");
            if let Ok(stream_id) = to.parse::<u64>() {
                message["stream_id"] = json!(stream_id);
            }
            message["display_recipient"] = json!(to);
            message["subject"] = json!(p.get("topic").cloned().unwrap_or_default());
        } else {
            message["type"] = json!("private");
            message["display_recipient"] = json!([{"id": BOT_USER_ID, "email": self.email}]);
        }
        json!({"type": "message", "message": message, "flags": ["read"]})
    }

    /// Zulip's 429: the fixture body with `retry-after`, and the header.
    fn rate_limited(&self, retry_after: f64) -> Response {
        let mut body = self.examples["RateLimitedError"].clone();
        body["retry-after"] = json!(retry_after);
        let mut response = reply(StatusCode::TOO_MANY_REQUESTS, body);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            retry_after.to_string().parse().expect("a header value"),
        );
        response
    }

    /// `None` when the request carries the right Basic credentials.
    fn unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        (given != Some(self.auth.as_str())).then(|| {
            reply(
                StatusCode::UNAUTHORIZED,
                self.examples["InvalidApiKeyError"].clone(),
            )
        })
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn success(mut fields: Value) -> Value {
    fields["result"] = json!("success");
    fields["msg"] = json!("");
    fields
}

/// Form (or query) parameters.
type Params = Vec<(String, String)>;

async fn register(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let p: BTreeMap<String, String> = form.into_iter().collect();
    if let Some(denied) = fake.unauthorized(&headers) {
        fake.record(Method::POST, "/api/v1/register", p, 401);
        return denied;
    }
    let event_types: Option<Vec<String>> = p
        .get("event_types")
        .map(|t| serde_json::from_str(t).expect("event_types is a JSON list"));
    let fetch: Option<Vec<String>> = match p.get("fetch_event_types") {
        Some(t) => Some(serde_json::from_str(t).expect("fetch_event_types is a JSON list")),
        None => event_types.clone(),
    };
    let wants = |t: &str| fetch.as_ref().is_none_or(|f| f.iter().any(|x| x == t));
    let mut answer = json!({
        "zulip_feature_level": 300,
        "zulip_version": "10.0",
        "event_queue_longpoll_timeout_seconds": HEARTBEAT_AFTER.as_secs_f64(),
    });
    if wants("message") {
        answer["max_message_id"] = json!(fake.lock().next_message_id + 1000);
    }
    if wants("realm_user") {
        let members = fake.lock().members;
        answer["realm_users"] = Value::Array((0..members).map(realm_member).collect());
        answer["user_id"] = json!(BOT_USER_ID);
        answer["email"] = json!(fake.email);
    }
    let queue_id = {
        let mut inner = fake.lock();
        inner.queue_count += 1;
        let id = format!("fake-queue-{}", inner.queue_count);
        inner.queues.insert(
            id.clone(),
            Queue {
                event_types: event_types.clone(),
                events: VecDeque::new(),
                next_id: 0,
            },
        );
        inner.registrations.push(event_types);
        id
    };
    fake.record(Method::POST, "/api/v1/register", p, 200);
    answer["queue_id"] = json!(queue_id);
    answer["last_event_id"] = json!(-1);
    reply(StatusCode::OK, success(answer))
}

/// One member of the realm as `realm_users` lists it (the fields of
/// Zulip's `User` object).
pub fn realm_member(i: usize) -> Value {
    json!({
        "user_id": 10_000 + i,
        "email": format!("user{i}@zulip.example.com"),
        "delivery_email": format!("member.number.{i}@example.com"),
        "full_name": format!("Member Number {i}"),
        "date_joined": "2024-01-15T09:30:00.000000+00:00",
        "is_active": true,
        "is_owner": false,
        "is_admin": false,
        "is_guest": false,
        "is_bot": false,
        "role": 400,
        "timezone": "Europe/Copenhagen",
        "avatar_version": 1,
        "avatar_url": format!("https://secure.gravatar.com/avatar/{:032x}?d=identicon&version=1", i),
        "profile_data": {},
        "is_imported_stub": false,
    })
}

async fn me(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if let Some(denied) = fake.unauthorized(&headers) {
        fake.record(Method::GET, "/api/v1/users/me", BTreeMap::new(), 401);
        return denied;
    }
    fake.record(Method::GET, "/api/v1/users/me", BTreeMap::new(), 200);
    reply(
        StatusCode::OK,
        success(json!({
            "user_id": BOT_USER_ID,
            "email": fake.email,
            "full_name": "Hookbox Bot",
            "is_bot": true,
            "is_active": true,
            "role": 400,
        })),
    )
}

async fn events(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let p: BTreeMap<String, String> = q.into_iter().collect();
    let path = "/api/v1/events";
    if let Some(denied) = fake.unauthorized(&headers) {
        fake.record(Method::GET, path, p, 401);
        return denied;
    }
    let rate_limit = fake.lock().rate_limits.pop_front();
    if let Some(retry_after) = rate_limit {
        fake.record(Method::GET, path, p, 429);
        return fake.rate_limited(retry_after);
    }
    let queue_id = p.get("queue_id").cloned().unwrap_or_default();
    let last: i64 = p
        .get("last_event_id")
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let dont_block = p.get("dont_block").is_some_and(|v| v == "true");
    let deadline = tokio::time::Instant::now() + HEARTBEAT_AFTER;
    loop {
        let changed = fake.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut inner = fake.lock();
            let Some(queue) = inner.queues.get_mut(&queue_id) else {
                drop(inner);
                fake.record(Method::GET, path, p, 400);
                let mut body = fake.examples["BadEventQueueIdError"].clone();
                body["queue_id"] = json!(queue_id);
                body["msg"] = json!(format!("Bad event queue ID: {queue_id}"));
                return reply(StatusCode::BAD_REQUEST, body);
            };
            // Zulip drops what the client acknowledged.
            while queue
                .events
                .front()
                .is_some_and(|e| e["id"].as_i64() <= Some(last))
            {
                queue.events.pop_front();
            }
            let timed_out = tokio::time::Instant::now() >= deadline;
            if timed_out && queue.events.is_empty() {
                queue.push(json!({"type": "heartbeat"}));
            }
            if !queue.events.is_empty() || dont_block {
                let events: Vec<Value> = queue.events.iter().cloned().collect();
                inner
                    .served
                    .extend(events.iter().map(|e| (queue_id.clone(), e.clone())));
                drop(inner);
                fake.record(Method::GET, path, p, 200);
                return reply(StatusCode::OK, success(json!({ "events": events })));
            }
        }
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

async fn delete_queue(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let p: BTreeMap<String, String> = q.into_iter().collect();
    if let Some(denied) = fake.unauthorized(&headers) {
        fake.record(Method::DELETE, "/api/v1/events", p, 401);
        return denied;
    }
    let id = p.get("queue_id").cloned().unwrap_or_default();
    let existed = fake.lock().queues.remove(&id).is_some();
    let (status, body) = if existed {
        (StatusCode::OK, success(json!({})))
    } else {
        let mut body = fake.examples["BadEventQueueIdError"].clone();
        body["queue_id"] = json!(id);
        (StatusCode::BAD_REQUEST, body)
    };
    fake.record(Method::DELETE, "/api/v1/events", p, status.as_u16());
    reply(status, body)
}

async fn send_message(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    send(
        &fake,
        Method::POST,
        "/api/v1/messages".into(),
        &headers,
        form,
    )
}

async fn add_reaction(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let path = format!("/api/v1/messages/{id}/reactions");
    send(&fake, Method::POST, path, &headers, form)
}

async fn remove_reaction(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let path = format!("/api/v1/messages/{id}/reactions");
    send(&fake, Method::DELETE, path, &headers, form)
}

/// The documented reaction errors of `tests/fixtures/zulip/zulip-reaction-errors.json`.
pub fn reaction_errors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/zulip/zulip-reaction-errors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect("fixture JSON")
}

/// A reaction call against the bot's reactions: `None` when it applies,
/// else Zulip's 400 for a reaction already there or not there.
fn react(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    p: &BTreeMap<String, String>,
) -> Option<Value> {
    let id: u64 = path
        .strip_prefix("/api/v1/messages/")?
        .strip_suffix("/reactions")?
        .parse()
        .ok()?;
    let key = (id, p.get("emoji_name").cloned().unwrap_or_default());
    let errors = reaction_errors();
    if *method == Method::POST {
        (!inner.reactions.insert(key)).then(|| errors["ReactionAlreadyExists"].clone())
    } else {
        (!inner.reactions.remove(&key)).then(|| errors["ReactionDoesNotExist"].clone())
    }
}

async fn update_message(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let path = format!("/api/v1/messages/{id}");
    send(&fake, Method::PATCH, path, &headers, form)
}

/// Messages, reactions and edits: recorded, answered `success` (with the
/// new message's id for a message) or with the next queued failure.
fn send(fake: &Fake, method: Method, path: String, headers: &HeaderMap, form: Params) -> Response {
    let p: BTreeMap<String, String> = form.into_iter().collect();
    if let Some(denied) = fake.unauthorized(headers) {
        fake.record(method, &path, p, 401);
        return denied;
    }
    let limited = fake.lock().send_rate_limits.pop_front();
    if let Some(retry_after) = limited {
        fake.record(method, &path, p, 429);
        return fake.rate_limited(retry_after);
    }
    let failure = fake.lock().send_failures.pop_front();
    let refused = if failure.is_none() && path.ends_with("/reactions") {
        react(&mut fake.lock(), &method, &path, &p)
    } else {
        None
    };
    let (status, body) = match (failure, refused) {
        (Some((status, body)), _) => (StatusCode::from_u16(status).expect("a status"), body),
        (None, Some(body)) => (StatusCode::BAD_REQUEST, body),
        (None, None) => {
            let mut inner = fake.lock();
            inner.next_message_id += 1;
            let id = 1000 + inner.next_message_id;
            if path == "/api/v1/messages" {
                let echo = fake.echo(id, &p);
                for q in inner.queues.values_mut() {
                    if q.event_types
                        .as_ref()
                        .is_none_or(|t| t.iter().any(|t| t == "message"))
                    {
                        q.push(echo.clone());
                    }
                }
            }
            (StatusCode::OK, success(json!({ "id": id })))
        }
    };
    fake.record(method, &path, p, status.as_u16());
    fake.changed.notify_waiters();
    reply(status, body)
}

/// Standard base64 with padding (for the expected `Authorization` value).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }
}
