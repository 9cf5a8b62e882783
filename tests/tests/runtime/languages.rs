//! The Python and JavaScript SDKs' example handler (a keyword responder,
//! `guest-sdk/{python,js}/examples/keyword-responder`), built with its own
//! toolchain (componentize-py; esbuild + componentize-js) and run in the
//! runtime: it handles a Zulip message under its manifest's grant, a call
//! outside a smaller grant is `capability_denied`, and both SDKs follow the
//! one error rule (a `HandlerError` is `handler_error`, anything else
//! uncaught is a retryable `trap`).
//!
//! The toolchains come from PyPI and npm: `tests/other-toolchains/install.sh`
//! puts them under `target/other-toolchains/` (`tests/run-all.sh` runs it). Without
//! them these tests fail, saying how to install them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hookbox::manifest::{Capability, Manifest};
use hookbox::runtime::{DeliveryReport, HandlerModule, Outcome};
use hookbox_tests::{Delivery, ZULIP_EVENTS, event, runtime};
use serde_json::{Value, json};

const INSTALL_HINT: &str = "install the Python and JavaScript toolchains with \
    `tests/other-toolchains/install.sh` (needs python3 with venv, node >= 20 and npm; \
    tests/run-all.sh runs it)";

#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Js,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn toolchains() -> PathBuf {
    root().join("target/other-toolchains")
}

fn example(lang: Lang) -> PathBuf {
    let sdk = match lang {
        Lang::Python => "python",
        Lang::Js => "js",
    };
    root()
        .join("guest-sdk")
        .join(sdk)
        .join("examples/keyword-responder")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the example with its toolchain; returns the component's bytes.
fn build(lang: Lang) -> Vec<u8> {
    let out_dir = toolchains().join("out");
    std::fs::create_dir_all(&out_dir).expect("creating target/other-toolchains/out");
    let src = example(lang);
    let wit = root().join("wit");
    let wasm = match lang {
        Lang::Python => {
            let componentize = toolchains().join("venv/bin/componentize-py");
            assert!(
                componentize.is_file(),
                "componentize-py is not at {}: {INSTALL_HINT}",
                componentize.display()
            );
            // From a copy: componentize-py writes __pycache__ next to app.py.
            let tmp = tempfile::tempdir().expect("a temporary directory");
            std::fs::copy(src.join("app.py"), tmp.path().join("app.py")).expect("copying app.py");
            let wasm = out_dir.join("py-keyword-responder.wasm");
            run(
                Command::new(&componentize)
                    .current_dir(tmp.path())
                    // componentize-py finds the SDK through the active venv.
                    .env("VIRTUAL_ENV", toolchains().join("venv"))
                    .args(["-d"])
                    .arg(&wit)
                    .args(["-w", "handler", "componentize", "app", "-o"])
                    .arg(&wasm),
                "componentize-py",
            );
            wasm
        }
        Lang::Js => {
            let js = toolchains().join("js/node_modules/@bytecodealliance/componentize-js");
            assert!(
                js.is_dir(),
                "componentize-js is not at {}: {INSTALL_HINT}",
                js.display()
            );
            let wasm = out_dir.join("js-keyword-responder.wasm");
            run(
                Command::new("node")
                    .arg(root().join("guest-sdk/js/build.mjs"))
                    .arg(src.join("handler.js"))
                    .arg("-o")
                    .arg(&wasm)
                    .arg("--wit")
                    .arg(&wit)
                    .env("HOOKBOX_JS_TOOLCHAIN", toolchains().join("js")),
                "hookbox-build-js",
            );
            wasm
        }
    };
    std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()))
}

/// The example compiled once per test binary (compiling an 12–18 MB
/// component takes seconds), and its manifest.
fn handler(lang: Lang) -> (HandlerModule, Manifest) {
    static PY: OnceLock<HandlerModule> = OnceLock::new();
    static JS: OnceLock<HandlerModule> = OnceLock::new();
    let cell = match lang {
        Lang::Python => &PY,
        Lang::Js => &JS,
    };
    let module = cell
        .get_or_init(|| {
            let compiled = runtime()
                .compile(&build(lang), &Capability::all())
                .unwrap_or_else(|e| panic!("{lang:?} example refused: {e}"));
            // No `wasi:http`: the JS build disables componentize-js' fetch.
            assert!(
                compiled.denied_imports.is_empty(),
                "{:?}",
                compiled.denied_imports
            );
            compiled.module
        })
        .clone();
    let text = std::fs::read_to_string(example(lang).join("manifest.json")).unwrap();
    let manifest = Manifest::from_json(&text).unwrap_or_else(|e| panic!("{lang:?} manifest: {e}"));
    (module, manifest)
}

