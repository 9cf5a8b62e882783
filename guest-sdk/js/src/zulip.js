// Typed Zulip events, the rule that names them as Hookbox event types, and
// the events a handler emits to act in Zulip (`zulip.send_message`,
// `zulip.add_reaction`).
//
// `parse` dispatches on `type` and `op` like the Rust SDK's
// `ZulipEvent::from_value`. Messages, edits, deletions, reactions,
// subscriptions, channels (streams), users, realm settings, user groups,
// typing, user status, presence, custom emoji and heartbeats are typed
// (`kind`, and `op` where the type has several), with the Rust SDK's fields
// in camelCase; every other pair is `{kind: 'other'}` with the raw JSON. Unknown fields are ignored; a known event with a field of
// the wrong type is a fatal `HandlerError` naming the event.

import { HandlerError } from './host.js';
// A cycle, used only at call time.
import { emit } from './index.js';

export const SEND_MESSAGE_EVENT = 'zulip.send_message';
export const ADD_REACTION_EVENT = 'zulip.add_reaction';

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `type`, or `type.op` with a non-empty string `op`; `unknown` without a string `type`. */
export function hookboxType(raw) {
  if (!isObject(raw) || typeof raw.type !== 'string') return 'unknown';
  return typeof raw.op === 'string' && raw.op !== '' ? `${raw.type}.${raw.op}` : raw.type;
}

class Malformed extends Error {}

const KINDS = {
  int: Number.isInteger,
  string: (v) => typeof v === 'string',
  bool: (v) => typeof v === 'boolean',
  array: Array.isArray,
  number: (v) => typeof v === 'number',
  object: isObject,
};

function get(raw, name, kind, fallback = undefined) {
  const v = raw[name];
  if (v === undefined || v === null) return fallback;
  if (!KINDS[kind](v)) throw new Malformed(`\`${name}\` is ${JSON.stringify(v)}, expected ${kind}`);
  return v;
}

function required(raw, name, kind) {
  const v = get(raw, name, kind);
  if (v === undefined) throw new Malformed(`\`${name}\` is missing`);
  return v;
}

function ints(raw, name) {
  const v = get(raw, name, 'array', []);
  if (!v.every(Number.isInteger)) throw new Malformed(`\`${name}\` must be a list of integers`);
  return v;
}

const camel = (name) => name.replace(/_(.)/g, (_, c) => c.toUpperCase());

/**
 * The fields `spec` names, read from `raw` (an object named `where`):
 * `[snake_name, kind]` optional, `[snake_name, kind, true]` required,
 * `[snake_name, kind, false, fallback]` with a default; kind `ints` is a list
 * of integers, `any` any JSON. Keys come out in camelCase.
 */
function fields(raw, spec, where) {
  if (!isObject(raw)) throw new Malformed(`\`${where}\` is not an object`);
  const out = {};
  for (const [name, kind, isRequired = false, fallback = undefined] of spec) {
    let v;
    if (kind === 'ints') v = ints(raw, name);
    else if (kind === 'any') v = raw[name] ?? undefined;
    else v = isRequired ? required(raw, name, kind) : get(raw, name, kind, fallback);
    out[camel(name)] = v;
  }
  return out;
}

const list = (raw, name, spec) => get(raw, name, 'array', []).map((item) => fields(item, spec, name));

const STREAM = [
  ['stream_id', 'int', true],
  ['name', 'string', false, ''],
  ['description', 'string'],
  ['rendered_description', 'string'],
  ['invite_only', 'bool'],
  ['is_web_public', 'bool'],
  ['is_archived', 'bool'],
  ['history_public_to_subscribers', 'bool'],
  ['creator_id', 'int'],
  ['date_created', 'int'],
  ['first_message_id', 'int'],
  ['message_retention_days', 'int'],
  ['subscriber_count', 'int'],
  ['folder_id', 'int'],
  ['stream_weekly_traffic', 'int'],
];
const SUBSCRIPTION = [['color', 'string'], ['is_muted', 'bool'], ['pin_to_top', 'bool'], ['subscribers', 'ints']];
const REALM_USER = [
  ['user_id', 'int', true],
  ['email', 'string'],
  ['delivery_email', 'string'],
  ['full_name', 'string', false, ''],
  ['role', 'int'],
  ['is_bot', 'bool'],
  ['is_active', 'bool'],
  ['timezone', 'string'],
  ['date_joined', 'string'],
  ['avatar_url', 'string'],
  ['bot_owner_id', 'int'],
];
const USER_GROUP = [
  ['id', 'int', true],
  ['name', 'string', false, ''],
  ['description', 'string'],
  ['members', 'ints'],
  ['direct_subgroup_ids', 'ints'],
  ['creator_id', 'int'],
  ['date_created', 'int'],
  ['is_system_group', 'bool'],
  ['deactivated', 'bool'],
];
const TYPING_USER = [['user_id', 'int', true], ['email', 'string']];
const REALM_EMOJI = [
  ['id', 'string', false, ''],
  ['name', 'string', false, ''],
  ['source_url', 'string'],
  ['still_url', 'string'],
  ['deactivated', 'bool'],
  ['author_id', 'int'],
];
const I64_MIN = Number.MIN_SAFE_INTEGER;

