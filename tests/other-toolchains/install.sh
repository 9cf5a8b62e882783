#!/usr/bin/env bash
# Installs the Python and JavaScript handler toolchains, pinned, under
# target/other-toolchains/ (nothing global), for the SDK tests and for
# `tests/tests/runtime/languages.rs`. Idempotent and cached: a second run
# with the same pins does nothing but check. Used by tests/run-all.sh and run.sh.
#   venv/  componentize-py, pytest, and the Python SDK (guest-sdk/python)
#   js/    componentize-js, esbuild, preview2-shim (the JS SDK's build tools)
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
PYTEST_VERSION=8.3.5
COMPONENTIZE_JS_VERSION=0.23.0
ESBUILD_VERSION=0.25.0
# componentize-js imports preview2-shim at run time but lists it only as a
# dev dependency; 0.26 starts with no preopened directories (the WIT is then
# unreadable: "failed to get path metadata"), 0.25 preopens `/`.
PREVIEW2_SHIM_VERSION=0.25.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$ROOT/target/other-toolchains"
STAMP="py-$COMPONENTIZE_PY_VERSION-$PYTEST_VERSION js-$COMPONENTIZE_JS_VERSION-$ESBUILD_VERSION-$PREVIEW2_SHIM_VERSION"

for tool in python3 node npm; do
    command -v "$tool" >/dev/null || {
        echo "install.sh: $tool is required (Debian: apt-get install python3-venv nodejs npm)" >&2
        exit 1
    }
done
mkdir -p "$WORK"

if [ "$(cat "$WORK/stamp" 2>/dev/null)" != "$STAMP" ]; then
    echo "== installing componentize-py $COMPONENTIZE_PY_VERSION and pytest into $WORK/venv"
    [ -x "$WORK/venv/bin/python" ] || python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" "pytest==$PYTEST_VERSION" "flit_core==3.10.1"

    echo "== installing componentize-js $COMPONENTIZE_JS_VERSION and esbuild $ESBUILD_VERSION into $WORK/js"
    mkdir -p "$WORK/js"
    printf '{"name": "hookbox-other-toolchains", "private": true}\n' >"$WORK/js/package.json"
    npm install --prefix "$WORK/js" --silent --no-fund --no-audit \
        "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
        "esbuild@$ESBUILD_VERSION" \
        "@bytecodealliance/preview2-shim@$PREVIEW2_SHIM_VERSION"
    echo "$STAMP" >"$WORK/stamp"
fi

# The Python SDK from this checkout, every time (it is small and may have
# changed); a regular install, because componentize-py does not follow
# editable installs.
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall --no-build-isolation \
    "$ROOT/guest-sdk/python"
rm -rf "$ROOT/guest-sdk/python/build"
echo "toolchains ready in $WORK"
