//! WASI is linked with everything denied: no files, no environment.

use hookbox::runtime::Outcome;
use hookbox_tests::{Delivery, guests, module};

#[test]
fn no_preopened_directories_and_no_environment() {
    let report = Delivery::new(1).run(&module(guests::WASI_DENIED));
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
}

#[test]
fn a_wasi_interface_hookbox_lacks_is_linked_as_denied() {
    let compiled = hookbox_tests::runtime()
        .compile(
            &hookbox_tests::read(guests::WASI_HTTP),
            &std::collections::BTreeSet::new(),
        )
        .expect("WASI 0.2 imports are accepted");
    // Not called: the delivery succeeds.
    let report = Delivery::new(0).run(&compiled.module);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    assert_eq!(
        compiled.denied_imports,
        ["wasi:http/outgoing-handler@0.2.0"]
    );
    // Called: denied with its own named outcome, not a generic trap.
    let report = Delivery::new(1).run(&compiled.module);
    assert_eq!(report.outcome, Outcome::CapabilityDenied);
    assert!(!report.retryable);
    let err = report.error.unwrap();
    assert!(
        err.contains("`wasi:http/outgoing-handler@0.2.0#handle` is denied"),
        "{err}"
    );
}
