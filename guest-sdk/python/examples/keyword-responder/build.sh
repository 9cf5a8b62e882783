#!/usr/bin/env sh
# Builds app.wasm with componentize-py (pip install "hookbox-sdk[build]").
# WIT: the repository's wit/ (a scaffolded handler carries its own copy).
set -eu
cd "$(dirname "$0")"
WIT="${HOOKBOX_WIT:-../../../../wit}"
componentize-py -d "$WIT" -w handler componentize app -o app.wasm
