"""The keyword responder against the SDK's fake host."""

import json
import pathlib

import pytest

import hookbox_sdk as hb
from hookbox_sdk.testing import TestHost

import app

HERE = pathlib.Path(__file__).resolve().parent
MANIFEST = json.loads((HERE / "manifest.json").read_text())


def message(content, **extra):
    msg = {"id": 5, "sender_id": 10, "content": content, "type": "stream",
           "stream_id": 1, "display_recipient": "Denmark", "subject": "castle", **extra}
    return hb.Event.from_zulip({"type": "message", "message": msg, "flags": []}, tenant="acme")


def host():
    return TestHost(config=MANIFEST["config"], capabilities=MANIFEST["capabilities"])


def test_a_keyword_gets_a_reply_and_a_reaction():
    h = host()
    h.run(app.handle, message("<p>can we Deploy today?</p>"))
    reply, reaction = h.emitted
    assert reply.payload == {"type": "stream", "to": "Denmark", "stream_id": 1, "topic": "castle",
                             "content": "Noted: deploy (message 1 from you)."}
    assert reaction.payload == {"message_id": 5, "emoji_name": "eyes"}
    assert h.kv_get_str("acme", "messages:10") == "1"


def test_other_messages_are_counted_only():
    h = host()
    h.run(app.handle, message("lunch?"))
    assert h.emitted == [] and h.kv_get_str("acme", "messages:10") == "1"


def test_other_events_are_ignored():
    h = host()
    h.run(app.handle, hb.Event.from_zulip({"type": "reaction", "op": "add", "message_id": 1,
                                           "user_id": 2, "emoji_name": "x"}))
    assert h.kv == {} and h.logs[0].message == "Ignored"


def test_it_needs_no_clock():
    assert "clock" not in MANIFEST["capabilities"]


def test_a_malformed_message_is_a_fatal_error():
    bad = hb.Event.build("message", {"type": "message", "message": {"id": "x"}})
    with pytest.raises(hb.HandlerError) as e:
        host().run(app.handle, bad)
    assert not e.value.retryable
