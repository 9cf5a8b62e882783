//! Message events (`message`, `update_message`, `delete_message`,
//! `reaction`) and [`SendMessage`], the payload of the `zulip.send_message`
//! event a handler emits to post a message.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::nullable;

/// The Hookbox event type a handler emits to post a Zulip message; its
/// payload is a [`SendMessage`].
pub const SEND_MESSAGE_EVENT: &str = "zulip.send_message";

/// `message`: a new message was sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageEvent {
    /// The message.
    pub message: Message,
    /// The receiving user's flags for it (`mentioned`, `read`, …).
    #[serde(default, deserialize_with = "nullable")]
    pub flags: Vec<String>,
}

impl MessageEvent {
    /// Whether the receiving user was mentioned (directly or by a wildcard
    /// or group mention).
    pub fn mentions_me(&self) -> bool {
        self.flags.iter().any(|f| {
            matches!(
                f.as_str(),
                "mentioned" | "stream_wildcard_mentioned" | "topic_wildcard_mentioned"
            )
        })
    }
}

/// A Zulip message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    /// The message id.
    pub id: u64,
    /// The sender's user id.
    pub sender_id: Option<u64>,
    /// The sender's (possibly fake, per the realm's email visibility) email.
    pub sender_email: Option<String>,
    /// The sender's full name.
    pub sender_full_name: Option<String>,
    /// The sender's realm subdomain.
    pub sender_realm_str: Option<String>,
    /// The content: rendered HTML in events (see `content_type`).
    #[serde(default, deserialize_with = "nullable")]
    pub content: String,
    /// `text/html` or `text/x-markdown`.
    pub content_type: Option<String>,
    /// `stream` for channel messages, `private` (or `direct`) for direct
    /// messages.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub message_type: String,
    /// The channel id of a channel message.
    pub stream_id: Option<u64>,
    /// The channel name, or the users of a direct message.
    pub display_recipient: Option<DisplayRecipient>,
    /// The topic (`subject` on the wire); empty for direct messages.
    pub subject: Option<String>,
    /// The topic, if a server sends it under this newer name.
    pub topic: Option<String>,
    /// The recipient id (a channel or a group of users).
    pub recipient_id: Option<u64>,
    /// When it was sent, in seconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// The client that sent it.
    pub client: Option<String>,
    /// Whether it is a `/me` message.
    pub is_me_message: Option<bool>,
    /// The sender's avatar URL.
    pub avatar_url: Option<String>,
    /// Reactions, as the server sends them.
    #[serde(default, deserialize_with = "nullable")]
    pub reactions: Vec<Value>,
    /// Submessages (widgets), as the server sends them.
    #[serde(default, deserialize_with = "nullable")]
    pub submessages: Vec<Value>,
    /// Links found in the topic, as the server sends them.
    #[serde(default, deserialize_with = "nullable")]
    pub topic_links: Vec<Value>,
}

/// Who a message went to: a channel name, or the users of a direct
/// message (including the sender).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DisplayRecipient {
    /// A channel message: the channel's name.
    Stream(String),
    /// A direct message: its participants.
    Direct(Vec<RecipientUser>),
}

/// A participant of a direct message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecipientUser {
    /// The user id.
    pub id: u64,
    /// The user's email.
    pub email: Option<String>,
    /// The user's full name.
    pub full_name: Option<String>,
    /// Whether the user is a mirror dummy.
    pub is_mirror_dummy: Option<bool>,
}

impl Message {
    /// Whether this is a direct (private) message.
    pub fn is_direct(&self) -> bool {
        matches!(self.message_type.as_str(), "private" | "direct")
            || matches!(self.display_recipient, Some(DisplayRecipient::Direct(_)))
    }

    /// The topic of a channel message (`topic`, else `subject`).
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref().or(self.subject.as_deref())
    }

    /// The channel name of a channel message.
    pub fn stream_name(&self) -> Option<&str> {
        match &self.display_recipient {
            Some(DisplayRecipient::Stream(name)) => Some(name),
            _ => None,
        }
    }

    /// The participants of a direct message (empty for channel messages).
    pub fn direct_recipients(&self) -> &[RecipientUser] {
        match &self.display_recipient {
            Some(DisplayRecipient::Direct(users)) => users,
            _ => &[],
        }
    }
}