/** Each user's presence (active when any client is) from either shape. */
function presenceUsers(p) {
  const users = [];
  const clients = Object.values(p.presence).filter(isObject);
  if (p.userId !== undefined && clients.length) {
    const times = clients.map((c) => c.timestamp).filter(Number.isInteger);
    users.push({
      userId: p.userId,
      status: clients.some((c) => c.status === 'active') ? 'active' : 'idle',
      timestamp: times.length ? Math.max(...times) : Math.trunc(p.serverTimestamp ?? 0),
    });
  }
  for (const [id, m] of Object.entries(p.presences)) {
    if (!/^[0-9]+$/.test(id) || !isObject(m)) continue;
    const active = Number.isInteger(m.active_timestamp) ? m.active_timestamp : I64_MIN;
    const idle = Number.isInteger(m.idle_timestamp) ? m.idle_timestamp : I64_MIN;
    users.push({ userId: Number(id), status: active >= idle ? 'active' : 'idle', timestamp: Math.max(active, idle, 0) });
  }
  return users;
}

/** The typed event of a `type` with ops; `undefined` for an unknown op. */
function byOp(raw) {
  const { type, op } = raw;
  const ev = (kind, rest) => ({ kind, op, ...rest });
  switch (`${type}.${op}`) {
    case 'subscription.add':
      return ev('subscription', {
        subscriptions: get(raw, 'subscriptions', 'array', []).map((s) => ({
          stream: fields(s, STREAM, 'subscriptions'),
          ...fields(s, SUBSCRIPTION, 'subscriptions'),
        })),
      });
    case 'subscription.remove':
      return ev('subscription', { subscriptions: list(raw, 'subscriptions', [['stream_id', 'int', true], ['name', 'string']]) });
    case 'subscription.update':
      return ev('subscription', fields(raw, [['stream_id', 'int', true], ['property', 'string', true], ['value', 'any']], type));
    case 'subscription.peer_add':
    case 'subscription.peer_remove':
      return ev('subscription', fields(raw, [['stream_ids', 'ints'], ['user_ids', 'ints']], type));
    case 'stream.create':
      return ev('stream', { streams: list(raw, 'streams', STREAM) });
    case 'stream.delete': {
      const streams = list(raw, 'streams', [['stream_id', 'int', true]]);
      const streamIds = ints(raw, 'stream_ids');
      const deletedIds = [...streamIds];
      for (const s of streams) if (!deletedIds.includes(s.streamId)) deletedIds.push(s.streamId);
      return ev('stream', { streams, streamIds, deletedIds });
    }
    case 'stream.update':
      return ev(
        'stream',
        fields(
          raw,
          [
            ['stream_id', 'int', true],
            ['name', 'string'],
            ['property', 'string', true],
            ['value', 'any'],
            ['rendered_description', 'string'],
            ['history_public_to_subscribers', 'bool'],
            ['is_web_public', 'bool'],
          ],
          type,
        ),
      );
    case 'realm_user.add':
      return ev('realm_user', { person: fields(raw.person, REALM_USER, 'person') });
    case 'realm_user.remove':
      return ev('realm_user', { person: fields(raw.person, [['user_id', 'int', true], ['full_name', 'string']], 'person') });
    case 'realm_user.update': {
      const { userId } = fields(raw.person, [['user_id', 'int', true]], 'person');
      const { user_id: _, ...changes } = raw.person;
      return ev('realm_user', { person: { userId, changes } });
    }
    case 'realm.update':
      return ev('realm', fields(raw, [['property', 'string', true], ['value', 'any']], type));
    case 'realm.update_dict':
      return ev('realm', fields(raw, [['property', 'string', true], ['data', 'object', false, {}]], type));
    case 'realm.deactivated':
      return ev('realm', fields(raw, [['realm_id', 'int', true]], type));
    case 'user_group.add':
      return ev('user_group', { group: fields(raw.group, USER_GROUP, 'group') });
    case 'user_group.update':
      return ev('user_group', fields(raw, [['group_id', 'int', true], ['data', 'object', false, {}]], type));
    case 'user_group.remove':
      return ev('user_group', fields(raw, [['group_id', 'int', true]], type));
    case 'user_group.add_members':
    case 'user_group.remove_members':
      return ev('user_group', fields(raw, [['group_id', 'int', true], ['user_ids', 'ints']], type));
    case 'user_group.add_subgroups':
    case 'user_group.remove_subgroups':
      return ev('user_group', fields(raw, [['group_id', 'int', true], ['direct_subgroup_ids', 'ints']], type));
    case 'typing.start':
    case 'typing.stop':
      return ev('typing', {
        sender: fields(raw.sender, TYPING_USER, 'sender'),
        messageType: get(raw, 'message_type', 'string', ''),
        recipients: list(raw, 'recipients', TYPING_USER),
        streamId: get(raw, 'stream_id', 'int'),
        topic: get(raw, 'topic', 'string'),
      });
    case 'realm_emoji.update': {
      const emoji = get(raw, 'realm_emoji', 'object', {});
      return ev('realm_emoji', {
        realmEmoji: Object.fromEntries(Object.entries(emoji).map(([id, e]) => [id, fields(e, REALM_EMOJI, 'realm_emoji')])),
      });
    }
    case 'realm_emoji.add':
      return ev('realm_emoji', { emoji: fields(raw.emoji, REALM_EMOJI, 'emoji') });
    case 'realm_emoji.update_one':
      return ev('realm_emoji', fields(raw, [['emoji_id', 'string', true], ['data', 'object', false, {}]], type));
    default:
      return undefined;
  }
}

