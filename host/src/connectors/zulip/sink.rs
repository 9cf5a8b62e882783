//! The reply sink: a built-in handler per realm (`zulip:<realm>`) that
//! performs the Zulip actions handlers emit — `zulip.send_message`,
//! `zulip.add_reaction`, `zulip.update_message` — as REST calls, so
//! handlers need no network access. Being a dispatcher handler, it inherits
//! the durable queue, retries with backoff, the circuit breaker and dead
//! letters; it only decides what is retryable.
//!
//! Payloads (unknown fields are refused, so a typo is a dead letter that
//! names it, not a silently different message):
//! - `zulip.send_message`: `{"type": "stream", "to": "<channel>",
//!   "stream_id"?: <id>, "topic": "…", "content": "…"}` or `{"type":
//!   "direct", "to": [<user id>, …], "content": "…"}` — the guest SDK's
//!   `SendMessage`.
//! - `zulip.add_reaction`: `{"message_id": <id>, "emoji_name": "…",
//!   "emoji_code"?: "…", "reaction_type"?: "unicode_emoji" | …}`.
//! - `zulip.remove_reaction`: the same payload as `zulip.add_reaction`.
//!   Adding a reaction that is already there (`REACTION_ALREADY_EXISTS`) or
//!   removing one that is not (`REACTION_DOES_NOT_EXIST`) counts as done:
//!   the state the handler asked for holds, so a repeat is not a dead letter.
//! - `zulip.update_message`: `{"message_id": <id>, "content"?: "…",
//!   "topic"?: "…", "stream_id"?: <id>, "propagate_mode"?: "change_one" |
//!   "change_later" | "change_all", "send_notification_to_old_thread"?:
//!   bool, "send_notification_to_new_thread"?: bool}`, at least one of
//!   `content`, `topic`, `stream_id`.
//!
//! A REST call blocks a dispatcher worker for at most the realm's
//! `request_timeout`; `sink_concurrency` caps how many workers one realm
//! can hold. A 429 is backpressure, not a failure: the sink answers
//! [`BuiltinError::rate_limited`] with the server's `Retry-After` (1 s when
//! it gives none), so the dispatcher puts the delivery back without using
//! up an attempt or counting a breaker failure and holds the realm's other
//! deliveries until the window ends. A call that still reaches the sink
//! inside the window (one already on its way) is put back the same way.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use super::client::Client;
use super::protocol::Failure;
use super::status::RealmState;
use super::{ADD_REACTION_EVENT, REMOVE_REACTION_EVENT, SEND_MESSAGE_EVENT, UPDATE_MESSAGE_EVENT};
use crate::connectors::{Pause, block_on};
use crate::dispatch::{BuiltinError, BuiltinHandler};
use crate::event::Event;

/// The pause after a 429 without a usable `Retry-After`.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Time added to the request timeout before a worker stops waiting for an
/// answer the async side never delivered (a runtime shutting down).
const HANDOFF_SLACK: Duration = Duration::from_secs(5);

/// `zulip.send_message`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum SendMessage {
    #[serde(alias = "channel")]
    Stream {
        to: String,
        #[serde(default)]
        stream_id: Option<u64>,
        topic: String,
        content: String,
    },
    #[serde(alias = "private")]
    Direct { to: Vec<u64>, content: String },
}

/// `zulip.add_reaction` and `zulip.remove_reaction`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct AddReaction {
    message_id: u64,
    emoji_name: String,
    #[serde(default)]
    emoji_code: Option<String>,
    #[serde(default)]
    reaction_type: Option<String>,
}

/// `zulip.update_message`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct UpdateMessage {
    message_id: u64,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    stream_id: Option<u64>,
    #[serde(default)]
    propagate_mode: Option<String>,
    #[serde(default)]
    send_notification_to_old_thread: Option<bool>,
    #[serde(default)]
    send_notification_to_new_thread: Option<bool>,
}

/// The values Zulip accepts for `propagate_mode`.
const PROPAGATE_MODES: [&str; 3] = ["change_one", "change_later", "change_all"];

