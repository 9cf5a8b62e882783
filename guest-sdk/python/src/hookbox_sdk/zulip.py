"""Typed Zulip events, the rule that names them as Hookbox event types, and
the events a handler emits to act in Zulip (``zulip.send_message``,
``zulip.add_reaction``).

:func:`parse` dispatches on the event's ``type`` and ``op`` (like the Rust
SDK's ``ZulipEvent::from_value``). Messages, message edits and deletions,
reactions, subscriptions, channels (streams), users, realm settings, user
groups, typing, user status, presence, custom emoji and heartbeats are
typed, with the Rust SDK's fields (events with several ``op`` carry the
fields of every op, ``None`` where that op has none); every other
``type``/``op`` pair is an :class:`OtherEvent` carrying the raw JSON. Unknown fields are ignored and
most fields are optional, because newer servers send more than older ones.
A known event with a field of the wrong type is a fatal ``HandlerError``.
"""

from __future__ import annotations

import builtins
import dataclasses
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


# The other typed events. Each dataclass is read from its JSON object by
# `_build`, which checks every field against its annotation; a field
# without a default is required.
_KINDS = {
    "int": int, "Optional[int]": int, "str": str, "Optional[str]": str,
    "Optional[bool]": bool, "Optional[float]": (int, float), "list[int]": list,
    "dict": dict, "Any": object,
}


def _build(cls: Any, raw: Any, where: str = "") -> Any:
    if not isinstance(raw, dict):
        raise _Malformed(f"`{where or cls.__name__}` is not an object")
    kw = {}
    for f in dataclasses.fields(cls):
        kind = _KINDS[f.type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kw[f.name] = _get(raw, f.name, kind)
            if kw[f.name] is None:
                raise _Malformed(f"`{f.name}` is missing")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kw[f.name] = _ints(raw, f.name) if f.type == "list[int]" else _get(raw, f.name, kind, default)
    return cls(**kw)


def _list_of(cls: Any, raw: dict, name: str) -> list:
    return [_build(cls, item, name) for item in _get(raw, name, list, [])]


@dataclass
class Stream:
    """A channel (``stream`` in the API) as ``stream.create`` and
    ``subscription.add`` describe it."""

    stream_id: int
    name: str = ""
    description: Optional[str] = None
    rendered_description: Optional[str] = None
    invite_only: Optional[bool] = None
    is_web_public: Optional[bool] = None
    is_archived: Optional[bool] = None
    history_public_to_subscribers: Optional[bool] = None
    creator_id: Optional[int] = None
    date_created: Optional[int] = None
    first_message_id: Optional[int] = None
    message_retention_days: Optional[int] = None
    subscriber_count: Optional[int] = None
    folder_id: Optional[int] = None
    stream_weekly_traffic: Optional[int] = None


@dataclass
class Subscription:
    """The receiving user's subscription to a channel."""

    stream: Stream
    color: Optional[str] = None
    is_muted: Optional[bool] = None
    pin_to_top: Optional[bool] = None
    subscribers: list = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: Any) -> "Subscription":
        extra = _build(_SubscriptionExtra, raw, "subscriptions")
        return cls(_build(Stream, raw, "subscriptions"), **dataclasses.asdict(extra))


@dataclass
class _SubscriptionExtra:
    color: Optional[str] = None
    is_muted: Optional[bool] = None
    pin_to_top: Optional[bool] = None
    subscribers: list[int] = field(default_factory=list)


@dataclass
class RemovedSubscription:
    """A channel the user left."""

    stream_id: int
    name: Optional[str] = None


@dataclass
class SubscriptionEvent:
    """``subscription.add`` (``subscriptions``: :class:`Subscription`),
    ``remove`` (``subscriptions``: :class:`RemovedSubscription`), ``update``
    (``stream_id``, ``property``, ``value``), ``peer_add`` / ``peer_remove``
    (``stream_ids``, ``user_ids``)."""

    op: str
    subscriptions: list = field(default_factory=list)
    stream_id: Optional[int] = None
    property: Optional[str] = None
    value: Any = None
    stream_ids: list = field(default_factory=list)
    user_ids: list = field(default_factory=list)


