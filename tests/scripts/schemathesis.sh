#!/usr/bin/env bash
# Fuzzes the admin API with Schemathesis (a property-based API fuzzer from
# PyPI) driven by the daemon's own OpenAPI document, `GET /v1/openapi.json`.
#
# Starts a real `hookbox serve` on a scratch data directory and a free port
# with a fresh admin token, runs Schemathesis against it with that token,
# and stops the daemon. Every check is on: no 5xx, status codes, content
# types and bodies as documented, bad input refused, schema-valid input
# accepted, auth not ignored; `schemathesis.toml` lists the exceptions.
#
#   tests/scripts/schemathesis.sh                 # 2 minutes
#   ST_MAX_TIME=600 tests/scripts/schemathesis.sh # longer
#   tests/scripts/schemathesis.sh --include-path /v1/events   # extra args
#
# Schemathesis is installed once into a virtualenv under
# target/schemathesis-venv (pip, PyPI). The daemon binary is
# target/debug/hookbox, rebuilt first, or $HOOKBOX_BIN. Reports (JUnit and
# a pytest file reproducing each failure) go to target/schemathesis/.
# Exit status: Schemathesis's (non-zero when it found a failure).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/target/schemathesis-venv"
version="${SCHEMATHESIS_VERSION:-4.32.5}"
max_time="${ST_MAX_TIME:-120}"
reports="$root/target/schemathesis"

if [[ ! -x "$venv/bin/schemathesis" ]]; then
    echo "schemathesis.sh: installing schemathesis $version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

bin="${HOOKBOX_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && cargo build --quiet -p hookbox)
    bin="$root/target/debug/hookbox"
fi

scratch="$(mktemp -d -t hookbox-schemathesis-XXXXXX)"
token="hbx_st_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
cat > "$scratch/hookbox.toml" <<TOML
[runtime]
pool_instances = 32
[store]
durability = "none"
TOML
HOOKBOX_ADMIN_TOKEN="$token" HOOKBOX_LOG=warn "$bin" serve \
    --data "$scratch/data" --listen 127.0.0.1:0 --config "$scratch/hookbox.toml" \
    > "$scratch/stdout" 2> "$scratch/stderr" &
daemon=$!
stop() {
    kill -TERM "$daemon" 2> /dev/null || true
    wait "$daemon" 2> /dev/null || true
    if [[ -s "$scratch/stderr" ]]; then
        echo "--- daemon stderr (tail) ---" >&2
        tail -n 40 "$scratch/stderr" >&2
    fi
    rm -rf "$scratch"
}
trap stop EXIT

url=""
for _ in $(seq 1 300); do
    url="$(sed -n 's/^hookbox listening on //p' "$scratch/stdout")"
    [[ -n "$url" ]] && break
    kill -0 "$daemon" 2> /dev/null || { echo "the daemon exited early" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { echo "the daemon did not start within 30 s" >&2; exit 1; }
echo "schemathesis.sh: fuzzing $url for ${max_time}s" >&2

mkdir -p "$reports"
# schemathesis.toml (beside this script) leaves out two operations and one
# check on three, each with why. Run from the reports directory: Schemathesis
# keeps a `.schemathesis/` cache in its working directory.
cd "$reports"
"$venv/bin/schemathesis" --config-file "$root/tests/scripts/schemathesis.toml" \
    run "$url/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --max-time "$max_time" \
    --request-timeout 70 \
    --generation-allow-x00 true \
    --report junit,pytest --report-dir "$reports" \
    --no-color \
    "$@"