/// `update_message`: a message was edited, moved, or re-rendered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UpdateMessageEvent {
    /// Who made the edit (`None` for server-side re-rendering).
    pub user_id: Option<u64>,
    /// When, in seconds since the Unix epoch.
    pub edit_timestamp: Option<i64>,
    /// The edited message.
    pub message_id: u64,
    /// All messages affected (a topic move affects several).
    #[serde(default, deserialize_with = "nullable")]
    pub message_ids: Vec<u64>,
    /// The receiving user's flags for the message.
    #[serde(default, deserialize_with = "nullable")]
    pub flags: Vec<String>,
    /// Whether only the rendering changed (no user edit).
    pub rendering_only: Option<bool>,
    /// The channel the message was in.
    pub stream_id: Option<u64>,
    /// The channel's name.
    pub stream_name: Option<String>,
    /// The channel the messages moved to, when moved.
    pub new_stream_id: Option<u64>,
    /// The old topic, when the topic changed.
    pub orig_subject: Option<String>,
    /// The new topic, when the topic changed.
    pub subject: Option<String>,
    /// `change_one`, `change_later` or `change_all` for moves.
    pub propagate_mode: Option<String>,
    /// The old content (Markdown), when the content changed.
    pub orig_content: Option<String>,
    /// The new content (Markdown), when the content changed.
    pub content: Option<String>,
    /// The old rendered content.
    pub orig_rendered_content: Option<String>,
    /// The new rendered content.
    pub rendered_content: Option<String>,
    /// Whether it is now a `/me` message.
    pub is_me_message: Option<bool>,
    /// Links found in the new topic.
    #[serde(default, deserialize_with = "nullable")]
    pub topic_links: Vec<Value>,
}

impl UpdateMessageEvent {
    /// Whether the content changed.
    pub fn content_changed(&self) -> bool {
        self.content.is_some() && self.rendering_only != Some(true)
    }

    /// Whether messages moved to another channel or topic.
    pub fn moved(&self) -> bool {
        self.new_stream_id.is_some() || self.orig_subject.is_some()
    }
}

/// `delete_message`: one or more messages were deleted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeleteMessageEvent {
    /// `stream` or `private`.
    #[serde(default, deserialize_with = "nullable")]
    pub message_type: String,
    /// The deleted message (clients without bulk deletion support).
    pub message_id: Option<u64>,
    /// The deleted messages (clients with bulk deletion support).
    #[serde(default, deserialize_with = "nullable")]
    pub message_ids: Vec<u64>,
    /// The channel of deleted channel messages.
    pub stream_id: Option<u64>,
    /// The topic of deleted channel messages.
    pub topic: Option<String>,
}

impl DeleteMessageEvent {
    /// Every deleted message id, from either field.
    pub fn deleted_ids(&self) -> Vec<u64> {
        let mut ids = self.message_ids.clone();
        if let Some(id) = self.message_id.filter(|id| !ids.contains(id)) {
            ids.push(id);
        }
        ids
    }
}

/// Whether a reaction was added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionOp {
    /// `reaction` `add`.
    Add,
    /// `reaction` `remove`.
    Remove,
}

/// `reaction` `add`/`remove`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReactionEvent {
    /// Added or removed.
    pub op: ReactionOp,
    /// The message reacted to.
    pub message_id: u64,
    /// Who reacted.
    pub user_id: Option<u64>,
    /// Who reacted (deprecated object form).
    pub user: Option<ReactionUser>,
    /// The emoji's name, e.g. `tada`.
    #[serde(default, deserialize_with = "nullable")]
    pub emoji_name: String,
    /// The emoji's code, e.g. `1f389`.
    #[serde(default, deserialize_with = "nullable")]
    pub emoji_code: String,
    /// `unicode_emoji`, `realm_emoji` or `zulip_extra_emoji`.
    #[serde(default, deserialize_with = "nullable")]
    pub reaction_type: String,
}

impl ReactionEvent {
    /// Who reacted, from either field.
    pub fn reacting_user_id(&self) -> Option<u64> {
        self.user_id
            .or_else(|| self.user.as_ref().and_then(|u| u.user_id))
    }
}

/// The deprecated `user` object of a reaction event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReactionUser {
    /// The user id.
    pub user_id: Option<u64>,
    /// The user's email.
    pub email: Option<String>,
    /// The user's full name.
    pub full_name: Option<String>,
}

/// The payload of a [`SEND_MESSAGE_EVENT`] event: a message to post, in
/// the shape of Zulip's `POST /messages` parameters.
///
/// ```
/// # use hookbox_sdk::zulip::SendMessage;
/// let json = serde_json::to_value(SendMessage::Stream {
///     to: "general".into(), stream_id: Some(1), topic: "deploys".into(), content: "Done".into(),
/// }).unwrap();
/// assert_eq!(json["type"], "stream");
/// assert_eq!(json["topic"], "deploys");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SendMessage {
    /// To a channel topic.
    Stream {
        /// The channel name.
        to: String,
        /// The channel id, when known (it survives renames).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<u64>,
        /// The topic.
        topic: String,
        /// The Markdown content.
        content: String,
    },
    /// A direct message to these users (by id).
    Direct {
        /// The recipients' user ids.
        to: Vec<u64>,
        /// The Markdown content.
        content: String,
    },
}