@dataclass
class DeletedStream:
    stream_id: int


@dataclass
class StreamEvent:
    """``stream.create`` (``streams``: :class:`Stream`), ``delete``
    (``streams`` / ``stream_ids``: see :attr:`deleted_ids`), ``update``
    (``stream_id``, ``name``, ``property``, ``value`` and the fields Zulip
    sends along)."""

    op: str
    streams: list = field(default_factory=list)
    stream_ids: list = field(default_factory=list)
    stream_id: Optional[int] = None
    name: Optional[str] = None
    property: Optional[str] = None
    value: Any = None
    rendered_description: Optional[str] = None
    history_public_to_subscribers: Optional[bool] = None
    is_web_public: Optional[bool] = None

    @builtins.property  # `property` is a field of this class
    def deleted_ids(self) -> list:
        """The deleted channels' ids, old and new server shapes alike."""
        if self.op != "delete":
            return []
        ids = list(self.stream_ids)
        for s in self.streams:
            if s.stream_id not in ids:
                ids.append(s.stream_id)
        return ids


@dataclass
class RealmUser:
    """A user as ``realm_user.add`` describes them."""

    user_id: int
    email: Optional[str] = None
    delivery_email: Optional[str] = None
    full_name: str = ""
    role: Optional[int] = None
    is_bot: Optional[bool] = None
    is_active: Optional[bool] = None
    timezone: Optional[str] = None
    date_joined: Optional[str] = None
    avatar_url: Optional[str] = None
    bot_owner_id: Optional[int] = None


@dataclass
class RemovedUser:
    user_id: int
    full_name: Optional[str] = None


@dataclass
class RealmUserUpdate:
    """``realm_user.update``: the user and the fields that changed (raw
    JSON, since Zulip sends one of many shapes)."""

    user_id: int
    changes: dict = field(default_factory=dict)

    @property
    def full_name(self) -> Optional[str]:
        v = self.changes.get("full_name")
        return v if isinstance(v, str) else None

    @property
    def role(self) -> Optional[int]:
        v = self.changes.get("role")
        return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass
class RealmUserEvent:
    """``realm_user.add`` / ``remove`` / ``update``; ``person`` is a
    :class:`RealmUser`, :class:`RemovedUser` or :class:`RealmUserUpdate`."""

    op: str
    person: Any


@dataclass
class RealmEvent:
    """``realm.update`` (``property``, ``value``), ``update_dict``
    (``property``, ``data``), ``deactivated`` (``realm_id``)."""

    op: str
    property: Optional[str] = None
    value: Any = None
    data: dict = field(default_factory=dict)
    realm_id: Optional[int] = None


@dataclass
class UserGroup:
    id: int
    name: str = ""
    description: Optional[str] = None
    members: list[int] = field(default_factory=list)
    direct_subgroup_ids: list[int] = field(default_factory=list)
    creator_id: Optional[int] = None
    date_created: Optional[int] = None
    is_system_group: Optional[bool] = None
    deactivated: Optional[bool] = None


@dataclass
class UserGroupEvent:
    """``user_group.add`` (``group``), ``update`` (``group_id``, ``data``),
    ``remove`` (``group_id``), ``add_members`` / ``remove_members``
    (``group_id``, ``user_ids``), ``add_subgroups`` / ``remove_subgroups``
    (``group_id``, ``direct_subgroup_ids``)."""

    op: str
    group: Optional[UserGroup] = None
    group_id: Optional[int] = None
    data: dict = field(default_factory=dict)
    user_ids: list = field(default_factory=list)
    direct_subgroup_ids: list = field(default_factory=list)


@dataclass
class TypingUser:
    user_id: int
    email: Optional[str] = None


