//! Resource ceilings under attack (issue 5): the accept → outcome latency
//! of a well-behaved handler (the word-counter on a 1 KiB Zulip message)
//! while another handler loops forever on every event at the full default
//! fuel budget, against the same handler alone.
//!
//! The dispatcher runs in this process (the library, release build, a real
//! sled store with the default flush-on-accept durability); events arrive
//! one at a time at a steady rate, and the latency of each is the time from
//! `accept` to its delivery notice. Scenarios:
//!
//! 1. idle: the word-counter alone;
//! 2. a looper subscribed to `*` with the default delivery policy
//!    (concurrency 16, more than the worker pool; the scheduler lets it
//!    have `workers - 1` while another handler is enabled);
//! 3. the looper capped at concurrency 1 by its manifest;
//! 4. the looper capped at concurrency 1 with 4 workers;
//! 5. instead of a looper, a fast neighbour flooded with 10 000 events/s
//!    in batches of 100, with the default policy: proven fast, it is lent
//!    the worker kept for the others while they have nothing to run, so a
//!    word-counter event may wait for one of its deliveries;
//! 6. the same flood at concurrency 1, which is never lent that worker:
//!    the difference between 5 and 6 is what the lending costs.
//!
//! The bar: under scenario 2, the word-counter's p99 stays within
//! 2x of its idle p99; the last line says whether it did.
//!
//! Run with `cargo bench -p hookbox-tests --bench noisy_neighbour`
//! (`HOOKBOX_BENCH_QUICK=1` for a smoke run;
//! `HOOKBOX_BENCH_NOISY_ONLY=<text>` runs the idle scenario and those
//! whose name holds the text). The numbers go to stdout and
//! `target/hookbox-bench/noisy_neighbour.md`; `SECURITY.md` quotes them.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookbox::dispatch::{DispatchConfig, Dispatcher};
use hookbox::event::EventInput;
use hookbox::limits::Limits;
use hookbox::manifest::Manifest;
use hookbox::runtime::{Runtime, RuntimeConfig};
use hookbox::store::{Store, StoreOptions};
use hookbox_tests::guests;
use serde_json::{Value, json};
use support::{percentile, quick};

/// Events per second offered to the well-behaved handler.
const RATE: f64 = 20.0;
/// Deliveries not counted while the sandbox pool and caches warm up.
const WARM_UP: usize = 10;
/// Longest wait for the last outcome of a scenario.
const DRAIN: Duration = Duration::from_secs(120);
/// How long a scenario's end waits for the looper's running deliveries
/// (each ends at its fuel or its 5 s deadline), so they do not burn CPU
/// into the next scenario.
const GRACE: Duration = Duration::from_secs(30);
/// The bar: p99 under attack within this factor of the idle p99.
const BAR: f64 = 2.0;
/// Events per second offered to the fast neighbour, in batches of
/// [`FLOOD_BATCH`].
const FLOOD_RATE: f64 = 10_000.0;
const FLOOD_BATCH: usize = 100;

struct Scenario {
    name: &'static str,
    /// The looper's delivery concurrency; `None`: no looper.
    looper: Option<u32>,
    /// The fast neighbour's delivery concurrency; `None`: no flood.
    flood: Option<u32>,
    workers: usize,
}

struct Measured {
    latencies_ms: Vec<f64>,
    /// The neighbour's deliveries (loops or flood) that ended.
    loops: usize,
    missing: usize,
}

/// Send and finish times, matched by event id in whichever order they come
/// (a delivery can finish before `accept` has returned to the sender).
#[derive(Default)]
struct Book {
    sent: HashMap<String, Instant>,
    early: HashMap<String, Instant>,
    latencies: HashMap<String, f64>,
    loops: usize,
}

impl Book {
    fn sent(&mut self, id: String, at: Instant) {
        match self.early.remove(&id) {
            Some(done) => self.record(id, at, done),
            None => {
                self.sent.insert(id, at);
            }
        }
    }

