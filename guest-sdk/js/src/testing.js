// A fake host to unit-test handlers natively with node's test runner (like
// the Rust SDK's `hookbox_sdk::testing::TestHost`): KV per tenant, config,
// a clock, and the logs and emitted events of every run, checked by the
// rules Hookbox applies.

import { CapabilityDenied, HandlerError, install } from './host.js';

export const CAPABILITIES = ['log', 'kv', 'config', 'emit', 'clock'];
// Hookbox's event type rule: 1-128 of these characters, not `hookbox.*`.
const TYPE = /^[A-Za-z0-9_.:-]{1,128}$/;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const same = (a, b) => (a === undefined ? b === undefined : b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]));
const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);

export class TestHost {
  constructor({ config = {}, capabilities = CAPABILITIES, nowMs = 1_700_000_000_000 } = {}) {
    const unknown = capabilities.filter((c) => !CAPABILITIES.includes(c));
    if (unknown.length) throw new Error(`unknown capabilities ${unknown}; known: ${CAPABILITIES}`);
    this.configJson = JSON.stringify(config);
    this.capabilities = new Set(capabilities);
    this.now = nowMs;
    this.kv = new Map(); // `${tenant}\u0000${key}` -> Uint8Array
    this.logs = [];
    this.emitted = [];
    this.tenant = '';
    this.pending = [];
  }

  /**
   * Runs `fn(event)` like one delivery: what it emitted is kept only when
   * it returns; a thrown error propagates and its emissions are dropped.
   */
  run(fn, event) {
    this.tenant = event.tenant;
    this.pending = [];
    this.logs = [];
    const previous = install(this);
    try {
      fn(event);
    } finally {
      install(previous);
    }
    this.emitted.push(...this.pending);
    this.pending = [];
  }

  kvGetString(tenant, key) {
    const v = this.kv.get(`${tenant}\u0000${key}`);
    return v === undefined ? undefined : decoder.decode(v);
  }

  seedKv(tenant, key, value) {
    this.kv.set(`${tenant}\u0000${key}`, typeof value === 'string' ? encoder.encode(value) : value);
  }

  require(capability, fn) {
    if (!this.capabilities.has(capability)) {
      throw new CapabilityDenied(
        `\`hookbox:handler/${capability}@0.1.0#${fn}\` is denied: capability \`${capability}\` is not granted to this handler`,
      );
    }
  }

  k(key) {
    return `${this.tenant}\u0000${key}`;
  }

  // The host interface the SDK calls (the WIT imports, jco's conventions).
  log(level, message, fields) {
    this.require('log', 'log');
    this.logs.push({ level, message, fields });
  }

  kvGet(key) {
    this.require('kv', 'get');
    return this.kv.get(this.k(key));
  }

  kvSet(key, value, _ttlMs) {
    this.require('kv', 'set');
    this.kv.set(this.k(key), new Uint8Array(value));
  }

  kvDelete(key) {
    this.require('kv', 'delete');
    return this.kv.delete(this.k(key));
  }

  kvIncrement(key, delta) {
    this.require('kv', 'increment');
    let n;
    try {
      n = BigInt(decoder.decode(this.kv.get(this.k(key)) ?? new Uint8Array()) || '0');
    } catch {
      n = 0n;
    }
    n += delta;
    n = n > I64_MAX ? I64_MAX : n < I64_MIN ? I64_MIN : n;
    this.kv.set(this.k(key), encoder.encode(n.toString()));
    return n;
  }

  kvCompareAndSwap(key, expected, next) {
    this.require('kv', 'compare-and-swap');
    if (!same(this.kv.get(this.k(key)), expected)) return false;
    if (next === undefined) this.kv.delete(this.k(key));
    else this.kv.set(this.k(key), new Uint8Array(next));
    return true;
  }

  configGet() {
    this.require('config', 'get');
    return this.configJson;
  }

  nowMs() {
    this.require('clock', 'now-ms');
    return BigInt(this.now);
  }

  emit(event) {
    this.require('emit', 'emit');
    if (!TYPE.test(event.type) || event.type.startsWith('hookbox.')) {
      throw new HandlerError(`emit refused: invalid event type ${JSON.stringify(event.type)}`);
    }
    const keys = event.metadata.map(([k]) => k);
    if (new Set(keys).size !== keys.length) throw new HandlerError('emit refused: a metadata key is given twice');
    // As on the host: a delivery of an event with a tenant stays in it.
    if (event.tenant != null && this.tenant !== '' && event.tenant !== this.tenant) {
      throw new HandlerError(
        `emit refused: a delivery of tenant ${JSON.stringify(this.tenant)} may emit only into that tenant, not ${JSON.stringify(event.tenant)}`,
      );
    }
    this.pending.push({
      type: event.type,
      tenant: event.tenant ?? this.tenant,
      payload: JSON.parse(event.payload),
      metadata: Object.fromEntries(event.metadata),
      key: event.key,
      priority: event.priority ?? 'normal',
    });
  }
}