@dataclass
class TypingEvent:
    """``typing.start`` / ``typing.stop``: ``message_type`` ``direct`` (with
    ``recipients``) or ``stream`` (with ``stream_id`` and ``topic``)."""

    op: str
    sender: TypingUser
    message_type: str = ""
    recipients: list = field(default_factory=list)
    stream_id: Optional[int] = None
    topic: Optional[str] = None


@dataclass
class UserStatusEvent:
    """``user_status``: a user set their status."""

    user_id: int
    away: Optional[bool] = None
    status_text: Optional[str] = None
    emoji_name: Optional[str] = None
    emoji_code: Optional[str] = None
    reaction_type: Optional[str] = None


@dataclass
class UserPresence:
    """One user's presence, as :meth:`PresenceEvent.users` reports it."""

    user_id: int
    status: str
    """``active`` or ``idle``."""
    timestamp: int


@dataclass
class PresenceEvent:
    """``presence``, in the legacy shape (``user_id`` with ``presence`` per
    client) and the modern one (``presences`` by user id); :meth:`users`
    reads both."""

    user_id: Optional[int] = None
    email: Optional[str] = None
    server_timestamp: Optional[float] = None
    presence: dict = field(default_factory=dict)
    presences: dict = field(default_factory=dict)

    def users(self) -> list:
        """Each user's status (active when any client is) and latest time."""
        users = []
        if self.user_id is not None and self.presence:
            clients = [c for c in self.presence.values() if isinstance(c, dict)]
            active = any(c.get("status") == "active" for c in clients)
            times = [c["timestamp"] for c in clients if isinstance(c.get("timestamp"), int)]
            ts = max(times) if times else int(self.server_timestamp or 0)
            users.append(UserPresence(self.user_id, "active" if active else "idle", ts))
        for uid, p in self.presences.items():
            if not uid.isdigit() or not isinstance(p, dict):
                continue
            active = p.get("active_timestamp")
            idle = p.get("idle_timestamp")
            active = active if isinstance(active, int) else -(2**63)
            idle = idle if isinstance(idle, int) else -(2**63)
            users.append(UserPresence(int(uid), "active" if active >= idle else "idle", max(active, idle, 0)))
        return users


@dataclass
class RealmEmoji:
    id: str = ""
    name: str = ""
    source_url: Optional[str] = None
    still_url: Optional[str] = None
    deactivated: Optional[bool] = None
    author_id: Optional[int] = None


@dataclass
class RealmEmojiEvent:
    """``realm_emoji.update`` (``realm_emoji``: every custom emoji by id),
    ``add`` (``emoji``), ``update_one`` (``emoji_id``, ``data``)."""

    op: str
    realm_emoji: dict = field(default_factory=dict)
    emoji: Optional[RealmEmoji] = None
    emoji_id: Optional[str] = None
    data: dict = field(default_factory=dict)


