//! Every Zulip fixture event (from `tests/fixtures/zulip/`) through
//! [`ZulipEvent`]: the modelled types land in their typed variants, the rest
//! in `Other`, unknown fields and types are tolerated.

use std::collections::BTreeSet;

use hookbox_sdk::zulip::{
    self, DisplayRecipient, PresenceStatus, ReactionOp, RealmEmojiEvent, RealmEvent,
    RealmUserEvent, StreamEvent, SubscriptionEvent, TypingOp, UserGroupEvent, UserPresence,
    ZulipError, ZulipEvent,
};
use serde_json::{Value, json};

fn fixture(file: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/zulip/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn events() -> Vec<Value> {
    let Value::Array(events) = fixture("zulip-events.json") else {
        panic!("zulip-events.json is not an array")
    };
    events
}

fn event(hookbox_type: &str) -> ZulipEvent {
    let raw = events()
        .into_iter()
        .find(|e| zulip::hookbox_type(e) == hookbox_type)
        .unwrap_or_else(|| panic!("no `{hookbox_type}` fixture"));
    ZulipEvent::from_value(raw).unwrap()
}

/// The variant a parsed event landed in.
fn variant(event: &ZulipEvent) -> &'static str {
    match event {
        ZulipEvent::Message(_) => "Message",
        ZulipEvent::UpdateMessage(_) => "UpdateMessage",
        ZulipEvent::DeleteMessage(_) => "DeleteMessage",
        ZulipEvent::Reaction(_) => "Reaction",
        ZulipEvent::Subscription(_) => "Subscription",
        ZulipEvent::Stream(_) => "Stream",
        ZulipEvent::RealmUser(_) => "RealmUser",
        ZulipEvent::Realm(_) => "Realm",
        ZulipEvent::UserGroup(_) => "UserGroup",
        ZulipEvent::Typing(_) => "Typing",
        ZulipEvent::UserStatus(_) => "UserStatus",
        ZulipEvent::Presence(_) => "Presence",
        ZulipEvent::RealmEmoji(_) => "RealmEmoji",
        ZulipEvent::Heartbeat => "Heartbeat",
        ZulipEvent::Other(_) => "Other",
        _ => "a variant this test does not know",
    }
}

/// Every modelled Hookbox type in the fixture file and its variant.
const TYPED: &[(&str, &str)] = &[
    ("message", "Message"),
    ("update_message", "UpdateMessage"),
    ("delete_message", "DeleteMessage"),
    ("reaction.add", "Reaction"),
    ("reaction.remove", "Reaction"),
    ("subscription.add", "Subscription"),
    ("subscription.remove", "Subscription"),
    ("subscription.update", "Subscription"),
    ("subscription.peer_add", "Subscription"),
    ("subscription.peer_remove", "Subscription"),
    ("stream.create", "Stream"),
    ("stream.delete", "Stream"),
    ("stream.update", "Stream"),
    ("realm_user.add", "RealmUser"),
    ("realm_user.remove", "RealmUser"),
    ("realm_user.update", "RealmUser"),
    ("realm.update", "Realm"),
    ("realm.update_dict", "Realm"),
    ("realm.deactivated", "Realm"),
    ("user_group.add", "UserGroup"),
    ("user_group.update", "UserGroup"),
    ("user_group.remove", "UserGroup"),
    ("user_group.add_members", "UserGroup"),
    ("user_group.remove_members", "UserGroup"),
    ("user_group.add_subgroups", "UserGroup"),
    ("user_group.remove_subgroups", "UserGroup"),
    ("typing.start", "Typing"),
    ("typing.stop", "Typing"),
    ("user_status", "UserStatus"),
    ("presence", "Presence"),
    ("realm_emoji.update", "RealmEmoji"),
    ("heartbeat", "Heartbeat"),
];

#[test]
fn fixture_file_holds_77_distinct_types() {
    let types: BTreeSet<String> = events().iter().map(zulip::hookbox_type).collect();
    assert_eq!(events().len(), 77);
    assert_eq!(types.len(), 77, "{types:?}");
    assert!(types.contains("subscription.peer_add") && types.contains("realm_user.update"));
}

#[test]
fn every_fixture_event_parses_into_its_variant() {
    let mut seen = BTreeSet::new();
    for raw in events() {
        let name = zulip::hookbox_type(&raw);
        let parsed = ZulipEvent::from_value(raw.clone())
            .unwrap_or_else(|e| panic!("`{name}` did not parse: {e}"));
        let expected = TYPED
            .iter()
            .find(|(ty, _)| *ty == name)
            .map_or("Other", |(_, v)| v);
        assert_eq!(variant(&parsed), expected, "`{name}`");
        if let ZulipEvent::Other(kept) = &parsed {
            assert_eq!(kept, &raw, "`{name}` kept its raw JSON");
        }
        seen.insert(name);
    }
    for (ty, _) in TYPED {
        assert!(seen.contains(*ty), "no fixture for `{ty}`");
    }
}

