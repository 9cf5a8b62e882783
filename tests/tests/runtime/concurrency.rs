//! `deliver` is called from many threads at once on one module.

use std::sync::Arc;
use std::thread;

use hookbox::kv::{Kv, MemoryKv, Namespace};
use hookbox::runtime::Outcome;
use hookbox_tests::{Delivery, guests, module};

const THREADS: usize = 8;
const PER_THREAD: usize = 25;

#[test]
fn many_threads_one_module_one_kv() {
    let good = module(guests::GOOD);
    let kv = Arc::new(MemoryKv::new());
    thread::scope(|s| {
        for _ in 0..THREADS {
            let (good, kv) = (good.clone(), kv.clone());
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let mut d = Delivery::new(1);
                    d.kv = kv.clone();
                    d.reuse = if i % 2 == 0 { 0 } else { 5 };
                    let report = d.run(&good);
                    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
                    assert_eq!(report.emitted.len(), 1);
                }
            });
        }
    });
    let ns = Namespace {
        handler: "test".into(),
        tenant: "acme".into(),
        ..Namespace::default()
    };
    let count = kv.get(&ns, "count").unwrap().unwrap();
    assert_eq!(count, (THREADS * PER_THREAD).to_string().as_bytes());
}

#[test]
fn hostile_and_good_guests_side_by_side() {
    let cases = [
        (guests::LOOP, Outcome::OutOfFuel),
        (guests::MEMORY, Outcome::MemoryLimit),
        (guests::RECURSE, Outcome::StackOverflow),
        (guests::TRAP, Outcome::Trap),
        (guests::GOOD, Outcome::Ok),
    ];
    thread::scope(|s| {
        for (path, want) in cases {
            s.spawn(move || {
                let m = module(path);
                for _ in 0..10 {
                    let report = Delivery::new(u32::MAX)
                        .limits(|l| {
                            l.fuel = 5_000_000;
                            l.memory_bytes = 1 << 20;
                        })
                        .run(&m);
                    assert_eq!(report.outcome, want, "{path}: {:?}", report.error);
                }
            });
        }
    });
}
