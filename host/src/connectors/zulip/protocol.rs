//! The pure half of the Zulip REST protocol: reading replies (the
//! `{"result": "success" | "error", "msg", "code"}` envelope) into values or
//! a classified [`Failure`], `Retry-After`, and the shapes of the
//! `register` and `events` answers. No I/O, so it is tested table-style
//! against the error bodies in the fixtures.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

/// The longest `Retry-After` honoured; a larger (or garbled) value is
/// clamped so one bad answer cannot park a realm for days.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of a non-JSON error body is kept in an error message.
const BODY_SNIPPET: usize = 200;

/// Why a Zulip call failed, in the classes the source and the sink treat
/// differently.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Failure {
    /// `BAD_EVENT_QUEUE_ID`: the event queue expired or was never there.
    BadQueue(String),
    /// 429 / `RATE_LIMIT_HIT`, with the wait the server asked for.
    RateLimited(Option<Duration>),
    /// 401/403 or a deactivated user or realm: credentials need fixing.
    Auth(String),
    /// A 5xx: the server is in trouble; try again later.
    Server(String),
    /// Another 4xx: this request will not succeed as it is.
    Request(String),
    /// No usable answer: connection refused, timeout, reset.
    Network(String),
    /// An answer that does not follow the protocol.
    Malformed(String),
    /// The call asked for a state that already holds: the reaction to add
    /// is there (`REACTION_ALREADY_EXISTS`), the one to remove is not
    /// (`REACTION_DOES_NOT_EXIST`). The sink counts it as done.
    Unchanged(String),
}

impl Failure {
    /// A short label for metrics and the status API.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Failure::BadQueue(_) => "bad_queue",
            Failure::RateLimited(_) => "rate_limited",
            Failure::Auth(_) => "auth",
            Failure::Server(_) => "server",
            Failure::Request(_) => "request",
            Failure::Network(_) => "network",
            Failure::Malformed(_) => "malformed",
            Failure::Unchanged(_) => "unchanged",
        }
    }

    /// Whether the same request may succeed later. Credentials can be
    /// fixed on the server (a reactivated bot or realm) without touching
    /// the request.
    pub(crate) fn retryable(&self) -> bool {
        !matches!(
            self,
            Failure::Request(_) | Failure::Malformed(_) | Failure::Unchanged(_)
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadQueue(m) => write!(f, "event queue lost: {m}"),
            Failure::RateLimited(Some(d)) => {
                write!(f, "rate limited; retry after {:.1}s", d.as_secs_f64())
            }
            Failure::RateLimited(None) => f.write_str("rate limited"),
            Failure::Auth(m) => write!(f, "not authorised: {m}"),
            Failure::Server(m) => write!(f, "server error: {m}"),
            Failure::Request(m) => write!(f, "request refused: {m}"),
            Failure::Network(m) => write!(f, "network error: {m}"),
            Failure::Malformed(m) => write!(f, "malformed answer: {m}"),
            Failure::Unchanged(m) => write!(f, "already so: {m}"),
        }
    }
}

/// The error envelope.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    msg: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(rename = "retry-after", default)]
    retry_after: Option<f64>,
}