/** A raw Zulip message object as a typed message. */
export function parseMessage(raw) {
  if (!isObject(raw)) throw new Malformed('`message` is not an object');
  const recipient = raw.display_recipient;
  let streamName;
  let directRecipients = [];
  if (typeof recipient === 'string') streamName = recipient;
  else if (Array.isArray(recipient)) {
    directRecipients = recipient.map((u) => {
      if (!isObject(u) || !Number.isInteger(u.id)) throw new Malformed('`display_recipient` users need an integer `id`');
      return { id: u.id, email: u.email ?? undefined, fullName: u.full_name ?? undefined };
    });
  } else if (recipient !== undefined && recipient !== null) {
    throw new Malformed('`display_recipient` is neither a name nor a list of users');
  }
  const type = get(raw, 'type', 'string', '');
  return {
    id: required(raw, 'id', 'int'),
    senderId: get(raw, 'sender_id', 'int'),
    senderEmail: get(raw, 'sender_email', 'string'),
    senderFullName: get(raw, 'sender_full_name', 'string'),
    content: get(raw, 'content', 'string', ''),
    type,
    streamId: get(raw, 'stream_id', 'int'),
    streamName,
    directRecipients,
    topic: get(raw, 'topic', 'string') ?? get(raw, 'subject', 'string'),
    timestamp: get(raw, 'timestamp', 'int'),
    avatarUrl: get(raw, 'avatar_url', 'string'),
    isDirect: type === 'private' || type === 'direct' || directRecipients.length > 0,
  };
}

const MENTIONS = ['mentioned', 'stream_wildcard_mentioned', 'topic_wildcard_mentioned'];

