// The fake host's limits against the real host's: every scenario of
// tests/fixtures/sdk-limits.json (the file tests/tests/runtime/sdk_parity.rs
// runs on the Rust SDK's TestHost and on the real host) run by a port of the
// limits probe (tests/sdk-guests/limits-probe) must give the same outcome,
// retry flag, log records kept and events emitted; the default limits and
// overheads are the host's.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { CapabilityDenied, Event, HandlerError, emit, kv, log } from '../src/index.js';
import {
  EMIT_ENTRY_OVERHEAD,
  EMIT_OVERHEAD,
  FIELD_OVERHEAD,
  LIMITS,
  LimitExceeded,
  RECORD_OVERHEAD,
  TestHost,
} from '../src/testing.js';

const FIXTURE = JSON.parse(readFileSync(new URL('../../../tests/fixtures/sdk-limits.json', import.meta.url), 'utf8'));
const camel = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/_(.)/g, (_, c) => c.toUpperCase()), v]));
const SMALL = camel(FIXTURE.limits);

// Does what the payload says, in the Rust probe's order: log records, KV
// sets, KV gets, emits, then a panic or an error.
function probe(event) {
  const s = event.json();
  const l = s.logs;
  for (let n = 0; l && n < (l.count ?? 0); n++) {
    const fields = {};
    for (let i = 0; i < (l.fields ?? 0); i++) fields[`f${i}`] = 'v'.repeat(l.field_bytes ?? 0);
    log.info('m'.repeat(l.bytes ?? 0), fields);
  }
  for (const [key, size] of s.kv_set ?? []) kv.set(key, new Uint8Array(size).fill(120));
  for (const key of s.kv_get ?? []) kv.get(key);
  const e = s.emits;
  for (let n = 0; e && n < (e.count ?? 0); n++) {
    const metadata = {};
    for (let i = 0; i < (e.metadata ?? 0); i++) metadata[`m${i}`] = 'v';
    emit('probe.out', 'p'.repeat(e.bytes ?? 0), { metadata });
  }
  if (s.panic !== undefined) throw new Error(s.panic);
  if (s.error_bytes !== undefined) throw new HandlerError('e'.repeat(s.error_bytes), { retryable: s.retryable ?? false });
}

for (const scenario of FIXTURE.scenarios) {
  test(`the fake host agrees with the real host: ${scenario.what}`, () => {
    const host = new TestHost({ limits: SMALL });
    const outcome = host.deliver(probe, Event.build('probe', scenario.payload, { tenant: 'acme' }));
    const seen = { outcome: outcome.name, retryable: outcome.retryable, logs: host.logs.length, emitted: host.emitted.length };
    assert.deepEqual(seen, scenario.seen, outcome.error);
  });
}

test('the defaults are the host’s', () => {
  const d = FIXTURE.defaults;
  assert.deepEqual({ ...LIMITS }, camel(Object.fromEntries(Object.keys(FIXTURE.limits).map((k) => [k, d[k]]))));
  assert.deepEqual(
    [RECORD_OVERHEAD, FIELD_OVERHEAD, EMIT_OVERHEAD, EMIT_ENTRY_OVERHEAD],
    [d.record_overhead, d.field_overhead, d.emit_overhead, d.emit_entry_overhead],
  );
  assert.throws(() => new TestHost({ limits: { fuel: 1 } }), /unknown limits fuel/);
});

test('a handler cannot catch its way past a limit', () => {
  const greedy = () => {
    for (let i = 0; i < 10; i++) {
      try {
        kv.set(`k${i}`, 'x'.repeat(90));
      } catch {
        // what a careless handler does
      }
    }
    emit('done', {});
  };
  const host = new TestHost({ limits: SMALL });
  const outcome = host.deliver(greedy, Event.build('x', {}, { tenant: 'acme' }));
  assert.equal(outcome.name, 'kv_limit');
  assert.match(outcome.error, /kv_quota_bytes/);
  assert.deepEqual(host.emitted, []);
  // The writes before the limit stay, as on the host.
  assert.equal(host.kvGetString('acme', 'k2'), 'x'.repeat(90));
  assert.equal(host.kvGetString('acme', 'k3'), undefined);
  assert.throws(() => host.run(greedy, Event.build('x', {}, { tenant: 'acme' })), LimitExceeded);
});

test('run throws result_limit and deliver names it', () => {
  const longError = () => {
    throw new HandlerError('e'.repeat(51));
  };
  const host = new TestHost({ limits: SMALL });
  assert.equal(host.deliver(longError, Event.build('x')).name, 'result_limit');
  assert.throws(() => host.run(longError, Event.build('x')), (e) => e instanceof LimitExceeded && e.outcome.name === 'result_limit');
});

test('a denied capability is its own outcome even when caught', () => {
  const sneaky = () => {
    try {
      kv.set('k', 'v');
    } catch {
      // swallowed
    }
  };
  const host = new TestHost({ capabilities: ['log'] });
  const outcome = host.deliver(sneaky, Event.build('x'));
  assert.equal(outcome.name, 'capability_denied');
  assert.match(outcome.error, /kv/);
  assert.throws(() => host.run(sneaky, Event.build('x')), CapabilityDenied);
});

test('limits reset per delivery', () => {
  const host = new TestHost({ limits: { emits: 1 } });
  for (let i = 0; i < 3; i++) assert.equal(host.deliver(() => emit('one', {}), Event.build('x')).name, 'ok');
  assert.equal(host.emitted.length, 3);
});
