//! Organisation events: `realm` (update, update_dict, deactivated) and
//! `realm_emoji` (update, add, update_one).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::nullable;

/// `realm` events, by `op`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RealmEvent {
    /// One organisation setting changed.
    Update {
        /// The setting, e.g. `name`, `invite_required`.
        property: String,
        /// Its new value.
        #[serde(default)]
        value: Value,
    },
    /// Several related settings changed together.
    UpdateDict {
        /// The group: `default`, `icon`, `logo` or `night_logo`.
        property: String,
        /// The changed settings.
        #[serde(default, deserialize_with = "nullable")]
        data: Map<String, Value>,
    },
    /// The organisation was deactivated.
    Deactivated {
        /// Its id.
        realm_id: u64,
    },
}

/// A custom emoji.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RealmEmoji {
    /// Its id (a decimal string).
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// Its name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The image URL.
    pub source_url: Option<String>,
    /// A still image URL, for animated emoji.
    pub still_url: Option<String>,
    /// Whether it was deactivated.
    pub deactivated: Option<bool>,
    /// Who uploaded it.
    pub author_id: Option<u64>,
}

/// `realm_emoji` events, by `op`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RealmEmojiEvent {
    /// The full set of custom emoji, by id.
    Update {
        /// Id → emoji.
        #[serde(default, deserialize_with = "nullable")]
        realm_emoji: BTreeMap<String, RealmEmoji>,
    },
    /// One emoji was added (newer servers).
    Add {
        /// The emoji.
        emoji: RealmEmoji,
    },
    /// One emoji changed (newer servers).
    UpdateOne {
        /// Its id.
        emoji_id: String,
        /// The changed fields, e.g. `deactivated`.
        #[serde(default, deserialize_with = "nullable")]
        data: Map<String, Value>,
    },
}
