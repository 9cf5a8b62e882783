"""A Hookbox handler written in Python, built with componentize-py.

Owns the Python half of `tests/other-toolchains`: it shows that a component
from a standard non-Rust toolchain runs in Hookbox unchanged. For each Zulip
`message` event it reads its config, counts the message in KV per channel,
reads the counter back, logs a line and emits a `message.counted` event.
Any other event type is logged and ignored.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, config, emit, kv, log, types

TOOLCHAIN = "componentize-py"


def fail(message: str, retryable: bool = False) -> Err:
    return Err(types.HandlerError(message=message, retryable=retryable))


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> None:
        if event.type != "message":
            log.log(log.Level.DEBUG, "Ignored event", [("type", event.type)])
            return

        try:
            settings = json.loads(config.get())
            payload = json.loads(event.payload)
        except ValueError as e:
            raise fail(f"config or payload is not JSON: {e}")
        prefix = settings.get("counter_prefix", "messages")
        emit_type = settings.get("emit_type", "message.counted")

        message = payload.get("message")
        if not isinstance(message, dict):
            raise fail("payload has no `message` object (expected a Zulip message event)")
        if message.get("type") == "stream":
            channel = str(message.get("display_recipient", "unknown"))
        else:
            channel = "direct"
        sender = str(message.get("sender_full_name", ""))

        key = f"{prefix}:{channel}"
        count = kv.increment(key, 1)
        stored = kv.get(key)
        if stored != str(count).encode():
            raise fail(f"KV read back {stored!r} for {key}, expected {count}", retryable=True)

        log.log(
            log.Level.INFO,
            "Counted message",
            [
                ("toolchain", TOOLCHAIN),
                ("channel", channel),
                ("sender", sender),
                ("count", str(count)),
            ],
        )
        # Standard output goes through WASI and is captured into the log.
        print(f"python handler saw message {message.get('id')} at {clock.now_ms()} ms")

        try:
            emit.emit(
                emit.NewEvent(
                    type=emit_type,
                    tenant=None,
                    payload=json.dumps(
                        {"toolchain": TOOLCHAIN, "channel": channel, "count": count}
                    ),
                    metadata=[("counted-by", TOOLCHAIN)],
                    key=channel,
                    priority=types.Priority.LOW,
                )
            )
        except Err as e:
            raise fail(f"emit refused: {e.value.value}")
