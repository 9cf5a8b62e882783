// Typed Zulip events, the rule that names them as Hookbox event types, and
// the events a handler emits to act in Zulip (`zulip.send_message`,
// `zulip.add_reaction`).
//
// `parse` dispatches on `type` and `op` like the Rust SDK's
// `ZulipEvent::from_value`. Messages, edits, deletions, reactions and
// heartbeats are typed (`kind`); every other pair is `{kind: 'other'}` with
// the raw JSON. Unknown fields are ignored; a known event with a field of
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

const KINDS = { int: Number.isInteger, string: (v) => typeof v === 'string', bool: (v) => typeof v === 'boolean', array: Array.isArray };

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
      default:
        return { kind: 'other', type: name, raw };
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
