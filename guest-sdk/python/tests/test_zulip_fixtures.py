"""Every Zulip fixture event (tests/fixtures/zulip/, the same files the Rust
SDK's Zulip types are tested with) through hookbox_sdk.zulip.parse."""

import json
import pathlib

import pytest

from hookbox_sdk import HandlerError, zulip

FIXTURES = pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "zulip"

TYPED = {
    "message": zulip.MessageEvent,
    "update_message": zulip.UpdateMessageEvent,
    "delete_message": zulip.DeleteMessageEvent,
    "reaction.add": zulip.ReactionEvent,
    "reaction.remove": zulip.ReactionEvent,
    **{f"subscription.{op}": zulip.SubscriptionEvent
       for op in ("add", "remove", "update", "peer_add", "peer_remove")},
    **{f"stream.{op}": zulip.StreamEvent for op in ("create", "delete", "update")},
    **{f"realm_user.{op}": zulip.RealmUserEvent for op in ("add", "remove", "update")},
    **{f"realm.{op}": zulip.RealmEvent for op in ("update", "update_dict", "deactivated")},
    **{f"user_group.{op}": zulip.UserGroupEvent
       for op in ("add", "update", "remove", "add_members", "remove_members", "add_subgroups",
                  "remove_subgroups")},
    "typing.start": zulip.TypingEvent,
    "typing.stop": zulip.TypingEvent,
    "user_status": zulip.UserStatusEvent,
    "presence": zulip.PresenceEvent,
    "realm_emoji.update": zulip.RealmEmojiEvent,
    "heartbeat": zulip.HeartbeatEvent,
}


def events():
    return json.loads((FIXTURES / "zulip-events.json").read_text())


def event(hookbox_type):
    raw = next(e for e in events() if zulip.hookbox_type(e) == hookbox_type)
    return zulip.parse(raw)


def test_fixture_file_holds_77_distinct_types():
    names = {zulip.hookbox_type(e) for e in events()}
    assert len(events()) == 77 and len(names) == 77
    assert {"subscription.peer_add", "realm_user.update"} <= names


def test_every_fixture_event_parses_into_its_class():
    seen = set()
    for raw in events():
        name = zulip.hookbox_type(raw)
        parsed = zulip.parse(raw)
        assert isinstance(parsed, TYPED.get(name, zulip.OtherEvent)), name
        if isinstance(parsed, zulip.OtherEvent):
            assert parsed.raw == raw and parsed.type == name
        seen.add(name)
    assert set(TYPED) <= seen


def test_message_fields():
    e = event("message")
    m = e.message
    assert (m.id, m.sender_id, m.sender_email) == (31, 10, "user10@zulip.testserver")
    assert (m.stream_id, m.stream_name, m.topic) == (1, "Denmark", "test")
    assert not m.is_direct and m.content.startswith("<p>First message")
    assert m.avatar_url is None and e.flags == []


def test_api_example_messages_are_stream_and_direct():
    examples = json.loads((FIXTURES / "zulip-events-api-examples.json").read_text())
    stream, direct = [zulip.parse(e) for e in examples["get_events_200_response"]["events"]]
    assert stream.message.stream_name == "Denmark" and stream.message.topic is None
    assert direct.message.is_direct
    assert direct.message.direct_recipients[0].id == 31572
    assert direct.message.direct_recipients[0].full_name == "Hamlet of Denmark"
    for body in ("BadEventQueueIdError", "RateLimitedError", "InvalidApiKeyError"):
        with pytest.raises(HandlerError, match="no string `type`"):
            zulip.parse(examples[body])


def test_edits_deletes_reactions():
    u = event("update_message")
    assert (u.message_id, u.message_ids) == (58, [58, 57])
    assert u.content_changed and u.moved and u.subject == "new_topic"
    d = event("delete_message")
    assert d.message_type == "private" and d.deleted_ids == [37]
    for name, op, message_id in (("reaction.add", "add", 32), ("reaction.remove", "remove", 52)):
        r = event(name)
        assert (r.op, r.message_id, r.user_id) == (op, message_id, 10)
        assert (r.emoji_name, r.emoji_code) == ("tada", "1f389")


