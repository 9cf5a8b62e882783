//! The sandbox on its own (`hookbox::runtime`, no store, no dispatcher):
//!
//! 1. **Sandbox tax** — the word-counter logic (parse a Zulip message event,
//!    count its words, add them to a KV counter) run natively and as a
//!    component, fresh instance and reused instance, limits on, at 1 KiB,
//!    16 KiB and 256 KiB payloads. Variants are interleaved round by round,
//!    so every ratio compares figures taken at the same moment.
//! 2. **Memory** — resident memory per in-flight delivery and per idle warm
//!    instance.
//! 3. **Throughput and cost growth** — deliveries/s over 1, 10 and 100
//!    handlers (distinct loaded modules), 1 and 2 threads, both modes, and
//!    how the cost of a delivery grows with handler count × payload size.
//! 4. **Deadlines** — how long after its `timeout_ms` a delivery ends when
//!    it loops in wasm or sleeps inside a host call (the behaviour tests
//!    only check that it ends with `timeout`).
//!
//! Run with `cargo bench -p hookbox-tests --bench sandbox`
//! (`HOOKBOX_BENCH_QUICK=1` for a smoke run).

#[path = "sandbox/harness.rs"]
mod harness;
mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{Bench, Mode, REUSE, run_threads};
use hookbox::kv::{Kv, MemoryKv, Namespace, Quota};
use hookbox::limits::Limits;
use hookbox::manifest::Capability;
use hookbox::runtime::{DeliveryRequest, Outcome};
use hookbox_tests::guests;
use support::{PAYLOAD_SIZES, Report, Stats, Table, fmt_bytes, fmt_ns, fmt_rate, quick};

/// Handler counts of the throughput grid.
const HANDLER_COUNTS: [usize; 3] = [1, 10, 100];

/// The same logic without a sandbox: the handler crate's own function, and
/// the same KV store the host gives the component.
fn native(payload: &str, kv: &MemoryKv, ns: &Namespace) {
    let tally = word_counter::tally(payload).expect("the bench payload is a message event");
    kv.increment(ns, &tally.key, tally.words, &Quota::default())
        .expect("the memory KV does not fail");
}

fn main() {
    let bench = Bench::new();
    if let Ok(spec) = std::env::var("HOOKBOX_BENCH_PROFILE") {
        profile(&bench, &spec);
        return;
    }
    let mut report = Report::new("sandbox");
    // Memory first: its deltas need pool slots no other section touched.
    memory(&bench, &mut report);
    sandbox_tax(&bench, &mut report);
    throughput(&bench, &mut report);
    deadlines(&bench, &mut report);
    report.publish();
}

/// `HOOKBOX_BENCH_PROFILE=<native|fresh|reuse|load>[:<n>[:<payload bytes>[:<handlers>]]]`:
/// runs only that variant, round-robin over that many handlers (`load`:
/// loads n modules from compiled code), for a profiler (`valgrind --tool=callgrind
/// --toggle-collect='*deliver_inner*'`, `perf record`). Prints nothing else.
fn profile(bench: &Bench, spec: &str) {
    let mut parts = spec.split(':');
    let variant = parts.next().unwrap_or("fresh");
    let n: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let size: usize = parts
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PAYLOAD_SIZES[0]);
    let handlers: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    if variant == "load" {
        let t = Instant::now();
        bench
            .runtime
            .compile(&bench.wasm, &Capability::all())
            .expect("compiles");
        println!(
            "compile: {} bytes of component in {:.1} ms; imports: {}",
            bench.wasm.len(),
            t.elapsed().as_secs_f64() * 1e3,
            bench.module.imports().join(", ")
        );
        let t = Instant::now();
        let loaded = bench.handlers(n as usize);
        let per = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        println!(
            "load: {} modules from {} bytes of compiled code, {per:.2} ms each",
            loaded.len(),
            bench.serialized.len()
        );
        return;
    }
    let value = support::zulip_message(size);
    let payload = value.to_string();
    let event = support::message_event(&value);
    let ns = Namespace {
        handler: "native".into(),
        tenant: "acme".into(),
        ..Namespace::default()
    };
    let per = match variant {
        "native" => support::ns_per_call(n, || native(black_box(&payload), &bench.kv, &ns)).cpu,
        "fresh" | "reuse" => {
            let reuse = if variant == "fresh" { 0 } else { REUSE };
            let handlers = bench.handlers(handlers);
            let mut i = 0;
            support::ns_per_call(n, || {
                let (name, module) = &handlers[i % handlers.len()];
                i += 1;
                black_box(bench.deliver(module, name, &event, reuse));
            })
            .cpu
        }
        other => {
            panic!("HOOKBOX_BENCH_PROFILE: unknown variant {other:?} (native, fresh, reuse, load)")
        }
    };
    let fuel = match variant {
        "native" => String::new(),
        _ => {
            let fresh = bench.deliver(&bench.module, "profile", &event, 0);
            let warm = bench.deliver(&bench.module, "profile", &event, REUSE);
            format!(
                "; fuel (wasm operators) per delivery: {} fresh, {} warm",
                fresh.fuel_used, warm.fuel_used
            )
        }
    };
    println!(
        "{variant}: {n} deliveries of {size} bytes, {} CPU each{fuel}",
        fmt_ns(per)
    );
}