#[test]
fn message_fields() {
    let ZulipEvent::Message(event) = event("message") else {
        panic!()
    };
    let m = &event.message;
    assert_eq!(m.id, 31);
    assert_eq!(m.sender_id, Some(10));
    assert_eq!(m.sender_email.as_deref(), Some("user10@zulip.testserver"));
    assert_eq!(m.stream_id, Some(1));
    assert_eq!(m.stream_name(), Some("Denmark"));
    assert_eq!(m.topic(), Some("test"));
    assert!(!m.is_direct());
    assert!(m.content.starts_with("<p>First message"));
    assert_eq!(m.avatar_url, None, "null avatar_url");
    assert!(event.flags.is_empty());
}

#[test]
fn api_example_messages_are_stream_and_direct() {
    let examples = fixture("zulip-events-api-examples.json");
    let list = examples["get_events_200_response"]["events"]
        .as_array()
        .unwrap();
    let parsed: Vec<ZulipEvent> = list
        .iter()
        .map(|e| ZulipEvent::from_value(e.clone()).unwrap())
        .collect();
    let [ZulipEvent::Message(stream), ZulipEvent::Message(direct)] = &parsed[..] else {
        panic!("{parsed:?}")
    };
    assert_eq!(stream.message.stream_name(), Some("Denmark"));
    assert_eq!(
        stream.message.topic(),
        None,
        "the old example has no subject"
    );
    assert!(direct.message.is_direct());
    let Some(DisplayRecipient::Direct(users)) = &direct.message.display_recipient else {
        panic!()
    };
    assert_eq!(users[0].id, 31572);
    assert_eq!(users[0].full_name.as_deref(), Some("Hamlet of Denmark"));
    for error_body in [
        "BadEventQueueIdError",
        "RateLimitedError",
        "InvalidApiKeyError",
    ] {
        assert!(matches!(
            ZulipEvent::from_value(examples[error_body].clone()),
            Err(ZulipError::MissingType)
        ));
    }
}

#[test]
fn message_edits_and_deletes() {
    let ZulipEvent::UpdateMessage(u) = event("update_message") else {
        panic!()
    };
    assert_eq!((u.message_id, u.message_ids.clone()), (58, vec![58, 57]));
    assert!(u.content_changed() && u.moved());
    assert_eq!(u.subject.as_deref(), Some("new_topic"));
    let ZulipEvent::DeleteMessage(d) = event("delete_message") else {
        panic!()
    };
    assert_eq!(d.message_type, "private");
    assert_eq!(d.deleted_ids(), vec![37]);
}

#[test]
fn reactions() {
    for (ty, op, message_id) in [
        ("reaction.add", ReactionOp::Add, 32),
        ("reaction.remove", ReactionOp::Remove, 52),
    ] {
        let ZulipEvent::Reaction(r) = event(ty) else {
            panic!()
        };
        assert_eq!(r.op, op);
        assert_eq!(r.message_id, message_id);
        assert_eq!(r.reacting_user_id(), Some(10));
        assert_eq!(
            (r.emoji_name.as_str(), r.emoji_code.as_str()),
            ("tada", "1f389")
        );
    }
}

#[test]
fn subscriptions() {
    let ZulipEvent::Subscription(SubscriptionEvent::Add { subscriptions }) =
        event("subscription.add")
    else {
        panic!()
    };
    let s = &subscriptions[0];
    assert_eq!((s.stream.stream_id, s.stream.name.as_str()), (9, "test"));
    assert_eq!(s.color.as_deref(), Some("#76ce90"));
    assert_eq!(s.subscribers, vec![10]);
    assert_eq!(s.stream.creator_id, None);
    let ZulipEvent::Subscription(SubscriptionEvent::PeerAdd {
        stream_ids,
        user_ids,
    }) = event("subscription.peer_add")
    else {
        panic!()
    };
    assert_eq!((stream_ids, user_ids), (vec![9], vec![12]));
    let ZulipEvent::Subscription(SubscriptionEvent::Update {
        stream_id,
        property,
        value,
    }) = event("subscription.update")
    else {
        panic!()
    };
    assert_eq!(
        (stream_id, property.as_str(), value),
        (11, "pin_to_top", json!(true))
    );
    assert!(matches!(
        event("subscription.remove"),
        ZulipEvent::Subscription(SubscriptionEvent::Remove { subscriptions }) if subscriptions[0].stream_id == 9
    ));
    assert!(matches!(
        event("subscription.peer_remove"),
        ZulipEvent::Subscription(SubscriptionEvent::PeerRemove { .. })
    ));
}