impl SendMessage {
    /// [`SendMessage::reply_to`] for a message that arrived in `event`,
    /// except that it never answers the bot itself: `None` when the
    /// message is the bot's own (its sender is the realm's bot, see
    /// [`Event::zulip_bot_user_id`](crate::Event::zulip_bot_user_id)), so
    /// a reply that repeats what it answers cannot loop.
    pub fn reply_to_event(
        event: &crate::Event,
        message: &Message,
        content: impl Into<String>,
    ) -> Option<Self> {
        let own = event.is_own_zulip_event()
            || (message.sender_id.is_some() && message.sender_id == event.zulip_bot_user_id());
        if own {
            return None;
        }
        Self::reply_to(message, content)
    }

    /// A reply in the same conversation as `message`: the same channel and
    /// topic, or the same direct-message group. `None` when the message
    /// does not say where it went.
    pub fn reply_to(message: &Message, content: impl Into<String>) -> Option<Self> {
        let content = content.into();
        if message.is_direct() {
            let mut to: Vec<u64> = message.direct_recipients().iter().map(|u| u.id).collect();
            to.sort_unstable();
            to.dedup();
            if to.is_empty() {
                return None;
            }
            return Some(SendMessage::Direct { to, content });
        }
        Some(SendMessage::Stream {
            to: message.stream_name()?.to_owned(),
            stream_id: message.stream_id,
            topic: message.topic().unwrap_or_default().to_owned(),
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Value) -> Message {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reply_to_event_never_answers_the_bot() {
        let from = |sender: u64| {
            message(
                json!({"id": 1, "type": "stream", "display_recipient": "Denmark",
                           "subject": "castle", "sender_id": sender}),
            )
        };
        let event = crate::Event::builder("message")
            .metadata("zulip_bot_user_id", "42")
            .build();
        assert_eq!(SendMessage::reply_to_event(&event, &from(42), "hi"), None);
        assert!(SendMessage::reply_to_event(&event, &from(7), "hi").is_some());
        let own = crate::Event::builder("message")
            .metadata("zulip_own_event", "true")
            .build();
        assert_eq!(SendMessage::reply_to_event(&own, &from(7), "hi"), None);
        // Without the bot's id, only a plain reply.
        let bare = crate::Event::builder("message").build();
        assert!(SendMessage::reply_to_event(&bare, &from(42), "hi").is_some());
    }

    #[test]
    fn reply_to_stream_message_keeps_channel_and_topic() {
        let m = message(
            json!({"id": 1, "type": "stream", "display_recipient": "Denmark",
                               "stream_id": 4, "subject": "castle"}),
        );
        assert_eq!(
            SendMessage::reply_to(&m, "hi"),
            Some(SendMessage::Stream {
                to: "Denmark".into(),
                stream_id: Some(4),
                topic: "castle".into(),
                content: "hi".into()
            })
        );
    }

    #[test]
    fn reply_to_direct_message_goes_to_all_participants() {
        let m = message(json!({"id": 1, "type": "private", "display_recipient": [
            {"id": 9, "email": "a@x"}, {"id": 3}, {"id": 9}]}));
        assert!(m.is_direct());
        assert_eq!(
            SendMessage::reply_to(&m, "hi"),
            Some(SendMessage::Direct {
                to: vec![3, 9],
                content: "hi".into()
            })
        );
    }

    #[test]
    fn reply_needs_a_destination() {
        assert_eq!(SendMessage::reply_to(&message(json!({"id": 1})), "x"), None);
        let empty_dm = message(json!({"id": 1, "type": "direct", "display_recipient": []}));
        assert_eq!(SendMessage::reply_to(&empty_dm, "x"), None);
    }

    #[test]
    fn send_message_round_trips() {
        let direct = SendMessage::Direct {
            to: vec![1, 2],
            content: "c".into(),
        };
        let json = serde_json::to_value(&direct).unwrap();
        assert_eq!(
            json,
            json!({"type": "direct", "to": [1, 2], "content": "c"})
        );
        assert_eq!(serde_json::from_value::<SendMessage>(json).unwrap(), direct);
    }

    #[test]
    fn topic_prefers_new_name() {
        let m = message(json!({"id": 1, "subject": "old", "topic": "new"}));
        assert_eq!(m.topic(), Some("new"));
    }

    #[test]
    fn deleted_ids_merge_both_fields() {
        let d: DeleteMessageEvent =
            serde_json::from_value(json!({"message_id": 3, "message_ids": [1, 3]})).unwrap();
        assert_eq!(d.deleted_ids(), vec![1, 3]);
        let d: DeleteMessageEvent = serde_json::from_value(json!({"message_id": 3})).unwrap();
        assert_eq!(d.deleted_ids(), vec![3]);
    }

    #[test]
    fn mentions_me_reads_flags() {
        let e: MessageEvent =
            serde_json::from_value(json!({"message": {"id": 1}, "flags": ["read"]})).unwrap();
        assert!(!e.mentions_me());
        let e: MessageEvent = serde_json::from_value(
            json!({"message": {"id": 1}, "flags": ["topic_wildcard_mentioned"]}),
        )
        .unwrap();
        assert!(e.mentions_me());
    }
}