/// One REST call: method, path under `/api/v1`, form parameters.
#[derive(Debug, PartialEq)]
pub(crate) struct Call {
    pub method: Method,
    pub path: String,
    pub form: Vec<(&'static str, String)>,
}

/// The REST call an action event asks for; errors are the payload's faults
/// (fatal: no retry changes the payload).
pub(crate) fn call_for(event_type: &str, payload: &str) -> Result<Call, String> {
    let parse_err = |e: serde_json::Error| format!("invalid `{event_type}` payload: {e}");
    match event_type {
        SEND_MESSAGE_EVENT => {
            let form = match serde_json::from_str(payload).map_err(parse_err)? {
                SendMessage::Stream {
                    to,
                    stream_id,
                    topic,
                    content,
                } => vec![
                    ("type", "stream".to_string()),
                    ("to", stream_id.map_or(to, |id| id.to_string())),
                    ("topic", topic),
                    ("content", content),
                ],
                SendMessage::Direct { to, content } => {
                    if to.is_empty() {
                        return Err(format!("invalid `{event_type}` payload: `to` is empty"));
                    }
                    let to = serde_json::to_string(&to).map_err(parse_err)?;
                    // `private` is accepted by every server version (`direct` needs Zulip 7).
                    vec![
                        ("type", "private".to_string()),
                        ("to", to),
                        ("content", content),
                    ]
                }
            };
            Ok(Call {
                method: Method::POST,
                path: "/messages".into(),
                form,
            })
        }
        ADD_REACTION_EVENT | REMOVE_REACTION_EVENT => {
            let r: AddReaction = serde_json::from_str(payload).map_err(parse_err)?;
            let mut form = vec![("emoji_name", r.emoji_name)];
            form.extend(r.emoji_code.map(|c| ("emoji_code", c)));
            form.extend(r.reaction_type.map(|t| ("reaction_type", t)));
            Ok(Call {
                method: if event_type == ADD_REACTION_EVENT {
                    Method::POST
                } else {
                    Method::DELETE
                },
                path: format!("/messages/{}/reactions", r.message_id),
                form,
            })
        }
        UPDATE_MESSAGE_EVENT => {
            let u: UpdateMessage = serde_json::from_str(payload).map_err(parse_err)?;
            if u.content.is_none() && u.topic.is_none() && u.stream_id.is_none() {
                return Err(format!(
                    "invalid `{event_type}` payload: set at least one of `content`, `topic`, `stream_id`"
                ));
            }
            let mut form = Vec::new();
            form.extend(u.content.map(|c| ("content", c)));
            form.extend(u.topic.map(|t| ("topic", t)));
            form.extend(u.stream_id.map(|s| ("stream_id", s.to_string())));
            if let Some(m) = u.propagate_mode {
                if !PROPAGATE_MODES.contains(&m.as_str()) {
                    return Err(format!(
                        "invalid `{event_type}` payload: `propagate_mode` must be one of {PROPAGATE_MODES:?}, got {m:?}"
                    ));
                }
                form.push(("propagate_mode", m));
            }
            for (key, v) in [
                (
                    "send_notification_to_old_thread",
                    u.send_notification_to_old_thread,
                ),
                (
                    "send_notification_to_new_thread",
                    u.send_notification_to_new_thread,
                ),
            ] {
                form.extend(v.map(|b| (key, b.to_string())));
            }
            Ok(Call {
                method: Method::PATCH,
                path: format!("/messages/{}", u.message_id),
                form,
            })
        }
        other => Err(format!("the Zulip sink does not perform `{other}` events")),
    }
}

/// The sink of one realm.
#[derive(Debug)]
pub(crate) struct Sink {
    realm: String,
    client: Client,
    runtime: tokio::runtime::Handle,
    request_timeout: Duration,
    state: Arc<RealmState>,
    /// Calls are put back until the window a 429 opened ends.
    pause: Pause,
}

impl Sink {
    pub(crate) fn new(
        realm: String,
        client: Client,
        runtime: tokio::runtime::Handle,
        request_timeout: Duration,
        state: Arc<RealmState>,
    ) -> Self {
        Sink {
            realm,
            client,
            runtime,
            request_timeout,
            state,
            pause: Pause::default(),
        }
    }

