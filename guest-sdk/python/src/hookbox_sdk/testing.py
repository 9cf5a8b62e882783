"""A fake host to unit-test handlers natively (like the Rust SDK's
``hookbox_sdk::testing::TestHost``): KV per tenant, config, a clock, and the
logs and emitted events of every run, checked by the rules Hookbox applies.

>>> import hookbox_sdk as hb
>>> from hookbox_sdk.testing import TestHost
>>> def handle(event):
...     hb.log.info("seen", n=hb.kv.increment("seen"))
>>> host = TestHost()
>>> host.run(handle, hb.Event.build("ping", tenant="acme"))
>>> host.kv_get_str("acme", "seen")
'1'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from . import _host
from ._host import CapabilityDenied, HandlerError

CAPABILITIES = ("log", "kv", "config", "emit", "clock")
# Hookbox's event type rule (host/src/event.rs): 1-128 of these characters.
_TYPE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


@dataclass
class LogRecord:
    level: str
    message: str
    fields: list


@dataclass
class Emitted:
    type: str
    tenant: str
    payload: Any
    metadata: dict
    key: Optional[str]
    priority: str


class TestHost:
    """Stands in for Hookbox while :meth:`run` calls a handler."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: Any = None, capabilities: Iterable[str] = CAPABILITIES,
                 now_ms: int = 1_700_000_000_000):
        self.config_json = json.dumps({} if config is None else config)
        self.capabilities = set(capabilities)
        unknown = self.capabilities - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {CAPABILITIES}")
        self.now = now_ms
        self.kv: dict = {}
        self.logs: list = []
        self.emitted: list = []
        self._tenant = ""
        self._pending: list = []

    def run(self, handle: Callable[[Any], None], event: Any) -> None:
        """Runs ``handle(event)`` against this host, like one delivery: its
        emitted events are kept only when it returns (a :class:`HandlerError`
        or any other exception propagates, and what it emitted is dropped)."""
        self._tenant, self._pending, self.logs = event.tenant, [], []
        previous = _host.install(self)
        try:
            handle(event)
        finally:
            _host.install(previous)
        self.emitted.extend(self._pending)
        self._pending = []

    # What tests inspect.
    def kv_get_str(self, tenant: str, key: str) -> Optional[str]:
        value = self.kv.get((tenant, key))
        return None if value is None else value.decode()

    def seed_kv(self, tenant: str, key: str, value: Any) -> None:
        """Stores a value before a run, as earlier deliveries would have."""
        self.kv[(tenant, key)] = value.encode() if isinstance(value, str) else bytes(value)

    # The host interface the SDK calls.
    def _require(self, capability: str, function: str) -> None:
        if capability not in self.capabilities:
            raise CapabilityDenied(
                f"`hookbox:handler/{capability}@0.1.0#{function}` is denied: capability "
                f"`{capability}` is not granted to this handler"
            )

    def log(self, level: str, message: str, fields: list) -> None:
        self._require("log", "log")
        self.logs.append(LogRecord(level, message, list(fields)))

    def kv_get(self, key: str) -> Optional[bytes]:
        self._require("kv", "get")
        return self.kv.get((self._tenant, key))

    def kv_set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None:
        self._require("kv", "set")
        self.kv[(self._tenant, key)] = bytes(value)

    def kv_delete(self, key: str) -> bool:
        self._require("kv", "delete")
        return self.kv.pop((self._tenant, key), None) is not None

    def kv_increment(self, key: str, delta: int) -> int:
        self._require("kv", "increment")
        current = self.kv.get((self._tenant, key), b"")
        try:
            n = int(current.decode())
        except ValueError:
            n = 0
        n = max(-(2**63), min(2**63 - 1, n + delta))
        self.kv[(self._tenant, key)] = str(n).encode()
        return n

    def kv_compare_and_swap(self, key: str, expected: Optional[bytes], new: Optional[bytes]) -> bool:
        self._require("kv", "compare-and-swap")
        if self.kv.get((self._tenant, key)) != expected:
            return False
        if new is None:
            self.kv.pop((self._tenant, key), None)
        else:
            self.kv[(self._tenant, key)] = bytes(new)
        return True

    def config_get(self) -> str:
        self._require("config", "get")
        return self.config_json

    def now_ms(self) -> int:
        self._require("clock", "now-ms")
        return self.now

    def emit(self, event: dict) -> None:
        self._require("emit", "emit")
        if not _TYPE.match(event["type"]) or event["type"].startswith("hookbox."):
            raise HandlerError(f"emit refused: invalid event type {event['type']!r}")
        keys = [k for k, _ in event["metadata"]]
        if len(keys) != len(set(keys)):
            raise HandlerError("emit refused: a metadata key is given twice")
        # As on the host: a delivery of an event with a tenant stays in it.
        tenant = event["tenant"]
        if tenant is not None and self._tenant and tenant != self._tenant:
            raise HandlerError(
                f"emit refused: a delivery of tenant {self._tenant!r} may emit only into that tenant, not {tenant!r}"
            )
        self._pending.append(
            Emitted(
                type=event["type"],
                tenant=self._tenant if event["tenant"] is None else event["tenant"],
                payload=json.loads(event["payload"]),
                metadata=dict(event["metadata"]),
                key=event["key"],
                priority=event["priority"] or "normal",
            )
        )