#[test]
fn streams() {
    let ZulipEvent::Stream(StreamEvent::Create { streams }) = event("stream.create") else {
        panic!()
    };
    assert_eq!(
        (streams[0].stream_id, streams[0].name.as_str()),
        (12, "private")
    );
    assert_eq!(streams[0].invite_only, Some(true));
    let ZulipEvent::Stream(delete) = event("stream.delete") else {
        panic!()
    };
    assert_eq!(delete.deleted_ids(), vec![1, 2]);
    let ZulipEvent::Stream(StreamEvent::Update {
        stream_id,
        name,
        property,
        value,
        ..
    }) = event("stream.update")
    else {
        panic!()
    };
    assert_eq!((stream_id, name.as_deref()), (11, Some("test")));
    assert_eq!((property.as_str(), value), ("invite_only", json!(true)));
}

#[test]
fn realm_users() {
    let ZulipEvent::RealmUser(RealmUserEvent::Add { person }) = event("realm_user.add") else {
        panic!()
    };
    assert_eq!(
        (person.user_id, person.full_name.as_str()),
        (38, "full name")
    );
    assert_eq!((person.role, person.is_bot), (Some(400), Some(false)));
    let ZulipEvent::RealmUser(RealmUserEvent::Remove { person }) = event("realm_user.remove")
    else {
        panic!()
    };
    assert_eq!(person.user_id, 35);
    let ZulipEvent::RealmUser(RealmUserEvent::Update { person }) = event("realm_user.update")
    else {
        panic!()
    };
    assert_eq!(person.user_id, 10);
    assert_eq!(person.changes["avatar_version"], json!(3));
    assert!(!person.changes.contains_key("user_id"));
}

#[test]
fn realm_settings_and_emoji() {
    let ZulipEvent::Realm(RealmEvent::Update { property, value }) = event("realm.update") else {
        panic!()
    };
    assert_eq!(
        (property.as_str(), value),
        ("disallow_disposable_email_addresses", json!(false))
    );
    let ZulipEvent::Realm(RealmEvent::UpdateDict { property, data }) = event("realm.update_dict")
    else {
        panic!()
    };
    assert_eq!(property, "default");
    assert_eq!(data["message_content_edit_limit_seconds"], json!(600));
    assert_eq!(
        event("realm.deactivated"),
        ZulipEvent::Realm(RealmEvent::Deactivated { realm_id: 2 })
    );
    let ZulipEvent::RealmEmoji(RealmEmojiEvent::Update { realm_emoji }) =
        event("realm_emoji.update")
    else {
        panic!()
    };
    assert_eq!(realm_emoji["1"].name, "green_tick");
    assert_eq!(realm_emoji["2"].deactivated, Some(true));
}

#[test]
fn user_groups() {
    let ZulipEvent::UserGroup(UserGroupEvent::Add { group }) = event("user_group.add") else {
        panic!()
    };
    assert_eq!(
        (group.id, group.name.as_str(), group.members.clone()),
        (2, "backend", vec![12])
    );
    assert_eq!(
        event("user_group.add_members"),
        ZulipEvent::UserGroup(UserGroupEvent::AddMembers {
            group_id: 2,
            user_ids: vec![10]
        })
    );
    assert_eq!(
        event("user_group.remove"),
        ZulipEvent::UserGroup(UserGroupEvent::Remove { group_id: 2 })
    );
    let ZulipEvent::UserGroup(UserGroupEvent::Update { group_id, data }) =
        event("user_group.update")
    else {
        panic!()
    };
    assert_eq!(group_id, 2);
    assert!(
        data["description"]
            .as_str()
            .unwrap()
            .contains("security team")
    );
}

#[test]
fn typing_status_presence() {
    let ZulipEvent::Typing(t) = event("typing.start") else {
        panic!()
    };
    assert_eq!((t.op, t.message_type.as_str()), (TypingOp::Start, "direct"));
    assert_eq!(t.sender.user_id, 10);
    assert_eq!(
        t.recipients.iter().map(|r| r.user_id).collect::<Vec<_>>(),
        vec![8, 10]
    );
    let ZulipEvent::UserStatus(s) = event("user_status") else {
        panic!()
    };
    assert_eq!((s.user_id, s.away), (10, Some(true)));
    assert_eq!(s.status_text.as_deref(), Some("out to lunch"));
    let ZulipEvent::Presence(p) = event("presence") else {
        panic!()
    };
    assert_eq!(
        p.users(),
        vec![UserPresence {
            user_id: 10,
            status: PresenceStatus::Idle,
            timestamp: 1_594_825_445
        }]
    );
    assert!((p.server_timestamp.unwrap() - 1_594_825_445.32).abs() < 0.01);
}

