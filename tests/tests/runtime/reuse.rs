//! Reuse mode: a warm instance serves up to `reuse` deliveries of one
//! handler and tenant, and is discarded after a trap or a limit. The
//! `counter` guest logs how many calls its instance has served.

use hookbox::runtime::{HandlerModule, Outcome};
use hookbox_tests::{Delivery, event, guests, module};
use serde_json::json;

/// The counter guest as one module per test (warm pools are per module, so
/// tests running in parallel do not share instances).
fn counter() -> HandlerModule {
    hookbox_tests::runtime()
        .compile(
            &hookbox_tests::read(guests::COUNTER),
            &hookbox::manifest::Capability::all(),
        )
        .unwrap()
        .module
}

/// Delivers to `tenant` with `reuse` and returns the count the guest logged.
fn call(
    m: &HandlerModule,
    handler: &str,
    tenant: &str,
    reuse: u32,
    attempt: u32,
) -> (Outcome, String) {
    let mut d = Delivery::new(attempt);
    d.handler = handler.into();
    d.event = event("test", tenant, &json!({}));
    d.reuse = reuse;
    let report = d.run(m);
    let count = report
        .logs
        .first()
        .map(|r| r.message.clone())
        .unwrap_or_default();
    (report.outcome, count)
}

fn counts(m: &HandlerModule, calls: &[(&str, &str)], reuse: u32) -> Vec<String> {
    calls
        .iter()
        .map(|(handler, tenant)| call(m, handler, tenant, reuse, 1).1)
        .collect()
}

#[test]
fn fresh_instances_by_default() {
    let m = module(guests::COUNTER);
    assert_eq!(counts(&m, &[("h", "a"); 3], 0), ["1", "1", "1"]);
}

#[test]
fn a_warm_instance_serves_at_most_reuse_deliveries() {
    let m = counter();
    assert_eq!(counts(&m, &[("h", "a"); 5], 3), ["1", "2", "3", "1", "2"]);
    assert_eq!(m.idle_instances(), 1);
}

#[test]
fn state_does_not_leak_across_tenants_or_handlers() {
    let m = counter();
    let calls = [
        ("h", "a"),
        ("h", "b"),
        ("h", "a"),
        ("h", "b"),
        ("other", "a"),
    ];
    assert_eq!(counts(&m, &calls, 10), ["1", "1", "2", "2", "1"]);
}

#[test]
fn a_trapped_instance_is_discarded() {
    let m = counter();
    assert_eq!(call(&m, "h", "a", 10, 1), (Outcome::Ok, "1".into()));
    assert_eq!(call(&m, "h", "a", 10, 99), (Outcome::Trap, "2".into()));
    assert_eq!(call(&m, "h", "a", 10, 1), (Outcome::Ok, "1".into()));
}

#[test]
fn a_handler_error_keeps_the_instance() {
    let m = counter();
    assert_eq!(call(&m, "h", "a", 10, 1), (Outcome::Ok, "1".into()));
    assert_eq!(
        call(&m, "h", "a", 10, 98),
        (Outcome::HandlerError, "2".into())
    );
    assert_eq!(call(&m, "h", "a", 10, 1), (Outcome::Ok, "3".into()));
}

#[test]
fn a_limit_hit_discards_the_instance() {
    let m = counter();
    assert_eq!(call(&m, "h", "a", 10, 1), (Outcome::Ok, "1".into()));
    let mut over = Delivery::new(1).limits(|l| l.log_bytes = 0);
    over.handler = "h".into();
    over.event = event("test", "a", &json!({}));
    over.reuse = 10;
    assert_eq!(over.run(&m).outcome, Outcome::LogLimit);
    assert_eq!(call(&m, "h", "a", 10, 1), (Outcome::Ok, "1".into()));
}

#[test]
fn idle_warm_instances_are_bounded() {
    let m = counter();
    for tenant in 0..20 {
        call(&m, "h", &tenant.to_string(), 10, 1);
    }
    let idle = m.idle_instances();
    assert!((1..=8).contains(&idle), "{idle} idle instances");
}
