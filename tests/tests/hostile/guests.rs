//! Hostile guests against the sandbox runtime: every attack ends in its
//! named outcome, never a host crash, and well-behaved deliveries keep
//! completing on another thread while the attack runs.

use std::thread;

use hookbox::kv::{Kv, Namespace};
use hookbox::limits::Limits;
use hookbox::manifest::Capability;
use hookbox::runtime::{DeliveryReport, Outcome, Runtime, RuntimeConfig, RuntimeError};
use hookbox_tests::{Delivery, event, guests, module, read, runtime, test_config};

const PAGE: u64 = 64 * 1024;

/// Runs `attack` on a thread of its own and good deliveries on this one
/// until the attack ends. Returns the attack's report and how many good
/// deliveries completed, all `ok`, while it was still running.
fn meanwhile(attack: impl FnOnce() -> DeliveryReport + Send + 'static) -> (DeliveryReport, usize) {
    let good = module(guests::GOOD);
    let attacker = thread::spawn(attack);
    let mut served_during = 0;
    loop {
        let running = !attacker.is_finished();
        let report = Delivery::new(1).run(&good);
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "a good delivery beside the attack: {:?}",
            report.error
        );
        if running && !attacker.is_finished() {
            served_during += 1;
        }
        if attacker.is_finished() {
            break;
        }
    }
    let report = attacker
        .join()
        .expect("the attacking delivery does not panic the host");
    (report, served_during)
}

/// One delivery of `path` with `attempt` as the guest's parameter.
fn attack(path: &'static str, attempt: u32, limits: impl FnOnce(&mut Limits)) -> DeliveryReport {
    Delivery::new(attempt).limits(limits).run(&module(path))
}

