// A Hookbox handler written in JavaScript, built with jco/componentize-js.
//
// Owns the JavaScript half of `tests/other-toolchains`: it shows that a
// component from a standard non-Rust toolchain runs in Hookbox unchanged.
// For each Zulip `message` event it reads its config, counts the message in
// KV per channel, reads the counter back, logs a line and emits a
// `message.counted` event. Any other event type is logged and ignored.
//
// jco's conventions: WIT enums are strings, record fields are camelCase,
// `s64`/`u64` are BigInt, an import returning `result<_, e>` throws on
// `err`, and throwing from `handle` returns `err` with the thrown value.

import { log } from 'hookbox:handler/log@0.1.0';
import { get as kvGet, increment } from 'hookbox:handler/kv@0.1.0';
import { get as configGet } from 'hookbox:handler/config@0.1.0';
import { emit } from 'hookbox:handler/emit@0.1.0';
import { nowMs } from 'hookbox:handler/clock@0.1.0';

const TOOLCHAIN = 'componentize-js';

function fail(message, retryable = false) {
  return { message, retryable };
}

export function handle(event) {
  if (event.type !== 'message') {
    log('debug', 'Ignored event', [['type', event.type]]);
    return;
  }

  let settings;
  let payload;
  try {
    settings = JSON.parse(configGet());
    payload = JSON.parse(event.payload);
  } catch (e) {
    throw fail(`config or payload is not JSON: ${e}`);
  }
  const prefix = settings.counter_prefix ?? 'messages';
  const emitType = settings.emit_type ?? 'message.counted';

  const message = payload.message;
  if (message === null || typeof message !== 'object') {
    throw fail('payload has no `message` object (expected a Zulip message event)');
  }
  const channel = message.type === 'stream' ? String(message.display_recipient ?? 'unknown') : 'direct';
  const sender = String(message.sender_full_name ?? '');

  const key = `${prefix}:${channel}`;
  const count = increment(key, 1n);
  const stored = kvGet(key);
  const storedText = stored === undefined || stored === null ? null : new TextDecoder().decode(stored);
  if (storedText !== count.toString()) {
    throw fail(`KV read back ${storedText} for ${key}, expected ${count}`, true);
  }

  log('info', 'Counted message', [
    ['toolchain', TOOLCHAIN],
    ['channel', channel],
    ['sender', sender],
    ['count', count.toString()],
  ]);
  // console.log goes through WASI standard output, captured into the log.
  console.log(`js handler saw message ${message.id} at ${nowMs()} ms`);

  try {
    emit({
      type: emitType,
      tenant: undefined,
      payload: JSON.stringify({ toolchain: TOOLCHAIN, channel, count: Number(count) }),
      metadata: [['counted-by', TOOLCHAIN]],
      key: channel,
      priority: 'low',
    });
  } catch (e) {
    throw fail(`emit refused: ${JSON.stringify(e.payload ?? e)}`);
  }
}
