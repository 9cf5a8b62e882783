//! Typed views of Zulip real-time events (`GET /api/v1/events`), the rule
//! that names them as Hookbox event types, and the `zulip.send_message`
//! event handlers emit to post a message.
//!
//! [`ZulipEvent::from_json`] dispatches on the event's `type` and `op`
//! fields (not on the shape, so errors name the event that was malformed).
//! Known `type`/`op` pairs parse into typed variants; every other pair,
//! including new types and new ops of known types, becomes
//! [`ZulipEvent::Other`] carrying the raw JSON. The typed structs ignore
//! unknown fields and make most fields optional, because newer servers send
//! more than older ones.
//!
//! ```
//! use hookbox_sdk::zulip::{self, ReactionOp, ZulipEvent};
//!
//! let json = r#"{"type": "reaction", "op": "add", "message_id": 32, "user_id": 10,
//!                "emoji_name": "tada", "emoji_code": "1f389",
//!                "reaction_type": "unicode_emoji", "id": 0}"#;
//! let ZulipEvent::Reaction(reaction) = ZulipEvent::from_json(json).unwrap() else {
//!     panic!("not a reaction");
//! };
//! assert_eq!(reaction.op, ReactionOp::Add);
//! assert_eq!(reaction.emoji_name, "tada");
//!
//! let value: serde_json::Value = serde_json::from_str(json).unwrap();
//! assert_eq!(zulip::hookbox_type(&value), "reaction.add");
//! ```

mod message;
mod realm;
mod stream;
mod users;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::HandlerError;

pub use message::{
    DeleteMessageEvent, DisplayRecipient, Message, MessageEvent, ReactionEvent, ReactionOp,
    ReactionUser, RecipientUser, SEND_MESSAGE_EVENT, SendMessage, UpdateMessageEvent,
};
pub use realm::{RealmEmoji, RealmEmojiEvent, RealmEvent};
pub use stream::{
    DeletedStream, RemovedSubscription, Stream, StreamEvent, Subscription, SubscriptionEvent,
};
pub use users::{
    ClientPresence, ModernPresence, PresenceEvent, PresenceStatus, RealmUser, RealmUserEvent,
    RealmUserUpdate, RemovedUser, TypingEvent, TypingOp, TypingUser, UserGroup, UserGroupEvent,
    UserPresence, UserStatusEvent,
};

/// The Hookbox event type of a raw Zulip event: `"<type>"`, or
/// `"<type>.<op>"` when the event has a non-empty string `op`.
///
/// `message` → `message`, `reaction`/`add` → `reaction.add`,
/// `subscription`/`peer_add` → `subscription.peer_add`. An event without a
/// string `type` (not a Zulip event) maps to `unknown`. The host applies the
/// same rule to events it receives from Zulip.
pub fn hookbox_type(zulip_event: &Value) -> String {
    let Some(ty) = zulip_event.get("type").and_then(Value::as_str) else {
        return "unknown".to_owned();
    };
    match zulip_event.get("op").and_then(Value::as_str) {
        Some(op) if !op.is_empty() => format!("{ty}.{op}"),
        _ => ty.to_owned(),
    }
}

/// A Zulip real-time event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ZulipEvent {
    /// `message`: a new message.
    Message(MessageEvent),
    /// `update_message`: a message was edited or moved.
    UpdateMessage(UpdateMessageEvent),
    /// `delete_message`: messages were deleted.
    DeleteMessage(DeleteMessageEvent),
    /// `reaction` `add`/`remove`.
    Reaction(ReactionEvent),
    /// `subscription` `add`/`remove`/`update`/`peer_add`/`peer_remove`.
    Subscription(SubscriptionEvent),
    /// `stream` `create`/`delete`/`update`.
    Stream(StreamEvent),
    /// `realm_user` `add`/`remove`/`update`.
    RealmUser(RealmUserEvent),
    /// `realm` `update`/`update_dict`/`deactivated`.
    Realm(RealmEvent),
    /// `user_group` `add`/`update`/`remove`/`add_members`/`remove_members`/
    /// `add_subgroups`/`remove_subgroups`.
    UserGroup(UserGroupEvent),
    /// `typing` `start`/`stop`.
    Typing(TypingEvent),
    /// `user_status`.
    UserStatus(UserStatusEvent),
    /// `presence` (legacy and modern shapes).
    Presence(PresenceEvent),
    /// `realm_emoji` `update`/`add`/`update_one`.
    RealmEmoji(RealmEmojiEvent),
    /// `heartbeat`: the queue is alive; nothing happened.
    Heartbeat,
    /// Any other `type`/`op` pair, with the raw event.
    Other(Value),
}

