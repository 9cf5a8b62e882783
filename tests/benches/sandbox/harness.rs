//! The runtime-alone harness shared by the `sandbox` and `dispatch` benches:
//! the word-counter compiled once, loaded as many handlers, delivered to by
//! a few threads through `Runtime::deliver` (no store, no dispatcher).
//!
//! Each bench target includes this file as a module and uses part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hookbox::event::Event;
use hookbox::kv::{Kv, MemoryKv};
use hookbox::limits::Limits;
use hookbox::manifest::Capability;
use hookbox::runtime::{
    DeliveryReport, DeliveryRequest, HandlerModule, Outcome, Runtime, RuntimeConfig,
};
use hookbox_tests::guests;

use super::support;

/// Deliveries a warm instance serves before it is replaced (the manifest's
/// largest `delivery.reuse`).
pub const REUSE: u32 = 100_000;

/// Everything a delivery needs, shared by the bench threads.
pub struct Bench {
    pub runtime: Runtime,
    /// The word-counter component, compiled once.
    pub module: HandlerModule,
    /// Its compiled code, loaded again for every extra handler.
    pub serialized: Vec<u8>,
    /// The component's bytes.
    pub wasm: Vec<u8>,
    pub limits: Limits,
    pub kv: Arc<MemoryKv>,
}

impl Bench {
    pub fn new() -> Bench {
        let runtime = Runtime::new(RuntimeConfig::default()).expect("the runtime starts");
        // `HOOKBOX_BENCH_GUEST`: another build of the word-counter (e.g. with
        // other compiler settings) to compare against the default one.
        let path = std::env::var("HOOKBOX_BENCH_GUEST")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                let (_, path) = guests::EXAMPLES
                    .iter()
                    .find(|(name, _)| *name == "word-counter")
                    .expect("tests/build.rs built example-handlers/word-counter");
                (*path).to_string()
            });
        let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let compiled = runtime
            .compile(&wasm, &Capability::all())
            .unwrap_or_else(|e| panic!("compiling {path}: {e}"));
        Bench {
            runtime,
            module: compiled.module,
            serialized: compiled.serialized,
            wasm,
            limits: Limits::default(),
            kv: Arc::new(MemoryKv::new()),
        }
    }

    /// `n` handlers, each its own loaded module (as distinct deployed
    /// handlers are), named `h0`, `h1`, …
    pub fn handlers(&self, n: usize) -> Vec<(String, HandlerModule)> {
        (0..n)
            .map(|i| {
                let module = if i == 0 {
                    self.module.clone()
                } else {
                    self.runtime
                        .load_precompiled(&self.serialized)
                        .expect("compiled code reloads")
                };
                (format!("h{i}"), module)
            })
            .collect()
    }

    pub fn deliver(
        &self,
        module: &HandlerModule,
        handler: &str,
        event: &Event,
        reuse: u32,
    ) -> DeliveryReport {
        static ALL: std::sync::LazyLock<std::collections::BTreeSet<Capability>> =
            std::sync::LazyLock::new(Capability::all);
        let kv: &dyn Kv = self.kv.as_ref();
        let report = self.runtime.deliver(
            module,
            DeliveryRequest {
                handler,
                event,
                attempt: 1,
                limits: &self.limits,
                config: "{}",
                kv,
                kv_incarnation: "",
                capabilities: &ALL,
                reuse,
            },
        );
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "delivery to {handler} failed: {:?}",
            report.error
        );
        report
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    Fresh,
    Reuse,
}

impl Mode {
    pub fn reuse(self) -> u32 {
        match self {
            Mode::Fresh => 0,
            Mode::Reuse => REUSE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Fresh => "fresh",
            Mode::Reuse => "reuse",
        }
    }
}

/// What `threads` threads delivering for a while achieved.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Deliveries per second of wall time.
    pub rate: f64,
    /// CPU time (all threads) per delivery, in nanoseconds.
    pub cpu_ns: f64,
}

/// Runs deliveries on `threads` threads for `duration`, round-robin over
/// `handlers` (each thread starting at its own offset).
pub fn run_threads(
    bench: &Bench,
    handlers: &[(String, HandlerModule)],
    event: &Event,
    mode: Mode,
    threads: usize,
    duration: Duration,
) -> Run {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let cpu = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, done, cpu, start) = (&stop, &done, &cpu, &start);
            s.spawn(move || {
                let mut i = t * handlers.len() / threads.max(1);
                let mut n = 0u64;
                start.wait();
                let c = support::thread_cpu_ns();
                while !stop.load(Ordering::Relaxed) {
                    let (name, module) = &handlers[i % handlers.len()];
                    black_box(bench.deliver(module, name, event, mode.reuse()));
                    i += 1;
                    n += 1;
                }
                cpu.fetch_add(support::thread_cpu_ns() - c, Ordering::Relaxed);
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        start.wait();
        let t = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        t
    });
    // Threads finish the delivery in hand after `stop`: count until joined.
    let secs = elapsed.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed).max(1) as f64;
    Run {
        rate: n / secs,
        cpu_ns: cpu.load(Ordering::Relaxed) as f64 / n,
    }
}
