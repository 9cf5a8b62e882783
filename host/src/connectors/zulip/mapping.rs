//! How Zulip events become Hookbox events, and which Zulip event types a
//! realm's queue must be registered for. Pure functions, unit-tested here.
//!
//! A Zulip event becomes an [`EventInput`] whose type is Zulip's `type`, or
//! `type.op` ([`crate::event::zulip_event_type`]), whose tenant is the
//! realm's name, whose payload is the event's JSON exactly as the server
//! sent it, and whose idempotency key is `zulip:<queue id>:<event id>` — so
//! the events of a poll that was accepted but not yet acknowledged when the
//! daemon died are deduplicated when the same queue hands them out again.
//! Every event of a realm carries the ordering key `zulip:<realm>`, so
//! handlers that ask for ordering get a realm's events in Zulip's order.

use std::collections::BTreeSet;

use serde_json::json;

use super::QUEUE_LOST_EVENT;
use super::config::is_zulip_type;
use super::protocol::Received;
use crate::event::{EventInput, Priority, zulip_event_type};

/// Metadata key: the event's id in its Zulip queue.
pub(crate) const META_EVENT_ID: &str = "zulip_event_id";
/// Metadata key: the Zulip queue the event came from.
pub(crate) const META_QUEUE_ID: &str = "zulip_queue_id";

/// Metadata key: the bot's Zulip user id (when the source knows it), so a
/// handler can tell the bot's own messages from others'.
pub(crate) const META_BOT_USER_ID: &str = "zulip_bot_user_id";
/// Metadata key, `"true"` on the bot's own events (delivered only when the
/// realm sets `own_events = true`).
pub(crate) const META_OWN_EVENT: &str = "zulip_own_event";

/// Who the realm's bot is.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bot {
    /// From `GET /users/me`; `None` until that answered.
    pub user_id: Option<u64>,
    /// The configured bot email (what `sender_email` says when the
    /// server shows real addresses).
    pub email: String,
}

impl Bot {
    /// Whether the bot itself caused `event`: a message it sent, a
    /// reaction it made, an edit it made.
    pub(crate) fn caused(&self, event: &serde_json::Value) -> bool {
        let is_me = |v: &serde_json::Value| self.user_id.is_some() && v.as_u64() == self.user_id;
        match event.get("type").and_then(serde_json::Value::as_str) {
            Some("message") => {
                let m = &event["message"];
                is_me(&m["sender_id"])
                    || m["sender_email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(&self.email))
            }
            Some("reaction") => is_me(&event["user_id"]) || is_me(&event["user"]["user_id"]),
            Some("update_message") => is_me(&event["user_id"]),
            _ => false,
        }
    }

    /// Adds the bot metadata to a mapped event; whether it is the bot's own.
    pub(crate) fn mark(&self, input: &mut EventInput, event: &serde_json::Value) -> bool {
        if let Some(id) = self.user_id {
            input
                .metadata
                .insert(META_BOT_USER_ID.into(), id.to_string());
        }
        let own = self.caused(event);
        if own {
            input.metadata.insert(META_OWN_EVENT.into(), "true".into());
        }
        own
    }
}

/// Type prefixes that are Hookbox's own, never Zulip event types.
const OWN_PREFIXES: [&str; 2] = ["zulip", "hookbox"];

/// What one received event amounts to.
#[derive(Debug)]
pub(crate) enum Mapped {
    /// A `heartbeat`: acknowledged, not accepted.
    Heartbeat,
    /// An event to accept.
    Event(Box<EventInput>),
    /// Not a Zulip event (no string `type`): skipped with this reason.
    Invalid(String),
}

/// Maps one event of `queue_id` for `realm`.
pub(crate) fn map_event(realm: &str, queue_id: &str, event: &Received) -> Mapped {
    let Some(event_type) = zulip_event_type(&event.value) else {
        return Mapped::Invalid(format!("event {} has no string `type`", event.id));
    };
    if event_type == "heartbeat" {
        return Mapped::Heartbeat;
    }
    let mut input = EventInput {
        event_type,
        tenant: realm.to_string(),
        payload: Some(event.raw.clone()),
        metadata: Default::default(),
        key: Some(ordering_key(realm)),
        priority: Priority::Normal,
        idempotency_key: Some(format!("zulip:{queue_id}:{}", event.id)),
    };
    input
        .metadata
        .insert(META_EVENT_ID.into(), event.id.to_string());
    input
        .metadata
        .insert(META_QUEUE_ID.into(), queue_id.to_string());
    Mapped::Event(Box::new(input))
}

/// The ordering key of a realm's events.
fn ordering_key(realm: &str) -> String {
    format!("zulip:{realm}")
}

/// The queue that was lost, for the `zulip.queue_lost` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LostQueue {
    pub queue_id: String,
    pub last_event_id: i64,
    pub reason: String,
}