/// Iterations that take about `target` for `f`.
fn calibrate(target: Duration, mut f: impl FnMut()) -> u32 {
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let took = t.elapsed();
        if took >= target / 4 || n >= 1 << 20 {
            let per = took.as_secs_f64() / f64::from(n);
            return ((target.as_secs_f64() / per) as u32).clamp(1, 1 << 22);
        }
        n *= 4;
    }
}

/// Section 1: ns per delivery, native vs fresh vs reuse, per payload size.
fn sandbox_tax(bench: &Bench, report: &mut Report) {
    let (rounds, round_time) = if quick() {
        (3, Duration::from_millis(5))
    } else {
        (31, Duration::from_millis(25))
    };
    let ns = Namespace {
        handler: "native".into(),
        tenant: "acme".into(),
        ..Namespace::default()
    };
    let mut table = Table::new(&[
        "payload",
        "native",
        "reuse",
        "reuse ÷ native",
        "fresh",
        "fresh ÷ native",
        "fresh − reuse",
        "wall-clock ratios",
        "spread (IQR)",
    ]);
    for size in PAYLOAD_SIZES {
        let value = support::zulip_message(size);
        let payload = value.to_string();
        let event = support::message_event(&value);
        let module = &bench.module;
        let mut run_native = || native(black_box(&payload), &bench.kv, &ns);
        let mut run_fresh = || {
            black_box(bench.deliver(module, "tax-fresh", &event, 0));
        };
        let mut run_reuse = || {
            black_box(bench.deliver(module, "tax-reuse", &event, REUSE));
        };
        let n_native = calibrate(round_time, &mut run_native);
        let n_fresh = calibrate(round_time, &mut run_fresh);
        let n_reuse = calibrate(round_time, &mut run_reuse);
        let mut samples: [Vec<f64>; 3] = Default::default();
        let mut ratios: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            let n = support::ns_per_call(n_native, &mut run_native);
            let f = support::ns_per_call(n_fresh, &mut run_fresh);
            let r = support::ns_per_call(n_reuse, &mut run_reuse);
            samples[0].push(n.cpu);
            samples[1].push(r.cpu);
            samples[2].push(f.cpu);
            ratios[0].push(r.cpu / n.cpu);
            ratios[1].push(f.cpu / n.cpu);
            ratios[2].push(r.wall / n.wall);
            ratios[3].push(f.wall / n.wall);
        }
        let [n, r, f] = samples.map(|s| Stats::of(&s));
        let [rr, rf, wr, wf] = ratios.map(|s| Stats::of(&s).median);
        table.row(vec![
            support::size_label(size),
            fmt_ns(n.median),
            fmt_ns(r.median),
            format!("{rr:.2}x"),
            fmt_ns(f.median),
            format!("{rf:.2}x"),
            fmt_ns(f.median - r.median),
            format!("{wr:.2}x / {wf:.2}x"),
            format!(
                "{:.0}% / {:.0}% / {:.0}%",
                n.spread_pct(),
                r.spread_pct(),
                f.spread_pct()
            ),
        ]);
    }
    report.table(
        "Sandbox tax: one delivery, native vs component (limits on)",
        &table,
        &format!(
            "CPU time of the delivering thread per delivery (user + system, so page faults \
             and syscalls count; time other processes held the core does not): medians of \
             {rounds} interleaved rounds of ≈{} ms per variant; ratios are medians of \
             per-round ratios; the wall-clock ratios (reuse / fresh) are the same rounds \
             timed by the clock on the wall. Native = `word_counter::tally` + \
             `MemoryKv::increment` in-process; fresh = a new instance from the pool per \
             delivery (the default); reuse = one warm instance serving every delivery. \
             Fuel and epoch deadline on, default `Limits`, KV = `MemoryKv` on both sides. \
             Spread = interquartile range ÷ median for native / reuse / fresh.",
            round_time.as_millis()
        ),
    );
}

