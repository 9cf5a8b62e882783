//! Every per-delivery limit, both ways: a guest just inside the limit
//! succeeds, one just past it gets the limit's named outcome, and the
//! runtime then still delivers to a good guest.

use std::time::Duration;

use hookbox::runtime::{DeliveryReport, LogStream, Outcome, Runtime, RuntimeConfig};
use hookbox_tests::{Delivery, guests, module, test_config};

const PAGE: u64 = 64 * 1024;

/// A good delivery after a hostile one: the runtime is unharmed.
fn good_guest_still_works() {
    let report = Delivery::new(1).run(&module(guests::GOOD));
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
}

fn assert_outcome(report: &DeliveryReport, want: Outcome) {
    assert_eq!(report.outcome, want, "error: {:?}", report.error);
    if want != Outcome::Ok && want != Outcome::HandlerError {
        assert_eq!(report.retryable, want.default_retryable(), "{want}");
        assert!(report.error.is_some(), "{want} carries an explanation");
        assert!(report.emitted.is_empty());
    }
}

#[test]
fn fuel() {
    let spin = module(guests::SPIN);
    let generous = Delivery::new(1000).run(&spin);
    assert_outcome(&generous, Outcome::Ok);
    let needed = generous.fuel_used;
    assert!(needed > 1000, "{needed}");

    let exact = Delivery::new(1000).limits(|l| l.fuel = needed).run(&spin);
    assert_outcome(&exact, Outcome::Ok);
    assert_eq!(exact.fuel_used, needed, "fuel use is deterministic");

    // One more loop iteration than the budget allows.
    let past = Delivery::new(1001).limits(|l| l.fuel = needed).run(&spin);
    assert_outcome(&past, Outcome::OutOfFuel);
    assert_eq!(past.fuel_used, needed, "the whole budget was spent");
    good_guest_still_works();
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let report = Delivery::new(1)
        .limits(|l| l.fuel = 1_000_000)
        .run(&module(guests::LOOP));
    assert_outcome(&report, Outcome::OutOfFuel);
    assert!(report.fuel_used >= 1_000_000, "{}", report.fuel_used);
    good_guest_still_works();
}

#[test]
fn timeout() {
    // Fuel that would last for minutes, so only the deadline can stop the loop.
    let endless_fuel = |l: &mut hookbox::limits::Limits| {
        l.fuel = 1 << 50;
        l.timeout_ms = 50;
    };
    let quick = Delivery::new(1000)
        .limits(endless_fuel)
        .run(&module(guests::SPIN));
    assert_outcome(&quick, Outcome::Ok);
    let report = Delivery::new(1)
        .limits(endless_fuel)
        .run(&module(guests::LOOP));
    assert_outcome(&report, Outcome::Timeout);
    assert!(report.retryable);
    good_guest_still_works();
}

#[test]
fn memory() {
    let memory = module(guests::MEMORY);
    // The guest starts with one page and grows by `attempt` pages.
    let at_limit = Delivery::new(3)
        .limits(|l| l.memory_bytes = 4 * PAGE)
        .run(&memory);
    assert_outcome(&at_limit, Outcome::Ok);
    assert_eq!(at_limit.peak_memory_bytes, 4 * PAGE);

    let past = Delivery::new(4)
        .limits(|l| l.memory_bytes = 4 * PAGE)
        .run(&memory);
    assert_outcome(&past, Outcome::MemoryLimit);
    assert_eq!(
        past.peak_memory_bytes, PAGE,
        "the refused growth is not counted"
    );
    good_guest_still_works();
}

