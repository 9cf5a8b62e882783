//! `hookbox run` as a library: a component file and an event file in, one
//! report per event out, with one KV for the whole run.

use hookbox::limits::Limits;
use hookbox::manifest::Capability;
use hookbox::run::{LocalRun, RunInput, run_local};
use hookbox::runtime::Outcome;
use hookbox_tests::guests;

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookbox-tests-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn runs_every_event_with_one_kv() {
    let events = temp_file(
        "events.json",
        r#"[{"type": "message", "tenant": "acme"}, {"type": "reaction.add", "tenant": "acme"}]"#,
    );
    let summary = run_local(&LocalRun {
        component: guests::GOOD.into(),
        input: RunInput::Events(events),
        config: r#"{"greeting": "hi"}"#.into(),
        handler: None,
        limits: Limits::default(),
        capabilities: Capability::all(),
        // As `hookbox run` does: compiled in a child of the binary.
        compiler: Some(hookbox_tests::daemon::hookbox_bin()),
    })
    .unwrap();
    assert_eq!(summary.handler, "good");
    assert!(summary.all_ok());
    assert_eq!(summary.deliveries.len(), 2);
    let second = &summary.deliveries[1].report;
    assert_eq!(second.outcome, Outcome::Ok);
    assert_eq!(second.logs[1].message, r#"{"greeting":"hi"}"#);

    let text = summary.to_text();
    assert!(text.contains("type=reaction.add"), "{text}");
    assert!(text.contains("[info] handled type=\"message\""), "{text}");
    assert!(text.contains("emitted seen tenant=\"acme\""), "{text}");
    assert!(text.contains("2/2 deliveries ok"), "{text}");

    let json = serde_json::to_value(summary.to_json()).unwrap();
    assert_eq!(json["deliveries"][0]["outcome"], "ok");
    assert_eq!(json["deliveries"][1]["event"]["type"], "reaction.add");
}

/// One `tick` event with an empty payload, run by `component` with every
/// capability and the default limits.
fn tick(component: &str) -> LocalRun {
    LocalRun {
        component: component.into(),
        input: RunInput::Payload {
            event_type: "tick".into(),
            tenant: String::new(),
            file: None,
        },
        config: "{}".into(),
        handler: None,
        limits: Limits::default(),
        capabilities: Capability::all(),
        compiler: None,
    }
}

#[test]
fn limits_apply_and_failures_are_reported() {
    let summary = run_local(&LocalRun {
        handler: Some("looper".into()),
        limits: Limits {
            fuel: 10_000,
            ..Limits::default()
        },
        ..tick(guests::LOOP)
    })
    .unwrap();
    assert!(!summary.all_ok());
    assert_eq!(summary.deliveries[0].report.outcome, Outcome::OutOfFuel);
    assert!(summary.to_text().contains("outcome out_of_fuel"));
}

#[test]
fn a_refused_component_is_an_error() {
    let err = run_local(&tick(guests::TRAP_CORE)).unwrap_err();
    assert!(format!("{err:#}").contains("not a component"), "{err:#}");
}

#[test]
fn a_narrowed_grant_ends_the_delivery_capability_denied() {
    // `good` uses every interface: granted only `log`, its first call to
    // another (the KV counter) ends the delivery as it would in the daemon.
    let run = |capabilities: &[Capability]| {
        run_local(&LocalRun {
            capabilities: capabilities.iter().copied().collect(),
            ..tick(guests::GOOD)
        })
        .unwrap()
    };
    let denied = run(&[Capability::Log]);
    let report = &denied.deliveries[0].report;
    assert_eq!(report.outcome, Outcome::CapabilityDenied);
    let error = report.error.as_deref().unwrap_or_default();
    assert!(error.contains("capability `kv` is not granted"), "{error}");
    let granted = run(&[
        Capability::Log,
        Capability::Kv,
        Capability::Config,
        Capability::Emit,
        Capability::Clock,
    ]);
    assert!(granted.all_ok(), "{}", granted.to_text());
}