/// Reads an answer: `T` from a 2xx `"result": "success"` body, else the
/// failure it describes. `retry_after` is the `Retry-After` header, if any.
pub(crate) fn parse_reply<T: DeserializeOwned>(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<T, Failure> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let result = value
        .as_ref()
        .and_then(|v| v.get("result"))
        .and_then(Value::as_str);
    if (200..300).contains(&status) && result == Some("success") {
        return serde_json::from_slice(body)
            .map_err(|e| Failure::Malformed(format!("HTTP {status}: {e}")));
    }
    let parsed: Option<ErrorBody> = value.and_then(|v| serde_json::from_value(v).ok());
    let (msg, code, body_retry) = match parsed {
        Some(b) => (b.msg, b.code.unwrap_or_default(), b.retry_after),
        None => (snippet(body), String::new(), None),
    };
    let what = match code.as_str() {
        "" => format!("HTTP {status}: {msg}"),
        c => format!("HTTP {status} {c}: {msg}"),
    };
    Err(match (status, code.as_str()) {
        (_, "BAD_EVENT_QUEUE_ID") => Failure::BadQueue(what),
        (400..=499, "REACTION_ALREADY_EXISTS" | "REACTION_DOES_NOT_EXIST") => {
            Failure::Unchanged(what)
        }
        (429, _) | (_, "RATE_LIMIT_HIT") => Failure::RateLimited(
            retry_after
                .and_then(parse_seconds)
                .or_else(|| body_retry.and_then(seconds)),
        ),
        (401 | 403, _) | (_, "INVALID_API_KEY" | "USER_DEACTIVATED" | "REALM_DEACTIVATED") => {
            Failure::Auth(what)
        }
        (500..=599, _) => Failure::Server(what),
        (200..=299, _) => Failure::Malformed(what),
        _ => Failure::Request(what),
    })
}

/// A `Retry-After` value in seconds (Zulip sends a number, possibly with a
/// fraction).
fn parse_seconds(text: &str) -> Option<Duration> {
    text.trim().parse::<f64>().ok().and_then(seconds)
}

fn seconds(s: f64) -> Option<Duration> {
    if !s.is_finite() || s < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        s.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_string(),
    }
}

/// The parts of a `POST /register` answer we use.
#[derive(Debug, Deserialize)]
pub(crate) struct Registered {
    pub queue_id: String,
    pub last_event_id: i64,
    /// How long the server holds a long poll before a heartbeat (Zulip 8+).
    #[serde(default)]
    pub event_queue_longpoll_timeout_seconds: Option<f64>,
}

/// The part of a `GET /users/me` answer we use.
#[derive(Debug, Deserialize)]
pub(crate) struct Me {
    pub user_id: u64,
}

/// A `GET /events` answer, each event kept as the bytes the server sent.
#[derive(Debug, Deserialize)]
pub(crate) struct Events {
    pub events: Vec<Box<RawValue>>,
}

/// One received event: its raw JSON, parsed value and queue id.
#[derive(Debug)]
pub(crate) struct Received {
    pub raw: Box<RawValue>,
    pub value: Value,
    pub id: i64,
}

impl Events {
    /// Parses each event; an event without an integer `id` makes the answer
    /// malformed, since it could never be acknowledged.
    pub(crate) fn into_received(self) -> Result<Vec<Received>, Failure> {
        self.events
            .into_iter()
            .map(|raw| {
                let value: Value = serde_json::from_str(raw.get())
                    .map_err(|e| Failure::Malformed(format!("event: {e}")))?;
                let id = value.get("id").and_then(Value::as_i64).ok_or_else(|| {
                    Failure::Malformed(format!(
                        "event without an integer `id`: {}",
                        snippet(raw.get().as_bytes())
                    ))
                })?;
                Ok(Received { raw, value, id })
            })
            .collect()
    }
}