def _by_op(name: str, op: Any, raw: dict) -> Any:
    """The typed event of a ``type`` with ops, or None for an unknown op."""
    t = raw["type"]
    if t == "subscription":
        if op == "add":
            subs = [Subscription.from_json(s) for s in _get(raw, "subscriptions", list, [])]
            return SubscriptionEvent(op, subscriptions=subs)
        if op == "remove":
            return SubscriptionEvent(op, subscriptions=_list_of(RemovedSubscription, raw, "subscriptions"))
        if op == "update":
            return SubscriptionEvent(op, stream_id=_required_int(raw, "stream_id"),
                                     property=_required_str(raw, "property"), value=raw.get("value"))
        if op in ("peer_add", "peer_remove"):
            return SubscriptionEvent(op, stream_ids=_ints(raw, "stream_ids"), user_ids=_ints(raw, "user_ids"))
    if t == "stream":
        if op == "create":
            return StreamEvent(op, streams=_list_of(Stream, raw, "streams"))
        if op == "delete":
            return StreamEvent(op, streams=_list_of(DeletedStream, raw, "streams"),
                               stream_ids=_ints(raw, "stream_ids"))
        if op == "update":
            return StreamEvent(
                op, stream_id=_required_int(raw, "stream_id"), name=_get(raw, "name", str),
                property=_required_str(raw, "property"), value=raw.get("value"),
                rendered_description=_get(raw, "rendered_description", str),
                history_public_to_subscribers=_get(raw, "history_public_to_subscribers", bool),
                is_web_public=_get(raw, "is_web_public", bool),
            )
    if t == "realm_user" and op in ("add", "remove", "update"):
        person = raw.get("person")
        if op == "update":
            if not isinstance(person, dict):
                raise _Malformed("`person` is not an object")
            changes = {k: v for k, v in person.items() if k != "user_id"}
            return RealmUserEvent(op, RealmUserUpdate(_required_int(person, "user_id"), changes))
        return RealmUserEvent(op, _build(RealmUser if op == "add" else RemovedUser, person, "person"))
    if t == "realm":
        if op == "update":
            return RealmEvent(op, property=_required_str(raw, "property"), value=raw.get("value"))
        if op == "update_dict":
            return RealmEvent(op, property=_required_str(raw, "property"), data=_get(raw, "data", dict, {}))
        if op == "deactivated":
            return RealmEvent(op, realm_id=_required_int(raw, "realm_id"))
    if t == "user_group":
        if op == "add":
            return UserGroupEvent(op, group=_build(UserGroup, raw.get("group"), "group"))
        if op in ("update", "remove", "add_members", "remove_members", "add_subgroups", "remove_subgroups"):
            return UserGroupEvent(
                op, group_id=_required_int(raw, "group_id"),
                data=_get(raw, "data", dict, {}) if op == "update" else {},
                user_ids=_ints(raw, "user_ids") if op.endswith("_members") else [],
                direct_subgroup_ids=_ints(raw, "direct_subgroup_ids") if op.endswith("_subgroups") else [],
            )
    if t == "typing" and op in ("start", "stop"):
        return TypingEvent(
            op, sender=_build(TypingUser, raw.get("sender"), "sender"),
            message_type=_get(raw, "message_type", str, ""),
            recipients=_list_of(TypingUser, raw, "recipients"),
            stream_id=_get(raw, "stream_id", int), topic=_get(raw, "topic", str),
        )
    if t == "realm_emoji":
        if op == "update":
            emoji = _get(raw, "realm_emoji", dict, {})
            return RealmEmojiEvent(op, realm_emoji={k: _build(RealmEmoji, v, "realm_emoji") for k, v in emoji.items()})
        if op == "add":
            return RealmEmojiEvent(op, emoji=_build(RealmEmoji, raw.get("emoji"), "emoji"))
        if op == "update_one":
            return RealmEmojiEvent(op, emoji_id=_required_str(raw, "emoji_id"), data=_get(raw, "data", dict, {}))
    return None


def _required_str(raw: dict, name: str) -> str:
    value = _get(raw, name, str)
    if value is None:
        raise _Malformed(f"`{name}` is missing")
    return value


@dataclass
class HeartbeatEvent:
    """``heartbeat``: the queue is alive; nothing happened."""


@dataclass
class OtherEvent:
    """Any ``type``/``op`` pair this SDK does not model, with the raw JSON."""

    type: str
    raw: dict


ZulipEvent = Union[
    MessageEvent, UpdateMessageEvent, DeleteMessageEvent, ReactionEvent, SubscriptionEvent,
    StreamEvent, RealmUserEvent, RealmEvent, UserGroupEvent, TypingEvent, UserStatusEvent,
    PresenceEvent, RealmEmojiEvent, HeartbeatEvent, OtherEvent,
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
        if name == "user_status":
            return _build(UserStatusEvent, raw)
        if name == "presence":
            presence = _build(PresenceEvent, raw)
            presence.presences = {k: v for k, v in presence.presences.items() if isinstance(v, dict)}
            return presence
        typed = _by_op(name, op, raw)
        if typed is not None:
            return typed
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
