#!/usr/bin/env bash
# Installs openapi-python-client (a standard OpenAPI client generator, from
# PyPI) into target/openapi-client-venv, for the end-to-end test that
# generates a client from the daemon's `GET /v1/openapi.json` and deploys
# and publishes with it (tests/tests/daemon/openapi_client.rs). `tests/run-all.sh`
# runs this; it does nothing when the generator is already installed.
# Needs python3 with the venv module. $CARGO_TARGET_DIR moves the venv with
# the target directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/openapi-client-venv"
version="${OPENAPI_PYTHON_CLIENT_VERSION:-0.29.1}"

if [[ -x "$venv/bin/openapi-python-client" ]]; then
    exit 0
fi
echo "openapi-client-venv.sh: installing openapi-python-client $version into $venv" >&2
python3 -m venv "$venv"
# python-dateutil: generated clients import it for date-time values.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-python-client==$version" python-dateutil
