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

/** A fake host: KV per tenant, config, clock, logs and emitted events. */
export declare class TestHost {
  constructor(options?: { config?: unknown; capabilities?: string[]; nowMs?: number });
  configJson: string;
  logs: { level: string; message: string; fields: [string, string][] }[];
  emitted: Emitted[];
  /** Runs `fn(event)` as one delivery; emissions are kept only if it returns. */
  run(fn: (event: Event) => void, event: Event): void;
  kvGetString(tenant: string, key: string): string | undefined;
  seedKv(tenant: string, key: string, value: string | Uint8Array): void;
}