/// The answer of calls whose body we do not need.
#[derive(Debug, Deserialize)]
pub(crate) struct Success {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/zulip/zulip-events-api-examples.json"
        );
        let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::to_vec(&all[name]).unwrap()
    }

    fn fail(status: u16, header: Option<&str>, body: &[u8]) -> Failure {
        parse_reply::<Success>(status, header, body).unwrap_err()
    }

    #[test]
    fn fixture_error_bodies_are_classified() {
        let bad = fail(400, None, &fixture("BadEventQueueIdError"));
        assert!(
            matches!(&bad, Failure::BadQueue(m) if m.contains("fb67bf8a")),
            "{bad:?}"
        );
        assert_eq!(
            fail(429, None, &fixture("RateLimitedError")),
            Failure::RateLimited(Some(Duration::from_secs_f64(28.706807374954224)))
        );
        // The header wins over the body.
        assert_eq!(
            fail(429, Some("0.25"), &fixture("RateLimitedError")),
            Failure::RateLimited(Some(Duration::from_millis(250)))
        );
        for name in [
            "RealmDeactivatedError",
            "UserDeactivatedError",
            "InvalidApiKeyError",
        ] {
            let f = fail(401, None, &fixture(name));
            assert_eq!(f.kind(), "auth", "{name}: {f:?}");
            assert!(f.retryable());
        }
        // The code alone decides, whatever the status.
        assert_eq!(
            fail(400, None, &fixture("UserDeactivatedError")).kind(),
            "auth"
        );
    }

    #[test]
    fn reaction_errors_mean_the_state_already_holds() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/zulip/zulip-reaction-errors.json"
        );
        let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for name in ["ReactionAlreadyExists", "ReactionDoesNotExist"] {
            let body = serde_json::to_vec(&all[name]).unwrap();
            let f = fail(400, None, &body);
            assert_eq!(f.kind(), "unchanged", "{name}: {f:?}");
            assert!(!f.retryable());
        }
        // Another 400 stays a refused request.
        let f = fail(
            400,
            None,
            br#"{"result":"error","msg":"Invalid emoji name","code":"BAD_REQUEST"}"#,
        );
        assert_eq!(f.kind(), "request");
    }

    #[test]
    fn statuses_without_a_zulip_body() {
        let f = fail(502, None, b"<html>Bad Gateway</html>");
        assert!(
            matches!(&f, Failure::Server(m) if m.contains("Bad Gateway")),
            "{f:?}"
        );
        assert!(f.retryable());
        let f = fail(
            400,
            None,
            br#"{"result":"error","msg":"Stream 'x' does not exist","code":"BAD_REQUEST"}"#,
        );
        assert!(
            matches!(&f, Failure::Request(m) if m.contains("does not exist")),
            "{f:?}"
        );
        assert!(!f.retryable());
        assert_eq!(fail(429, Some("soon"), b""), Failure::RateLimited(None));
        assert_eq!(
            fail(429, Some("1e9"), b""),
            Failure::RateLimited(Some(MAX_RETRY_AFTER))
        );
        assert_eq!(fail(429, Some("-1"), b""), Failure::RateLimited(None));
        let f = fail(200, None, br#"{"result":"error","msg":"odd"}"#);
        assert_eq!(f.kind(), "malformed");
        let f = fail(500, None, &vec![b'x'; 1000]);
        assert!(f.to_string().len() < 400, "{f}");
    }

    #[test]
    fn success_bodies_parse() {
        let r: Registered = parse_reply(
            200,
            None,
            br#"{"result":"success","msg":"","queue_id":"q1","last_event_id":-1,"zulip_version":"9"}"#,
        )
        .unwrap();
        assert_eq!((r.queue_id.as_str(), r.last_event_id), ("q1", -1));
        let err = parse_reply::<Registered>(200, None, br#"{"result":"success"}"#).unwrap_err();
        assert_eq!(err.kind(), "malformed");
    }

    #[test]
    fn events_keep_their_bytes_and_need_ids() {
        let body = br#"{"result":"success","msg":"","events":[{"type":"heartbeat","id":3},{"id":4,"type":"reaction","op":"add","x":1.50}]}"#;
        let events: Events = parse_reply(200, None, body).unwrap();
        let got = events.into_received().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].id, 4);
        assert_eq!(
            got[1].raw.get(),
            r#"{"id":4,"type":"reaction","op":"add","x":1.50}"#
        );
        assert_eq!(got[1].value["op"], json!("add"));

        let body = br#"{"result":"success","events":[{"type":"message"}]}"#;
        let events: Events = parse_reply(200, None, body).unwrap();
        assert_eq!(events.into_received().unwrap_err().kind(), "malformed");
    }
}
