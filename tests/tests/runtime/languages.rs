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
use std::sync::OnceLock;

use hookbox::manifest::{Capability, Manifest};
use hookbox::runtime::{DeliveryReport, HandlerModule, Outcome};
use hookbox_tests::toolchains::{Lang, build, example};
use hookbox_tests::{Delivery, ZULIP_EVENTS, event, runtime};
use serde_json::{Value, json};

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

/// A big component gets its next fresh instance prepared while it waits
/// (`prepare.rs`), and a delivery on it gives what a fresh one gives.
fn its_next_instance_is_prepared_ahead(lang: Lang) {
    let (module, _) = handler(lang);
    let first = deliver(lang, &zulip_message("<p>deploy</p>"), None, None);
    assert_eq!(first.outcome, Outcome::Ok, "{lang:?}: {:?}", first.error);
    let start = std::time::Instant::now();
    while !module.has_prepared_instance() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{lang:?}: no instance was prepared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let served = module.prepared_deliveries();
    let report = deliver(lang, &zulip_message("<p>deploy</p>"), None, None);
    assert_eq!(report.outcome, Outcome::Ok, "{lang:?}: {:?}", report.error);
    assert!(module.prepared_deliveries() > served, "{lang:?}");
    // A fresh KV per delivery: the same reply, nothing carried over.
    assert_eq!(report.emitted.len(), first.emitted.len(), "{lang:?}");
    assert_eq!(
        report.emitted[0].payload.as_ref().unwrap().get(),
        first.emitted[0].payload.as_ref().unwrap().get(),
        "{lang:?}"
    );
}

#[test]
fn python_instances_are_prepared_ahead() {
    its_next_instance_is_prepared_ahead(Lang::Python);
}

#[test]
fn js_instances_are_prepared_ahead() {
    its_next_instance_is_prepared_ahead(Lang::Js);
}
