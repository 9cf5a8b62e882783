"""The SDK against its fake host: KV, config, emit, logs, errors, grants,
and the Zulip reply helpers."""

import pytest

import hookbox_sdk as hb
from hookbox_sdk import zulip
from hookbox_sdk.testing import TestHost

STREAM_MESSAGE = {
    "type": "message",
    "message": {"id": 7, "sender_id": 10, "content": "deploy now", "type": "stream",
                "stream_id": 3, "display_recipient": "general", "subject": "ops"},
    "flags": ["mentioned"],
}


def counter(event):
    cfg = hb.config()
    n = hb.kv.increment(f"{cfg.get('prefix', 'n')}:{event.type}")
    hb.log.info("Counted", n=n, at=hb.now_ms())
    if n % 2 == 0:
        hb.emit("counted", {"n": n}, priority="low", metadata={"by": "counter"})


def test_kv_is_per_tenant_and_emits_need_success():
    host = TestHost(config={"prefix": "c"})
    for tenant in ("acme", "acme", "zeta"):
        host.run(counter, hb.Event.build("ping", tenant=tenant))
    assert host.kv_get_str("acme", "c:ping") == "2"
    assert host.kv_get_str("zeta", "c:ping") == "1"
    [emitted] = host.emitted
    assert (emitted.type, emitted.tenant, emitted.payload) == ("counted", "acme", {"n": 2})
    assert (emitted.priority, emitted.metadata) == ("low", {"by": "counter"})
    assert host.logs[0].fields == [("n", "1"), ("at", "1700000000000")]


def test_kv_operations():
    def handle(_event):
        assert hb.kv.get("k") is None
        hb.kv.set("k", "v1", ttl_ms=1000)
        assert hb.kv.get("k") == b"v1" and hb.kv.get_str("k") == "v1"
        assert not hb.kv.compare_and_swap("k", "other", "v2")
        assert hb.kv.compare_and_swap("k", "v1", b"v2")
        assert hb.kv.delete("k") and not hb.kv.delete("k")
        assert hb.kv.compare_and_swap("k", None, "new")
        hb.kv.set("num", "not a number")
        assert hb.kv.increment("num", 5) == 5

    host = TestHost()
    host.run(handle, hb.Event.build("x", tenant="t"))
    assert host.kv_get_str("t", "k") == "new"


def test_handler_error_keeps_retryable_and_drops_emits():
    def failing(_event):
        hb.emit("never", {})
        raise hb.HandlerError.transient("upstream down")

    host = TestHost()
    with pytest.raises(hb.HandlerError) as e:
        host.run(failing, hb.Event.build("x"))
    assert e.value.retryable and e.value.message == "upstream down"
    assert host.emitted == []


def test_malformed_payload_and_config_are_fatal():
    host = TestHost()
    bad = hb.Event(type="x", payload="{nope")
    with pytest.raises(hb.HandlerError, match="not JSON") as e:
        host.run(lambda ev: ev.json(), bad)
    assert not e.value.retryable
    host.config_json = "{nope"
    with pytest.raises(hb.HandlerError, match="config"):
        host.run(lambda ev: hb.config(), hb.Event.build("x"))


def test_emit_follows_the_host_rules():
    host = TestHost()
    with pytest.raises(hb.HandlerError, match="invalid event type"):
        host.run(lambda ev: hb.emit("has space", {}), hb.Event.build("x"))
    with pytest.raises(hb.HandlerError, match="invalid event type"):
        host.run(lambda ev: hb.emit("hookbox.fake", {}), hb.Event.build("x"))
    with pytest.raises(ValueError):
        host.run(lambda ev: hb.emit("ok", {}, priority="urgent"), hb.Event.build("x"))
    with pytest.raises(hb.HandlerError, match="only into that tenant"):
        host.run(lambda ev: hb.emit("ok", {}, tenant="zeta"), hb.Event.build("x", tenant="acme"))
    host.run(lambda ev: hb.emit("ok", {}, tenant="zeta"), hb.Event.build("x", tenant=""))
    assert host.emitted[-1].tenant == "zeta"


def test_an_ungranted_capability_is_denied_by_use():
    host = TestHost(capabilities=["log"])
    host.run(lambda ev: hb.log.info("fine"), hb.Event.build("x"))
    with pytest.raises(hb.CapabilityDenied, match=r"hookbox:handler/kv@0\.1\.0#increment"):
        host.run(lambda ev: hb.kv.increment("n"), hb.Event.build("x"))
    with pytest.raises(ValueError, match="unknown capabilities"):
        TestHost(capabilities=["network"])


def test_reply_and_reaction_helpers():
    def responder(event):
        z = event.zulip()
        if isinstance(z, zulip.MessageEvent) and "deploy" in z.message.content:
            assert z.mentions_me
            assert zulip.reply(z.message, "Noted.")
            zulip.add_reaction(z.message.id, "rocket")

    host = TestHost()
    host.run(responder, hb.Event.from_zulip(STREAM_MESSAGE, tenant="acme"))
    reply, reaction = host.emitted
    assert reply.type == "zulip.send_message"
    assert reply.payload == {"type": "stream", "to": "general", "stream_id": 3,
                             "topic": "ops", "content": "Noted."}
    assert (reaction.type, reaction.payload) == ("zulip.add_reaction",
                                                 {"message_id": 7, "emoji_name": "rocket"})


def test_direct_replies_go_to_every_participant():
    m = zulip.Message.from_json({"id": 1, "type": "private", "display_recipient": [
        {"id": 9, "email": "a@x"}, {"id": 3}, {"id": 9}]})
    assert zulip.send_message_payload(m, "hi") == {"type": "direct", "to": [3, 9], "content": "hi"}
    assert zulip.send_message_payload(zulip.Message.from_json({"id": 1}), "x") is None


def test_no_host_outside_a_component_or_test():
    with pytest.raises(RuntimeError, match="TestHost"):
        hb.kv.get("k")


def test_export_is_none_natively():
    assert hb.export(counter) is None
