//! Throughput of the real [`Dispatcher`] in-process: a sled store in a
//! temporary directory with the daemon's default durability (flush on
//! accept), the word-counter handler deployed 100 times in fresh mode and
//! 100 times in reuse mode, and events routed to 1, 10 or 100 of them.
//!
//! For each worker count (1, then 2) and mode, a producer accepts 1 KiB
//! Zulip message events in batches of 100 while the workers deliver; the
//! figure is deliveries finished per second from the first accept to the
//! last outcome (every outcome is written to the store: delivery log,
//! stats, pending entry removed). The runtime-only ceiling for the same
//! grid is in the `sandbox` bench; the gap between the two is the
//! dispatcher's and the store's share.
//!
//! Run with `cargo bench -p hookbox-tests --bench dispatch`.

mod support;

use std::time::{Duration, Instant};

use hookbox::dispatch::{DispatchConfig, Dispatcher};
use hookbox::event::EventInput;
use hookbox::manifest::Manifest;
use hookbox::runtime::{Runtime, RuntimeConfig};
use hookbox::store::{Store, StoreOptions};
use hookbox_tests::guests;
use serde_json::{Value, json};
use support::{Report, Table, fmt_ns, fmt_rate, quick};
use tokio::sync::broadcast::error::RecvError;

/// Handlers deployed per mode; events reach the first 1, 10 or 100.
const HANDLERS: usize = 100;
const FANOUTS: [usize; 3] = [1, 10, 100];
/// Events per accept call (the batch size).
const BATCH: usize = 100;
/// `delivery.reuse` of the reuse-mode handlers.
const REUSE: u32 = 100_000;

fn manifest(mode: &str, i: usize) -> Manifest {
    // Tenant `<mode>-<n>` reaches the first n handlers of that mode.
    let tenants: Vec<String> = FANOUTS
        .iter()
        .filter(|n| i < **n)
        .map(|n| format!("{mode}-{n}"))
        .collect();
    let reuse = if mode == "reuse" { REUSE } else { 0 };
    let json = json!({
        "name": format!("{mode}-{i}"),
        "subscription": {"events": ["message"], "tenants": tenants},
        "delivery": {"reuse": reuse, "concurrency": 1024},
    });
    Manifest::from_json(&json.to_string()).expect("a valid bench manifest")
}

/// Deploys the word-counter as `fresh-0..99` and `reuse-0..99`: the first
/// through the dispatcher (compiling it), the rest as the same module (as a
/// restart loads them, from the compiled-code cache).
fn deploy_all(d: &Dispatcher, wasm: &[u8]) -> Duration {
    let t = Instant::now();
    let first = d
        .deploy(manifest("fresh", 0), wasm, "bench")
        .expect("the word-counter deploys");
    let hash = first.version.module_hash.clone();
    for mode in ["fresh", "reuse"] {
        for i in 0..HANDLERS {
            if mode == "fresh" && i == 0 {
                continue;
            }
            let m = manifest(mode, i);
            d.store()
                .deploy(&m, &hash, wasm.len() as u64, "bench")
                .expect("deploy record");
            d.refresh_handler(&m.name).expect("the handler loads");
        }
    }
    t.elapsed()
}