def add_unknown_fields(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("realm_emoji", "presence", "presences"):
                add_unknown_fields(v)
        value["zz_new_field"] = {"nested": [1, "two", None]}
    elif isinstance(value, list):
        for v in value:
            add_unknown_fields(v)


def test_unknown_fields_everywhere_are_ignored():
    for raw in events():
        plain = zulip.parse(json.loads(json.dumps(raw)))
        add_unknown_fields(raw)
        parsed = zulip.parse(raw)
        assert type(parsed) is type(plain)
        # Fields kept as raw JSON (`realm_user.update` changes, `data`
        # dicts) see the new field; every typed one must not.
        keeps_raw = zulip.hookbox_type(raw) in ("realm_user.update", "realm.update_dict",
                                                "user_group.update")
        if not isinstance(plain, zulip.OtherEvent) and not keeps_raw:
            assert parsed == plain, zulip.hookbox_type(raw)


def test_malformed_known_event_is_fatal_and_named():
    with pytest.raises(HandlerError, match="`reaction.add`") as e:
        zulip.parse({"type": "reaction", "op": "add", "message_id": "x"})
    assert not e.value.retryable
    with pytest.raises(HandlerError):
        zulip.parse({"type": "message", "flags": []})


def test_hookbox_type_rule():
    cases = [
        ({"type": "message"}, "message"),
        ({"type": "reaction", "op": "add"}, "reaction.add"),
        ({"type": "realm", "op": ""}, "realm"),
        ({"type": "realm", "op": 3}, "realm"),
        ({"op": "add"}, "unknown"),
        (["message"], "unknown"),
    ]
    for raw, want in cases:
        assert zulip.hookbox_type(raw) == want


def test_unknown_types_stay_raw():
    raw = {"type": "channel_folder", "op": "add", "channel_folder": {"id": 1}}
    assert zulip.parse(raw) == zulip.OtherEvent("channel_folder.add", raw)


# The same values the Rust SDK's tests check (guest-sdk/tests/sdk/zulip_fixtures.rs).
def test_subscriptions():
    add = event("subscription.add")
    s = add.subscriptions[0]
    assert (s.stream.stream_id, s.stream.name, s.color) == (9, "test", "#76ce90")
    assert s.subscribers == [10] and s.stream.creator_id is None
    peer = event("subscription.peer_add")
    assert (peer.stream_ids, peer.user_ids) == ([9], [12])
    u = event("subscription.update")
    assert (u.stream_id, u.property, u.value) == (11, "pin_to_top", True)
    assert event("subscription.remove").subscriptions[0].stream_id == 9
    assert event("subscription.peer_remove").op == "peer_remove"


def test_streams():
    create = event("stream.create")
    assert (create.streams[0].stream_id, create.streams[0].name) == (12, "private")
    assert create.streams[0].invite_only is True
    assert event("stream.delete").deleted_ids == [1, 2]
    u = event("stream.update")
    assert (u.stream_id, u.name, u.property, u.value) == (11, "test", "invite_only", True)


def test_realm_users():
    add = event("realm_user.add").person
    assert (add.user_id, add.full_name, add.role, add.is_bot) == (38, "full name", 400, False)
    assert event("realm_user.remove").person.user_id == 35
    u = event("realm_user.update").person
    assert u.user_id == 10 and u.changes["avatar_version"] == 3 and "user_id" not in u.changes


def test_realm_settings_and_emoji():
    u = event("realm.update")
    assert (u.property, u.value) == ("disallow_disposable_email_addresses", False)
    d = event("realm.update_dict")
    assert d.property == "default" and d.data["message_content_edit_limit_seconds"] == 600
    assert event("realm.deactivated") == zulip.RealmEvent("deactivated", realm_id=2)
    emoji = event("realm_emoji.update").realm_emoji
    assert emoji["1"].name == "green_tick" and emoji["2"].deactivated is True


def test_user_groups():
    g = event("user_group.add").group
    assert (g.id, g.name, g.members) == (2, "backend", [12])
    assert event("user_group.add_members") == zulip.UserGroupEvent("add_members", group_id=2, user_ids=[10])
    assert event("user_group.remove") == zulip.UserGroupEvent("remove", group_id=2)
    u = event("user_group.update")
    assert u.group_id == 2 and "security team" in u.data["description"]


def test_typing_status_presence():
    t = event("typing.start")
    assert (t.op, t.message_type, t.sender.user_id) == ("start", "direct", 10)
    assert [r.user_id for r in t.recipients] == [8, 10]
    s = event("user_status")
    assert (s.user_id, s.away, s.status_text) == (10, True, "out to lunch")
    p = event("presence")
    assert p.users() == [zulip.UserPresence(10, "idle", 1_594_825_445)]
    assert abs(p.server_timestamp - 1_594_825_445.32) < 0.01


def test_newer_server_shapes():
    modern = zulip.parse({"type": "presence", "id": 4, "server_timestamp": 1_700_000_000,
                          "presences": {"10": {"active_timestamp": 1_700_000_000, "idle_timestamp": 1_699_999_000},
                                        "11": {"active_timestamp": 1_600_000_000, "idle_timestamp": 1_699_999_990}}})
    users = modern.users()
    assert [(u.user_id, u.status) for u in users] == [(10, "active"), (11, "idle")]
    assert users[1].timestamp == 1_699_999_990
    add = zulip.parse({"type": "realm_emoji", "op": "add", "emoji": {"id": "3", "name": "ship",
                       "source_url": "/e/3.png", "deactivated": False, "author_id": 9, "still_url": None}})
    assert add.emoji.name == "ship"
    one = zulip.parse({"type": "realm_emoji", "op": "update_one", "emoji_id": "3", "data": {"deactivated": True}})
    assert one.emoji_id == "3"
    stream = zulip.parse({"type": "stream", "op": "create", "streams": [{
        "stream_id": 5, "name": "ops", "subscriber_count": 3, "folder_id": None, "topics_policy": "inherit",
        "can_send_message_group": {"direct_members": [1], "direct_subgroups": []}}]})
    assert stream.streams[0].subscriber_count == 3
    typing = zulip.parse({"type": "typing", "op": "stop", "message_type": "stream",
                          "sender": {"user_id": 4, "email": "a@b"}, "stream_id": 7, "topic": "ci"})
    assert (typing.op, typing.stream_id, typing.recipients) == ("stop", 7, [])


def test_unknown_ops_stay_raw_and_malformed_ones_are_fatal():
    assert isinstance(zulip.parse({"type": "stream", "op": "archive", "stream_id": 1}), zulip.OtherEvent)
    with pytest.raises(HandlerError, match="`user_group.remove`.*group_id"):
        zulip.parse({"type": "user_group", "op": "remove"})
    with pytest.raises(HandlerError, match="`typing.start`"):
        zulip.parse({"type": "typing", "op": "start", "sender": {"user_id": "x"}})