/// Section 3: deliveries/s by handler count, threads and mode; cost growth.
fn throughput(bench: &Bench, report: &mut Report) {
    let duration = if quick() {
        Duration::from_millis(150)
    } else {
        Duration::from_millis(1000)
    };
    let warmup = duration / 5;
    let value = support::zulip_message(PAYLOAD_SIZES[0]);
    let event = support::message_event(&value);
    let all = bench.handlers(*HANDLER_COUNTS.iter().max().unwrap_or(&1));

    let mut table = Table::new(&[
        "mode",
        "handlers",
        "1 thread",
        "2 threads",
        "2 ÷ 1 (wall)",
        "CPU per delivery, 1 / 2 threads",
        "2 ÷ 1 (CPU-bound)",
    ]);
    let mut per_delivery = std::collections::HashMap::new();
    for mode in [Mode::Reuse, Mode::Fresh] {
        for h in HANDLER_COUNTS {
            let handlers = &all[..h];
            run_threads(bench, handlers, &event, mode, 2, warmup);
            let one = run_threads(bench, handlers, &event, mode, 1, duration);
            let two = run_threads(bench, handlers, &event, mode, 2, duration);
            per_delivery.insert((mode, h, PAYLOAD_SIZES[0]), two.cpu_ns);
            table.row(vec![
                mode.name().into(),
                h.to_string(),
                fmt_rate(one.rate),
                fmt_rate(two.rate),
                format!("{:.2}x", two.rate / one.rate),
                format!("{} / {}", fmt_ns(one.cpu_ns), fmt_ns(two.cpu_ns)),
                format!("{:.2}x", 2.0 * one.cpu_ns / two.cpu_ns),
            ]);
        }
    }
    report.table(
        "Sandbox throughput (runtime only, 1 KiB payload)",
        &table,
        &format!(
            "Each handler is a separately loaded module; threads call `Runtime::deliver` \
             round-robin over the handlers for {} ms per cell (after a warm-up). No store, \
             no dispatcher: the ceiling the sandbox puts on a 2-core machine. \
             \"2 ÷ 1 (wall)\" is the measured speed-up; it needs both cores idle. \
             \"2 ÷ 1 (CPU-bound)\" = 2 × CPU per delivery with 1 thread ÷ with 2 threads: \
             the speed-up if each thread had a core to itself, i.e. what contention between \
             the two threads (locks, shared caches, TLB shootdowns) leaves of 2x.",
            duration.as_millis()
        ),
    );

    // Cost growth: CPU time per delivery, handler count × payload size.
    let mut growth = Table::new(&["mode", "handlers", "1 KiB", "16 KiB", "256 KiB"]);
    let growth_time = duration / 2;
    for mode in [Mode::Reuse, Mode::Fresh] {
        for h in HANDLER_COUNTS {
            let mut row = vec![mode.name().to_string(), h.to_string()];
            for size in PAYLOAD_SIZES {
                let ns = match per_delivery.get(&(mode, h, size)) {
                    Some(ns) => *ns,
                    None => {
                        let value = support::zulip_message(size);
                        let event = support::message_event(&value);
                        run_threads(bench, &all[..h], &event, mode, 2, warmup);
                        run_threads(bench, &all[..h], &event, mode, 2, growth_time).cpu_ns
                    }
                };
                row.push(fmt_ns(ns));
            }
            growth.row(row);
        }
    }
    report.table(
        "Cost growth: CPU time per delivery by handler count × payload size (2 threads)",
        &growth,
        "Same harness as the throughput table. Growth along a row is the payload's cost \
         (copying it in, parsing and counting it in wasm); growth down a column is the \
         handlers' footprint (100 modules' code, instance images and warm instances no \
         longer fit the CPU caches, so each delivery starts cold).",
    );
}

