//! Instances prepared ahead of the event: a handler whose instantiation
//! runs start-up code gets its next fresh instance built while it waits,
//! and that instance serves exactly one delivery with nothing carried
//! over. The `startup` guest's start function burns fuel and sets state;
//! each call logs "<global><memory byte>": "21" on a fresh instance.

use std::time::{Duration, Instant};

use hookbox::runtime::{DeliveryReport, HandlerModule, Outcome};
use hookbox_tests::{Delivery, event, guests};
use serde_json::json;

/// The guest as one module per test (prepared instances are per module).
fn startup() -> HandlerModule {
    hookbox_tests::runtime()
        .compile(
            &hookbox_tests::read(guests::STARTUP),
            &hookbox::manifest::Capability::all(),
        )
        .unwrap()
        .module
}

/// Waits for the preparer thread (a wait, not a timing assertion).
fn wait_prepared(m: &HandlerModule) {
    let start = Instant::now();
    while !m.has_prepared_instance() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no instance was prepared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn deliver(m: &HandlerModule, tenant: &str, attempt: u32) -> DeliveryReport {
    let mut d = Delivery::new(attempt);
    d.event = event("test", tenant, &json!({}));
    d.run(m)
}

/// The guest's state digits.
fn seen(report: &DeliveryReport) -> String {
    report
        .logs
        .first()
        .map(|r| r.message.clone())
        .unwrap_or_default()
}

#[test]
fn a_prepared_instance_serves_one_delivery_with_nothing_carried_over() {
    let m = startup();
    let first = deliver(&m, "a", 1);
    assert_eq!(first.outcome, Outcome::Ok, "{:?}", first.error);
    assert_eq!(seen(&first), "21");
    assert_eq!(m.prepared_deliveries(), 0);
    for (i, tenant) in ["a", "b", "a"].into_iter().enumerate() {
        wait_prepared(&m);
        let report = deliver(&m, tenant, 1);
        assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
        assert_eq!(m.prepared_deliveries(), i as u64 + 1);
        // Fresh state, and the start-up's fuel charged to the delivery as
        // when it instantiated inline.
        assert_eq!(seen(&report), "21", "delivery {i}");
        assert_eq!(report.fuel_used, first.fuel_used, "delivery {i}");
    }
}

#[test]
fn a_trap_on_a_prepared_instance_leaves_the_next_one_fresh() {
    let m = startup();
    assert_eq!(deliver(&m, "a", 1).outcome, Outcome::Ok);
    wait_prepared(&m);
    let trapped = deliver(&m, "a", 99);
    assert_eq!(trapped.outcome, Outcome::Trap);
    assert_eq!(m.prepared_deliveries(), 1);
    wait_prepared(&m);
    let next = deliver(&m, "a", 1);
    assert_eq!(seen(&next), "21");
    assert_eq!(m.prepared_deliveries(), 2);
}

#[test]
fn an_instance_prepared_under_other_limits_is_not_used() {
    let m = startup();
    assert_eq!(deliver(&m, "a", 1).outcome, Outcome::Ok);
    wait_prepared(&m);
    // The handler's limits changed since: the prepared instance's budgets
    // are not this delivery's, so it instantiates inline.
    let report = Delivery::new(1).limits(|l| l.fuel -= 1).run(&m);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    assert_eq!(seen(&report), "21");
    assert_eq!(m.prepared_deliveries(), 0);
}

#[test]
fn a_start_up_past_the_fuel_budget_is_out_of_fuel_every_time() {
    let m = startup();
    for _ in 0..2 {
        let report = Delivery::new(1).limits(|l| l.fuel = 20_000).run(&m);
        assert_eq!(report.outcome, Outcome::OutOfFuel, "{:?}", report.error);
    }
    assert_eq!(m.prepared_deliveries(), 0);
}

#[test]
fn preparing_can_be_turned_off() {
    let rt = hookbox::runtime::Runtime::new(hookbox::runtime::RuntimeConfig {
        prepare_ahead: 0,
        ..hookbox_tests::test_config()
    })
    .unwrap();
    let m = rt
        .compile(
            &hookbox_tests::read(guests::STARTUP),
            &hookbox::manifest::Capability::all(),
        )
        .unwrap()
        .module;
    for _ in 0..3 {
        let report = Delivery::new(1).run_on(&rt, &m);
        assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
        assert_eq!(seen(&report), "21");
        assert!(!m.has_prepared_instance());
    }
    assert_eq!(m.prepared_deliveries(), 0);
}
