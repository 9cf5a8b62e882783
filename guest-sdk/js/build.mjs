#!/usr/bin/env node
// Builds a Hookbox handler written with @hookbox/sdk into a component:
//   hookbox-build-js handler.js -o handler.wasm [--wit DIR]
// 1. esbuild bundles the SDK's wasm host (which imports the
//    `hookbox:handler` interfaces) and the handler into one ES module,
//    leaving `hookbox:*` and `wasi:*` imports to componentize-js.
// 2. componentize-js builds the component for world `handler` without its
//    `http` and `fetch-event` features, so the component does not import
//    `wasi:http` (a `fetch()` would only end in `capability_denied`).
// The toolchain versions are pinned in package.json; jco is not used to
// build (1.35.0 cannot read WIT paths), only `componentize-js` directly.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const usage = 'usage: hookbox-build-js HANDLER.js -o OUT.wasm [--wit DIR]  (default --wit: ./wit)';
let input;
let out;
let wit = 'wit';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-o' || args[i] === '--out') out = args[++i];
  else if (args[i] === '--wit') wit = args[++i];
  else if (args[i] === '-h' || args[i] === '--help') {
    console.log(usage);
    process.exit(0);
  } else if (input === undefined) input = args[i];
  else {
    console.error(usage);
    process.exit(2);
  }
}
if (!input || !out) {
  console.error(usage);
  process.exit(2);
}

// The toolchain is looked up in $HOOKBOX_JS_TOOLCHAIN (a directory with a
// node_modules, e.g. CI's cache), then from the current directory upwards
// (the handler's devDependencies), then from the SDK's own directory.
function locate(name, entry) {
  const starts = [process.env.HOOKBOX_JS_TOOLCHAIN, process.cwd(), here].filter(Boolean);
  for (const start of starts) {
    let dir = resolve(start);
    for (;;) {
      const pkg = join(dir, 'node_modules', name);
      if (existsSync(join(pkg, 'package.json'))) return pathToFileURL(join(pkg, entry)).href;
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  console.error(
    `hookbox-build-js: ${name} is not installed. Run \`npm install\` in the handler ` +
      '(its package.json pins esbuild and @bytecodealliance/componentize-js).',
  );
  process.exit(1);
}
const esbuild = await import(locate('esbuild', 'lib/main.js'));
const { componentize } = await import(locate('@bytecodealliance/componentize-js', 'src/componentize.js'));

const work = mkdtempSync(join(tmpdir(), 'hookbox-js-'));
try {
  const entry = join(work, 'entry.js');
  writeFileSync(
    entry,
    `import ${JSON.stringify(join(here, 'src', 'wasm.js'))};\nexport { handle } from ${JSON.stringify(resolve(input))};\n`,
  );
  const bundle = join(work, 'bundle.js');
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    outfile: bundle,
    external: ['hookbox:*', 'wasi:*'],
    // One copy of the SDK: the one whose wasm host was bundled above.
    alias: { '@hookbox/sdk': join(here, 'src', 'index.js') },
    logLevel: 'warning',
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: resolve(wit),
    worldName: 'handler',
    disableFeatures: ['http', 'fetch-event'],
  });
  writeFileSync(out, component);
  console.log(`built ${out} (${(component.length / 2 ** 20).toFixed(1)} MiB)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