/// Section 2: resident memory per in-flight delivery and per warm instance.
fn memory(bench: &Bench, report: &mut Report) {
    let run_for = if quick() {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(400)
    };
    let mut table = Table::new(&["what", "value"]);
    for size in [PAYLOAD_SIZES[0], PAYLOAD_SIZES[2]] {
        let value = support::zulip_message(size);
        let event = support::message_event(&value);
        let linear = bench
            .deliver(&bench.module, "mem", &event, 0)
            .peak_memory_bytes;
        let base = support::rss();
        let mut prev = (1usize, base);
        for k in [8usize, 32] {
            let peak = AtomicU64::new(0);
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                for t in 0..k {
                    let (event, stop) = (&event, &stop);
                    let name = format!("mem{t}");
                    s.spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            black_box(bench.deliver(&bench.module, &name, event, 0));
                        }
                    });
                }
                let t = Instant::now();
                while t.elapsed() < run_for {
                    peak.fetch_max(support::rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
                stop.store(true, Ordering::Relaxed);
            });
            let peak = peak.load(Ordering::Relaxed).max(support::rss());
            let per = (peak.saturating_sub(prev.1)) as f64 / (k - prev.0) as f64;
            table.row(vec![
                format!(
                    "{} payload: RSS per in-flight delivery, {}→{k} concurrent",
                    support::size_label(size),
                    prev.0
                ),
                fmt_bytes(per),
            ]);
            prev = (k, peak);
        }
        table.row(vec![
            format!(
                "{} payload: linear memory of one delivery (guest view)",
                support::size_label(size)
            ),
            fmt_bytes(linear as f64),
        ]);
    }

    // Idle warm instances: one per handler after a delivery in reuse mode.
    let value = support::zulip_message(PAYLOAD_SIZES[0]);
    let event = support::message_event(&value);
    let n = if quick() { 10 } else { 100 };
    let handlers = bench.handlers(n);
    for (name, module) in &handlers {
        bench.deliver(module, name, &event, 0);
    }
    let before = support::rss();
    for (name, module) in &handlers {
        bench.deliver(module, name, &event, REUSE);
    }
    let after = support::rss();
    assert!(handlers.iter().all(|(_, m)| m.idle_instances() == 1));
    table.row(vec![
        "RSS per idle warm instance (reuse mode, 1 KiB payload)".into(),
        fmt_bytes(after.saturating_sub(before) as f64 / n as f64),
    ]);
    table.row(vec![
        "RSS of this bench process after the above".into(),
        fmt_bytes(after as f64),
    ]);
    report.table(
        "Sandbox memory",
        &table,
        "RSS sampled every millisecond while k threads deliver to fresh instances \
         (word-counter, limits on); the increase from the previous step is divided by the \
         added concurrency. Pool slots that were used stay mapped, so the figure is the \
         resident cost of one more delivery in flight.",
    );
}

/// Section 4: how far past its deadline a delivery ends, for a guest
/// looping in wasm (epoch interruption) and guests asleep in a host call
/// for an hour (`pollable.block`, `poll`).
fn deadlines(bench: &Bench, report: &mut Report) {
    let rounds = if quick() { 1 } else { 9 };
    let timeout_ms = 300;
    let mut table = Table::new(&["guest", "deadline", "ended after (median)", "max"]);
    for (what, path, param) in [
        ("loop in wasm", guests::LOOP, 1u32),
        ("sleep in pollable.block", guests::SLEEP, 3_600_000),
        ("sleep in poll", guests::SLEEP_POLL, 3_600_000),
    ] {
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let module = bench
            .runtime
            .compile(&wasm, &Capability::all())
            .unwrap_or_else(|e| panic!("compiling {path}: {e}"))
            .module;
        let limits = Limits {
            timeout_ms,
            fuel: 1 << 50,
            ..Limits::default()
        };
        let event = support::message_event(&serde_json::json!({}));
        let mut took: Vec<f64> = (0..rounds)
            .map(|_| {
                let kv: &dyn Kv = bench.kv.as_ref();
                let report = bench.runtime.deliver(
                    &module,
                    DeliveryRequest {
                        handler: "deadline",
                        event: &event,
                        attempt: param,
                        limits: &limits,
                        config: "{}",
                        kv,
                        kv_incarnation: "",
                        capabilities: &Capability::all(),
                        reuse: 0,
                    },
                );
                assert_eq!(
                    report.outcome,
                    Outcome::Timeout,
                    "{what}: {:?}",
                    report.error
                );
                report.duration.as_secs_f64() * 1e3
            })
            .collect();
        took.sort_by(f64::total_cmp);
        table.row(vec![
            what.into(),
            format!("{timeout_ms} ms"),
            format!("{:.1} ms", support::percentile(&took, 50.0)),
            format!("{:.1} ms", took[took.len() - 1]),
        ]);
    }
    report.table(
        "Deadlines",
        &table,
        "Wall-clock time of a delivery that only its deadline ends (epoch tick 10 ms): \
         a guest looping with fuel for hours, and guests that ask to sleep an hour inside a \
         host call. How far past the deadline it ends is the epoch tick plus scheduling.",
    );
}
