// The host the SDK talks to: the component's `hookbox:handler` imports
// (installed by `wasm.js`, which the build bundles first), or, natively, the
// fake host a test installed (`testing.js`).

let installed = null;

/** Makes `host` the backend; returns the previous one. */
export function install(host) {
  const previous = installed;
  installed = host;
  return previous;
}

export function backend() {
  if (installed === null) {
    throw new Error(
      '@hookbox/sdk: no host. Inside a component the build bundles @hookbox/sdk/wasm; ' +
        'natively, run the handler with TestHost from @hookbox/sdk/testing',
    );
  }
  return installed;
}

/**
 * Why a handler did not handle an event. Thrown from a handler it ends the
 * delivery with `handler_error`: retried when `retryable`, else
 * dead-lettered at once.
 */
export class HandlerError extends Error {
  constructor(message, { retryable = false } = {}) {
    super(message);
    this.name = 'HandlerError';
    this.retryable = retryable;
  }

  static fatal(message) {
    return new HandlerError(message, { retryable: false });
  }

  static transient(message) {
    return new HandlerError(message, { retryable: true });
  }
}

/**
 * Thrown by the fake host for a call the manifest does not grant; in
 * Hookbox the same call ends the delivery with `capability_denied`.
 */
export class CapabilityDenied extends Error {
  constructor(message) {
    super(message);
    this.name = 'CapabilityDenied';
  }
}