/// The `zulip.queue_lost` event: events between `last_event_id` of the old
/// queue and the registration of `new_queue_id` may never arrive. Keyed by
/// the old queue, so a re-run after a crash does not announce it twice.
pub(crate) fn queue_lost(
    realm: &str,
    site: &str,
    lost: &LostQueue,
    new_queue_id: &str,
) -> EventInput {
    let mut input = EventInput::new(
        QUEUE_LOST_EVENT,
        &json!({
            "realm": realm,
            "site": site,
            "queue_id": lost.queue_id,
            "last_event_id": lost.last_event_id,
            "new_queue_id": new_queue_id,
            "reason": lost.reason,
        }),
    );
    input.tenant = realm.to_string();
    input.key = Some(ordering_key(realm));
    input.priority = Priority::High;
    input.idempotency_key = Some(format!("zulip:queue_lost:{}", lost.queue_id));
    input
}

/// The Zulip event types that subscription patterns can match, `None` for
/// "all" (some pattern is `*`). `reaction.add` and `reaction.*` need
/// `reaction`; Hookbox's own `zulip.*` / `hookbox.*` types and types that
/// cannot be Zulip's (`TICKET_CREATED`) need nothing.
pub(crate) fn wanted_types<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
) -> Option<BTreeSet<String>> {
    let mut types = BTreeSet::new();
    for p in patterns {
        if p == "*" {
            return None;
        }
        let head = p.split('.').next().unwrap_or(p);
        if OWN_PREFIXES.contains(&head) || !is_zulip_type(head) {
            continue;
        }
        types.insert(head.to_string());
    }
    Some(types)
}