#[track_caller]
fn assert_outcome(report: &DeliveryReport, want: Outcome) {
    assert_eq!(report.outcome, want, "error: {:?}", report.error);
    assert!(report.emitted.is_empty(), "a failed delivery emits nothing");
    assert!(report.error.is_some(), "{want} carries an explanation");
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline_while_others_are_served() {
    // Fuel for hours: only the wall-clock deadline can stop it.
    let (report, served) = meanwhile(|| {
        attack(guests::LOOP, 1, |l| {
            l.fuel = 1 << 50;
            l.timeout_ms = 1_000;
        })
    });
    assert_outcome(&report, Outcome::Timeout);
    assert!(served > 0, "no good delivery completed during the loop");
}

#[test]
fn an_infinite_loop_at_full_default_fuel_runs_out_of_fuel() {
    // The default budget, and a deadline that does not fire first.
    let (report, _) = meanwhile(|| attack(guests::LOOP, 1, |l| l.timeout_ms = 120_000));
    assert_outcome(&report, Outcome::OutOfFuel);
    assert_eq!(report.fuel_used, Limits::default().fuel);
}

#[test]
fn memory_grows_to_the_default_cap_and_not_past_it() {
    let cap = Limits::default().memory_bytes;
    let pages = (cap / PAGE) as u32;
    // One page to start with, plus `attempt` pages.
    let at_cap = attack(guests::MEMORY, pages - 1, |_| {});
    assert_eq!(at_cap.outcome, Outcome::Ok, "{:?}", at_cap.error);
    assert_eq!(at_cap.peak_memory_bytes, cap);
    let (past, _) = meanwhile(move || attack(guests::MEMORY, pages, |_| {}));
    assert_outcome(&past, Outcome::MemoryLimit);
    assert_eq!(
        past.peak_memory_bytes, PAGE,
        "the refused growth is not counted"
    );
}

#[test]
fn a_huge_single_allocation_is_refused() {
    // `memory.grow` by 65535 pages: 4 GiB in one request.
    let (report, _) = meanwhile(|| attack(guests::MEMORY, 65_535, |_| {}));
    assert_outcome(&report, Outcome::MemoryLimit);
    assert_eq!(report.peak_memory_bytes, PAGE);
}

/// Compiles `path` on a runtime without the pooling allocator.
fn on_demand(path: &str) -> (Runtime, hookbox::runtime::HandlerModule) {
    let rt = Runtime::new(RuntimeConfig {
        pooling: false,
        ..test_config()
    })
    .expect("an on-demand runtime");
    let module = rt
        .compile(&read(path), &Capability::all())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .module;
    (rt, module)
}

#[test]
fn a_memory_declared_at_1_gib_is_refused() {
    // With the pool (the daemon's default): refused at upload, naming it.
    let err = runtime()
        .compile(&read(guests::HUGE_MEMORY), &Capability::all())
        .expect_err("a 1 GiB memory does not fit a pool slot");
    assert!(matches!(err, RuntimeError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("memory"), "{err}");
    // Without it: refused at instantiation, before any guest code runs.
    let (rt, module) = on_demand(guests::HUGE_MEMORY);
    let report = Delivery::new(1).run_on(&rt, &module);
    assert_outcome(&report, Outcome::MemoryLimit);
    assert_eq!(report.peak_memory_bytes, 0);
}

#[test]
fn deep_recursion_overflows_the_wasm_stack_not_the_host() {
    let (report, _) = meanwhile(|| attack(guests::RECURSE, u32::MAX, |_| {}));
    assert_outcome(&report, Outcome::StackOverflow);
}

#[test]
fn table_growth_is_capped() {
    let (report, _) = meanwhile(|| attack(guests::TABLE, 10_000_000, |_| {}));
    assert_outcome(&report, Outcome::TableLimit);
}

#[test]
fn a_table_declared_at_10_million_elements_is_refused() {
    let err = runtime()
        .compile(&read(guests::HUGE_TABLE), &Capability::all())
        .expect_err("the table does not fit a pool slot");
    assert!(matches!(err, RuntimeError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("table"), "{err}");
    let (rt, module) = on_demand(guests::HUGE_TABLE);
    let report = Delivery::new(1).run_on(&rt, &module);
    assert_outcome(&report, Outcome::TableLimit);
}

#[test]
fn a_log_flood_is_cut_at_the_log_budget() {
    let (report, _) = meanwhile(|| attack(guests::LOG_FLOOD, u32::MAX, |_| {}));
    assert_outcome(&report, Outcome::LogLimit);
    let kept: usize = report.logs.iter().map(|r| r.message.len() + 64).sum();
    assert!(
        kept as u64 <= Limits::default().log_bytes,
        "{kept} bytes of log kept"
    );
}

#[test]
fn empty_log_records_and_fields_are_charged() {
    // Each record costs 64 bytes besides its text, each field 48: the
    // default 64 KiB holds 1 024 empty records. Before, a million empty
    // records or two million empty fields were free (`ok`, gigabytes of
    // host memory).
    let budget = Limits::default().log_bytes;
    let (report, _) = meanwhile(|| attack(guests::LOG_EMPTY, 1_000_000, |_| {}));
    assert_outcome(&report, Outcome::LogLimit);
    assert_eq!(report.logs.len() as u64, budget / 64);
    let at_limit = attack(guests::LOG_EMPTY, (budget / 64) as u32, |_| {});
    assert_eq!(at_limit.outcome, Outcome::Ok, "{:?}", at_limit.error);
    let (report, _) = meanwhile(|| attack(guests::LOG_FIELDS, 2_000_000, |_| {}));
    assert_outcome(&report, Outcome::LogLimit);
    assert!(report.logs.is_empty());
    let fields = ((budget - 64) / 48) as u32;
    let at_limit = attack(guests::LOG_FIELDS, fields, |_| {});
    assert_eq!(at_limit.outcome, Outcome::Ok, "{:?}", at_limit.error);
    assert_eq!(at_limit.logs[0].fields.len(), fields as usize);
    let past = attack(guests::LOG_FIELDS, fields + 1, |_| {});
    assert_outcome(&past, Outcome::LogLimit);
}

#[test]
fn emitted_bytes_are_capped() {
    // 100 events of a 1 MB payload each: past the default 2 MiB of
    // `emit_bytes` at the third, before it is parsed.
    let (report, _) = meanwhile(|| attack(guests::EMIT_BIG, 100, |_| {}));
    assert_outcome(&report, Outcome::EmitBytesLimit);
    let err = report.error.unwrap();
    assert!(err.contains("2097152 bytes"), "{err}");
    let two = attack(guests::EMIT_BIG, 2, |_| {});
    assert_eq!(two.outcome, Outcome::Ok, "{:?}", two.error);
    assert_eq!(two.emitted.len(), 2);
    let three = attack(guests::EMIT_BIG, 3, |_| {});
    assert_outcome(&three, Outcome::EmitBytesLimit);
    // Two million empty metadata entries on one event: 64 bytes each.
    let (report, _) = meanwhile(|| attack(guests::EMIT_METADATA, 2_000_000, |_| {}));
    assert_outcome(&report, Outcome::EmitBytesLimit);
    // Within the budget, too many entries are the guest's error to handle.
    let some = attack(guests::EMIT_METADATA, 1_000, |_| {});
    assert_eq!(some.outcome, Outcome::Ok, "{:?}", some.error);
    assert!(some.emitted.is_empty());
    // A handler may be given more.
    let raised = attack(guests::EMIT_BIG, 3, |l| l.emit_bytes = 4 << 20);
    assert_eq!(raised.outcome, Outcome::Ok, "{:?}", raised.error);
}

#[test]
fn an_emit_flood_is_cut_at_the_emit_budget() {
    let (report, _) = meanwhile(|| attack(guests::EMIT_FLOOD, u32::MAX, |_| {}));
    assert_outcome(&report, Outcome::EmitLimit);
}

#[test]
fn a_giant_result_is_refused() {
    // A well-formed 60 KB error message: past the 16 KiB result budget.
    let (report, _) = meanwhile(|| attack(guests::BIG_ERROR, 60_000, |_| {}));
    assert_outcome(&report, Outcome::ResultLimit);
    assert!(report.error.as_ref().unwrap().len() < 1024);
    // A message claiming 2 GiB past the end of memory: a trap, not a copy.
    let (report, _) = meanwhile(|| attack(guests::GIANT_RESULT, 1, |_| {}));
    assert_outcome(&report, Outcome::Trap);
    let err = report.error.unwrap();
    assert!(err.contains("out of bounds"), "{err}");
}

#[test]
fn many_kv_keys_in_one_delivery_stay_in_its_namespace() {
    let kv = std::sync::Arc::new(hookbox::kv::MemoryKv::new());
    let (report, _) = {
        let kv = kv.clone();
        meanwhile(move || {
            let mut d = Delivery::new(2_000);
            d.kv = kv;
            d.run(&module(guests::KV_FLOOD))
        })
    };
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    let ns = |handler: &str| Namespace {
        handler: handler.into(),
        tenant: "acme".into(),
        ..Namespace::default()
    };
    // Keys 0 to 1999 (hex 0x7cf), 1 KiB each, all in the handler's own
    // namespace and nowhere else.
    let last = kv.get(&ns("test"), "000007cf").unwrap();
    assert_eq!(last.map(|v| v.len()), Some(1024));
    assert_eq!(kv.get(&ns("test"), "000007d0").unwrap(), None);
    assert_eq!(kv.get(&ns("other"), "000007cf").unwrap(), None);
}

#[test]
fn a_huge_kv_value_is_refused() {
    // A 60 KB value against a 16 KiB budget.
    let (report, _) =
        meanwhile(|| attack(guests::KV_VALUE, 60_000, |l| l.kv_value_bytes = 16 << 10));
    assert_outcome(&report, Outcome::KvLimit);
    // A value claiming 16 MiB past the end of the guest's memory: the host
    // refuses to read it (a trap), and stores nothing.
    let (report, _) = meanwhile(|| attack(guests::KV_VALUE, 16 << 20, |_| {}));
    assert_outcome(&report, Outcome::Trap);
    assert!(report.error.unwrap().contains("out of bounds"));
}

/// One `kv_flood` delivery of `keys` keys for `tenant` into `kv`.
fn kv_flood(
    kv: &std::sync::Arc<hookbox::kv::MemoryKv>,
    tenant: &str,
    keys: u32,
    limits: impl FnOnce(&mut Limits),
) -> DeliveryReport {
    let mut d = Delivery::new(keys).limits(limits);
    d.kv = kv.clone();
    d.event = event("test", tenant, &serde_json::json!({}));
    d.run(&module(guests::KV_FLOOD))
}

fn acme() -> Namespace {
    Namespace {
        handler: "test".into(),
        tenant: "acme".into(),
        ..Namespace::default()
    }
}

#[test]
fn a_kv_flood_across_deliveries_hits_a_quota() {
    // 1 KiB values under 8-byte keys: 1032 bytes per key.
    const ENTRY: u64 = 1032;
    // 200 000 keys (≈ 200 MiB) in one delivery, within its fuel and
    // deadline: stopped at the default namespace quota of 16 MiB.
    let kv = std::sync::Arc::new(hookbox::kv::MemoryKv::new());
    let (report, _) = {
        let kv = kv.clone();
        meanwhile(move || kv_flood(&kv, "acme", 200_000, |l| l.timeout_ms = 120_000))
    };
    assert_outcome(&report, Outcome::KvLimit);
    let quota = Limits::default().kv_quota_bytes;
    let msg = report.error.unwrap();
    assert!(msg.contains("`kv_quota_bytes` is 16777216"), "{msg}");
    // The keys before the refused one stay, filling the namespace.
    let usage = kv.usage(&acme()).unwrap();
    assert_eq!(usage.keys, quota / ENTRY, "{usage:?}");
    assert!(
        usage.bytes <= quota && usage.bytes + ENTRY > quota,
        "{usage:?}"
    );

    // Across deliveries, each within every per-delivery budget: the
    // namespace fills up and the delivery that would pass 1 MiB ends.
    let kv = std::sync::Arc::new(hookbox::kv::MemoryKv::new());
    let mib = |l: &mut Limits| l.kv_quota_bytes = 1 << 20;
    for keys in [500, 900] {
        let report = kv_flood(&kv, "acme", keys, mib);
        assert_eq!(report.outcome, Outcome::Ok, "{keys}: {:?}", report.error);
    }
    let report = kv_flood(&kv, "acme", 1_100, mib);
    assert_outcome(&report, Outcome::KvLimit);
    let full = (1 << 20) / ENTRY;
    assert_eq!(kv.usage(&acme()).unwrap().keys, full);
    // Overwriting what is there grows nothing, so it still succeeds...
    let report = kv_flood(&kv, "acme", full as u32, mib);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    // ...and every delivery adding a key fails, with nothing added.
    for _ in 0..3 {
        let report = kv_flood(&kv, "acme", full as u32 + 1, mib);
        assert_outcome(&report, Outcome::KvLimit);
    }
    assert_eq!(kv.usage(&acme()).unwrap().keys, full);
    // Another tenant's namespace of the same handler has a quota of its own.
    let report = kv_flood(&kv, "other", 900, mib);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);

    // The key quota: many tiny entries are as bounded as a few big ones.
    let kv = std::sync::Arc::new(hookbox::kv::MemoryKv::new());
    let report = kv_flood(&kv, "acme", 101, |l| l.kv_quota_keys = 100);
    assert_outcome(&report, Outcome::KvLimit);
    let msg = report.error.unwrap();
    assert!(
        msg.contains("101 keys") && msg.contains("`kv_quota_keys` is 100"),
        "{msg}"
    );
    assert_eq!(kv.usage(&acme()).unwrap().keys, 100);
}

#[test]
fn a_trap_and_a_panic_are_traps() {
    let (report, _) = meanwhile(|| attack(guests::TRAP, 1, |_| {}));
    assert_outcome(&report, Outcome::Trap);
    let (report, _) = meanwhile(|| attack(guests::PANIC, 1, |_| {}));
    assert_outcome(&report, Outcome::Trap);
    assert!(report.error.unwrap().contains("the answer is not 41"));
}

#[test]
fn sleeping_in_a_host_call_is_stopped_by_the_deadline() {
    // An hour asleep in `pollable.block` (then `poll` on a list of
    // pollables) against a 2 s deadline (long enough for a good delivery
    // to finish beside it on a loaded machine). Only a deadline that
    // interrupts the sleep ends the delivery before the hour is over; the
    // wait below is a bound on a hang, not a measurement (how soon the
    // deadline fires is measured by the sandbox benchmark).
    for path in [guests::SLEEP, guests::SLEEP_POLL] {
        let (report, served) = meanwhile(move || {
            let (tx, rx) = std::sync::mpsc::channel();
            thread::spawn(move || {
                let _ = tx.send(attack(path, HOUR_MS, |l| l.timeout_ms = 2_000));
            });
            rx.recv_timeout(std::time::Duration::from_secs(300))
                .unwrap_or_else(|_| panic!("{path}: the deadline did not interrupt the sleep"))
        });
        assert_outcome(&report, Outcome::Timeout);
        assert!(served > 0, "no good delivery completed during the sleep");
    }
}

/// An hour, in ms: a sleep no test waits out.
const HOUR_MS: u32 = 3_600_000;

#[test]
fn a_short_sleep_within_the_deadline_is_fine() {
    let report = attack(guests::SLEEP, 5, |l| l.timeout_ms = 5_000);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    let report = attack(guests::SLEEP_POLL, 5, |l| l.timeout_ms = 5_000);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
}

#[test]
fn wasi_filesystem_environment_and_sockets_are_denied() {
    // Each guest returns `ok` only when WASI gave it nothing.
    for path in [guests::WASI_DENIED, guests::WASI_SOCKETS] {
        let report = attack(path, 1, |_| {});
        assert_eq!(report.outcome, Outcome::Ok, "{path}: {:?}", report.error);
    }
    // wasi:http is linked as denied: calling it ends the delivery with the
    // named outcome, naming the function.
    let report = attack(guests::WASI_HTTP, 1, |_| {});
    assert_outcome(&report, Outcome::CapabilityDenied);
    let error = report.error.as_deref().unwrap_or_default();
    assert!(error.contains("wasi:http"), "{error}");
}

#[test]
fn a_guest_cannot_reach_another_handlers_or_tenants_kv() {
    // `kv_probe` fails if `shared` holds anything but its own config. Two
    // handlers and two tenants write the same key through one store: each
    // of the four namespaces only ever sees its own value.
    let probe = module(guests::KV_PROBE);
    let shared = std::sync::Arc::new(hookbox::kv::MemoryKv::new());
    for round in 0..3 {
        for handler in ["alpha", "beta"] {
            for tenant in ["acme", "evil"] {
                let mut d = Delivery::new(1);
                d.kv = shared.clone();
                d.handler = handler.into();
                d.event = event("probe", tenant, &serde_json::json!({}));
                d.config = format!("\"{handler}@{tenant}\"");
                let report = d.run(&probe);
                assert_eq!(
                    report.outcome,
                    Outcome::Ok,
                    "round {round}, {handler}@{tenant} saw {:?}",
                    report.error
                );
            }
        }
    }
    for handler in ["alpha", "beta"] {
        for tenant in ["acme", "evil"] {
            let ns = Namespace {
                handler: handler.into(),
                tenant: tenant.into(),
                ..Namespace::default()
            };
            let value = shared.get(&ns, "shared").unwrap().unwrap();
            assert_eq!(value, format!("\"{handler}@{tenant}\"").into_bytes());
        }
    }
}

#[test]
fn after_every_attack_the_runtime_still_delivers() {
    // The shared runtime has served every attack above (tests run in any
    // order, so run a few here too) and still works.
    for path in [guests::TRAP, guests::RECURSE, guests::GIANT_RESULT] {
        let _ = attack(path, u32::MAX, |_| {});
    }
    let report = Delivery::new(1).run(&module(guests::GOOD));
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    assert!(
        runtime().pooling(),
        "the suite runs on the pooling allocator"
    );
}
