//! Example handler: keeps each Zulip user's latest status (`user_status`
//! events) and presence (`presence` events) in KV, as JSON under
//! `status:<user_id>` and `presence:<user_id>`.
//!
//! `user_status` events carry only the fields that changed, so each one is
//! merged into the stored status; an empty text or emoji name clears it.
//! Presence reports can arrive out of order, so an older report never
//! overwrites a newer one. Both updates are read-modify-write cycles made
//! atomic with `compare_and_swap`, retried on conflict.

use hookbox_sdk::zulip::{PresenceEvent, UserStatusEvent, ZulipEvent};
use hookbox_sdk::{Event, Handler, HandlerError, debug, info, kv};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How often a read-modify-write cycle is tried before giving up with a
/// retryable error (a conflict means another delivery wrote the same key).
const MAX_ATTEMPTS: usize = 5;

/// A user's status as stored under `status:<user_id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatus {
    /// Whether the user is away.
    pub away: bool,
    /// The status text, if set.
    pub status_text: Option<String>,
    /// The status emoji's name, if set.
    pub emoji_name: Option<String>,
    /// The status emoji's code, if set.
    pub emoji_code: Option<String>,
    /// When Hookbox last changed this record (host clock, ms).
    pub updated_ms: u64,
}

/// A user's presence as stored under `presence:<user_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPresence {
    /// `active` or `idle`.
    pub status: String,
    /// The report time, in seconds since the Unix epoch (Zulip's clock).
    pub timestamp: i64,
}

/// Tracks user status and presence.
#[derive(Debug)]
pub struct UserStatusTracker;

impl Handler for UserStatusTracker {
    fn handle(event: Event) -> Result<(), HandlerError> {
        match event.zulip()? {
            ZulipEvent::UserStatus(status) => record_status(&status),
            ZulipEvent::Presence(presence) => record_presence(&presence),
            _ => {
                debug!(event_type = event.event_type; "Ignored an event");
                Ok(())
            }
        }
    }
}

hookbox_sdk::export_handler!(UserStatusTracker);

fn record_status(event: &UserStatusEvent) -> Result<(), HandlerError> {
    let key = format!("status:{}", event.user_id);
    let now = hookbox_sdk::now_ms();
    update_json(&key, |old: Option<StoredStatus>| {
        let mut status = old.unwrap_or_default();
        if let Some(away) = event.away {
            status.away = away;
        }
        if let Some(text) = &event.status_text {
            status.status_text = non_empty(text);
        }
        if let Some(name) = &event.emoji_name {
            status.emoji_name = non_empty(name);
            status.emoji_code = event.emoji_code.as_deref().and_then(non_empty);
        }
        status.updated_ms = now;
        Some(status)
    })?;
    info!(user_id = event.user_id; "Recorded a status change");
    Ok(())
}