/// Accepts `events` events for `tenant` in batches and waits for every
/// delivery; returns (deliveries/s, time the producer spent accepting).
fn run(d: &Dispatcher, payload: &Value, tenant: &str, events: usize, fanout: usize) -> (f64, f64) {
    let mut notices = d.subscribe();
    let expected = (events * fanout) as u64;
    let start = Instant::now();
    let producer = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut left = events;
            let mut busy = Duration::ZERO;
            while left > 0 {
                let n = left.min(BATCH);
                let batch: Vec<EventInput> = (0..n)
                    .map(|_| {
                        let mut input = EventInput::new("message", payload);
                        input.tenant = tenant.to_string();
                        input
                    })
                    .collect();
                let t = Instant::now();
                match d.accept(batch, "bench") {
                    Ok(accepted) => {
                        assert!(accepted.iter().all(|a| a.handlers.len() == fanout));
                        left -= n;
                    }
                    // Queue full: the workers are behind; let them catch up.
                    Err(hookbox::dispatch::AcceptError::Busy { .. }) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("accept failed: {e}"),
                }
                busy += t.elapsed();
            }
            busy
        });
        let mut done = 0u64;
        while done < expected {
            match notices.blocking_recv() {
                Ok(n) => {
                    assert_eq!(
                        n.outcome, "ok",
                        "{} on {}: {:?}",
                        n.handler, n.event_id, n.error
                    );
                    done += 1;
                }
                Err(RecvError::Lagged(missed)) => done += missed,
                Err(RecvError::Closed) => panic!("the dispatcher stopped"),
            }
        }
        producer.join().expect("the producer thread")
    });
    let secs = start.elapsed().as_secs_f64();
    (expected as f64 / secs, producer.as_secs_f64())
}

fn main() {
    let mut report = Report::new("dispatch");
    let (_, path) = guests::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "word-counter")
        .expect("tests/build.rs built example-handlers/word-counter");
    let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let payload = support::zulip_message(support::PAYLOAD_SIZES[0]);
    let deliveries = if quick() { 2_000 } else { 40_000 };

    let mut rates = std::collections::HashMap::new();
    let mut accept_share = std::collections::HashMap::new();
    for workers in [1usize, 2] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("the store opens");
        let runtime = Runtime::new(RuntimeConfig::default()).expect("the runtime starts");
        let cfg = DispatchConfig {
            workers,
            ..DispatchConfig::default()
        };
        let d = Dispatcher::start(store, runtime, cfg).expect("the dispatcher starts");
        let took = deploy_all(&d, &wasm);
        if workers == 1 {
            report.note(&format!(
                "Deployed {} handlers (one compile, the rest from the module cache) in {:.2} s.",
                2 * HANDLERS,
                took.as_secs_f64()
            ));
        }
        for mode in ["reuse", "fresh"] {
            for fanout in FANOUTS {
                let tenant = format!("{mode}-{fanout}");
                let events = (deliveries / fanout).max(BATCH);
                // Warm-up: loads instances, fills sled's caches.
                run(&d, &payload, &tenant, (events / 10).max(BATCH), fanout);
                let (rate, accepting) = run(&d, &payload, &tenant, events, fanout);
                let secs = (events * fanout) as f64 / rate;
                rates.insert((workers, mode, fanout), rate);
                accept_share.insert((workers, mode, fanout), accepting / secs);
            }
        }
        d.shutdown(Duration::from_secs(10));
    }

    let mut table = Table::new(&[
        "mode",
        "handlers per event",
        "1 worker",
        "2 workers",
        "2 ÷ 1",
        "CPU per delivery (2 workers)",
        "producer busy accepting",
    ]);
    for mode in ["reuse", "fresh"] {
        for fanout in FANOUTS {
            let one = rates[&(1, mode, fanout)];
            let two = rates[&(2, mode, fanout)];
            table.row(vec![
                mode.into(),
                fanout.to_string(),
                fmt_rate(one),
                fmt_rate(two),
                format!("{:.2}x", two / one),
                fmt_ns(2e9 / two),
                format!("{:.0}%", accept_share[&(2, mode, fanout)] * 100.0),
            ]);
        }
    }
    report.table(
        "Dispatcher throughput (deliveries/s, 1 KiB payload, sled store with flush on accept)",
        &table,
        &format!(
            "{deliveries} deliveries per cell after a warm-up, accepted in batches of {BATCH} \
             by one producer thread while the workers run. A delivery includes routing, the \
             durable pending entry, the sandbox, the KV increment in sled and the outcome \
             record (delivery log, stats, pending entry removed). \"CPU per delivery\" is \
             2 cores × wall time ÷ deliveries; \"producer busy\" is the share of the wall \
             time the producer spent inside `accept` (it competes for the same 2 cores)."
        ),
    );
    report.publish();
}
