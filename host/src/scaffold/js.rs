//! The files of `hookbox new --lang js`: a handler module using the
//! JavaScript SDK (`guest-sdk/js`, installed by path), a test for node's
//! test runner against its fake host, a manifest, the WIT, and an npm
//! `build` script (esbuild + componentize-js, pinned in package.json).

use std::path::Path;

/// `(path, contents)` of every file, relative to the handler's folder.
pub(super) fn files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let package = serde_json::json!({
        "name": name,
        "private": true,
        "type": "module",
        "scripts": {
            "test": "node --test",
            "build": "hookbox-build-js handler.js -o handler.wasm --wit wit"
        },
        "dependencies": {
            "@hookbox/sdk": format!("file:{}", sdk.join("js").display())
        },
        "devDependencies": {
            "@bytecodealliance/componentize-js": "0.23.0",
            "@bytecodealliance/preview2-shim": "0.25.0",
            "esbuild": "0.25.0"
        }
    });
    vec![
        ("handler.js", HANDLER_JS.to_string()),
        ("handler.test.js", HANDLER_TEST_JS.to_string()),
        ("manifest.json", super::manifest_json(name)),
        (
            "package.json",
            format!(
                "{}\n",
                serde_json::to_string_pretty(&package).expect("a json! value serializes")
            ),
        ),
        (".gitignore", "node_modules/\n*.wasm\n".to_string()),
        ("README.md", readme(name)),
    ]
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A Hookbox event handler in JavaScript (esbuild bundles it, componentize-js 0.23.0 builds the
component; versions pinned in `package.json`).

```sh
npm install                             # once
npm test                                # the logic, natively, against a fake host
npm run build                           # handler.wasm
hookbox run handler.wasm --manifest manifest.json --type message --payload event.json
hookbox handlers deploy handler.wasm --name {name} --manifest manifest.json
```

Handlers are synchronous; 64-bit WIT values are plain numbers in the SDK. The JS engine
(StarlingMonkey) rejects Unicode property escapes such as `/\p{{L}}/u` at build time.
"#
    )
}

const HANDLER_JS: &str = r#"// A Hookbox handler: counts events per type in its KV namespace and emits
// a greeting for every `message` event.
import { HandlerError, config, emit, exportHandler, kv, log } from '@hookbox/sdk';

export function onEvent(event) {
  const seen = kv.increment(`seen:${event.type}`);
  log.info('Counted an event', { event_type: event.type, seen });
  if (event.type === 'message') {
    const { greeting } = config();
    if (greeting === undefined) throw new HandlerError('config has no `greeting`'); // fatal: not retried
    emit('greeting', { text: greeting, in_reply_to: event.id });
  }
}

export const handle = exportHandler(onEvent);
"#;

const HANDLER_TEST_JS: &str = r#"import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Event, HandlerError } from '@hookbox/sdk';
import { TestHost } from '@hookbox/sdk/testing';

import { onEvent } from './handler.js';

test('counts and greets', () => {
  const host = new TestHost({ config: { greeting: 'hi there' } });
  for (let i = 0; i < 2; i++) host.run(onEvent, Event.build('message', {}, { tenant: 'acme' }));
  assert.equal(host.kvGetString('acme', 'seen:message'), '2');
  assert.deepEqual(host.emitted.map((e) => e.type), ['greeting', 'greeting']);
  assert.equal(host.emitted[0].payload.text, 'hi there');
});

test('bad config is an error', () => {
  assert.throws(() => new TestHost({ config: {} }).run(onEvent, Event.build('message')), HandlerError);
});
"#;