#[test]
fn memory_beyond_the_pool_slot_is_a_memory_limit() {
    // The pool ceiling (1 MiB slots) is below the handler's own limit.
    let rt = Runtime::new(RuntimeConfig {
        pool_instances: 4,
        pool_memory_bytes: 16 * PAGE,
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert!(rt.pooling(), "this test needs the pooling allocator");
    let memory = rt
        .compile(
            &hookbox_tests::read(guests::MEMORY),
            &hookbox::manifest::Capability::all(),
        )
        .unwrap()
        .module;
    let fits = Delivery::new(15).run_on(&rt, &memory);
    assert_outcome(&fits, Outcome::Ok);
    assert_eq!(fits.peak_memory_bytes, 16 * PAGE);
    let past = Delivery::new(16).run_on(&rt, &memory);
    assert_outcome(&past, Outcome::MemoryLimit);
    assert_eq!(past.peak_memory_bytes, PAGE);
    let good = rt
        .compile(
            &hookbox_tests::read(guests::GOOD),
            &hookbox::manifest::Capability::all(),
        )
        .unwrap()
        .module;
    assert_outcome(&Delivery::new(1).run_on(&rt, &good), Outcome::Ok);
}

#[test]
fn table_elements() {
    let table = module(guests::TABLE);
    // One element to start with, plus `attempt`.
    let at_limit = Delivery::new(9)
        .limits(|l| l.table_elements = 10)
        .run(&table);
    assert_outcome(&at_limit, Outcome::Ok);
    let past = Delivery::new(10)
        .limits(|l| l.table_elements = 10)
        .run(&table);
    assert_outcome(&past, Outcome::TableLimit);
    good_guest_still_works();
}

#[test]
fn stack() {
    let recurse = module(guests::RECURSE);
    assert_outcome(&Delivery::new(1000).run(&recurse), Outcome::Ok);
    assert_outcome(
        &Delivery::new(u32::MAX).run(&recurse),
        Outcome::StackOverflow,
    );
    good_guest_still_works();
}

#[test]
fn instances() {
    let good = module(guests::GOOD);
    // The smallest instance budget the good guest runs with…
    let needed = (1..=16)
        .find(|&n| {
            Delivery::new(1)
                .limits(|l| l.instances = n)
                .run(&good)
                .outcome
                == Outcome::Ok
        })
        .expect("the good guest needs at most 16 core instances");
    // …and one less is refused.
    let past = Delivery::new(1)
        .limits(|l| l.instances = needed - 1)
        .run(&good);
    assert_outcome(&past, Outcome::Trap);
    assert!(
        past.error.as_deref().unwrap().contains("instance"),
        "{:?}",
        past.error
    );
    good_guest_still_works();
}

#[test]
fn log_bytes() {
    let flood = module(guests::LOG_FLOOD);
    // Records of 100 bytes each, plus 64 for the record itself.
    let at_limit = Delivery::new(10).limits(|l| l.log_bytes = 1640).run(&flood);
    assert_outcome(&at_limit, Outcome::Ok);
    assert_eq!(at_limit.logs.len(), 10);
    let past = Delivery::new(11).limits(|l| l.log_bytes = 1640).run(&flood);
    assert_outcome(&past, Outcome::LogLimit);
    assert_eq!(past.logs.len(), 10, "records before the limit are kept");
    assert!(
        past.error.as_deref().unwrap().contains("1640 bytes"),
        "{:?}",
        past.error
    );
    good_guest_still_works();
}

#[test]
fn stdout_and_stderr_count_against_log_bytes() {
    let stdout = module(guests::STDOUT);
    // `attempt` × "hello\n" (6 bytes) on stdout, then "done\n" (5) on
    // stderr; each line is a record of 64 bytes more.
    let at_limit = Delivery::new(10)
        .limits(|l| l.log_bytes = 65 + 11 * 64)
        .run(&stdout);
    assert_outcome(&at_limit, Outcome::Ok);
    let lines: Vec<_> = at_limit
        .logs
        .iter()
        .map(|r| (r.stream, r.message.as_str()))
        .collect();
    let mut want = vec![(LogStream::Stdout, "hello"); 10];
    want.push((LogStream::Stderr, "done"));
    assert_eq!(lines, want);

    let past = Delivery::new(11)
        .limits(|l| l.log_bytes = 65 + 11 * 64)
        .run(&stdout);
    assert_outcome(&past, Outcome::LogLimit);
    good_guest_still_works();
}

#[test]
fn emitted_events() {
    let flood = module(guests::EMIT_FLOOD);
    let at_limit = Delivery::new(5).limits(|l| l.emits = 5).run(&flood);
    assert_outcome(&at_limit, Outcome::Ok);
    assert_eq!(at_limit.emitted.len(), 5);
    for e in &at_limit.emitted {
        assert_eq!((e.event_type.as_str(), e.tenant.as_str()), ("tick", "acme"));
        assert_eq!(e.payload.as_ref().unwrap().get(), "{}");
    }
    let past = Delivery::new(6).limits(|l| l.emits = 5).run(&flood);
    assert_outcome(&past, Outcome::EmitLimit);
    good_guest_still_works();
}

#[test]
fn an_invalid_emitted_event_is_the_guests_error_to_handle() {
    let report = Delivery::new(1).run(&module(guests::EMIT_INVALID));
    assert_outcome(&report, Outcome::HandlerError);
    let msg = report.error.unwrap();
    assert!(
        msg.contains("payload") && msg.contains("not valid JSON"),
        "{msg}"
    );
    assert!(report.emitted.is_empty());
    good_guest_still_works();
}

#[test]
fn kv_value_bytes() {
    let kv_value = module(guests::KV_VALUE);
    // Key `k` (1 byte) plus a value of `attempt` bytes.
    let at_limit = Delivery::new(99).limits(|l| l.kv_value_bytes = 100);
    assert_outcome(&at_limit.run(&kv_value), Outcome::Ok);
    let ns = hookbox::kv::Namespace {
        handler: "test".into(),
        tenant: "acme".into(),
        ..hookbox::kv::Namespace::default()
    };
    let stored = hookbox::kv::Kv::get(at_limit.kv.as_ref(), &ns, "k").unwrap();
    assert_eq!(stored.map(|v| v.len()), Some(99));

    let past = Delivery::new(100).limits(|l| l.kv_value_bytes = 100);
    assert_outcome(&past.run(&kv_value), Outcome::KvLimit);
    assert_eq!(
        hookbox::kv::Kv::get(past.kv.as_ref(), &ns, "k").unwrap(),
        None
    );
    good_guest_still_works();
}

#[test]
fn result_bytes() {
    let big = module(guests::BIG_ERROR);
    let at_limit = Delivery::new(100)
        .limits(|l| l.result_bytes = 100)
        .run(&big);
    assert_outcome(&at_limit, Outcome::HandlerError);
    assert_eq!(at_limit.error.as_deref(), Some("e".repeat(100).as_str()));
    assert!(at_limit.retryable, "the guest's retryable flag is kept");
    let past = Delivery::new(101)
        .limits(|l| l.result_bytes = 100)
        .run(&big);
    assert_outcome(&past, Outcome::ResultLimit);
    good_guest_still_works();
}

#[test]
fn a_plain_trap() {
    let report = Delivery::new(1).run(&module(guests::TRAP));
    assert_outcome(&report, Outcome::Trap);
    assert!(report.retryable);
    assert!(report.error.unwrap().contains("unreachable"));
    good_guest_still_works();
}

#[test]
fn a_panic_reports_the_panic_message() {
    let report = Delivery::new(1).run(&module(guests::PANIC));
    assert_outcome(&report, Outcome::Trap);
    let err = report.error.unwrap();
    assert!(err.contains("unreachable"), "{err}");
    assert!(
        err.contains("panicked at src/lib.rs:7:5:\nthe answer is not 41"),
        "{err}"
    );
    assert!(
        report
            .logs
            .iter()
            .any(|r| r.stream == LogStream::Stderr && r.message == "the answer is not 41")
    );
    good_guest_still_works();
}

#[test]
fn a_small_pool_is_a_host_error_not_a_crash() {
    let rt = Runtime::new(RuntimeConfig {
        pool_instances: 1,
        ..test_config()
    })
    .unwrap();
    assert!(rt.pooling(), "this test needs the pooling allocator");
    let counter = rt
        .compile(
            &hookbox_tests::read(guests::COUNTER),
            &hookbox::manifest::Capability::all(),
        )
        .unwrap()
        .module;
    // A parked warm instance holds the only slot…
    let mut warm = Delivery::new(1);
    warm.reuse = 10;
    assert_outcome(&warm.run_on(&rt, &counter), Outcome::Ok);
    assert_eq!(counter.idle_instances(), 1);
    // …so a fresh instance for another tenant cannot get one.
    let mut other = Delivery::new(1);
    other.event = hookbox_tests::event("test", "other", &serde_json::json!({}));
    let report = other.run_on(&rt, &counter);
    assert_outcome(&report, Outcome::HostError);
    assert!(report.error.unwrap().contains("pool"));
}

#[test]
fn a_guests_own_waits_are_reported_and_nothing_else() {
    // A sleep of 100 ms in `pollable.block`: the guest's choice.
    let slept = Delivery::new(100).run(&module(guests::SLEEP));
    assert_outcome(&slept, Outcome::Ok);
    assert!(
        slept.waited >= Duration::from_millis(100),
        "{:?}",
        slept.waited
    );
    assert!(slept.waited <= slept.duration);
    // A loop stopped at its deadline, and a quick delivery, wait for nothing.
    let looped = Delivery::new(1)
        .limits(|l| {
            l.fuel = 1 << 50;
            l.timeout_ms = 50;
        })
        .run(&module(guests::LOOP));
    assert_outcome(&looped, Outcome::Timeout);
    assert_eq!(looped.waited, Duration::ZERO);
    let quick = Delivery::new(1).run(&module(guests::GOOD));
    assert_outcome(&quick, Outcome::Ok);
    assert_eq!(quick.waited, Duration::ZERO);
}
