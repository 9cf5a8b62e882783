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
  ...Object.fromEntries(['add', 'remove', 'update', 'peer_add', 'peer_remove'].map((op) => [`subscription.${op}`, 'subscription'])),
  ...Object.fromEntries(['create', 'delete', 'update'].map((op) => [`stream.${op}`, 'stream'])),
  ...Object.fromEntries(['add', 'remove', 'update'].map((op) => [`realm_user.${op}`, 'realm_user'])),
  ...Object.fromEntries(['update', 'update_dict', 'deactivated'].map((op) => [`realm.${op}`, 'realm'])),
  ...Object.fromEntries(
    ['add', 'update', 'remove', 'add_members', 'remove_members', 'add_subgroups', 'remove_subgroups'].map((op) => [`user_group.${op}`, 'user_group']),
  ),
  'typing.start': 'typing',
  'typing.stop': 'typing',
  user_status: 'user_status',
  presence: 'presence',
  'realm_emoji.update': 'realm_emoji',
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
  user_status: ['kind', 'userId', 'away', 'statusText', 'emojiName', 'emojiCode', 'reactionType'],
  presence: ['kind', 'userId', 'email', 'serverTimestamp', 'presence', 'presences', 'users'],
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
    // Kinds with several ops carry each op's fields (index.d.ts).
    if (DECLARED[kind]) assert.deepEqual(Object.keys(parsed).sort(), [...DECLARED[kind]].sort(), name);
    else assert.equal(parsed.op, raw.op, name);
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
    // Fields kept as raw JSON (`realm_user.update` changes, `data`) see
    // the new field; every typed one must not.
    const keepsRaw = ['realm_user.update', 'realm.update_dict', 'user_group.update'].includes(zulip.hookboxType(raw));
    if (plain.kind !== 'other' && !keepsRaw) assert.deepEqual(parsed, plain, zulip.hookboxType(raw));
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

// The same values the Rust SDK's tests check (guest-sdk/tests/sdk/zulip_fixtures.rs).
test('subscriptions', () => {
  const s = event('subscription.add').subscriptions[0];
  assert.deepEqual([s.stream.streamId, s.stream.name, s.color, s.subscribers, s.stream.creatorId], [9, 'test', '#76ce90', [10], undefined]);
  const peer = event('subscription.peer_add');
  assert.deepEqual([peer.streamIds, peer.userIds], [[9], [12]]);
  const u = event('subscription.update');
  assert.deepEqual([u.streamId, u.property, u.value], [11, 'pin_to_top', true]);
  assert.equal(event('subscription.remove').subscriptions[0].streamId, 9);
  assert.equal(event('subscription.peer_remove').op, 'peer_remove');
});

test('streams', () => {
  const c = event('stream.create').streams[0];
  assert.deepEqual([c.streamId, c.name, c.inviteOnly], [12, 'private', true]);
  assert.deepEqual(event('stream.delete').deletedIds, [1, 2]);
  const u = event('stream.update');
  assert.deepEqual([u.streamId, u.name, u.property, u.value], [11, 'test', 'invite_only', true]);
});

test('realm users', () => {
  const a = event('realm_user.add').person;
  assert.deepEqual([a.userId, a.fullName, a.role, a.isBot], [38, 'full name', 400, false]);
  assert.equal(event('realm_user.remove').person.userId, 35);
  const u = event('realm_user.update').person;
  assert.deepEqual([u.userId, u.changes.avatar_version, 'user_id' in u.changes], [10, 3, false]);
});

test('realm settings and emoji', () => {
  const u = event('realm.update');
  assert.deepEqual([u.property, u.value], ['disallow_disposable_email_addresses', false]);
  const d = event('realm.update_dict');
  assert.deepEqual([d.property, d.data.message_content_edit_limit_seconds], ['default', 600]);
  assert.deepEqual(event('realm.deactivated'), { kind: 'realm', op: 'deactivated', realmId: 2 });
  const emoji = event('realm_emoji.update').realmEmoji;
  assert.deepEqual([emoji['1'].name, emoji['2'].deactivated], ['green_tick', true]);
});

test('user groups', () => {
  const g = event('user_group.add').group;
  assert.deepEqual([g.id, g.name, g.members], [2, 'backend', [12]]);
  assert.deepEqual(event('user_group.add_members'), { kind: 'user_group', op: 'add_members', groupId: 2, userIds: [10] });
  assert.deepEqual(event('user_group.remove'), { kind: 'user_group', op: 'remove', groupId: 2 });
  const u = event('user_group.update');
  assert.ok(u.groupId === 2 && u.data.description.includes('security team'));
});

test('typing, status and presence', () => {
  const t = event('typing.start');
  assert.deepEqual([t.op, t.messageType, t.sender.userId, t.recipients.map((r) => r.userId)], ['start', 'direct', 10, [8, 10]]);
  const s = event('user_status');
  assert.deepEqual([s.userId, s.away, s.statusText], [10, true, 'out to lunch']);
  const p = event('presence');
  assert.deepEqual(p.users, [{ userId: 10, status: 'idle', timestamp: 1_594_825_445 }]);
  assert.ok(Math.abs(p.serverTimestamp - 1_594_825_445.32) < 0.01);
});

test('newer server shapes', () => {
  const modern = zulip.parse({
    type: 'presence',
    id: 4,
    server_timestamp: 1_700_000_000,
    presences: {
      10: { active_timestamp: 1_700_000_000, idle_timestamp: 1_699_999_000 },
      11: { active_timestamp: 1_600_000_000, idle_timestamp: 1_699_999_990 },
    },
  });
  assert.deepEqual(
    modern.users.map((u) => [u.userId, u.status, u.timestamp]),
    [[10, 'active', 1_700_000_000], [11, 'idle', 1_699_999_990]],
  );
  const add = zulip.parse({ type: 'realm_emoji', op: 'add', emoji: { id: '3', name: 'ship', source_url: '/e/3.png', deactivated: false, author_id: 9, still_url: null } });
  assert.equal(add.emoji.name, 'ship');
  assert.equal(zulip.parse({ type: 'realm_emoji', op: 'update_one', emoji_id: '3', data: { deactivated: true } }).emojiId, '3');
  const stream = zulip.parse({
    type: 'stream',
    op: 'create',
    streams: [{ stream_id: 5, name: 'ops', subscriber_count: 3, folder_id: null, topics_policy: 'inherit', can_send_message_group: { direct_members: [1], direct_subgroups: [] } }],
  });
  assert.equal(stream.streams[0].subscriberCount, 3);
  const typing = zulip.parse({ type: 'typing', op: 'stop', message_type: 'stream', sender: { user_id: 4, email: 'a@b' }, stream_id: 7, topic: 'ci' });
  assert.deepEqual([typing.op, typing.streamId, typing.recipients], ['stop', 7, []]);
});

test('unknown ops stay raw; malformed known ones are fatal', () => {
  assert.equal(zulip.parse({ type: 'stream', op: 'archive', stream_id: 1 }).kind, 'other');
  assert.throws(() => zulip.parse({ type: 'user_group', op: 'remove' }), (e) => e instanceof HandlerError && /`user_group.remove`.*group_id/.test(e.message));
  assert.throws(() => zulip.parse({ type: 'typing', op: 'start', sender: { user_id: 'x' } }), /`typing.start`/);
});
