// A fake host to unit-test handlers natively with node's test runner (like
// the Rust SDK's `hookbox_sdk::testing::TestHost`): KV per tenant, config,
// a clock, and the logs and emitted events of every run, checked by the
// rules Hookbox applies.
//
// The per-delivery limits of the SDK's calls hold as on the real host, with
// its defaults and accounting (`LIMITS`, the Rust SDK's `testing::Limits`):
// a log call past `logBytes`, an emit past `emits` or `emitBytes`, a KV key
// and value past `kvValueBytes` or a write taking the tenant's namespace
// past `kvQuotaBytes` or `kvQuotaKeys` end the delivery there (even if the
// handler catches what the call threw), and an error message past
// `resultBytes` is `result_limit`. `deliver` returns the outcome under the
// host's name; `run` throws a `LimitExceeded`. Not modelled: fuel, the
// deadline, memory, tables, the stack, KV expiry, what the handler prints.

import { CapabilityDenied, HandlerError, install } from './host.js';

export const CAPABILITIES = ['log', 'kv', 'config', 'emit', 'clock'];
// Hookbox's event type rule: 1-128 of these characters, not `hookbox.*`.
const TYPE = /^[A-Za-z0-9_.:-]{1,128}$/;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const same = (a, b) => (a === undefined ? b === undefined : b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]));
const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);

/** The host's default limits (a manifest's `limits`, in camelCase). */
export const LIMITS = Object.freeze({
  logBytes: 64 << 10,
  emits: 100,
  emitBytes: 2 << 20,
  kvValueBytes: 64 << 10,
  kvQuotaBytes: 16 << 20,
  kvQuotaKeys: 100_000,
  resultBytes: 16 << 10,
});
/** What a log record costs besides its text, and each of its fields. */
export const RECORD_OVERHEAD = 64;
export const FIELD_OVERHEAD = 48;
/** What an emitted event costs besides its text, and each metadata entry. */
export const EMIT_OVERHEAD = 256;
export const EMIT_ENTRY_OVERHEAD = 64;

/** Bytes of a string as the host counts them (UTF-8). */
const len = (s) => (s == null ? 0 : encoder.encode(s).length);

/**
 * Ends a delivery at a limit, as the host ends the call. `run` throws it
 * (also when the handler caught the error the host call threw); `deliver`
 * returns its `outcome`.
 */
export class LimitExceeded extends Error {
  constructor(outcome) {
    super(`${outcome.name}: ${outcome.error}`);
    this.name = 'LimitExceeded';
    this.outcome = outcome;
  }
}

export class TestHost {
  constructor({ config = {}, capabilities = CAPABILITIES, nowMs = 1_700_000_000_000, limits = {} } = {}) {
    const unknownLimits = Object.keys(limits).filter((k) => !(k in LIMITS));
    if (unknownLimits.length) throw new Error(`unknown limits ${unknownLimits}; known: ${Object.keys(LIMITS)}`);
    this.limits = { ...LIMITS, ...limits };
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
    this.abort = null;
  }

  /**
   * Runs `fn(event)` like one delivery: what it emitted is kept only when
   * it returns; a thrown error propagates and its emissions are dropped. A
   * delivery that hits a limit throws `LimitExceeded`, one that calls an
   * ungranted interface `CapabilityDenied`, whatever the handler did next.
   */
  run(fn, event) {
    this.tenant = event.tenant;
    this.pending = [];
    this.logs = [];
    this.abort = null;
    this.usage = { logBytes: 0, emits: 0, emitBytes: 0 };
    const previous = install(this);
    try {
      fn(event);
    } catch (e) {
      if (this.abort === null) {
        if (e instanceof HandlerError && len(e.message) > this.limits.resultBytes) {
          throw new LimitExceeded({
            name: 'result_limit',
            error: `handler error message is ${len(e.message)} bytes; the limit is ${this.limits.resultBytes}`,
            retryable: false,
          });
        }
        throw e;
      }
    } finally {
      install(previous);
    }
    if (this.abort !== null) {
      if (this.abort.name === 'capability_denied') throw new CapabilityDenied(this.abort.error);
      throw new LimitExceeded(this.abort);
    }
    this.emitted.push(...this.pending);
    this.pending = [];
  }

  /**
   * Runs `fn(event)` like `run` and returns how the delivery ended, as
   * Hookbox logs it: `{name, error, retryable}` with `name` one of `ok`,
   * `handler_error`, `log_limit`, `emit_limit`, `emit_bytes_limit`,
   * `kv_limit`, `result_limit`, `capability_denied`, `trap` (anything else
   * thrown; Hookbox retries it).
   */
  deliver(fn, event) {
    try {
      this.run(fn, event);
    } catch (e) {
      if (e instanceof LimitExceeded) return e.outcome;
      if (e instanceof CapabilityDenied) return { name: 'capability_denied', error: e.message, retryable: false };
      if (e instanceof HandlerError) return { name: 'handler_error', error: e.message, retryable: e.retryable };
      return { name: 'trap', error: `uncaught exception in handler: ${e}`, retryable: true };
    }
    return { name: 'ok', error: undefined, retryable: false };
  }

