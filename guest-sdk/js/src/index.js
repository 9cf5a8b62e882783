// Write Hookbox event handlers in JavaScript (or TypeScript).
//
// A handler is a function `(event) => void`, exported for componentize-js
// with `export const handle = exportHandler(fn)`. It talks to the host only
// through this module: the typed `Event`, `kv` (its own per-tenant
// namespace), `emit`, `config`, `nowMs`, `log` and `zulip`.
//
// The error rule (the same in every Hookbox SDK): throwing a `HandlerError`
// ends the delivery with `handler_error`, retried only when `retryable`;
// anything else thrown out of the handler is a `trap`, which Hookbox
// retries (the error and its stack are in the delivery's error text).

import { backend, CapabilityDenied, HandlerError } from './host.js';
import * as zulip from './zulip.js';

export { CapabilityDenied, HandlerError, zulip };

export const PRIORITIES = ['critical', 'high', 'normal', 'low'];

/** One event delivered to a handler (the WIT `types.event`). */
export class Event {
  constructor(fields) {
    this.id = fields.id ?? '01HZZZZZZZZZZZZZZZZZZZZZZZ';
    this.type = fields.type;
    this.tenant = fields.tenant ?? '';
    this.source = fields.source ?? 'test';
    this.timeMs = fields.timeMs ?? 1_700_000_000_000;
    this.priority = fields.priority ?? 'normal';
    this.payload = fields.payload ?? '{}';
    this.metadata = fields.metadata ?? [];
    this.key = fields.key ?? undefined;
    this.attempt = fields.attempt ?? 1;
  }

  /** An event for tests; `payload` is any JSON value (default `{}`). */
  static build(type, payload = {}, fields = {}) {
    return new Event({ ...fields, type, payload: JSON.stringify(payload) });
  }

  /** The event Hookbox makes of a raw Zulip event (type `type.op`). */
  static fromZulip(raw, fields = {}) {
    return Event.build(zulip.hookboxType(raw), raw, { source: 'zulip:test', ...fields });
  }

  /** The payload parsed; malformed JSON is a fatal `HandlerError`. */
  json() {
    try {
      return JSON.parse(this.payload);
    } catch (e) {
      throw new HandlerError(`the event payload is not JSON: ${e.message}`);
    }
  }

  /** The payload as a typed Zulip event (see `zulip.parse`). */
  zulip() {
    return zulip.parse(this.json());
  }

  /** The first metadata value stored under `key`. */
  meta(key) {
    return this.metadata.find(([k]) => k === key)?.[1];
  }

  get isRetry() {
    return this.attempt > 1;
  }
}

/** The handler's configuration, parsed (`{}` when none was given). */
export function config() {
  const text = backend().configGet();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HandlerError(`the handler config is not JSON: ${e.message}`);
  }
}

/** Milliseconds since the Unix epoch, as the host sees it. */
export function nowMs() {
  return Number(backend().nowMs());
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const toBytes = (v) => (v === undefined || v === null ? undefined : typeof v === 'string' ? encoder.encode(v) : v);

/** The handler's own key-value namespace, one per tenant. */
export const kv = {
  /** The value as bytes, or `undefined` when absent or expired. */
  get(key) {
    const v = backend().kvGet(key);
    return v === undefined || v === null ? undefined : new Uint8Array(v);
  },
  /** The value decoded as UTF-8, or `undefined`. */
  getString(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : decoder.decode(v);
  },
  /** Sets a value (string or bytes), optionally expiring `ttlMs` from now. */
  set(key, value, { ttlMs } = {}) {
    backend().kvSet(key, toBytes(value), ttlMs === undefined ? undefined : BigInt(ttlMs));
  },
  /** Deletes a key; returns whether it existed. */
  delete(key) {
    return backend().kvDelete(key);
  },
  /** Atomically adds `delta` to a decimal counter; returns the new value. */
  increment(key, delta = 1) {
    return Number(backend().kvIncrement(key, BigInt(delta)));
  },
  /** Replaces the value if it equals `expected` (`undefined`: absent). */
  compareAndSwap(key, expected, next) {
    return backend().kvCompareAndSwap(key, toBytes(expected), toBytes(next));
  },
};

function record(level) {
  return (message, fields = {}) =>
    backend().log(
      level,
      message,
      Object.entries(fields).map(([k, v]) => [k, String(v)]),
    );
}

/** Structured records in the delivery's log: `log.info('Counted', {n: 3})`. */
export const log = {
  trace: record('trace'),
  debug: record('debug'),
  info: record('info'),
  warn: record('warn'),
  error: record('error'),
};

/**
 * Queues a new event, accepted once this delivery succeeds. `payload` is
 * any JSON value; `tenant` defaults to the delivered event's. An event the
 * host refuses is a fatal `HandlerError`.
 */
export function emit(type, payload = {}, { tenant, metadata = {}, key, priority } = {}) {
  if (priority !== undefined && !PRIORITIES.includes(priority)) {
    throw new TypeError(`priority must be one of ${PRIORITIES.join(', ')}, not ${priority}`);
  }
  backend().emit({
    type,
    tenant,
    payload: JSON.stringify(payload),
    metadata: Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    key,
    priority,
  });
}

/**
 * A thrown value componentize-js cannot lower as a `handler-error`: reading
 * its `message` throws, so the component aborts (a wasm trap) after
 * printing `text` to stderr, which Hookbox puts in the trap's error.
 */
function trapWith(text) {
  return {
    get message() {
      throw new Error(text);
    },
    retryable: true,
  };
}

/** The WIT `handle` export running `fn` under the SDK's error rule. */
export function exportHandler(fn) {
  return function handle(wit) {
    const event = new Event({ ...wit, timeMs: Number(wit.time) });
    let result;
    try {
      result = fn(event);
    } catch (e) {
      if (e instanceof HandlerError) {
        throw { message: e.message, retryable: e.retryable };
      }
      throw trapWith(`uncaught exception in handler: ${e?.stack ? `${e}\n${e.stack}` : String(e)}`);
    }
    if (result && typeof result.then === 'function') {
      throw trapWith('the handler returned a Promise: handlers must be synchronous');
    }
  };
}