fn record_presence(event: &PresenceEvent) -> Result<(), HandlerError> {
    for user in event.users() {
        let key = format!("presence:{}", user.user_id);
        let new = StoredPresence {
            status: user.status.as_str().to_owned(),
            timestamp: user.timestamp,
        };
        let changed = update_json(&key, |old: Option<StoredPresence>| match old {
            Some(old) if old.timestamp > new.timestamp => None,
            _ => Some(new.clone()),
        })?;
        if changed {
            info!(user_id = user.user_id, status = new.status; "Recorded presence");
        } else {
            debug!(user_id = user.user_id; "Ignored an out-of-date presence report");
        }
    }
    Ok(())
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Atomically replaces the JSON value at `key` with `update(old)`; `None`
/// from `update` leaves it alone. Returns whether it wrote. A conflicting
/// concurrent write makes it start over, up to [`MAX_ATTEMPTS`] times.
fn update_json<T, F>(key: &str, mut update: F) -> Result<bool, HandlerError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Option<T>,
{
    for _ in 0..MAX_ATTEMPTS {
        let old_bytes = kv::get(key);
        let old = match &old_bytes {
            Some(bytes) => Some(serde_json::from_slice(bytes).map_err(|e| {
                HandlerError::fatal(format!("stored `{key}` is not the expected JSON: {e}"))
            })?),
            None => None,
        };
        let Some(new) = update(old) else {
            return Ok(false);
        };
        let new_bytes = serde_json::to_vec(&new)?;
        if kv::compare_and_swap(key, old_bytes.as_deref(), Some(&new_bytes)) {
            return Ok(true);
        }
    }
    Err(HandlerError::retryable(format!(
        "`{key}` kept changing during {MAX_ATTEMPTS} update attempts"
    )))
}

#[cfg(test)]
mod tests {
    use hookbox_sdk::testing::TestHost;
    use serde_json::{Value, json};

    use super::*;

    fn fixture(ty: &str) -> Value {
        let path = format!(
            "{}/../../tests/fixtures/zulip/zulip-events.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let events: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap();
        events.into_iter().find(|e| e["type"] == ty).unwrap()
    }

    fn run(host: &mut TestHost, zulip: &Value) -> Result<(), HandlerError> {
        host.run::<UserStatusTracker>(Event::from_zulip(zulip).tenant("zulip").build())
    }

    fn status(host: &TestHost, user: u64) -> StoredStatus {
        host.kv_get_json("zulip", &format!("status:{user}"))
            .unwrap()
    }

    #[test]
    fn stores_a_status_from_the_fixture() {
        let mut host = TestHost::new();
        run(&mut host, &fixture("user_status")).unwrap();
        assert_eq!(
            status(&host, 10),
            StoredStatus {
                away: true,
                status_text: Some("out to lunch".into()),
                emoji_name: Some("car".into()),
                emoji_code: Some("1f697".into()),
                updated_ms: host.now_ms(),
            }
        );
    }

    #[test]
    fn partial_updates_merge_and_empty_values_clear() {
        let mut host = TestHost::new();
        run(&mut host, &fixture("user_status")).unwrap();
        host.set_now_ms(host.now_ms() + 5);
        run(
            &mut host,
            &json!({"type": "user_status", "user_id": 10, "status_text": ""}),
        )
        .unwrap();
        let s = status(&host, 10);
        assert_eq!(s.status_text, None);
        assert!(s.away, "away kept");
        assert_eq!(s.emoji_name.as_deref(), Some("car"), "emoji kept");
        assert_eq!(s.updated_ms, host.now_ms());
        run(
            &mut host,
            &json!({"type": "user_status", "user_id": 10, "away": false,
                    "emoji_name": "", "emoji_code": "", "reaction_type": ""}),
        )
        .unwrap();
        let s = status(&host, 10);
        assert!(!s.away);
        assert_eq!((s.emoji_name, s.emoji_code), (None, None));
    }

    #[test]
    fn stores_presence_and_ignores_older_reports() {
        let mut host = TestHost::new();
        run(&mut host, &fixture("presence")).unwrap();
        let stored: StoredPresence = host.kv_get_json("zulip", "presence:10").unwrap();
        assert_eq!(
            stored,
            StoredPresence {
                status: "idle".into(),
                timestamp: 1_594_825_445
            }
        );
        let older = json!({"type": "presence", "user_id": 10, "server_timestamp": 1.0,
            "presence": {"website": {"client": "website", "status": "active",
                                     "timestamp": 1_594_825_000, "pushable": false}}});
        run(&mut host, &older).unwrap();
        let kept: StoredPresence = host.kv_get_json("zulip", "presence:10").unwrap();
        assert_eq!(kept.status, "idle");
    }

    #[test]
    fn modern_presence_updates_every_user() {
        let mut host = TestHost::new();
        let modern = json!({"type": "presence", "presences": {
            "7": {"active_timestamp": 200, "idle_timestamp": 100},
            "8": {"active_timestamp": 100, "idle_timestamp": 300}}});
        run(&mut host, &modern).unwrap();
        let seven: StoredPresence = host.kv_get_json("zulip", "presence:7").unwrap();
        let eight: StoredPresence = host.kv_get_json("zulip", "presence:8").unwrap();
        assert_eq!((seven.status.as_str(), seven.timestamp), ("active", 200));
        assert_eq!((eight.status.as_str(), eight.timestamp), ("idle", 300));
    }

    #[test]
    fn other_events_change_nothing() {
        let mut host = TestHost::new();
        run(&mut host, &fixture("message")).unwrap();
        assert!(host.kv_keys("zulip").is_empty());
    }

    #[test]
    fn update_retries_after_a_conflicting_write() {
        let mut host = TestHost::new();
        let mut calls = 0;
        let wrote = host.within("t", || {
            update_json("k", |old: Option<u32>| {
                calls += 1;
                if calls == 1 {
                    // Another delivery writes between our read and our swap.
                    kv::set_json("k", &40u32, None).unwrap();
                }
                Some(old.unwrap_or(0) + 1)
            })
        });
        assert!(wrote.unwrap());
        assert_eq!(calls, 2);
        assert_eq!(host.kv_get_json::<u32>("t", "k"), Some(41));
    }

    #[test]
    fn update_gives_up_retryably_under_constant_conflict() {
        let mut host = TestHost::new();
        let result = host.within("t", || {
            update_json("k", |old: Option<u32>| {
                kv::increment("k", 1);
                Some(old.unwrap_or(0))
            })
        });
        let err = result.unwrap_err();
        assert!(err.retryable, "{err}");
        assert_eq!(host.kv_get_string("t", "k").as_deref(), Some("5"));
    }

    #[test]
    fn corrupt_stored_value_is_fatal() {
        let mut host = TestHost::new();
        host.kv_set("zulip", "status:10", "not json", None);
        let err = run(&mut host, &fixture("user_status")).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("status:10"), "{}", err.message);
    }
}
