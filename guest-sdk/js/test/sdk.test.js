// The SDK against its fake host: KV, config, emit, logs, errors, grants,
// the Zulip helpers and the export wrapper's error rule.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CapabilityDenied, Event, HandlerError, config, emit, exportHandler, kv, log, nowMs, zulip } from '../src/index.js';
import { TestHost } from '../src/testing.js';

function counter(event) {
  const n = kv.increment(`${config().prefix ?? 'n'}:${event.type}`);
  log.info('Counted', { n, at: nowMs() });
  if (n % 2 === 0) emit('counted', { n }, { priority: 'low', metadata: { by: 'counter' } });
}

test('KV is per tenant and emissions need success', () => {
  const host = new TestHost({ config: { prefix: 'c' } });
  for (const tenant of ['acme', 'acme', 'zeta']) host.run(counter, Event.build('ping', {}, { tenant }));
  assert.equal(host.kvGetString('acme', 'c:ping'), '2');
  assert.equal(host.kvGetString('zeta', 'c:ping'), '1');
  assert.equal(host.emitted.length, 1);
  const [e] = host.emitted;
  assert.deepEqual([e.type, e.tenant, e.payload, e.priority, e.metadata], ['counted', 'acme', { n: 2 }, 'low', { by: 'counter' }]);
  assert.deepEqual(host.logs[0].fields, [['n', '1'], ['at', '1700000000000']]);
});

test('KV operations', () => {
  const host = new TestHost();
  host.run(() => {
    assert.equal(kv.get('k'), undefined);
    kv.set('k', 'v1', { ttlMs: 1000 });
    assert.equal(kv.getString('k'), 'v1');
    assert.ok(!kv.compareAndSwap('k', 'other', 'v2'));
    assert.ok(kv.compareAndSwap('k', 'v1', new TextEncoder().encode('v2')));
    assert.ok(kv.delete('k') && !kv.delete('k'));
    assert.ok(kv.compareAndSwap('k', undefined, 'new'));
    kv.set('num', 'not a number');
    assert.equal(kv.increment('num', 5), 5);
  }, Event.build('x', {}, { tenant: 't' }));
  assert.equal(host.kvGetString('t', 'k'), 'new');
});

test('a HandlerError keeps retryable and drops emissions', () => {
  const host = new TestHost();
  assert.throws(
    () => host.run(() => { emit('never'); throw HandlerError.transient('upstream down'); }, Event.build('x')),
    (e) => e instanceof HandlerError && e.retryable && e.message === 'upstream down',
  );
  assert.deepEqual(host.emitted, []);
});

test('malformed payload and config are fatal', () => {
  const host = new TestHost();
  assert.throws(() => host.run((e) => e.json(), new Event({ type: 'x', payload: '{nope' })), (e) => e instanceof HandlerError && !e.retryable);
  host.configJson = '{nope';
  assert.throws(() => host.run(() => config(), Event.build('x')), /config/);
});

test('emit follows the host rules', () => {
  const host = new TestHost();
  assert.throws(() => host.run(() => emit('has space'), Event.build('x')), /invalid event type/);
  assert.throws(() => host.run(() => emit('hookbox.fake'), Event.build('x')), /invalid event type/);
  assert.throws(() => host.run(() => emit('ok', {}, { priority: 'urgent' }), Event.build('x')), TypeError);
  const acme = Event.build('x', {}, { tenant: 'acme' });
  assert.throws(() => host.run(() => emit('ok', {}, { tenant: 'zeta' }), acme), /only into that tenant/);
  host.run(() => emit('ok', {}, { tenant: 'zeta' }), Event.build('x', {}, { tenant: '' }));
  assert.equal(host.emitted.at(-1).tenant, 'zeta');
});

test('an ungranted capability is denied by use', () => {
  const host = new TestHost({ capabilities: ['log'] });
  host.run(() => log.info('fine'), Event.build('x'));
  assert.throws(() => host.run(() => kv.increment('n'), Event.build('x')), (e) => e instanceof CapabilityDenied && e.message.includes('hookbox:handler/kv@0.1.0#increment'));
  assert.throws(() => new TestHost({ capabilities: ['network'] }), /unknown capabilities/);
});

test('reply and reaction helpers', () => {
  const raw = { type: 'message', flags: ['mentioned'], message: { id: 7, sender_id: 10, content: 'deploy now', type: 'stream', stream_id: 3, display_recipient: 'general', subject: 'ops' } };
  const host = new TestHost();
  host.run((event) => {
    const z = event.zulip();
    assert.ok(z.kind === 'message' && z.mentionsMe);
    assert.ok(zulip.reply(z.message, 'Noted.'));
    zulip.addReaction(z.message.id, 'rocket');
  }, Event.fromZulip(raw, { tenant: 'acme' }));
  const [reply, reaction] = host.emitted;
  assert.deepEqual([reply.type, reply.payload], ['zulip.send_message', { type: 'stream', to: 'general', stream_id: 3, topic: 'ops', content: 'Noted.' }]);
  assert.deepEqual([reaction.type, reaction.payload], ['zulip.add_reaction', { message_id: 7, emoji_name: 'rocket' }]);
  const dm = zulip.parseMessage({ id: 1, type: 'private', display_recipient: [{ id: 9 }, { id: 3 }, { id: 9 }] });
  assert.deepEqual(zulip.sendMessagePayload(dm, 'hi'), { type: 'direct', to: [3, 9], content: 'hi' });
  assert.equal(zulip.sendMessagePayload(zulip.parseMessage({ id: 1 }), 'x'), undefined);
});

test('no host outside a component or a test', () => {
  assert.throws(() => kv.get('k'), /TestHost/);
});

// The export wrapper, as componentize-js calls it (a WIT event, BigInt time).
const wit = { id: 'e1', type: 't', tenant: 'acme', source: 'http', time: 5n, priority: 'normal', payload: '{}', metadata: [], key: undefined, attempt: 2 };

test('export: a HandlerError becomes the WIT handler-error', () => {
  const handle = exportHandler(() => { throw new HandlerError('nope', { retryable: true }); });
  assert.throws(() => handle(wit), (e) => e.message === 'nope' && e.retryable === true && !(e instanceof Error));
  const seen = [];
  exportHandler((e) => seen.push(e))(wit);
  assert.ok(seen[0] instanceof Event && seen[0].timeMs === 5 && seen[0].isRetry);
});

test('export: anything else thrown cannot be lowered, so the component traps', () => {
  for (const thrown of [new TypeError('boom'), 'a string', undefined]) {
    const handle = exportHandler(() => { throw thrown; });
    let caught;
    try { handle(wit); } catch (e) { caught = e; }
    assert.equal(caught.retryable, true);
    assert.throws(() => caught.message, /uncaught exception in handler/);
  }
  const asyncHandle = exportHandler(async () => {});
  let caught;
  try { asyncHandle(wit); } catch (e) { caught = e; }
  assert.throws(() => caught.message, /synchronous/);
});
