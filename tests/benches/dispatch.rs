//! Throughput of the real [`Dispatcher`] in-process, on each inbox (the
//! sled store's, and the segment log's) in a temporary directory with the
//! daemon's default durability (flush on accept), the word-counter handler
//! deployed 100 times in fresh mode and 100 times in reuse mode, and events
//! routed to 1, 10 or 100 of them.
//!
//! For each worker count (1, then 2) and mode, a producer accepts 1 KiB
//! Zulip message events in batches of 100 while the workers deliver; the
//! figure is deliveries finished per second from the first accept to the
//! last outcome (every outcome is written to the store: delivery log,
//! stats, delivery marked finished). The runtime-only ceiling for the same
//! grid is measured first in the same run (the `sandbox` bench's harness);
//! the gap between the two is the dispatcher's and the store's share.
//!
//! Run with `cargo bench -p hookbox-tests --bench dispatch`.
//!
//! `HOOKBOX_BENCH_DISPATCH_ONE=<deliveries>` runs one cell instead (log
//! inbox, 2 workers, fresh mode, 1 handler, after a warm-up of 5 000) and
//! prints its rate and the CPU each of the process's threads spent per
//! delivery: a run short and steady enough to profile (`perf record`) or
//! to repeat interleaved with another build for an A/B;
//! `HOOKBOX_BENCH_DISPATCH_WORKERS=<n>` runs that cell with n workers, and
//! `HOOKBOX_BENCH_DISPATCH_ALONE=1` with its handler the only one deployed
//! (with others deployed, a busy handler gets the last worker only once it
//! has proven fast: it is kept for them, and lent, `dispatch/queue.rs`).

#[path = "sandbox/harness.rs"]
mod harness;
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Mode, run_threads};
use hookbox::dispatch::{DispatchConfig, Dispatcher};
use hookbox::event::EventInput;
use hookbox::manifest::Manifest;
use hookbox::runtime::{Runtime, RuntimeConfig};
use hookbox::store::{Inbox, LogInbox, Store, StoreOptions};
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

/// Which inbox the dispatcher runs on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum InboxKind {
    /// The store itself (`[store] inbox = "sled"`).
    Sled,
    /// The segment log (`[store] inbox = "log"`).
    Log,
}

/// A dispatcher on a fresh store in `dir`, as the daemon starts it (sled in
/// `store/`, the log inbox in `inbox/`).
fn start(dir: &Path, workers: usize, inbox: InboxKind) -> Dispatcher {
    let store = Store::open(&dir.join("store"), StoreOptions::default()).expect("the store opens");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("the runtime starts");
    let cfg = DispatchConfig {
        workers,
        ..DispatchConfig::default()
    };
    let inbox: Arc<dyn Inbox> = match inbox {
        InboxKind::Sled => Arc::new(store.clone()),
        InboxKind::Log => {
            Arc::new(LogInbox::open(store.clone(), &dir.join("inbox")).expect("the log opens"))
        }
    };
    Dispatcher::start_on(store, inbox, runtime, cfg, Vec::new()).expect("the dispatcher starts")
}

/// Deliveries/s of the runtime alone (2 threads, no store, no dispatcher)
/// for each mode × handler count, as the `sandbox` bench measures them.
fn runtime_alone(payload: &Value) -> HashMap<(&'static str, usize), f64> {
    let bench = harness::Bench::new();
    let event = support::message_event(payload);
    let all = bench.handlers(*FANOUTS.iter().max().unwrap_or(&1));
    let duration = if quick() {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(2000)
    };
    let mut rates = HashMap::new();
    for mode in [Mode::Reuse, Mode::Fresh] {
        for n in FANOUTS {
            let handlers = &all[..n];
            run_threads(&bench, handlers, &event, mode, 2, duration / 5);
            let run = run_threads(&bench, handlers, &event, mode, 2, duration);
            rates.insert((mode.name(), n), run.rate);
        }
    }
    rates
}

/// CPU time (user + system) of every thread of this process so far, in
/// seconds.
fn process_cpu() -> f64 {
    support::cpu_by_thread().values().sum()
}

/// `HOOKBOX_BENCH_DISPATCH_ONE`: one cell, with CPU per delivery by thread.
fn one_cell(deliveries: usize, workers: usize, wasm: &[u8], payload: &Value) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = start(dir.path(), workers, InboxKind::Log);
    let alone = std::env::var("HOOKBOX_BENCH_DISPATCH_ALONE").is_ok_and(|v| v == "1");
    if alone {
        d.deploy(manifest("fresh", 0), wasm, "bench")
            .expect("the word-counter deploys");
    } else {
        deploy_all(&d, wasm);
    }
    run(&d, payload, "fresh-1", 5_000, 1);
    let before = support::cpu_by_thread();
    let (rate, accepting) = run(&d, payload, "fresh-1", deliveries, 1);
    let after = support::cpu_by_thread();
    d.shutdown(Duration::from_secs(10));
    let per = |secs: f64| fmt_ns(secs * 1e9 / deliveries as f64);
    let mut total = 0.0;
    let mut threads = Vec::new();
    for (name, secs) in &after {
        let used = secs - before.get(name).copied().unwrap_or(0.0);
        total += used;
        if used > 0.0 {
            threads.push(format!("{name} {}", per(used)));
        }
    }
    println!(
        "log inbox, {workers} workers, fresh, 1 handler{}, {deliveries} deliveries: {} ({:.2} s \
         of it accepting); CPU per delivery {}: {}",
        if alone {
            " (the only one deployed)"
        } else {
            ""
        },
        fmt_rate(rate),
        accepting,
        per(total),
        threads.join(", ")
    );
}