    fn finished(&mut self, id: String, at: Instant) {
        match self.sent.remove(&id) {
            Some(sent) => self.record(id, sent, at),
            None => {
                self.early.insert(id, at);
            }
        }
    }

    fn record(&mut self, id: String, sent: Instant, done: Instant) {
        let ms = done.duration_since(sent).as_secs_f64() * 1e3;
        self.latencies.insert(id, ms);
    }
}

fn component(name: &str) -> Vec<u8> {
    let (_, path) = guests::EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("tests/build.rs did not build {name}"));
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifest(v: Value) -> Manifest {
    Manifest::from_json(&v.to_string()).expect("a valid manifest")
}

fn run(s: &Scenario, samples: usize, payload: &Value) -> Measured {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("the store opens");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("the runtime starts");
    let cfg = DispatchConfig {
        workers: s.workers,
        ..DispatchConfig::default()
    };
    let d = Dispatcher::start(store, runtime, cfg).expect("the dispatcher starts");
    let good = manifest(json!({"name": "good", "subscription": {"events": ["message"]}}));
    d.deploy(good, &component("word-counter"), "bench")
        .expect("deploying the word-counter");
    // The neighbour: a test guest at `concurrency`, one attempt per event.
    let neighbour = |name: &str, event: &str, concurrency: u32, path: &str| {
        let m = manifest(json!({
            "name": name,
            "subscription": {"events": [event]},
            "delivery": {"concurrency": concurrency, "max_attempts": 1},
        }));
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        d.deploy(m, &wasm, "bench")
            .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
    };
    if let Some(concurrency) = s.looper {
        neighbour("looper", "*", concurrency, guests::LOOP);
    }
    if let Some(concurrency) = s.flood {
        neighbour("flood", "tick", concurrency, guests::GOOD);
    }

    let book: Arc<Mutex<Book>> = Arc::default();
    let mut rx = d.subscribe();
    let collector = {
        let book = book.clone();
        std::thread::spawn(move || {
            while let Ok(n) = rx.blocking_recv() {
                let at = Instant::now();
                let mut book = book.lock().unwrap();
                if n.handler != "good" {
                    book.loops += 1;
                } else {
                    book.finished(n.event_id.clone(), at);
                }
            }
        })
    };

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = s.flood.map(|_| {
        let d = d.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let every = Duration::from_secs_f64(FLOOD_BATCH as f64 / FLOOD_RATE);
            let start = Instant::now();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let due = start + every * n;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let batch = (0..FLOOD_BATCH)
                    .map(|_| EventInput::new("tick", &json!({})))
                    .collect();
                // A full queue refuses a batch: the flood just goes on.
                let _ = d.accept(batch, "bench");
                n += 1;
            }
        })
    });

    let interval = Duration::from_secs_f64(1.0 / RATE);
    let start = Instant::now();
    let mut ids = Vec::new();
    for i in 0..WARM_UP + samples {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut input = EventInput::new("message", payload);
        input.tenant = "bench".into();
        // Recorded before the call: accept (durable, flushed) is part of it.
        let t = Instant::now();
        let accepted = d.accept(vec![input], "bench").expect("accept");
        let id = accepted[0].id.clone();
        book.lock().unwrap().sent(id.clone(), t);
        if i >= WARM_UP {
            ids.push(id);
        }
    }
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        let done = book.lock().unwrap().latencies.len();
        if done >= WARM_UP + samples {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(f) = flooder {
        f.join().expect("the flood thread");
    }
    let loops_done = book.lock().unwrap().loops;
    d.shutdown(GRACE);
    drop(d);
    let _ = collector.join();
    let by_id = std::mem::take(&mut book.lock().unwrap().latencies);
    let mut latencies_ms: Vec<f64> = ids.iter().filter_map(|id| by_id.get(id)).copied().collect();
    let missing = samples - latencies_ms.len();
    latencies_ms.sort_by(f64::total_cmp);
    Measured {
        latencies_ms,
        loops: loops_done,
        missing,
    }
}

