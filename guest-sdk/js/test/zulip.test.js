// Every Zulip fixture event (tests/fixtures/zulip/, the same files the Rust
// SDK's Zulip types are tested with) through `zulip.parse`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { HandlerError, zulip } from '../src/index.js';

const FIXTURES = new URL('../../../tests/fixtures/zulip/', import.meta.url);
const events = () => JSON.parse(readFileSync(new URL('zulip-events.json', FIXTURES), 'utf8'));
const event = (name) => zulip.parse(events().find((e) => zulip.hookboxType(e) === name));

const TYPED = {
  message: 'message',
  update_message: 'update_message',
  delete_message: 'delete_message',
  'reaction.add': 'reaction',
  'reaction.remove': 'reaction',
  heartbeat: 'heartbeat',
};

// The fields index.d.ts declares for each kind (optional ones may be absent).
const DECLARED = {
  message: ['kind', 'message', 'flags', 'mentionsMe'],
  update_message: ['kind', 'messageId', 'messageIds', 'userId', 'streamId', 'newStreamId', 'origSubject',
    'subject', 'content', 'renderingOnly', 'contentChanged', 'moved'],
  delete_message: ['kind', 'messageType', 'messageId', 'messageIds', 'deletedIds', 'streamId', 'topic'],
  reaction: ['kind', 'op', 'messageId', 'userId', 'emojiName', 'emojiCode', 'reactionType'],
  heartbeat: ['kind'],
  other: ['kind', 'type', 'raw'],
};
const MESSAGE_FIELDS = ['id', 'senderId', 'senderEmail', 'senderFullName', 'content', 'type', 'streamId',
  'streamName', 'directRecipients', 'topic', 'timestamp', 'avatarUrl', 'isDirect'];

test('the fixture file holds 77 distinct types', () => {
  const names = new Set(events().map(zulip.hookboxType));
  assert.equal(events().length, 77);
  assert.equal(names.size, 77);
});

test('every fixture event parses into its kind, with the declared fields', () => {
  const seen = new Set();
  for (const raw of events()) {
    const name = zulip.hookboxType(raw);
    const parsed = zulip.parse(raw);
    const kind = TYPED[name] ?? 'other';
    assert.equal(parsed.kind, kind, name);
    assert.deepEqual(Object.keys(parsed).sort(), [...DECLARED[kind]].sort(), name);
    if (kind === 'message') assert.deepEqual(Object.keys(parsed.message).sort(), [...MESSAGE_FIELDS].sort());
    if (kind === 'other') assert.deepEqual(parsed.raw, raw);
    seen.add(name);
  }
  for (const name of Object.keys(TYPED)) assert.ok(seen.has(name), name);
});

test('message fields', () => {
  const e = event('message');
  const m = e.message;
  assert.deepEqual([m.id, m.senderId, m.senderEmail], [31, 10, 'user10@zulip.testserver']);
  assert.deepEqual([m.streamId, m.streamName, m.topic], [1, 'Denmark', 'test']);
  assert.ok(!m.isDirect && m.content.startsWith('<p>First message'));
  assert.equal(m.avatarUrl, undefined);
  assert.deepEqual(e.flags, []);
});

test('API example messages are stream and direct; error bodies are not events', () => {
  const examples = JSON.parse(readFileSync(new URL('zulip-events-api-examples.json', FIXTURES), 'utf8'));
  const [stream, direct] = examples.get_events_200_response.events.map(zulip.parse);
  assert.equal(stream.message.streamName, 'Denmark');
  assert.equal(stream.message.topic, undefined);
  assert.ok(direct.message.isDirect);
  assert.deepEqual(direct.message.directRecipients[0].id, 31572);
  assert.equal(direct.message.directRecipients[0].fullName, 'Hamlet of Denmark');
  for (const body of ['BadEventQueueIdError', 'RateLimitedError', 'InvalidApiKeyError']) {
    assert.throws(() => zulip.parse(examples[body]), /no string `type`/);
  }
});

test('edits, deletes and reactions', () => {
  const u = event('update_message');
  assert.deepEqual([u.messageId, u.messageIds], [58, [58, 57]]);
  assert.ok(u.contentChanged && u.moved);
  assert.equal(u.subject, 'new_topic');
  const d = event('delete_message');
  assert.deepEqual([d.messageType, d.deletedIds], ['private', [37]]);
  for (const [name, op, id] of [['reaction.add', 'add', 32], ['reaction.remove', 'remove', 52]]) {
    const r = event(name);
    assert.deepEqual([r.op, r.messageId, r.userId, r.emojiName, r.emojiCode], [op, id, 10, 'tada', '1f389']);
  }
});

function addUnknownFields(v) {
  if (Array.isArray(v)) v.forEach(addUnknownFields);
  else if (v !== null && typeof v === 'object') {
    for (const [k, inner] of Object.entries(v)) if (!['realm_emoji', 'presence', 'presences'].includes(k)) addUnknownFields(inner);
    v.zz_new_field = { nested: [1, 'two', null] };
  }
}

test('unknown fields everywhere are ignored', () => {
  for (const raw of events()) {
    const plain = zulip.parse(structuredClone(raw));
    addUnknownFields(raw);
    const parsed = zulip.parse(raw);
    assert.equal(parsed.kind, plain.kind);
    if (plain.kind !== 'other') assert.deepEqual(parsed, plain, zulip.hookboxType(raw));
  }
});

test('a malformed known event is a fatal error naming it', () => {
  assert.throws(
    () => zulip.parse({ type: 'reaction', op: 'add', message_id: 'x' }),
    (e) => e instanceof HandlerError && !e.retryable && e.message.includes('`reaction.add`'),
  );
  assert.throws(() => zulip.parse({ type: 'message', flags: [] }), HandlerError);
});

test('the hookbox type rule', () => {
  for (const [raw, want] of [
    [{ type: 'message' }, 'message'],
    [{ type: 'reaction', op: 'add' }, 'reaction.add'],
    [{ type: 'realm', op: '' }, 'realm'],
    [{ type: 'realm', op: 3 }, 'realm'],
    [{ op: 'add' }, 'unknown'],
    [['message'], 'unknown'],
  ]) assert.equal(zulip.hookboxType(raw), want);
});
