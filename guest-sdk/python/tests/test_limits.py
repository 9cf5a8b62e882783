"""The fake host's limits against the real host's: every scenario of
tests/fixtures/sdk-limits.json (the file tests/tests/runtime/sdk_parity.rs
runs on the Rust SDK's TestHost and on the real host) run by a port of the
limits probe (tests/sdk-guests/limits-probe) must give the same outcome,
retry flag, log records kept and events emitted; the default limits and
overheads are the host's."""

import dataclasses
import json
import pathlib

import pytest

import hookbox_sdk as hb
from hookbox_sdk import testing
from hookbox_sdk.testing import LimitExceeded, Limits, TestHost

FIXTURE = json.loads(
    (pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "sdk-limits.json").read_text()
)
SMALL = Limits(**FIXTURE["limits"])


def probe(event):
    """Does what the payload says, in the Rust probe's order: log records,
    KV sets, KV gets, emits, then a panic or an error."""
    s = event.json()
    logs = s.get("logs")
    if logs:
        for _ in range(logs.get("count", 0)):
            fields = {f"f{i}": "v" * logs.get("field_bytes", 0) for i in range(logs.get("fields", 0))}
            hb.log.info("m" * logs.get("bytes", 0), **fields)
    for key, size in s.get("kv_set", []):
        hb.kv.set(key, b"x" * size)
    for key in s.get("kv_get", []):
        hb.kv.get(key)
    emits = s.get("emits")
    if emits:
        for _ in range(emits.get("count", 0)):
            metadata = {f"m{i}": "v" for i in range(emits.get("metadata", 0))}
            hb.emit("probe.out", "p" * emits.get("bytes", 0), metadata=metadata)
    if "panic" in s:
        raise RuntimeError(s["panic"])
    if "error_bytes" in s:
        raise hb.HandlerError("e" * s["error_bytes"], retryable=s.get("retryable", False))


@pytest.mark.parametrize("scenario", FIXTURE["scenarios"], ids=lambda s: s["what"])
def test_the_fake_host_agrees_with_the_real_host(scenario):
    host = TestHost(limits=SMALL)
    outcome = host.deliver(probe, hb.Event.build("probe", scenario["payload"], tenant="acme"))
    seen = {
        "outcome": outcome.name,
        "retryable": outcome.retryable,
        "logs": len(host.logs),
        "emitted": len(host.emitted),
    }
    assert seen == scenario["seen"], outcome.error


def test_the_defaults_are_the_hosts():
    d = FIXTURE["defaults"]
    assert dataclasses.asdict(Limits()) == {k: d[k] for k in dataclasses.asdict(Limits())}
    assert (testing.RECORD_OVERHEAD, testing.FIELD_OVERHEAD, testing.EMIT_OVERHEAD,
            testing.EMIT_ENTRY_OVERHEAD) == (d["record_overhead"], d["field_overhead"],
                                             d["emit_overhead"], d["emit_entry_overhead"])


def test_a_handler_cannot_catch_its_way_past_a_limit():
    def greedy(_event):
        for i in range(10):
            try:
                hb.kv.set(f"k{i}", b"x" * 90)
            except Exception:  # what a careless handler does
                pass
        hb.emit("done", {})

    host = TestHost(limits=SMALL)
    outcome = host.deliver(greedy, hb.Event.build("x", tenant="acme"))
    assert outcome.name == "kv_limit" and "kv_quota_bytes" in outcome.error
    assert host.emitted == []
    # The writes before the limit stay, as on the host.
    assert host.kv_get_str("acme", "k2") == "x" * 90 and host.kv_get_str("acme", "k3") is None
    with pytest.raises(LimitExceeded, match="kv_limit"):
        host.run(greedy, hb.Event.build("x", tenant="acme"))


def test_run_raises_result_limit_and_deliver_names_it():
    def long_error(_event):
        raise hb.HandlerError("e" * 51)

    host = TestHost(limits=SMALL)
    assert host.deliver(long_error, hb.Event.build("x")).name == "result_limit"
    with pytest.raises(LimitExceeded, match="result_limit"):
        host.run(long_error, hb.Event.build("x"))


def test_a_denied_capability_is_its_own_outcome_even_when_caught():
    def sneaky(_event):
        try:
            hb.kv.set("k", "v")
        except Exception:
            pass

    host = TestHost(capabilities=["log"])
    outcome = host.deliver(sneaky, hb.Event.build("x"))
    assert outcome.name == "capability_denied" and "kv" in outcome.error
    with pytest.raises(hb.CapabilityDenied):
        host.run(sneaky, hb.Event.build("x"))


def test_limits_reset_per_delivery():
    host = TestHost(limits=dataclasses.replace(SMALL, emits=1))
    for _ in range(3):
        assert host.deliver(lambda e: hb.emit("one", {}), hb.Event.build("x")).name == "ok"
    assert len(host.emitted) == 3
