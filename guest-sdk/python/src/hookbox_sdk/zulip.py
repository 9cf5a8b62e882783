"""Typed Zulip events, the rule that names them as Hookbox event types, and
the events a handler emits to act in Zulip (``zulip.send_message``,
``zulip.add_reaction``).

:func:`parse` dispatches on the event's ``type`` and ``op`` (like the Rust
SDK's ``ZulipEvent::from_value``). Messages, message edits and deletions,
reactions and heartbeats are typed; every other ``type``/``op`` pair is an
:class:`OtherEvent` carrying the raw JSON. Unknown fields are ignored and
most fields are optional, because newer servers send more than older ones.
A known event with a field of the wrong type is a fatal ``HandlerError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ._host import HandlerError

SEND_MESSAGE_EVENT = "zulip.send_message"
ADD_REACTION_EVENT = "zulip.add_reaction"


def hookbox_type(zulip_event: Any) -> str:
    """``"type"``, or ``"type.op"`` when the event has a non-empty string
    ``op``; ``"unknown"`` without a string ``type``. Hookbox applies the
    same rule to the events it receives from Zulip."""
    if not isinstance(zulip_event, dict) or not isinstance(zulip_event.get("type"), str):
        return "unknown"
    op = zulip_event.get("op")
    if isinstance(op, str) and op:
        return f"{zulip_event['type']}.{op}"
    return zulip_event["type"]


class _Malformed(Exception):
    pass


def _get(raw: dict, name: str, kind: Any, default: Any = None) -> Any:
    """``raw[name]`` checked against ``kind``; ``null`` or missing → default."""
    value = raw.get(name)
    if value is None:
        return default
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise _Malformed(f"`{name}` is {type(value).__name__}, expected {getattr(kind, '__name__', kind)}")
    return value


def _ints(raw: dict, name: str) -> list:
    values = _get(raw, name, list, [])
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise _Malformed(f"`{name}` must be a list of integers")
    return values


@dataclass
class RecipientUser:
    """A participant of a direct message."""

    id: int
    email: Optional[str] = None
    full_name: Optional[str] = None


@dataclass
class Message:
    """A Zulip message."""

    id: int
    sender_id: Optional[int] = None
    sender_email: Optional[str] = None
    sender_full_name: Optional[str] = None
    content: str = ""
    type: str = ""
    stream_id: Optional[int] = None
    stream_name: Optional[str] = None
    direct_recipients: list = field(default_factory=list)
    subject: Optional[str] = None
    timestamp: Optional[int] = None
    avatar_url: Optional[str] = None

    @classmethod
    def from_json(cls, raw: Any) -> "Message":
        if not isinstance(raw, dict):
            raise _Malformed("`message` is not an object")
        recipient = raw.get("display_recipient")
        users, stream_name = [], None
        if isinstance(recipient, str):
            stream_name = recipient
        elif isinstance(recipient, list):
            for u in recipient:
                if not isinstance(u, dict) or not isinstance(u.get("id"), int):
                    raise _Malformed("`display_recipient` users need an integer `id`")
                users.append(RecipientUser(u["id"], u.get("email"), u.get("full_name")))
        elif recipient is not None:
            raise _Malformed("`display_recipient` is neither a name nor a list of users")
        if not isinstance(raw.get("id"), int):
            raise _Malformed("`message.id` must be an integer")
        return cls(
            id=raw["id"],
            sender_id=_get(raw, "sender_id", int),
            sender_email=_get(raw, "sender_email", str),
            sender_full_name=_get(raw, "sender_full_name", str),
            content=_get(raw, "content", str, ""),
            type=_get(raw, "type", str, ""),
            stream_id=_get(raw, "stream_id", int),
            stream_name=stream_name,
            direct_recipients=users,
            subject=_get(raw, "topic", str) or _get(raw, "subject", str),
            timestamp=_get(raw, "timestamp", int),
            avatar_url=_get(raw, "avatar_url", str),
        )

    @property
    def topic(self) -> Optional[str]:
        """The topic of a channel message."""
        return self.subject

    @property
    def is_direct(self) -> bool:
        """Whether this is a direct (private) message."""
        return self.type in ("private", "direct") or bool(self.direct_recipients)


@dataclass
class MessageEvent:
    """``message``: a new message."""

    message: Message
    flags: list = field(default_factory=list)

    @property
    def mentions_me(self) -> bool:
        """Whether the receiving user (the bot) was mentioned."""
        return any(
            f in ("mentioned", "stream_wildcard_mentioned", "topic_wildcard_mentioned")
            for f in self.flags
        )


@dataclass
class UpdateMessageEvent:
    """``update_message``: a message was edited or moved."""

    message_id: int
    message_ids: list = field(default_factory=list)
    user_id: Optional[int] = None
    stream_id: Optional[int] = None
    new_stream_id: Optional[int] = None
    orig_subject: Optional[str] = None
    subject: Optional[str] = None
    content: Optional[str] = None
    rendering_only: Optional[bool] = None

    @property
    def content_changed(self) -> bool:
        return self.content is not None and self.rendering_only is not True

    @property
    def moved(self) -> bool:
        return self.new_stream_id is not None or self.orig_subject is not None


@dataclass
class DeleteMessageEvent:
    """``delete_message``: one or more messages were deleted."""

    message_type: str = ""
    message_id: Optional[int] = None
    message_ids: list = field(default_factory=list)
    stream_id: Optional[int] = None
    topic: Optional[str] = None

    @property
    def deleted_ids(self) -> list:
        ids = list(self.message_ids)
        if self.message_id is not None and self.message_id not in ids:
            ids.append(self.message_id)
        return ids


@dataclass
class ReactionEvent:
    """``reaction.add`` / ``reaction.remove``."""

    op: str
    message_id: int
    user_id: Optional[int] = None
    emoji_name: str = ""
    emoji_code: str = ""
    reaction_type: str = ""


@dataclass
class HeartbeatEvent:
    """``heartbeat``: the queue is alive; nothing happened."""


@dataclass
class OtherEvent:
    """Any ``type``/``op`` pair this SDK does not model, with the raw JSON."""

    type: str
    raw: dict


ZulipEvent = Union[
    MessageEvent, UpdateMessageEvent, DeleteMessageEvent, ReactionEvent, HeartbeatEvent, OtherEvent
]


def _required_int(raw: dict, name: str) -> int:
    value = _get(raw, name, int)
    if value is None:
        raise _Malformed(f"`{name}` is missing")
    return value


def parse(raw: Any) -> ZulipEvent:
    """A raw Zulip event (a parsed JSON object) as a typed event."""
    if not isinstance(raw, dict):
        raise HandlerError("Zulip event is not a JSON object")
    if not isinstance(raw.get("type"), str):
        raise HandlerError("Zulip event has no string `type` field")
    name = hookbox_type(raw)
    op = raw.get("op")
    try:
        if name == "message":
            return MessageEvent(Message.from_json(raw.get("message")), _get(raw, "flags", list, []))
        if name == "update_message":
            return UpdateMessageEvent(
                message_id=_required_int(raw, "message_id"),
                message_ids=_ints(raw, "message_ids"),
                user_id=_get(raw, "user_id", int),
                stream_id=_get(raw, "stream_id", int),
                new_stream_id=_get(raw, "new_stream_id", int),
                orig_subject=_get(raw, "orig_subject", str),
                subject=_get(raw, "subject", str),
                content=_get(raw, "content", str),
                rendering_only=_get(raw, "rendering_only", bool),
            )
        if name == "delete_message":
            return DeleteMessageEvent(
                message_type=_get(raw, "message_type", str, ""),
                message_id=_get(raw, "message_id", int),
                message_ids=_ints(raw, "message_ids"),
                stream_id=_get(raw, "stream_id", int),
                topic=_get(raw, "topic", str),
            )
        if raw["type"] == "reaction" and op in ("add", "remove"):
            user_id = _get(raw, "user_id", int)
            if user_id is None and isinstance(raw.get("user"), dict):
                user_id = _get(raw["user"], "user_id", int)
            return ReactionEvent(
                op=op,
                message_id=_required_int(raw, "message_id"),
                user_id=user_id,
                emoji_name=_get(raw, "emoji_name", str, ""),
                emoji_code=_get(raw, "emoji_code", str, ""),
                reaction_type=_get(raw, "reaction_type", str, ""),
            )
        if name == "heartbeat":
            return HeartbeatEvent()
    except _Malformed as e:
        raise HandlerError(f"malformed Zulip `{name}` event: {e}") from None
    return OtherEvent(name, raw)


def send_message_payload(message: Message, content: str) -> Optional[dict]:
    """The ``zulip.send_message`` payload of a reply in the same
    conversation as ``message`` (channel and topic, or the same direct
    group); ``None`` when the message does not say where it went."""
    if message.is_direct:
        to = sorted({u.id for u in message.direct_recipients})
        return {"type": "direct", "to": to, "content": content} if to else None
    if message.stream_name is None:
        return None
    payload = {"type": "stream", "to": message.stream_name, "topic": message.topic or "", "content": content}
    if message.stream_id is not None:
        payload["stream_id"] = message.stream_id
    return payload


def reply(message: Message, content: str) -> bool:
    """Emits a ``zulip.send_message`` answering ``message`` in its
    conversation; returns False (and emits nothing) when it has none."""
    from . import emit

    payload = send_message_payload(message, content)
    if payload is None:
        return False
    emit(SEND_MESSAGE_EVENT, payload)
    return True


def add_reaction(message_id: int, emoji_name: str, emoji_code: Optional[str] = None,
                 reaction_type: Optional[str] = None) -> None:
    """Emits a ``zulip.add_reaction`` putting ``emoji_name`` on a message."""
    from . import emit

    payload: dict = {"message_id": message_id, "emoji_name": emoji_name}
    if emoji_code is not None:
        payload["emoji_code"] = emoji_code
    if reaction_type is not None:
        payload["reaction_type"] = reaction_type
    emit(ADD_REACTION_EVENT, payload)