fn main() {
    if let Some(n) = std::env::var("HOOKBOX_BENCH_DISPATCH_ONE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        // The full run gets this from `Report::new`.
        support::like_the_daemon();
        let deliveries = match n.parse::<usize>() {
            Ok(d) if d > 0 => d,
            _ => panic!("HOOKBOX_BENCH_DISPATCH_ONE={n:?}: expected a positive whole number"),
        };
        let workers = match std::env::var("HOOKBOX_BENCH_DISPATCH_WORKERS") {
            Ok(w) => match w.parse::<usize>() {
                Ok(w) if w > 0 => w,
                _ => {
                    panic!("HOOKBOX_BENCH_DISPATCH_WORKERS={w:?}: expected a positive whole number")
                }
            },
            Err(_) => 2,
        };
        let (_, path) = guests::EXAMPLES
            .iter()
            .find(|(name, _)| *name == "word-counter")
            .expect("tests/build.rs built example-handlers/word-counter");
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        one_cell(
            deliveries,
            workers,
            &wasm,
            &support::zulip_message(support::PAYLOAD_SIZES[0]),
        );
        return;
    }
    let mut report = Report::new("dispatch");
    let (_, path) = guests::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "word-counter")
        .expect("tests/build.rs built example-handlers/word-counter");
    let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let payload = support::zulip_message(support::PAYLOAD_SIZES[0]);
    let deliveries = if quick() { 2_000 } else { 40_000 };
    let inboxes = [InboxKind::Sled, InboxKind::Log];

    let alone = runtime_alone(&payload);
    let mut rates = HashMap::new();
    let mut accept_share = HashMap::new();
    let mut cpu = HashMap::new();
    for inbox in inboxes {
        for workers in [1usize, 2] {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let d = start(dir.path(), workers, inbox);
            let took = deploy_all(&d, &wasm);
            if workers == 1 && inbox == InboxKind::Sled {
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
                    let before = process_cpu();
                    let (rate, accepting) = run(&d, &payload, &tenant, events, fanout);
                    let used = process_cpu() - before;
                    cpu.insert(
                        (inbox, workers, mode, fanout),
                        used / (events * fanout) as f64,
                    );
                    let secs = (events * fanout) as f64 / rate;
                    rates.insert((inbox, workers, mode, fanout), rate);
                    accept_share.insert((inbox, workers, mode, fanout), accepting / secs);
                }
            }
            d.shutdown(Duration::from_secs(10));
        }
    }

    let mut table = Table::new(&[
        "mode",
        "handlers per event",
        "runtime alone (2 threads)",
        "sled inbox, 1 / 2 workers",
        "log inbox, 1 / 2 workers",
        "÷ runtime alone (2 workers), sled / log",
        "2 ÷ 1, sled / log",
        "CPU per delivery (2 workers), sled / log",
        "producer busy accepting, sled / log",
    ]);
    for mode in ["reuse", "fresh"] {
        for fanout in FANOUTS {
            let r = |inbox, workers| rates[&(inbox, workers, mode, fanout)];
            let both = |f: &dyn Fn(InboxKind) -> String| {
                format!("{} / {}", f(InboxKind::Sled), f(InboxKind::Log))
            };
            let base = alone[&(mode, fanout)];
            table.row(vec![
                mode.into(),
                fanout.to_string(),
                fmt_rate(base),
                format!(
                    "{} / {}",
                    fmt_rate(r(InboxKind::Sled, 1)),
                    fmt_rate(r(InboxKind::Sled, 2))
                ),
                format!(
                    "{} / {}",
                    fmt_rate(r(InboxKind::Log, 1)),
                    fmt_rate(r(InboxKind::Log, 2))
                ),
                both(&|i| format!("{:.0}%", 100.0 * r(i, 2) / base)),
                both(&|i| format!("{:.2}x", r(i, 2) / r(i, 1))),
                both(&|i| fmt_ns(1e9 * cpu[&(i, 2, mode, fanout)])),
                both(&|i| format!("{:.0}%", accept_share[&(i, 2, mode, fanout)] * 100.0)),
            ]);
        }
    }
    report.table(
        "Dispatcher throughput (deliveries/s, 1 KiB payload, flush on accept), sled inbox vs log inbox, against the runtime alone",
        &table,
        &format!(
            "{deliveries} deliveries per cell after a warm-up, accepted in batches of {BATCH} \
             by one producer thread while the workers run, on a fresh data directory per \
             inbox and worker count. A delivery includes routing, the durable inbox append \
             (`sync` durability, the daemon's default), the sandbox, the KV increment (the \
             store's, written to sled behind every 50 ms) and the outcome record (delivery \
             log, stats, the delivery marked finished). \
             \"Runtime alone\" is `Runtime::deliver` on 2 threads round-robin over as many \
             loaded modules, no store (the `sandbox` bench's throughput harness), measured \
             in this run; the issue's target is the dispatcher at ≥ 50% of it. \"CPU per \
             delivery\" is the CPU time (user + system) of all the bench process's threads \
             during the cell ÷ deliveries (it was 2 cores × wall time ÷ deliveries until the \
             fifth round of issue 14, which counted the cores' idle time); \"producer busy\" is the share \
             of the wall time the producer spent inside `accept` (it competes for the same \
             2 cores)."
        ),
    );
    report.publish();
}