    /// Runs the call on the async runtime and waits for it here (a worker
    /// thread, outside the runtime).
    fn perform(&self, call: Call) -> Result<(), Failure> {
        let client = self.client.clone();
        block_on(
            &self.runtime,
            self.request_timeout + HANDOFF_SLACK,
            async move { client.send(call.method, &call.path, &call.form).await },
        )
        .unwrap_or_else(|_| {
            Err(Failure::Network(
                "no answer from the async runtime (shutting down?)".into(),
            ))
        })
    }
}

impl BuiltinHandler for Sink {
    fn deliver(&self, event: &Event, _attempt: u32) -> Result<(), BuiltinError> {
        if event.tenant != self.realm {
            return Err(BuiltinError::fatal(format!(
                "event for tenant {:?} reached the sink of realm {:?}",
                event.tenant, self.realm
            )));
        }
        let call = call_for(&event.event_type, event.payload.get()).map_err(|e| {
            self.state.sink_failed("invalid_payload", &e);
            BuiltinError::fatal(e)
        })?;
        if let Some(wait) = self.pause.remaining() {
            return Err(BuiltinError::rate_limited(
                format!(
                    "Zulip rate limit: paused for another {:.1}s",
                    wait.as_secs_f64()
                ),
                wait,
            ));
        }
        match self.perform(call) {
            Ok(()) => {
                self.state.sink_sent();
                Ok(())
            }
            Err(Failure::Unchanged(why)) => {
                self.state.sink_sent();
                tracing::info!(realm = %self.realm, event = %event.id, %why, "Zulip already had the state asked for");
                Ok(())
            }
            Err(Failure::RateLimited(after)) => {
                let wait = after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
                self.pause.until(wait);
                let message = Failure::RateLimited(Some(wait)).to_string();
                self.state.sink_failed("rate_limited", &message);
                tracing::info!(realm = %self.realm, event = %event.id, wait_ms = wait.as_millis() as u64, "Zulip rate limit; the sink waits");
                Err(BuiltinError::rate_limited(message, wait))
            }
            Err(f) => {
                let message = f.to_string();
                self.state.sink_failed(f.kind(), &message);
                tracing::warn!(realm = %self.realm, event = %event.id, kind = f.kind(), error = %message, "Zulip sink call failed");
                Err(BuiltinError {
                    message,
                    retryable: f.retryable(),
                    wait: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(call: &Call) -> Vec<(&str, &str)> {
        call.form.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn send_message_to_a_channel_prefers_its_id() {
        let c = call_for(
            SEND_MESSAGE_EVENT,
            r#"{"type":"stream","to":"Denmark","stream_id":1,"topic":"test","content":"hi"}"#,
        )
        .unwrap();
        assert_eq!((&c.method, c.path.as_str()), (&Method::POST, "/messages"));
        assert_eq!(
            form(&c),
            [
                ("type", "stream"),
                ("to", "1"),
                ("topic", "test"),
                ("content", "hi")
            ]
        );
        let c = call_for(
            SEND_MESSAGE_EVENT,
            r#"{"type":"channel","to":"Denmark","topic":"t","content":"x"}"#,
        )
        .unwrap();
        assert_eq!(form(&c)[1], ("to", "Denmark"));
    }

    #[test]
    fn send_direct_message() {
        let c = call_for(
            SEND_MESSAGE_EVENT,
            r#"{"type":"direct","to":[3,9],"content":"ok"}"#,
        )
        .unwrap();
        assert_eq!(
            form(&c),
            [("type", "private"), ("to", "[3,9]"), ("content", "ok")]
        );
    }

    #[test]
    fn reactions_and_edits() {
        let c = call_for(
            ADD_REACTION_EVENT,
            r#"{"message_id":31,"emoji_name":"tada"}"#,
        )
        .unwrap();
        assert_eq!(
            (&c.method, c.path.as_str()),
            (&Method::POST, "/messages/31/reactions")
        );
        assert_eq!(form(&c), [("emoji_name", "tada")]);
        let c = call_for(
            REMOVE_REACTION_EVENT,
            r#"{"message_id":31,"emoji_name":"tada","emoji_code":"1f389"}"#,
        )
        .unwrap();
        assert_eq!(
            (&c.method, c.path.as_str()),
            (&Method::DELETE, "/messages/31/reactions")
        );
        assert_eq!(form(&c), [("emoji_name", "tada"), ("emoji_code", "1f389")]);
        let c = call_for(
            UPDATE_MESSAGE_EVENT,
            r#"{"message_id":31,"topic":"new","propagate_mode":"change_all","send_notification_to_old_thread":false}"#,
        )
        .unwrap();
        assert_eq!(
            (&c.method, c.path.as_str()),
            (&Method::PATCH, "/messages/31")
        );
        assert_eq!(
            form(&c),
            [
                ("topic", "new"),
                ("propagate_mode", "change_all"),
                ("send_notification_to_old_thread", "false")
            ]
        );
    }

    #[test]
    fn bad_payloads_name_the_problem() {
        let cases = [
            (
                SEND_MESSAGE_EVENT,
                r#"{"type":"stream","to":"x","topic":"t"}"#,
                "content",
            ),
            (
                SEND_MESSAGE_EVENT,
                r#"{"type":"direct","to":[],"content":"x"}"#,
                "`to` is empty",
            ),
            (
                SEND_MESSAGE_EVENT,
                r#"{"type":"fax","to":"x","content":"x"}"#,
                "fax",
            ),
            (
                SEND_MESSAGE_EVENT,
                r#"{"type":"direct","to":[1],"content":"x","contnet":"y"}"#,
                "contnet",
            ),
            (
                ADD_REACTION_EVENT,
                r#"{"message_id":"x","emoji_name":"a"}"#,
                "expected u64",
            ),
            (UPDATE_MESSAGE_EVENT, r#"{"message_id":1}"#, "at least one"),
            (
                UPDATE_MESSAGE_EVENT,
                r#"{"message_id":1,"topic":"t","propagate_mode":"all"}"#,
                "all",
            ),
            ("zulip.delete_message", "{}", "does not perform"),
            (SEND_MESSAGE_EVENT, "[]", "invalid"),
        ];
        for (ty, payload, expected) in cases {
            let err = call_for(ty, payload).unwrap_err();
            assert!(err.contains(expected), "{payload}: {err}");
        }
    }
}
