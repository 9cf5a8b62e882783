import type { Event, Priority } from './index.js';

export declare const CAPABILITIES: readonly ['log', 'kv', 'config', 'emit', 'clock'];

export interface Emitted {
  type: string;
  tenant: string;
  payload: any;
  metadata: Record<string, string>;
  key?: string;
  priority: Priority;
}

/** The limits of one delivery the fake host enforces, as the host does. */
export interface Limits {
  logBytes: number;
  emits: number;
  emitBytes: number;
  kvValueBytes: number;
  kvQuotaBytes: number;
  kvQuotaKeys: number;
  resultBytes: number;
}

/** The host's defaults. */
export declare const LIMITS: Readonly<Limits>;
export declare const RECORD_OVERHEAD: number;
export declare const FIELD_OVERHEAD: number;
export declare const EMIT_OVERHEAD: number;
export declare const EMIT_ENTRY_OVERHEAD: number;

/** How a delivery ended, named as Hookbox names it. */
export interface Outcome {
  name:
    | 'ok'
    | 'handler_error'
    | 'log_limit'
    | 'emit_limit'
    | 'emit_bytes_limit'
    | 'kv_limit'
    | 'result_limit'
    | 'capability_denied'
    | 'trap';
  error?: string;
  retryable: boolean;
}

/** Thrown by `run` when a delivery hits a limit. */
export declare class LimitExceeded extends Error {
  outcome: Outcome;
}

/** A fake host: KV per tenant, config, clock, logs and emitted events. */
export declare class TestHost {
  constructor(options?: { config?: unknown; capabilities?: string[]; nowMs?: number; limits?: Partial<Limits> });
  configJson: string;
  limits: Limits;
  logs: { level: string; message: string; fields: [string, string][] }[];
  emitted: Emitted[];
  /** Runs `fn(event)` as one delivery; emissions are kept only if it returns. */
  run(fn: (event: Event) => void, event: Event): void;
  /** Runs `fn(event)` as one delivery and returns how it ended. */
  deliver(fn: (event: Event) => void, event: Event): Outcome;
  kvGetString(tenant: string, key: string): string | undefined;
  seedKv(tenant: string, key: string, value: string | Uint8Array): void;
}
