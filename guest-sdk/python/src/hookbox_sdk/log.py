"""Structured records in the delivery's log: ``log.info("Counted", n=3)``.
Field values are turned into text with ``str``."""

from __future__ import annotations

from typing import Any

from . import _host


def _log(level: str, message: str, fields: dict) -> None:
    _host.backend().log(level, message, [(k, str(v)) for k, v in fields.items()])


def trace(message: str, **fields: Any) -> None:
    _log("trace", message, fields)


def debug(message: str, **fields: Any) -> None:
    _log("debug", message, fields)


def info(message: str, **fields: Any) -> None:
    _log("info", message, fields)


def warn(message: str, **fields: Any) -> None:
    _log("warn", message, fields)


def error(message: str, **fields: Any) -> None:
    _log("error", message, fields)
