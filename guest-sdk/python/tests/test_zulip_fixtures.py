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
        if not isinstance(plain, zulip.OtherEvent):
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
