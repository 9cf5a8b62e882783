// The component's side of the SDK: binds the `hookbox:handler@0.1.0`
// imports (resolved by componentize-js) as the SDK's host. The build
// (`build.mjs`) bundles this module before the handler.

import { log } from 'hookbox:handler/log@0.1.0';
import * as kv from 'hookbox:handler/kv@0.1.0';
import { get as configGet } from 'hookbox:handler/config@0.1.0';
import { emit } from 'hookbox:handler/emit@0.1.0';
import { nowMs } from 'hookbox:handler/clock@0.1.0';

import { HandlerError, install } from './host.js';

install({
  log: (level, message, fields) => log(level, message, fields),
  kvGet: (key) => kv.get(key),
  kvSet: (key, value, ttlMs) => kv.set(key, value, ttlMs),
  kvDelete: (key) => kv.delete(key),
  kvIncrement: (key, delta) => kv.increment(key, delta),
  kvCompareAndSwap: (key, expected, next) => kv.compareAndSwap(key, expected, next),
  configGet: () => configGet(),
  nowMs: () => nowMs(),
  emit: (event) => {
    try {
      emit(event);
    } catch (e) {
      // jco: an import returning `result<_, emit-error>` throws its `err`.
      const why = e?.payload?.val ?? e?.payload ?? e;
      throw new HandlerError(`emit refused: ${typeof why === 'string' ? why : JSON.stringify(why)}`);
    }
  },
});
