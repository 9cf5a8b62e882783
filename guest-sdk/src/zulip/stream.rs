//! Channel events: `stream` (create, delete, update) and `subscription`
//! (add, remove, update, peer_add, peer_remove). Zulip's wire format still
//! calls channels "streams".

use serde::Deserialize;
use serde_json::Value;

use super::nullable;

/// A channel, as `stream` `create` and `subscription` `add` describe it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stream {
    /// The channel id.
    pub stream_id: u64,
    /// The channel name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The description (Markdown).
    pub description: Option<String>,
    /// The description (rendered HTML).
    pub rendered_description: Option<String>,
    /// Whether the channel is private.
    pub invite_only: Option<bool>,
    /// Whether the channel is web-public.
    pub is_web_public: Option<bool>,
    /// Whether the channel is archived.
    pub is_archived: Option<bool>,
    /// Whether new subscribers see its history.
    pub history_public_to_subscribers: Option<bool>,
    /// Who created it.
    pub creator_id: Option<u64>,
    /// When it was created, in seconds since the Unix epoch.
    pub date_created: Option<i64>,
    /// The first message's id.
    pub first_message_id: Option<u64>,
    /// Days messages are kept (`None`: the realm default or forever).
    pub message_retention_days: Option<i64>,
    /// The number of subscribers (newer servers).
    pub subscriber_count: Option<u64>,
    /// The channel folder (newer servers).
    pub folder_id: Option<u64>,
    /// Average weekly traffic, when known.
    pub stream_weekly_traffic: Option<i64>,
}

/// A subscription of the receiving user, as `subscription` `add` sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Subscription {
    /// The channel.
    #[serde(flatten)]
    pub stream: Stream,
    /// The user's colour for the channel.
    pub color: Option<String>,
    /// Whether the user muted it.
    pub is_muted: Option<bool>,
    /// Whether the user pinned it.
    pub pin_to_top: Option<bool>,
    /// The subscriber user ids.
    #[serde(default, deserialize_with = "nullable")]
    pub subscribers: Vec<u64>,
}

/// A channel the receiving user unsubscribed from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemovedSubscription {
    /// The channel id.
    pub stream_id: u64,
    /// The channel name.
    pub name: Option<String>,
}

/// `subscription` events, by `op`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SubscriptionEvent {
    /// The receiving user subscribed to channels.
    Add {
        /// The new subscriptions.
        #[serde(default, deserialize_with = "nullable")]
        subscriptions: Vec<Subscription>,
    },
    /// The receiving user unsubscribed from channels.
    Remove {
        /// The removed subscriptions.
        #[serde(default, deserialize_with = "nullable")]
        subscriptions: Vec<RemovedSubscription>,
    },
    /// A property of the receiving user's subscription changed.
    Update {
        /// The channel id.
        stream_id: u64,
        /// The property, e.g. `pin_to_top`.
        property: String,
        /// Its new value.
        #[serde(default)]
        value: Value,
    },
    /// Other users subscribed to channels.
    PeerAdd {
        /// The channels.
        #[serde(default, deserialize_with = "nullable")]
        stream_ids: Vec<u64>,
        /// The users.
        #[serde(default, deserialize_with = "nullable")]
        user_ids: Vec<u64>,
    },
    /// Other users unsubscribed from channels.
    PeerRemove {
        /// The channels.
        #[serde(default, deserialize_with = "nullable")]
        stream_ids: Vec<u64>,
        /// The users.
        #[serde(default, deserialize_with = "nullable")]
        user_ids: Vec<u64>,
    },
}

/// A deleted channel in the legacy `streams` list of `stream` `delete`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeletedStream {
    /// The channel id.
    pub stream_id: u64,
}

/// `stream` events, by `op`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StreamEvent {
    /// Channels were created (or became visible to the user).
    Create {
        /// The channels.
        #[serde(default, deserialize_with = "nullable")]
        streams: Vec<Stream>,
    },
    /// Channels were deleted (archived).
    Delete {
        /// The channels (legacy field).
        #[serde(default, deserialize_with = "nullable")]
        streams: Vec<DeletedStream>,
        /// The channel ids.
        #[serde(default, deserialize_with = "nullable")]
        stream_ids: Vec<u64>,
    },
    /// A channel property changed.
    Update {
        /// The channel id.
        stream_id: u64,
        /// The channel name (the old name when `property` is `name`).
        name: Option<String>,
        /// The property, e.g. `name`, `description`, `invite_only`.
        property: String,
        /// Its new value.
        #[serde(default)]
        value: Value,
        /// The new rendered description, when `property` is `description`.
        rendered_description: Option<String>,
        /// Sent along with `invite_only` changes.
        history_public_to_subscribers: Option<bool>,
        /// Sent along with `invite_only` changes.
        is_web_public: Option<bool>,
    },
}

impl StreamEvent {
    /// The ids of the channels a `delete` removed, from either field; empty
    /// for other ops.
    pub fn deleted_ids(&self) -> Vec<u64> {
        let StreamEvent::Delete {
            streams,
            stream_ids,
        } = self
        else {
            return Vec::new();
        };
        let mut ids = stream_ids.clone();
        for s in streams {
            if !ids.contains(&s.stream_id) {
                ids.push(s.stream_id);
            }
        }
        ids
    }
}