/** A raw Zulip event (parsed JSON) as a typed event. */
export function parse(raw) {
  if (!isObject(raw)) throw new HandlerError('Zulip event is not a JSON object');
  if (typeof raw.type !== 'string') throw new HandlerError('Zulip event has no string `type` field');
  const name = hookboxType(raw);
  try {
    switch (name) {
      case 'message': {
        const flags = get(raw, 'flags', 'array', []);
        return { kind: 'message', message: parseMessage(raw.message), flags, mentionsMe: flags.some((f) => MENTIONS.includes(f)) };
      }
      case 'update_message': {
        const content = get(raw, 'content', 'string');
        const renderingOnly = get(raw, 'rendering_only', 'bool');
        const newStreamId = get(raw, 'new_stream_id', 'int');
        const origSubject = get(raw, 'orig_subject', 'string');
        return {
          kind: 'update_message',
          messageId: required(raw, 'message_id', 'int'),
          messageIds: ints(raw, 'message_ids'),
          userId: get(raw, 'user_id', 'int'),
          streamId: get(raw, 'stream_id', 'int'),
          newStreamId,
          origSubject,
          subject: get(raw, 'subject', 'string'),
          content,
          renderingOnly,
          contentChanged: content !== undefined && renderingOnly !== true,
          moved: newStreamId !== undefined || origSubject !== undefined,
        };
      }
      case 'delete_message': {
        const messageId = get(raw, 'message_id', 'int');
        const messageIds = ints(raw, 'message_ids');
        const deletedIds = [...messageIds];
        if (messageId !== undefined && !deletedIds.includes(messageId)) deletedIds.push(messageId);
        return {
          kind: 'delete_message',
          messageType: get(raw, 'message_type', 'string', ''),
          messageId,
          messageIds,
          deletedIds,
          streamId: get(raw, 'stream_id', 'int'),
          topic: get(raw, 'topic', 'string'),
        };
      }
      case 'reaction.add':
      case 'reaction.remove': {
        let userId = get(raw, 'user_id', 'int');
        if (userId === undefined && isObject(raw.user)) userId = get(raw.user, 'user_id', 'int');
        return {
          kind: 'reaction',
          op: raw.op,
          messageId: required(raw, 'message_id', 'int'),
          userId,
          emojiName: get(raw, 'emoji_name', 'string', ''),
          emojiCode: get(raw, 'emoji_code', 'string', ''),
          reactionType: get(raw, 'reaction_type', 'string', ''),
        };
      }
      case 'heartbeat':
        return { kind: 'heartbeat' };
      case 'user_status':
        return {
          kind: 'user_status',
          ...fields(
            raw,
            [['user_id', 'int', true], ['away', 'bool'], ['status_text', 'string'], ['emoji_name', 'string'], ['emoji_code', 'string'], ['reaction_type', 'string']],
            name,
          ),
        };
      case 'presence': {
        const p = fields(
          raw,
          [['user_id', 'int'], ['email', 'string'], ['server_timestamp', 'number'], ['presence', 'object', false, {}], ['presences', 'object', false, {}]],
          name,
        );
        return { kind: 'presence', ...p, users: presenceUsers(p) };
      }
      default:
        return byOp(raw) ?? { kind: 'other', type: name, raw };
    }
  } catch (e) {
    if (e instanceof Malformed) throw new HandlerError(`malformed Zulip \`${name}\` event: ${e.message}`);
    throw e;
  }
}

/**
 * The `zulip.send_message` payload of a reply in the conversation of
 * `message` (a typed message); `undefined` when it has none.
 */
export function sendMessagePayload(message, content) {
  if (message.isDirect) {
    const to = [...new Set(message.directRecipients.map((u) => u.id))].sort((a, b) => a - b);
    return to.length ? { type: 'direct', to, content } : undefined;
  }
  if (message.streamName === undefined) return undefined;
  const payload = { type: 'stream', to: message.streamName, topic: message.topic ?? '', content };
  if (message.streamId !== undefined) payload.stream_id = message.streamId;
  return payload;
}

/** Emits a `zulip.send_message` answering `message`; false (nothing emitted) when it has no conversation. */
export function reply(message, content) {
  const payload = sendMessagePayload(message, content);
  if (payload === undefined) return false;
  emit(SEND_MESSAGE_EVENT, payload);
  return true;
}

/** Emits a `zulip.add_reaction` putting `emojiName` on a message. */
export function addReaction(messageId, emojiName, { emojiCode, reactionType } = {}) {
  const payload = { message_id: messageId, emoji_name: emojiName };
  if (emojiCode !== undefined) payload.emoji_code = emojiCode;
  if (reactionType !== undefined) payload.reaction_type = reactionType;
  emit(ADD_REACTION_EVENT, payload);
}
