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

The per-delivery limits of the SDK's calls hold as on the real host, with
its defaults and accounting (:class:`Limits`, the same as the Rust SDK's
``testing::Limits``): a log call past ``log_bytes``, an emit past ``emits``
or ``emit_bytes``, a KV key and value past ``kv_value_bytes`` or a write
that takes the tenant's namespace past ``kv_quota_bytes`` or
``kv_quota_keys`` end the delivery there (a handler cannot catch it: it is
not an ``Exception``), and an error message past ``result_bytes`` is
``result_limit``. :meth:`TestHost.deliver` returns the :class:`Outcome`
under the host's name; :meth:`TestHost.run` raises :class:`LimitExceeded`.

>>> host = TestHost(limits=Limits(kv_value_bytes=64))
>>> host.deliver(lambda event: hb.kv.set("blob", bytes(100)), hb.Event.build("ping")).name
'kv_limit'

Not modelled: fuel, the deadline, memory, tables and the stack (they
depend on the compiled component), KV expiry (values set with a TTL do not
expire here), and what the handler prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from . import _host
from ._host import CapabilityDenied, HandlerError

CAPABILITIES = ("log", "kv", "config", "emit", "clock")
# What a log record costs besides its text, and each of its fields (as on
# the host: host/src/limits.rs, checked by tests/tests/runtime/sdk_parity.rs).
RECORD_OVERHEAD = 64
FIELD_OVERHEAD = 48
# What an emitted event costs against ``emit_bytes`` besides its text, and
# each of its metadata entries.
EMIT_OVERHEAD = 256
EMIT_ENTRY_OVERHEAD = 64
# Hookbox's event type rule (host/src/event.rs): 1-128 of these characters.
_TYPE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