/// The first Zulip fixture message, saying `content`.
fn zulip_message(content: &str) -> Value {
    let events: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(ZULIP_EVENTS).unwrap()).unwrap();
    let mut message = events
        .into_iter()
        .find(|e| e["type"] == "message")
        .expect("a message fixture");
    message["message"]["content"] = json!(content);
    message
}

fn deliver(
    lang: Lang,
    payload: &Value,
    config: Option<Value>,
    caps: Option<BTreeSet<Capability>>,
) -> DeliveryReport {
    let (module, manifest) = handler(lang);
    let mut delivery = Delivery::new(1);
    delivery.event = event("message", "acme", payload);
    delivery.config = config.unwrap_or(manifest.config).to_string();
    delivery.capabilities = caps.unwrap_or(manifest.capabilities);
    delivery.run(&module)
}

fn handles_a_zulip_message_under_its_manifest_grant(lang: Lang) {
    let (_, manifest) = handler(lang);
    assert!(!manifest.capabilities.contains(&Capability::Clock));
    let report = deliver(lang, &zulip_message("<p>can we deploy?</p>"), None, None);
    assert_eq!(report.outcome, Outcome::Ok, "{lang:?}: {:?}", report.error);
    let types: Vec<&str> = report
        .emitted
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        ["zulip.send_message", "zulip.add_reaction"],
        "{lang:?}"
    );
    let reply: Value = serde_json::from_str(report.emitted[0].payload.as_ref().unwrap().get())
        .expect("JSON payload");
    assert_eq!(
        reply,
        json!({"type": "stream", "to": "Denmark", "stream_id": 1, "topic": "test",
               "content": "Noted: deploy (message 1 from you)."}),
        "{lang:?}"
    );
    let checked = report
        .logs
        .iter()
        .find(|l| l.message == "Checked message")
        .unwrap_or_else(|| panic!("{lang:?}: {:?}", report.logs));
    assert!(
        checked
            .fields
            .contains(&("keyword".into(), "deploy".into())),
        "{lang:?}: {checked:?}"
    );
}

fn a_call_outside_the_grant_is_capability_denied(lang: Lang) {
    let only_log: BTreeSet<_> = [Capability::Log].into();
    let report = deliver(lang, &zulip_message("deploy"), None, Some(only_log));
    assert_eq!(
        report.outcome,
        Outcome::CapabilityDenied,
        "{lang:?}: {:?}",
        report.error
    );
    assert!(!report.retryable);
    let err = report.error.unwrap();
    assert!(
        err.contains("`hookbox:handler/config@0.1.0#get` is denied"),
        "{lang:?}: {err}"
    );
}

fn follows_the_one_error_rule(lang: Lang, uncaught: &str) {
    // A HandlerError (the SDK's fatal error for a malformed Zulip event).
    let malformed = json!({"type": "message", "message": {"id": "x"}});
    let report = deliver(lang, &malformed, None, None);
    assert_eq!(
        report.outcome,
        Outcome::HandlerError,
        "{lang:?}: {:?}",
        report.error
    );
    assert!(!report.retryable, "{lang:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or("")
            .contains("malformed Zulip `message` event"),
        "{lang:?}: {:?}",
        report.error
    );
    // A bug: a keyword that is not a string makes the handler throw.
    let bad_config = json!({"keywords": [1]});
    let report = deliver(lang, &zulip_message("deploy"), Some(bad_config), None);
    assert_eq!(
        report.outcome,
        Outcome::Trap,
        "{lang:?}: {:?}",
        report.error
    );
    assert!(report.retryable, "{lang:?}");
    let err = report.error.unwrap();
    assert!(err.contains(uncaught), "{lang:?}: {err}");
    assert!(report.emitted.is_empty());
}

#[test]
fn python_handles_a_zulip_message_under_its_manifest_grant() {
    handles_a_zulip_message_under_its_manifest_grant(Lang::Python);
}

#[test]
fn python_a_call_outside_the_grant_is_capability_denied() {
    a_call_outside_the_grant_is_capability_denied(Lang::Python);
}

#[test]
fn python_follows_the_one_error_rule() {
    follows_the_one_error_rule(Lang::Python, "AttributeError");
}

#[test]
fn js_handles_a_zulip_message_under_its_manifest_grant() {
    handles_a_zulip_message_under_its_manifest_grant(Lang::Js);
}

#[test]
fn js_a_call_outside_the_grant_is_capability_denied() {
    a_call_outside_the_grant_is_capability_denied(Lang::Js);
}

#[test]
fn js_follows_the_one_error_rule() {
    follows_the_one_error_rule(Lang::Js, "uncaught exception in handler: TypeError");
}
