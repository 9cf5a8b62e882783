//! User events: `realm_user`, `user_status`, `presence`, `typing` and
//! `user_group`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::nullable;

/// A user, as `realm_user` `add` describes them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RealmUser {
    /// The user id.
    pub user_id: u64,
    /// The (possibly fake) email.
    pub email: Option<String>,
    /// The real email, when visible.
    pub delivery_email: Option<String>,
    /// The full name.
    #[serde(default, deserialize_with = "nullable")]
    pub full_name: String,
    /// The role: 100 owner, 200 admin, 300 moderator, 400 member, 600 guest.
    pub role: Option<u32>,
    /// Whether the user is a bot.
    pub is_bot: Option<bool>,
    /// Whether the account is active.
    pub is_active: Option<bool>,
    /// The user's time zone.
    pub timezone: Option<String>,
    /// When the user joined (ISO 8601).
    pub date_joined: Option<String>,
    /// The avatar URL.
    pub avatar_url: Option<String>,
    /// The bot's owner, for bots.
    pub bot_owner_id: Option<u64>,
}

/// A deactivated user, as `realm_user` `remove` describes them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemovedUser {
    /// The user id.
    pub user_id: u64,
    /// The full name.
    pub full_name: Option<String>,
}

/// What `realm_user` `update` changed: `user_id` and one group of changed
/// properties (`full_name`, `role`, `avatar_url`, `timezone`, `is_active`,
/// `new_email`, `custom_profile_field`, …), kept as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RealmUserUpdate {
    /// The user id.
    pub user_id: u64,
    /// The changed properties.
    #[serde(flatten)]
    pub changes: Map<String, Value>,
}

impl RealmUserUpdate {
    /// The new full name, when it changed.
    pub fn full_name(&self) -> Option<&str> {
        self.changes.get("full_name").and_then(Value::as_str)
    }

    /// The new role, when it changed.
    pub fn role(&self) -> Option<u64> {
        self.changes.get("role").and_then(Value::as_u64)
    }
}

/// `realm_user` events, by `op`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RealmUserEvent {
    /// A user joined (or became visible).
    Add {
        /// The user.
        person: RealmUser,
    },
    /// A user was deactivated.
    Remove {
        /// The user.
        person: RemovedUser,
    },
    /// A user's properties changed.
    Update {
        /// What changed.
        person: RealmUserUpdate,
    },
}

/// `user_status`: a user changed their status. Only the fields that
/// changed are present.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserStatusEvent {
    /// The user id.
    pub user_id: u64,
    /// Whether the user is away (deprecated; newer clients use presence).
    pub away: Option<bool>,
    /// The status text; empty clears it.
    pub status_text: Option<String>,
    /// The status emoji's name; empty clears it.
    pub emoji_name: Option<String>,
    /// The status emoji's code.
    pub emoji_code: Option<String>,
    /// The status emoji's type.
    pub reaction_type: Option<String>,
}

/// `presence`: users' online status, in the legacy per-client shape
/// (`user_id`, `presence`) or the modern per-user shape (`presences`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PresenceEvent {
    /// The user (legacy shape).
    pub user_id: Option<u64>,
    /// The user's email (legacy shape).
    pub email: Option<String>,
    /// The server's time, in seconds since the Unix epoch.
    pub server_timestamp: Option<f64>,
    /// Client name → that client's report (legacy shape).
    #[serde(default, deserialize_with = "nullable")]
    pub presence: BTreeMap<String, ClientPresence>,
    /// User id (as text) → last active/idle times (modern shape).
    #[serde(default, deserialize_with = "nullable")]
    pub presences: BTreeMap<String, ModernPresence>,
}

/// One client's presence report (legacy shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClientPresence {
    /// The client, e.g. `website`.
    pub client: Option<String>,
    /// `active` or `idle`.
    #[serde(default, deserialize_with = "nullable")]
    pub status: String,
    /// When, in seconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Whether the client can receive push notifications.
    pub pushable: Option<bool>,
}

/// A user's last active and last idle times (modern shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModernPresence {
    /// When last active, in seconds since the Unix epoch.
    pub active_timestamp: Option<i64>,
    /// When last online (active or idle), in seconds since the Unix epoch.
    pub idle_timestamp: Option<i64>,
}

/// Whether a user is active or merely online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceStatus {
    /// Interacting with a client.
    Active,
    /// Online but not interacting.
    Idle,
}

impl PresenceStatus {
    /// `active` or `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Active => "active",
            PresenceStatus::Idle => "idle",
        }
    }
}