/// Whether a queue registered for `registered` delivers every type in
/// `wanted` (`None` is all types on either side).
pub(crate) fn covers(registered: Option<&[String]>, wanted: Option<&BTreeSet<String>>) -> bool {
    match (registered, wanted) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(have), Some(want)) => want.iter().all(|w| have.contains(w)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn received(json: &str, id: i64) -> Received {
        Received {
            raw: serde_json::from_str(json).unwrap(),
            value: serde_json::from_str(json).unwrap(),
            id,
        }
    }

    fn event(m: Mapped) -> EventInput {
        match m {
            Mapped::Event(e) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_bots_own_events_are_recognised() {
        let bot = Bot {
            user_id: Some(42),
            email: "bot@zulip.test".into(),
        };
        let own = [
            json!({"type": "message", "message": {"sender_id": 42}}),
            json!({"type": "message", "message": {"sender_id": 7, "sender_email": "BOT@zulip.test"}}),
            json!({"type": "reaction", "op": "add", "user_id": 42}),
            json!({"type": "reaction", "op": "add", "user": {"user_id": 42}}),
            json!({"type": "update_message", "user_id": 42}),
        ];
        for e in &own {
            assert!(bot.caused(e), "{e}");
        }
        let others = [
            json!({"type": "message", "message": {"sender_id": 7, "sender_email": "ada@zulip.test"}}),
            json!({"type": "reaction", "user_id": 7}),
            json!({"type": "realm_user", "op": "update", "person": {"user_id": 42}}),
        ];
        for e in &others {
            assert!(!bot.caused(e), "{e}");
        }
        // Without a known id, only the email tells.
        let unknown = Bot {
            user_id: None,
            email: "bot@zulip.test".into(),
        };
        assert!(!unknown.caused(&own[0]));
        assert!(unknown.caused(&own[1]));

        let mut input = EventInput::new("message", &own[0]);
        assert!(bot.mark(&mut input, &own[0]));
        assert_eq!(input.metadata[META_BOT_USER_ID], "42");
        assert_eq!(input.metadata[META_OWN_EVENT], "true");
        let mut input = EventInput::new("message", &others[0]);
        assert!(!bot.mark(&mut input, &others[0]));
        assert!(!input.metadata.contains_key(META_OWN_EVENT));
    }

    #[test]
    fn events_keep_type_op_tenant_and_bytes() {
        let json = r#"{"type":"reaction","op":"add","id":7,"emoji_name":"tada","t":1.50}"#;
        let e = event(map_event("acme", "q-1", &received(json, 7)));
        assert_eq!(e.event_type, "reaction.add");
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.payload.as_ref().unwrap().get(), json);
        assert_eq!(e.idempotency_key.as_deref(), Some("zulip:q-1:7"));
        assert_eq!(e.key.as_deref(), Some("zulip:acme"));
        assert_eq!(e.metadata[META_EVENT_ID], "7");
        assert_eq!(e.metadata[META_QUEUE_ID], "q-1");
        assert!(e.validate(1 << 20).is_ok());

        let e = event(map_event(
            "acme",
            "q",
            &received(r#"{"type":"message","id":1}"#, 1),
        ));
        assert_eq!(e.event_type, "message");
    }

    #[test]
    fn every_fixture_event_maps_to_its_type_or_is_a_heartbeat() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/zulip/zulip-events.json"
        );
        let all: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut heartbeats = 0;
        for (i, v) in all.iter().enumerate() {
            let r = received(&v.to_string(), i as i64);
            match map_event("acme", "q", &r) {
                Mapped::Heartbeat => heartbeats += 1,
                Mapped::Event(e) => {
                    assert_eq!(Some(e.event_type.clone()), zulip_event_type(v));
                    assert!(e.validate(1 << 20).is_ok(), "{}", e.event_type);
                }
                Mapped::Invalid(why) => panic!("{v}: {why}"),
            }
        }
        assert_eq!(heartbeats, 1);
    }

    #[test]
    fn heartbeats_and_typeless_events() {
        assert!(matches!(
            map_event("a", "q", &received(r#"{"type":"heartbeat","id":2}"#, 2)),
            Mapped::Heartbeat
        ));
        assert!(matches!(
            map_event("a", "q", &received(r#"{"op":"add","id":2}"#, 2)),
            Mapped::Invalid(why) if why.contains("type")
        ));
    }

    #[test]
    fn queue_lost_names_both_queues() {
        let lost = LostQueue {
            queue_id: "old".into(),
            last_event_id: 41,
            reason: "expired".into(),
        };
        let e = queue_lost("acme", "https://z", &lost, "new");
        assert_eq!(e.event_type, "zulip.queue_lost");
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.idempotency_key.as_deref(), Some("zulip:queue_lost:old"));
        assert_eq!(e.key.as_deref(), Some("zulip:acme"));
        let p: Value = serde_json::from_str(e.payload.unwrap().get()).unwrap();
        assert_eq!(p["queue_id"], "old");
        assert_eq!(p["new_queue_id"], "new");
        assert_eq!(p["last_event_id"], 41);
    }

    #[test]
    fn wanted_types_from_patterns() {
        let set = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        let cases: [(&[&str], Option<BTreeSet<String>>); 5] = [
            (&["message"], set(&["message"])),
            (
                &["reaction.add", "reaction.*", "stream.*"],
                set(&["reaction", "stream"]),
            ),
            (
                &["zulip.queue_lost", "hookbox.handler.*", "TICKET_CREATED"],
                set(&[]),
            ),
            (&["message", "*"], None),
            (&[], set(&[])),
        ];
        for (patterns, expected) in cases {
            assert_eq!(
                wanted_types(patterns.iter().copied()),
                expected,
                "{patterns:?}"
            );
        }
    }

    #[test]
    fn coverage() {
        let have = vec!["message".to_string(), "reaction".to_string()];
        let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(covers(None, None));
        assert!(covers(None, Some(&want(&["x"]))));
        assert!(!covers(Some(&have), None));
        assert!(covers(Some(&have), Some(&want(&["message"]))));
        assert!(!covers(Some(&have), Some(&want(&["message", "typing"]))));
    }
}
