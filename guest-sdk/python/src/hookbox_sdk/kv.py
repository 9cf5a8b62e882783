"""The handler's own key-value namespace, one per tenant: no other handler
or tenant can see its keys. Values are bytes; ``str`` values are stored as
UTF-8. Sizes and quotas are the handler's ``kv_*`` limits (``kv_limit``)."""

from __future__ import annotations

from typing import Optional, Union

from . import _host

Value = Union[bytes, str]


def _bytes(value: Optional[Value]) -> Optional[bytes]:
    return value.encode() if isinstance(value, str) else value


def get(key: str) -> Optional[bytes]:
    """The value, or ``None`` when the key is absent or expired."""
    value = _host.backend().kv_get(key)
    return None if value is None else bytes(value)


def get_str(key: str) -> Optional[str]:
    """The value decoded as UTF-8, or ``None``."""
    value = get(key)
    return None if value is None else value.decode()


def set(key: str, value: Value, ttl_ms: Optional[int] = None) -> None:  # noqa: A001
    """Sets a value, optionally expiring ``ttl_ms`` milliseconds from now."""
    _host.backend().kv_set(key, _bytes(value), ttl_ms)


def delete(key: str) -> bool:
    """Deletes a key; returns whether it existed."""
    return _host.backend().kv_delete(key)


def increment(key: str, delta: int = 1) -> int:
    """Atomically adds ``delta`` to a decimal counter; returns the new value
    (a missing or non-numeric value counts as 0)."""
    return _host.backend().kv_increment(key, delta)


def compare_and_swap(key: str, expected: Optional[Value], new: Optional[Value]) -> bool:
    """Replaces the value if it equals ``expected`` (``None``: absent); a
    ``new`` of ``None`` deletes. Returns whether the swap happened."""
    return _host.backend().kv_compare_and_swap(key, _bytes(expected), _bytes(new))
