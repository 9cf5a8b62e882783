//! The files of `hookbox new --lang python`: a handler module using the
//! Python SDK (`guest-sdk/python`), a pytest test against its fake host, a
//! manifest, the WIT, and the build command (componentize-py, pinned by the
//! SDK's `build` extra).

use std::path::Path;

/// `(path, contents)` of every file, relative to the handler's folder.
pub(super) fn files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let sdk_url = format!("file://{}", sdk.join("python").display());
    vec![
        ("app.py", APP_PY.to_string()),
        ("test_app.py", TEST_APP_PY.to_string()),
        ("manifest.json", super::manifest_json(name)),
        (
            "requirements.txt",
            format!("hookbox-sdk[build,test] @ {sdk_url}\n"),
        ),
        ("build.sh", BUILD_SH.to_string()),
        (".gitignore", "__pycache__/\n*.wasm\n.venv/\n".to_string()),
        ("README.md", readme(name)),
    ]
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A Hookbox event handler in Python ([componentize-py](https://pypi.org/project/componentize-py/)
0.25.1 builds it into a component).

```sh
python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt   # once
pytest                                  # the logic, natively, against a fake host
./build.sh                              # app.wasm
hookbox run app.wasm --manifest manifest.json --type message --payload event.json
hookbox handlers deploy app.wasm --name {name} --manifest manifest.json
```
"#
    )
}

const BUILD_SH: &str = r#"#!/usr/bin/env sh
# Builds app.wasm from app.py (componentize-py, from requirements.txt).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w handler componentize app -o app.wasm
"#;

const APP_PY: &str = r#""""A Hookbox handler: counts events per type in its KV namespace and emits
a greeting for every `message` event."""

import hookbox_sdk as hb


def handle(event: hb.Event) -> None:
    seen = hb.kv.increment(f"seen:{event.type}")
    hb.log.info("Counted an event", event_type=event.type, seen=seen)
    if event.type == "message":
        greeting = hb.config().get("greeting")
        if greeting is None:
            raise hb.HandlerError("config has no `greeting`")  # fatal: not retried
        hb.emit("greeting", {"text": greeting, "in_reply_to": event.id})


WitWorld = hb.export(handle)
"#;

const TEST_APP_PY: &str = r#"import pytest

import hookbox_sdk as hb
from hookbox_sdk.testing import TestHost

import app


def test_counts_and_greets():
    host = TestHost(config={"greeting": "hi there"})
    for _ in range(2):
        host.run(app.handle, hb.Event.build("message", tenant="acme"))
    assert host.kv_get_str("acme", "seen:message") == "2"
    assert [e.type for e in host.emitted] == ["greeting", "greeting"]
    assert host.emitted[0].payload["text"] == "hi there"


def test_bad_config_is_an_error():
    with pytest.raises(hb.HandlerError):
        TestHost(config={}).run(app.handle, hb.Event.build("message"))
"#;
