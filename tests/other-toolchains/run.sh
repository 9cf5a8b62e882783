#!/usr/bin/env bash
# Builds the Python and JavaScript handlers of tests/other-toolchains with
# their own toolchains (componentize-py; componentize-js, inspected with jco)
# and runs each with `hookbox run` against a Zulip message fixture, checking
# that it instantiates, handles the event, logs, counts in KV and emits.
#
# Everything is installed under target/other-toolchains/ (a Python venv and
# an npm prefix), nothing globally. Downloads ~100 MB on the first run and is
# therefore not part of CI. See README.md.
#
# Environment:
#   HOOKBOX_BIN   the hookbox binary [default: target/debug/hookbox, built
#                 with `cargo build -p hookbox --bin hookbox` when missing]
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
PREVIEW2_SHIM_VERSION=0.25.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$ROOT/target/other-toolchains"
OUT="$WORK/out"
HOOKBOX="${HOOKBOX_BIN:-$ROOT/target/debug/hookbox}"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

for tool in python3 node npm; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
mkdir -p "$OUT"

say "Installing componentize-py $COMPONENTIZE_PY_VERSION into $WORK/venv"
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv"
fi
"$WORK/venv/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION"
"$WORK/venv/bin/componentize-py" --version

say "Installing componentize-js $COMPONENTIZE_JS_VERSION and jco $JCO_VERSION into $WORK/js"
mkdir -p "$WORK/js"
if [ ! -f "$WORK/js/package.json" ]; then
    printf '{"name": "hookbox-other-toolchains", "private": true}\n' >"$WORK/js/package.json"
fi
# componentize-js imports @bytecodealliance/preview2-shim at run time but
# lists it only as a dev dependency, so it must be installed explicitly.
# 0.26 starts with no preopened directories and componentize-js then cannot
# read the WIT ("failed to get path metadata"); 0.25 preopens `/`.
npm install --prefix "$WORK/js" --silent --no-fund --no-audit \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
    "@bytecodealliance/jco@$JCO_VERSION" \
    "@bytecodealliance/preview2-shim@$PREVIEW2_SHIM_VERSION"
BIN="$WORK/js/node_modules/.bin"
echo "componentize-js $("$BIN/componentize-js" --version), jco $("$BIN/jco" --version)"

if [ ! -x "$HOOKBOX" ]; then
    say "Building hookbox"
    (cd "$ROOT" && cargo build -p hookbox --bin hookbox)
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The first `message` event of the Zulip fixtures, as the payload file.
python3 - "$ROOT/tests/fixtures/zulip/zulip-events.json" "$TMP/message.json" <<'EOF'
import json, sys
events = json.load(open(sys.argv[1]))
message = next(e for e in events if e["type"] == "message")
json.dump(message, open(sys.argv[2], "w"))
EOF

# seconds since the epoch with milliseconds, for build timings
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }

say "Building the Python handler with componentize-py"
# From a copy: componentize-py's embedded interpreter writes __pycache__/
# next to the module it pre-initialises (PYTHONDONTWRITEBYTECODE is not
# passed through to it).
mkdir -p "$TMP/python"
cp "$HERE/python/app.py" "$TMP/python/"
start=$(now)
(
    cd "$TMP/python"
    "$WORK/venv/bin/componentize-py" \
        -d "$ROOT/wit" -w handler componentize app -o "$OUT/python-handler.wasm"
)
py_build=$(python3 -c "print(f'{$(now) - $start:.1f}')")

say "Building the JavaScript handler with componentize-js"
# componentize-js directly: `jco componentize` 1.35.0 fails on any WIT path
# with "failed to get path metadata" (see README.md).
start=$(now)
"$BIN/componentize-js" "$HERE/js/handler.js" --wit "$ROOT/wit" --world-name handler \
    -o "$OUT/js-handler.wasm"
js_build=$(python3 -c "print(f'{$(now) - $start:.1f}')")

say "Imports of the JavaScript component (jco wit)"
"$BIN/jco" wit "$OUT/js-handler.wasm" | grep '^  import' || die "jco wit printed no imports"

# Runs one component with `hookbox run --json` and checks the report.
run_handler() {
    local name=$1 toolchain=$2 prefix=$3 wasm="$OUT/$1.wasm"
    say "hookbox run $name"
    local status=0
    "$HOOKBOX" --json run "$wasm" --type message --payload "$TMP/message.json" \
        --tenant zulip.example.com --config "{\"counter_prefix\": \"$prefix\"}" \
        >"$TMP/$name.json" || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$TMP/$name.json"
        die "$name: hookbox run exited with $status"
    fi
    python3 - "$TMP/$name.json" "$toolchain" "$wasm" <<'EOF'
import json, os, sys

path, toolchain, wasm = sys.argv[1:]
report = json.load(open(path))
[delivery] = report["deliveries"]

def check(ok, what):
    if not ok:
        print(json.dumps(report, indent=1)[:4000])
        sys.exit(f"FAIL: {os.path.basename(wasm)}: {what}")

check(delivery["outcome"] == "ok", f"outcome {delivery['outcome']}: {delivery['error']}")
counted = [l for l in delivery["logs"] if l["stream"] == "log" and l["message"] == "Counted message"]
check(len(counted) == 1, "no `Counted message` log record")
fields = dict(counted[0]["fields"])
check(fields.get("toolchain") == toolchain, f"log fields {fields}")
check(fields.get("channel") == "Denmark" and fields.get("sender") == "King Hamlet", f"log fields {fields}")
check(fields.get("count") == "1", f"KV counter {fields.get('count')}, expected 1")
check(any(l["stream"] == "stdout" and "saw message 31" in l["message"] for l in delivery["logs"]),
      "no captured stdout line")
[emitted] = delivery["emitted"] or [None]
check(emitted is not None and emitted["type"] == "message.counted", f"emitted {delivery['emitted']}")
check(emitted["payload"] == {"toolchain": toolchain, "channel": "Denmark", "count": 1},
      f"emitted payload {emitted['payload']}")
check(emitted["tenant"] == "zulip.example.com" and emitted["priority"] == "low", f"emitted {emitted}")

size = os.path.getsize(wasm)
print(f"ok: {toolchain}: {size / 2**20:.1f} MiB, compile (first load) {report['compile_us'] / 1e6:.1f} s, "
      f"delivery {delivery['duration_us'] / 1e3:.1f} ms, fuel {delivery['fuel_used']}, "
      f"peak memory {delivery['peak_memory_bytes'] / 2**20:.1f} MiB, {len(report['imports'])} imports")
EOF
}

run_handler python-handler componentize-py py
run_handler js-handler componentize-js js

say "Summary"
echo "component builds: componentize-py ${py_build} s, componentize-js ${js_build} s"
echo "both handlers instantiated and handled the event"