impl ZulipEvent {
    /// Parses a Zulip event from JSON text.
    pub fn from_json(json: &str) -> Result<Self, ZulipError> {
        let value = serde_json::from_str(json).map_err(ZulipError::Json)?;
        ZulipEvent::from_value(value)
    }

    /// Parses a Zulip event from a JSON value.
    pub fn from_value(value: Value) -> Result<Self, ZulipError> {
        let object = value.as_object().ok_or(ZulipError::NotAnObject)?;
        let ty = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or(ZulipError::MissingType)?
            .to_owned();
        let op = object.get("op").and_then(Value::as_str).map(str::to_owned);
        let name = hookbox_type(&value);
        let event = match (ty.as_str(), op.as_deref()) {
            ("message", None) => ZulipEvent::Message(parse(value, name)?),
            ("update_message", None) => ZulipEvent::UpdateMessage(parse(value, name)?),
            ("delete_message", None) => ZulipEvent::DeleteMessage(parse(value, name)?),
            ("reaction", Some("add" | "remove")) => ZulipEvent::Reaction(parse(value, name)?),
            ("subscription", Some("add" | "remove" | "update" | "peer_add" | "peer_remove")) => {
                ZulipEvent::Subscription(parse(value, name)?)
            }
            ("stream", Some("create" | "delete" | "update")) => {
                ZulipEvent::Stream(parse(value, name)?)
            }
            ("realm_user", Some("add" | "remove" | "update")) => {
                ZulipEvent::RealmUser(parse(value, name)?)
            }
            ("realm", Some("update" | "update_dict" | "deactivated")) => {
                ZulipEvent::Realm(parse(value, name)?)
            }
            (
                "user_group",
                Some(
                    "add" | "update" | "remove" | "add_members" | "remove_members"
                    | "add_subgroups" | "remove_subgroups",
                ),
            ) => ZulipEvent::UserGroup(parse(value, name)?),
            ("typing", Some("start" | "stop")) => ZulipEvent::Typing(parse(value, name)?),
            ("user_status", None) => ZulipEvent::UserStatus(parse(value, name)?),
            ("presence", None) => ZulipEvent::Presence(parse(value, name)?),
            ("realm_emoji", Some("update" | "add" | "update_one")) => {
                ZulipEvent::RealmEmoji(parse(value, name)?)
            }
            ("heartbeat", None) => ZulipEvent::Heartbeat,
            _ => ZulipEvent::Other(value),
        };
        Ok(event)
    }

    /// Whether this is [`ZulipEvent::Other`]: a type/op this SDK does not
    /// model.
    pub fn is_other(&self) -> bool {
        matches!(self, ZulipEvent::Other(_))
    }
}

fn parse<T: DeserializeOwned>(value: Value, event_type: String) -> Result<T, ZulipError> {
    T::deserialize(value).map_err(|source| ZulipError::Malformed { event_type, source })
}

/// Why a Zulip event did not parse.
#[derive(Debug)]
#[non_exhaustive]
pub enum ZulipError {
    /// The text is not JSON.
    Json(serde_json::Error),
    /// The JSON is not an object.
    NotAnObject,
    /// The object has no string `type` field.
    MissingType,
    /// A known event type whose fields do not have the expected shape.
    Malformed {
        /// The Hookbox type of the event, e.g. `reaction.add`.
        event_type: String,
        /// What was wrong.
        source: serde_json::Error,
    },
}