@dataclass(frozen=True)
class Limits:
    """The limits of one delivery that depend on what the handler does with
    the SDK, as a manifest's ``limits`` sets them; the defaults are the
    host's."""

    log_bytes: int = 64 << 10
    """Log bytes per delivery (text plus overheads). Outcome ``log_limit``."""
    emits: int = 100
    """Events emitted per delivery, valid or not. Outcome ``emit_limit``."""
    emit_bytes: int = 2 << 20
    """Bytes emitted per delivery (text plus overheads). ``emit_bytes_limit``."""
    kv_value_bytes: int = 64 << 10
    """Largest KV key plus value (reads and deletes: the key). ``kv_limit``."""
    kv_quota_bytes: int = 16 << 20
    """Most bytes (keys plus values) one tenant's namespace holds. ``kv_limit``."""
    kv_quota_keys: int = 100_000
    """Most keys that namespace holds. ``kv_limit``."""
    result_bytes: int = 16 << 10
    """Largest handler error message. ``result_limit``."""


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended, named as the real host names it: ``ok``,
    ``handler_error``, ``log_limit``, ``emit_limit``, ``emit_bytes_limit``,
    ``kv_limit``, ``result_limit``, ``capability_denied`` or ``trap`` (any
    other exception; Hookbox retries it)."""

    name: str
    error: Optional[str] = None
    retryable: bool = False


class LimitExceeded(BaseException):
    """Ends a delivery at a limit, as the host ends the call: a
    ``BaseException``, so ``except Exception`` in a handler does not swallow
    it. :meth:`TestHost.run` raises it; :meth:`TestHost.deliver` returns its
    :attr:`outcome`."""

    def __init__(self, outcome: Outcome):
        super().__init__(f"{outcome.name}: {outcome.error}")
        self.outcome = outcome


def _len(text: Optional[str]) -> int:
    """Bytes of ``text`` as the host counts them (UTF-8)."""
    return 0 if text is None else len(text.encode())


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
                 now_ms: int = 1_700_000_000_000, limits: Limits = Limits()):
        self.config_json = json.dumps({} if config is None else config)
        self.capabilities = set(capabilities)
        unknown = self.capabilities - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {CAPABILITIES}")
        self.now = now_ms
        self.limits = limits
        self.kv: dict = {}
        self.logs: list = []
        self.emitted: list = []
        self._tenant = ""
        self._pending: list = []
        self._abort: Optional[Outcome] = None
        self._log_bytes = 0
        self._emits = 0
        self._emit_bytes = 0

    def run(self, handle: Callable[[Any], None], event: Any) -> None:
        """Runs ``handle(event)`` against this host, like one delivery: its
        emitted events are kept only when it returns (a :class:`HandlerError`
        or any other exception propagates, and what it emitted is dropped).
        A delivery that hits a limit raises :class:`LimitExceeded`, even if
        the handler caught what the host call raised."""
        self._begin(event)
        previous = _host.install(self)
        try:
            handle(event)
        except BaseException as e:
            if self._abort is None:
                if isinstance(e, HandlerError) and _len(e.message) > self.limits.result_bytes:
                    raise LimitExceeded(Outcome(
                        "result_limit",
                        f"handler error message is {_len(e.message)} bytes; the limit is "
                        f"{self.limits.result_bytes}",
                    )) from e
                raise
        finally:
            _host.install(previous)
        if self._abort is not None:
            # The host ended the call there, whatever the handler did next
            # (also if it caught the error and went on).
            if self._abort.name == "capability_denied":
                raise CapabilityDenied(self._abort.error)
            raise LimitExceeded(self._abort)
        self.emitted.extend(self._pending)
        self._pending = []

    def deliver(self, handle: Callable[[Any], None], event: Any) -> Outcome:
        """Runs ``handle(event)`` like :meth:`run` and returns how the
        delivery ended, as Hookbox would log it, instead of raising."""
        try:
            self.run(handle, event)
        except LimitExceeded as e:
            return e.outcome
        except CapabilityDenied as e:
            return Outcome("capability_denied", str(e))
        except HandlerError as e:
            return Outcome("handler_error", e.message, e.retryable)
        except Exception as e:  # the one error rule: anything else is a trap
            return Outcome("trap", f"uncaught exception in handler: {e!r}", True)
        return Outcome("ok")

    def _begin(self, event: Any) -> None:
        self._tenant, self._pending, self.logs = event.tenant, [], []
        self._abort = None
        self._log_bytes = self._emits = self._emit_bytes = 0

    def _end(self, name: str, error: str) -> None:
        """Ends the delivery with a limit's outcome."""
        self._abort = Outcome(name, error)
        raise LimitExceeded(self._abort)

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
            message = (
                f"`hookbox:handler/{capability}@0.1.0#{function}` is denied: capability "
                f"`{capability}` is not granted to this handler"
            )
            self._abort = Outcome("capability_denied", message)
            raise CapabilityDenied(message)

    def _kv_size(self, key: str, value_len: int) -> None:
        size = _len(key) + value_len
        if size > self.limits.kv_value_bytes:
            self._end("kv_limit", f"kv key plus value is {size} bytes; the limit is "
                      f"{self.limits.kv_value_bytes}")

    def _kv_quota(self, key: str, value_len: Optional[int]) -> None:
        """Refuses a write that takes the namespace past a quota; one that
        does not grow it passes even over the quota (as on the host)."""
        keys = bytes_ = 0
        for (tenant, k), v in self.kv.items():
            if tenant == self._tenant:
                keys, bytes_ = keys + 1, bytes_ + _len(k) + len(v)
        next_keys, next_bytes = keys, bytes_
        old = self.kv.get((self._tenant, key))
        if old is not None:
            next_keys, next_bytes = next_keys - 1, next_bytes - _len(key) - len(old)
        if value_len is not None:
            next_keys, next_bytes = next_keys + 1, next_bytes + _len(key) + value_len
        if next_keys > self.limits.kv_quota_keys and next_keys > keys:
            self._end("kv_limit", f"the kv namespace would hold {next_keys} keys; the quota "
                      f"`kv_quota_keys` is {self.limits.kv_quota_keys}")
        if next_bytes > self.limits.kv_quota_bytes and next_bytes > bytes_:
            self._end("kv_limit", f"the kv namespace would hold {next_bytes} bytes of keys plus "
                      f"values; the quota `kv_quota_bytes` is {self.limits.kv_quota_bytes}")

    def log(self, level: str, message: str, fields: list) -> None:
        self._require("log", "log")
        text = _len(message) + sum(_len(k) + _len(v) for k, v in fields)
        cost = text + RECORD_OVERHEAD + FIELD_OVERHEAD * len(fields)
        if self._log_bytes + cost > self.limits.log_bytes:
            self._end("log_limit", f"log output exceeded the limit of {self.limits.log_bytes} bytes "
                      f"(each record counts {RECORD_OVERHEAD} bytes and each field "
                      f"{FIELD_OVERHEAD} besides its text)")
        self._log_bytes += cost
        self.logs.append(LogRecord(level, message, list(fields)))

    def kv_get(self, key: str) -> Optional[bytes]:
        self._require("kv", "get")
        self._kv_size(key, 0)
        return self.kv.get((self._tenant, key))

    def kv_set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None:
        self._require("kv", "set")
        self._kv_size(key, len(value))
        self._kv_quota(key, len(value))
        self.kv[(self._tenant, key)] = bytes(value)

    def kv_delete(self, key: str) -> bool:
        self._require("kv", "delete")
        self._kv_size(key, 0)
        return self.kv.pop((self._tenant, key), None) is not None

    def kv_increment(self, key: str, delta: int) -> int:
        self._require("kv", "increment")
        self._kv_size(key, 0)
        current = self.kv.get((self._tenant, key), b"")
        try:
            n = int(current.decode())
        except ValueError:
            n = 0
        n = max(-(2**63), min(2**63 - 1, n + delta))
        self._kv_quota(key, len(str(n)))
        self.kv[(self._tenant, key)] = str(n).encode()
        return n

    def kv_compare_and_swap(self, key: str, expected: Optional[bytes], new: Optional[bytes]) -> bool:
        self._require("kv", "compare-and-swap")
        largest = max(0 if expected is None else len(expected), 0 if new is None else len(new))
        self._kv_size(key, largest)
        if self.kv.get((self._tenant, key)) != expected:
            return False
        self._kv_quota(key, None if new is None else len(new))
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
        # Counted before it is checked, valid or not, as on the host.
        self._emits += 1
        if self._emits > self.limits.emits:
            self._end("emit_limit", f"the handler emitted more than {self.limits.emits} events")
        text = (_len(event["type"]) + _len(event["tenant"]) + _len(event["payload"])
                + _len(event["key"]) + sum(_len(k) + _len(v) for k, v in event["metadata"]))
        self._emit_bytes += text + EMIT_OVERHEAD + EMIT_ENTRY_OVERHEAD * len(event["metadata"])
        if self._emit_bytes > self.limits.emit_bytes:
            self._end("emit_bytes_limit", f"the handler's emitted events came to more than "
                      f"{self.limits.emit_bytes} bytes (each event counts {EMIT_OVERHEAD} bytes "
                      f"and each metadata entry {EMIT_ENTRY_OVERHEAD} besides their text)")
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