/// One user's presence, summarised from either shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPresence {
    /// The user id.
    pub user_id: u64,
    /// Active if any client (legacy) or the latest report (modern) says so.
    pub status: PresenceStatus,
    /// The latest report time, in seconds since the Unix epoch.
    pub timestamp: i64,
}

impl PresenceEvent {
    /// Every user's presence in the event, from either shape.
    pub fn users(&self) -> Vec<UserPresence> {
        let mut users = Vec::new();
        if let Some(user_id) = self.user_id.filter(|_| !self.presence.is_empty()) {
            let active = self.presence.values().any(|c| c.status == "active");
            let timestamp = self.presence.values().filter_map(|c| c.timestamp).max();
            users.push(UserPresence {
                user_id,
                status: if active {
                    PresenceStatus::Active
                } else {
                    PresenceStatus::Idle
                },
                timestamp: timestamp.unwrap_or_else(|| self.server_seconds()),
            });
        }
        for (id, p) in &self.presences {
            let Ok(user_id) = id.parse() else { continue };
            let active = p.active_timestamp.unwrap_or(i64::MIN);
            let idle = p.idle_timestamp.unwrap_or(i64::MIN);
            users.push(UserPresence {
                user_id,
                status: if active >= idle {
                    PresenceStatus::Active
                } else {
                    PresenceStatus::Idle
                },
                timestamp: active.max(idle).max(0),
            });
        }
        users
    }

    fn server_seconds(&self) -> i64 {
        // Truncation is intended: whole seconds, like the other timestamps.
        self.server_timestamp.map_or(0, |t| t as i64)
    }
}

/// Whether someone started or stopped typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypingOp {
    /// `typing` `start`.
    Start,
    /// `typing` `stop`.
    Stop,
}

/// A user in a typing notification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TypingUser {
    /// The user id.
    pub user_id: u64,
    /// The user's email.
    pub email: Option<String>,
}

/// `typing` `start`/`stop`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TypingEvent {
    /// Started or stopped.
    pub op: TypingOp,
    /// `direct` (or legacy `private`) or `stream`.
    #[serde(default, deserialize_with = "nullable")]
    pub message_type: String,
    /// Who is typing.
    pub sender: TypingUser,
    /// The direct-message participants.
    #[serde(default, deserialize_with = "nullable")]
    pub recipients: Vec<TypingUser>,
    /// The channel, for channel messages.
    pub stream_id: Option<u64>,
    /// The topic, for channel messages.
    pub topic: Option<String>,
}

/// A user group, as `user_group` `add` describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserGroup {
    /// The group id.
    pub id: u64,
    /// The name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The description.
    pub description: Option<String>,
    /// The direct members' user ids.
    #[serde(default, deserialize_with = "nullable")]
    pub members: Vec<u64>,
    /// The direct subgroups' ids.
    #[serde(default, deserialize_with = "nullable")]
    pub direct_subgroup_ids: Vec<u64>,
    /// Who created it.
    pub creator_id: Option<u64>,
    /// When, in seconds since the Unix epoch.
    pub date_created: Option<i64>,
    /// Whether it is a system group (role-based).
    pub is_system_group: Option<bool>,
    /// Whether it is deactivated.
    pub deactivated: Option<bool>,
}

/// `user_group` events, by `op`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UserGroupEvent {
    /// A group was created.
    Add {
        /// The group.
        group: UserGroup,
    },
    /// Group properties changed.
    Update {
        /// The group id.
        group_id: u64,
        /// The changed properties (`name`, `description`, `can_*_group`, …).
        #[serde(default, deserialize_with = "nullable")]
        data: Map<String, Value>,
    },
    /// A group was deleted.
    Remove {
        /// The group id.
        group_id: u64,
    },
    /// Users joined a group.
    AddMembers {
        /// The group id.
        group_id: u64,
        /// The users.
        #[serde(default, deserialize_with = "nullable")]
        user_ids: Vec<u64>,
    },
    /// Users left a group.
    RemoveMembers {
        /// The group id.
        group_id: u64,
        /// The users.
        #[serde(default, deserialize_with = "nullable")]
        user_ids: Vec<u64>,
    },
    /// Subgroups were added to a group.
    AddSubgroups {
        /// The group id.
        group_id: u64,
        /// The subgroups.
        #[serde(default, deserialize_with = "nullable")]
        direct_subgroup_ids: Vec<u64>,
    },
    /// Subgroups were removed from a group.
    RemoveSubgroups {
        /// The group id.
        group_id: u64,
        /// The subgroups.
        #[serde(default, deserialize_with = "nullable")]
        direct_subgroup_ids: Vec<u64>,
    },
}