impl fmt::Display for ZulipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZulipError::Json(e) => write!(f, "Zulip event is not JSON: {e}"),
            ZulipError::NotAnObject => f.write_str("Zulip event is not a JSON object"),
            ZulipError::MissingType => f.write_str("Zulip event has no string `type` field"),
            ZulipError::Malformed { event_type, source } => {
                write!(f, "malformed Zulip `{event_type}` event: {source}")
            }
        }
    }
}

impl std::error::Error for ZulipError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ZulipError::Json(e) | ZulipError::Malformed { source: e, .. } => Some(e),
            ZulipError::NotAnObject | ZulipError::MissingType => None,
        }
    }
}

/// A malformed event stays malformed: fatal.
impl From<ZulipError> for HandlerError {
    fn from(e: ZulipError) -> Self {
        HandlerError::fatal(e.to_string())
    }
}

/// Deserializes `null` like a missing field: as `T::default()`. Newer
/// servers send `null` for some fields older ones omitted.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hookbox_type_rule() {
        let cases = [
            (json!({"type": "message"}), "message"),
            (json!({"type": "reaction", "op": "add"}), "reaction.add"),
            (
                json!({"type": "subscription", "op": "peer_add"}),
                "subscription.peer_add",
            ),
            (
                json!({"type": "update_message_flags", "op": "add", "operation": "add"}),
                "update_message_flags.add",
            ),
            (json!({"type": "realm", "op": ""}), "realm"),
            (json!({"type": "realm", "op": 3}), "realm"),
            (json!({"type": "presence", "op": null}), "presence"),
            (json!({"op": "add"}), "unknown"),
            (json!({"type": 7}), "unknown"),
            (json!(["message"]), "unknown"),
        ];
        for (value, expected) in cases {
            assert_eq!(hookbox_type(&value), expected, "{value}");
        }
    }

    #[test]
    fn not_json_not_object_no_type() {
        assert!(matches!(
            ZulipEvent::from_json("{"),
            Err(ZulipError::Json(_))
        ));
        assert!(matches!(
            ZulipEvent::from_json("[]"),
            Err(ZulipError::NotAnObject)
        ));
        assert!(matches!(
            ZulipEvent::from_json(r#"{"op": "add"}"#),
            Err(ZulipError::MissingType)
        ));
    }

    #[test]
    fn malformed_known_event_names_it_and_is_fatal() {
        let err = ZulipEvent::from_json(r#"{"type": "reaction", "op": "add", "message_id": "x"}"#)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`reaction.add`"), "{text}");
        assert!(
            text.contains("message_id") || text.contains("invalid type"),
            "{text}"
        );
        let handler_error: HandlerError = err.into();
        assert!(!handler_error.retryable);
        assert!(ZulipEvent::from_json(r#"{"type": "message", "flags": []}"#).is_err());
    }

    #[test]
    fn unknown_type_and_unknown_op_are_other_with_raw_json() {
        let raw = json!({"type": "channel_folder", "op": "add", "channel_folder": {"id": 1}});
        assert_eq!(
            ZulipEvent::from_value(raw.clone()).unwrap(),
            ZulipEvent::Other(raw)
        );
        let raw = json!({"type": "reaction", "op": "explode", "message_id": 1});
        assert_eq!(
            ZulipEvent::from_value(raw.clone()).unwrap(),
            ZulipEvent::Other(raw)
        );
        let raw = json!({"type": "message", "op": "new-shape"});
        assert!(ZulipEvent::from_value(raw).unwrap().is_other());
    }

    #[test]
    fn heartbeat_is_typed() {
        assert_eq!(
            ZulipEvent::from_json(r#"{"type": "heartbeat", "id": 3}"#).unwrap(),
            ZulipEvent::Heartbeat
        );
    }

    #[test]
    fn nulls_read_as_defaults() {
        let event = ZulipEvent::from_value(json!({
            "type": "update_message", "message_id": 5, "message_ids": null,
            "flags": null, "topic_links": null
        }))
        .unwrap();
        let ZulipEvent::UpdateMessage(update) = event else {
            panic!("{event:?}")
        };
        assert!(update.message_ids.is_empty() && update.flags.is_empty());
    }
}