fn main() {
    let samples = if quick() { 60 } else { 300 };
    let payload = support::zulip_message(support::PAYLOAD_SIZES[0]);
    let scenarios = [
        Scenario {
            name: "idle (word-counter alone), 2 workers",
            looper: None,
            flood: None,
            workers: 2,
        },
        Scenario {
            name: "looper on every event, default policy (asks for 16), 2 workers",
            looper: Some(16),
            flood: None,
            workers: 2,
        },
        Scenario {
            name: "looper on every event, concurrency 1, 2 workers",
            looper: Some(1),
            flood: None,
            workers: 2,
        },
        Scenario {
            name: "looper on every event, concurrency 1, 4 workers",
            looper: Some(1),
            flood: None,
            workers: 4,
        },
        Scenario {
            name: "fast neighbour flooded, default policy, 2 workers",
            looper: None,
            flood: Some(16),
            workers: 2,
        },
        Scenario {
            name: "fast neighbour flooded, concurrency 1, 2 workers",
            looper: None,
            flood: Some(1),
            workers: 2,
        },
    ];
    let fuel = Limits::default().fuel;
    let mut out = format!(
        "## Noisy neighbour\n\n{}\n\nThe word-counter on a 1 KiB Zulip message, {RATE} events/s, \
         {samples} measured events per scenario; the looper burns its full default budget \
         ({fuel} fuel) on every event; the fast neighbour (a guest that returns at once) is \
         offered {FLOOD_RATE} events/s in batches of {FLOOD_BATCH}. Latency: accept → \
         delivery notice.\n\n\
         | scenario | p50 | p90 | p99 | max | p99 / idle p99 | neighbour's deliveries | lost |\n\
         |---|---|---|---|---|---|---|---|\n",
        support::machine()
    );
    let mut idle_p99 = None;
    let mut verdict = None;
    let only = std::env::var("HOOKBOX_BENCH_NOISY_ONLY").unwrap_or_default();
    for s in scenarios
        .iter()
        .filter(|s| s.looper.is_none() && s.flood.is_none() || s.name.contains(&only))
    {
        eprintln!("noisy_neighbour: {} …", s.name);
        let m = run(s, samples, &payload);
        let l = &m.latencies_ms;
        if l.is_empty() {
            out.push_str(&format!(
                "| {} | – | – | – | – | – | {} | {} |\n",
                s.name, m.loops, m.missing
            ));
            continue;
        }
        let p99 = percentile(l, 99.0);
        let ratio = idle_p99.map_or("1.0x".to_string(), |i: f64| format!("{:.1}x", p99 / i));
        if let (Some(idle), Some(16)) = (idle_p99, s.looper) {
            verdict = Some((p99, idle, m.missing));
        }
        idle_p99.get_or_insert(p99);
        out.push_str(&format!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} |\n",
            s.name,
            percentile(l, 50.0),
            percentile(l, 90.0),
            p99,
            l[l.len() - 1],
            ratio,
            m.loops,
            m.missing
        ));
    }
    out.push_str(&match verdict {
        Some((p99, idle, 0)) if p99 <= BAR * idle => format!(
            "\nWithin the bar: with the default policy under attack the p99 is {p99:.2} ms, \
             {:.1}x the idle {idle:.2} ms (bar: {BAR}x).\n",
            p99 / idle
        ),
        Some((p99, idle, missing)) => format!(
            "\nMISSES the bar: with the default policy under attack the p99 is {p99:.2} ms, \
             {:.1}x the idle {idle:.2} ms (bar: {BAR}x); {missing} events lost.\n",
            p99 / idle
        ),
        None => "\nMISSES the bar: no latency measured idle or under attack.\n".to_string(),
    });
    out.push_str(&format!(
        "\nLoad average during the run: {}\n",
        support::load_average()
    ));
    println!("{out}");
    let dir = support::workspace_root().join("target/hookbox-bench");
    std::fs::create_dir_all(&dir).expect("target/hookbox-bench");
    std::fs::write(dir.join("noisy_neighbour.md"), out).expect("writing the results");
}