  /** Ends the delivery with a limit's outcome. */
  end(name, error) {
    this.abort = { name, error, retryable: false };
    throw new LimitExceeded(this.abort);
  }

  kvSize(key, valueLen) {
    const size = len(key) + valueLen;
    if (size > this.limits.kvValueBytes) {
      this.end('kv_limit', `kv key plus value is ${size} bytes; the limit is ${this.limits.kvValueBytes}`);
    }
  }

  /**
   * Refuses a write taking the namespace past a quota; one that does not
   * grow it passes even over the quota (as on the host).
   */
  kvQuota(key, valueLen) {
    const prefix = `${this.tenant}\u0000`;
    let keys = 0;
    let bytes = 0;
    for (const [k, v] of this.kv) {
      if (k.startsWith(prefix)) {
        keys += 1;
        bytes += len(k.slice(prefix.length)) + v.length;
      }
    }
    let nextKeys = keys;
    let nextBytes = bytes;
    const old = this.kv.get(this.k(key));
    if (old !== undefined) {
      nextKeys -= 1;
      nextBytes -= len(key) + old.length;
    }
    if (valueLen !== undefined) {
      nextKeys += 1;
      nextBytes += len(key) + valueLen;
    }
    const l = this.limits;
    if (nextKeys > l.kvQuotaKeys && nextKeys > keys) {
      this.end('kv_limit', `the kv namespace would hold ${nextKeys} keys; the quota \`kv_quota_keys\` is ${l.kvQuotaKeys}`);
    }
    if (nextBytes > l.kvQuotaBytes && nextBytes > bytes) {
      this.end(
        'kv_limit',
        `the kv namespace would hold ${nextBytes} bytes of keys plus values; the quota \`kv_quota_bytes\` is ${l.kvQuotaBytes}`,
      );
    }
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
      const error = `\`hookbox:handler/${capability}@0.1.0#${fn}\` is denied: capability \`${capability}\` is not granted to this handler`;
      this.abort = { name: 'capability_denied', error, retryable: false };
      throw new CapabilityDenied(error);
    }
  }

  k(key) {
    return `${this.tenant}\u0000${key}`;
  }

  // The host interface the SDK calls (the WIT imports, jco's conventions).
  log(level, message, fields) {
    this.require('log', 'log');
    const text = len(message) + fields.reduce((n, [k, v]) => n + len(k) + len(v), 0);
    const cost = text + RECORD_OVERHEAD + FIELD_OVERHEAD * fields.length;
    if (this.usage.logBytes + cost > this.limits.logBytes) {
      this.end(
        'log_limit',
        `log output exceeded the limit of ${this.limits.logBytes} bytes (each record counts ${RECORD_OVERHEAD} bytes and each field ${FIELD_OVERHEAD} besides its text)`,
      );
    }
    this.usage.logBytes += cost;
    this.logs.push({ level, message, fields });
  }

  kvGet(key) {
    this.require('kv', 'get');
    this.kvSize(key, 0);
    return this.kv.get(this.k(key));
  }

  kvSet(key, value, _ttlMs) {
    this.require('kv', 'set');
    this.kvSize(key, value.length);
    this.kvQuota(key, value.length);
    this.kv.set(this.k(key), new Uint8Array(value));
  }

  kvDelete(key) {
    this.require('kv', 'delete');
    this.kvSize(key, 0);
    return this.kv.delete(this.k(key));
  }

  kvIncrement(key, delta) {
    this.require('kv', 'increment');
    this.kvSize(key, 0);
    let n;
    try {
      n = BigInt(decoder.decode(this.kv.get(this.k(key)) ?? new Uint8Array()) || '0');
    } catch {
      n = 0n;
    }
    n += delta;
    n = n > I64_MAX ? I64_MAX : n < I64_MIN ? I64_MIN : n;
    this.kvQuota(key, n.toString().length);
    this.kv.set(this.k(key), encoder.encode(n.toString()));
    return n;
  }

  kvCompareAndSwap(key, expected, next) {
    this.require('kv', 'compare-and-swap');
    this.kvSize(key, Math.max(expected?.length ?? 0, next?.length ?? 0));
    if (!same(this.kv.get(this.k(key)), expected)) return false;
    this.kvQuota(key, next?.length);
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
    // Counted before it is checked, valid or not, as on the host.
    const l = this.limits;
    this.usage.emits += 1;
    if (this.usage.emits > l.emits) this.end('emit_limit', `the handler emitted more than ${l.emits} events`);
    const text =
      len(event.type) + len(event.tenant) + len(event.payload) + len(event.key) + event.metadata.reduce((n, [k, v]) => n + len(k) + len(v), 0);
    this.usage.emitBytes += text + EMIT_OVERHEAD + EMIT_ENTRY_OVERHEAD * event.metadata.length;
    if (this.usage.emitBytes > l.emitBytes) {
      this.end(
        'emit_bytes_limit',
        `the handler's emitted events came to more than ${l.emitBytes} bytes (each event counts ${EMIT_OVERHEAD} bytes and each metadata entry ${EMIT_ENTRY_OVERHEAD} besides their text)`,
      );
    }
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