/// Adds an unknown field to `value` and to every object inside it, except
/// the maps keyed by ids or client names (where a new key is a new entry).
fn add_unknown_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if !matches!(key.as_str(), "realm_emoji" | "presence" | "presences") {
                    add_unknown_fields(inner);
                }
            }
            map.insert("zz_new_field".into(), json!({"nested": [1, "two", null]}));
        }
        Value::Array(items) => items.iter_mut().for_each(add_unknown_fields),
        _ => {}
    }
}

#[test]
fn unknown_fields_everywhere_are_ignored() {
    for raw in events() {
        let name = zulip::hookbox_type(&raw);
        let plain = ZulipEvent::from_value(raw.clone()).unwrap();
        let mut extended = raw;
        add_unknown_fields(&mut extended);
        let parsed = ZulipEvent::from_value(extended)
            .unwrap_or_else(|e| panic!("`{name}` with unknown fields: {e}"));
        assert_eq!(variant(&parsed), variant(&plain), "`{name}`");
        // Fields kept as raw JSON (`Other`, `realm_user.update` changes,
        // `data` dicts) see the new field; every typed struct must not.
        let keeps_raw = matches!(
            name.as_str(),
            "realm_user.update" | "realm.update_dict" | "user_group.update"
        ) || plain.is_other();
        if !keeps_raw {
            assert_eq!(parsed, plain, "`{name}` changed with unknown fields");
        }
    }
}

#[test]
fn newer_server_shapes() {
    let modern = json!({"type": "presence", "id": 4, "server_timestamp": 1_700_000_000,
        "presences": {"10": {"active_timestamp": 1_700_000_000, "idle_timestamp": 1_699_999_000},
                      "11": {"active_timestamp": 1_600_000_000, "idle_timestamp": 1_699_999_990}}});
    let ZulipEvent::Presence(p) = ZulipEvent::from_value(modern).unwrap() else {
        panic!()
    };
    let users = p.users();
    assert_eq!(users.len(), 2);
    assert_eq!(
        (users[0].user_id, users[0].status),
        (10, PresenceStatus::Active)
    );
    assert_eq!(
        (users[1].status, users[1].timestamp),
        (PresenceStatus::Idle, 1_699_999_990)
    );

    let add = json!({"type": "realm_emoji", "op": "add", "emoji": {"id": "3", "name": "ship",
        "source_url": "/e/3.png", "deactivated": false, "author_id": 9, "still_url": null}});
    assert!(matches!(ZulipEvent::from_value(add).unwrap(),
        ZulipEvent::RealmEmoji(RealmEmojiEvent::Add { emoji }) if emoji.name == "ship"));
    let one = json!({"type": "realm_emoji", "op": "update_one", "emoji_id": "3",
        "data": {"deactivated": true}});
    assert!(matches!(ZulipEvent::from_value(one).unwrap(),
        ZulipEvent::RealmEmoji(RealmEmojiEvent::UpdateOne { emoji_id, .. }) if emoji_id == "3"));

    let bulk_delete = json!({"type": "delete_message", "message_type": "stream",
        "message_ids": [5, 6], "stream_id": 1, "topic": "t"});
    let ZulipEvent::DeleteMessage(d) = ZulipEvent::from_value(bulk_delete).unwrap() else {
        panic!()
    };
    assert_eq!(d.deleted_ids(), vec![5, 6]);

    let stream = json!({"type": "stream", "op": "create", "streams": [{"stream_id": 5,
        "name": "ops", "subscriber_count": 3, "folder_id": null, "topics_policy": "inherit",
        "can_send_message_group": {"direct_members": [1], "direct_subgroups": []}}]});
    let ZulipEvent::Stream(StreamEvent::Create { streams }) =
        ZulipEvent::from_value(stream).unwrap()
    else {
        panic!()
    };
    assert_eq!(streams[0].subscriber_count, Some(3));

    let typing = json!({"type": "typing", "op": "stop", "message_type": "stream",
        "sender": {"user_id": 4, "email": "a@b"}, "stream_id": 7, "topic": "ci"});
    let ZulipEvent::Typing(t) = ZulipEvent::from_value(typing).unwrap() else {
        panic!()
    };
    assert_eq!(
        (t.op, t.stream_id, t.recipients.len()),
        (TypingOp::Stop, Some(7), 0)
    );
}

#[test]
fn unknown_types_stay_raw() {
    for raw in [
        json!({"type": "channel_folder", "op": "add", "channel_folder": {"id": 1}}),
        json!({"type": "navigation_view", "op": "remove", "fragment": "inbox"}),
        json!({"type": "has_webex_token", "value": true}),
        json!({"type": "stream", "op": "archive_everything"}),
    ] {
        assert_eq!(
            ZulipEvent::from_value(raw.clone()).unwrap(),
            ZulipEvent::Other(raw)
        );
    }
}
