//! Issue 19's per-event cost of Python and JavaScript handlers, side by
//! side with Rust in one run: the keyword-responder of each SDK
//! (`example-handlers/keyword-responder`, `guest-sdk/{python,js}/examples/
//! keyword-responder`) handling the same 1 KiB Zulip message that names a
//! keyword (a KV counter and a reply emitted), on runtimes
//! configured as the daemon's (pooling allocator, copy-on-write memory
//! images), in four modes interleaved round by round:
//!
//! - `fresh, inline`: a fresh instance per event, instantiated when the
//!   event arrives (`[runtime] prepare_ahead = 0`);
//! - `fresh, prepared`: a fresh instance per event, prepared while the
//!   handler waited (the default; the bench waits for it between events,
//!   as an idle gap between events would);
//! - `warm`: one instance serving every event (`delivery.reuse`), the
//!   handler's logic alone;
//! - and, per mode, the minor page faults and fuel of a delivery.
//!
//! "On top of its logic" is a mode's median minus `warm`'s. Needs the
//! toolchains (`tests/other-toolchains/install.sh`). Run with
//! `cargo bench -p hookbox-tests --bench languages` (`HOOKBOX_BENCH_QUICK=1`
//! for a smoke run); `HOOKBOX_BENCH_PROFILE=<rust|python|js>:<inline|prepared|warm>:<n>`
//! runs one loop only, for `perf`.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookbox::event::Event;
use hookbox::kv::MemoryKv;
use hookbox::limits::Limits;
use hookbox::manifest::{Capability, Manifest};
use hookbox::runtime::{
    DeliveryReport, DeliveryRequest, HandlerModule, Outcome, Runtime, RuntimeConfig,
};
use hookbox_tests::guests;
use hookbox_tests::toolchains::{self, Lang};
use serde_json::Value;
use support::{Report, Stats, Table, fmt_ns, quick};

/// Deliveries per mode per round, and rounds.
fn sizes() -> (usize, usize) {
    if quick() { (10, 2) } else { (100, 10) }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Inline,
    Prepared,
    Warm,
}

const MODES: [Mode; 3] = [Mode::Inline, Mode::Prepared, Mode::Warm];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Inline => "fresh, instantiated on the event",
            Mode::Prepared => "fresh, prepared ahead",
            Mode::Warm => "warm (`reuse`): the logic alone",
        }
    }
}

/// One language's handler, loaded in both runtimes.
struct Handler {
    name: &'static str,
    /// In the runtime that instantiates on the event.
    inline: HandlerModule,
    /// In the runtime that prepares ahead.
    prepared: HandlerModule,
    config: String,
    caps: BTreeSet<Capability>,
    size: usize,
    /// Whether the prepared runtime has delivered to it yet.
    seen: std::cell::Cell<bool>,
}

/// Minor page faults of the calling thread so far.
#[allow(unsafe_code)]
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` writes one `rusage` through a valid pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_minflt
}

struct Sample {
    wall_ns: f64,
    faults: i64,
    fuel: u64,
}

struct Bench {
    inline: Runtime,
    prepared: Runtime,
    event: Event,
    limits: Limits,
}

impl Bench {
    fn deliver(&self, h: &Handler, mode: Mode, kv: &MemoryKv) -> Sample {
        let (runtime, module) = match mode {
            Mode::Inline | Mode::Warm => (&self.inline, &h.inline),
            Mode::Prepared => (&self.prepared, &h.prepared),
        };
        // Rust handlers are too small to be prepared (`prepare.rs`): its
        // "prepared" row instantiates on the event, as the runtime does.
        // The first delivery is instantiated on the event: it is what
        // tells the runtime the module is worth preparing.
        if mode == Mode::Prepared && h.name != "rust" && h.seen.replace(true) {
            let start = Instant::now();
            while !module.has_prepared_instance() {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{}: never prepared",
                    h.name
                );
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let faults = minor_faults();
        let t = Instant::now();
        let report: DeliveryReport = runtime.deliver(
            module,
            DeliveryRequest {
                handler: h.name,
                event: &self.event,
                attempt: 1,
                limits: &self.limits,
                config: &h.config,
                kv,
                kv_incarnation: "",
                capabilities: &h.caps,
                reuse: if mode == Mode::Warm { u32::MAX } else { 0 },
            },
        );
        let wall_ns = t.elapsed().as_nanos() as f64;
        let faults = minor_faults() - faults;
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "{} {mode:?}: {:?}",
            h.name,
            report.error
        );
        assert!(!report.emitted.is_empty(), "{}: no reply", h.name);
        Sample {
            wall_ns,
            faults,
            fuel: report.fuel_used,
        }
    }
}

fn load(bench: &Bench, name: &'static str, wasm: &[u8], manifest: &str) -> Handler {
    let manifest = Manifest::from_json(manifest).unwrap_or_else(|e| panic!("{name}: {e}"));
    let compiled = bench
        .inline
        .compile(wasm, &Capability::all())
        .unwrap_or_else(|e| panic!("compiling {name}: {e}"));
    let prepared = bench
        .prepared
        .load_precompiled(&compiled.serialized)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    Handler {
        name,
        inline: compiled.module,
        prepared,
        config: manifest.config.to_string(),
        caps: manifest.capabilities,
        size: wasm.len(),
        seen: std::cell::Cell::new(false),
    }
}

fn handlers(bench: &Bench) -> Vec<Handler> {
    let rust = guests::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "keyword-responder")
        .expect("tests/build.rs built example-handlers/keyword-responder")
        .1;
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let root = support::workspace_root();
    let mut out = vec![load(
        bench,
        "rust",
        &hookbox_tests::read(rust),
        &read(&root.join("example-handlers/keyword-responder/manifest.json")),
    )];
    for (name, lang) in [("python", Lang::Python), ("js", Lang::Js)] {
        let manifest = read(&toolchains::example(lang).join("manifest.json"));
        out.push(load(bench, name, &toolchains::build(lang), &manifest));
    }
    out
}

fn main() {
    let config = |prepare_ahead| RuntimeConfig {
        pool_instances: 64,
        prepare_ahead,
        ..RuntimeConfig::default()
    };
    let mut payload = support::zulip_message(1 << 10);
    // Every SDK's example replies to a message naming "deploy".
    let content = payload["message"]["content"]
        .as_str()
        .unwrap()
        .replacen("the", "deploy", 1);
    payload["message"]["content"] = Value::String(content);
    let bench = Bench {
        inline: Runtime::new(config(0)).expect("the runtime starts"),
        prepared: Runtime::new(config(16)).expect("the runtime starts"),
        event: support::message_event(&payload),
        limits: Limits::default(),
    };
    let handlers = handlers(&bench);

    if let Ok(spec) = std::env::var("HOOKBOX_BENCH_PROFILE") {
        let mut parts = spec.split(':');
        let lang = parts.next().unwrap_or("python");
        let mode = match parts.next().unwrap_or("inline") {
            "prepared" => Mode::Prepared,
            "warm" => Mode::Warm,
            _ => Mode::Inline,
        };
        let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
        let h = handlers
            .iter()
            .find(|h| h.name == lang)
            .expect("rust, python or js");
        let kv = MemoryKv::new();
        // For `perf record -p`: attach after the compiles, see only the loop.
        println!("READY {}", std::process::id());
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..n {
            bench.deliver(h, mode, &kv);
        }
        return;
    }

    let mut report = Report::new("languages");
    let (per_round, rounds) = sizes();
    // samples[handler][mode]
    let mut samples: Vec<Vec<Vec<Sample>>> = handlers
        .iter()
        .map(|_| MODES.iter().map(|_| Vec::new()).collect())
        .collect();
    let kv = Arc::new(MemoryKv::new());
    for _ in 0..rounds {
        for (hi, h) in handlers.iter().enumerate() {
            for (mi, &mode) in MODES.iter().enumerate() {
                for _ in 0..per_round {
                    samples[hi][mi].push(bench.deliver(h, mode, &kv));
                }
            }
        }
    }

    let mut table = Table::new(&["per delivery, 1 KiB Zulip message", "Rust", "Python", "JS"]);
    let median = |v: &[Sample], f: &dyn Fn(&Sample) -> f64| {
        Stats::of(&v.iter().map(f).collect::<Vec<_>>()).median
    };
    table.row(
        std::iter::once("component".to_string())
            .chain(
                handlers
                    .iter()
                    .map(|h| format!("{:.1} MB", h.size as f64 / 1e6)),
            )
            .collect(),
    );
    for (mi, mode) in MODES.iter().enumerate() {
        table.row(
            std::iter::once(format!("{}, median (p90)", mode.label()))
                .chain(samples.iter().map(|s| {
                    let mut w: Vec<f64> = s[mi].iter().map(|x| x.wall_ns).collect();
                    w.sort_by(f64::total_cmp);
                    format!(
                        "{} ({})",
                        fmt_ns(median(&s[mi], &|x| x.wall_ns)),
                        fmt_ns(support::percentile(&w, 90.0))
                    )
                }))
                .collect(),
        );
    }
    let warm = MODES.iter().position(|m| *m == Mode::Warm).unwrap();
    for (mi, mode) in MODES.iter().enumerate().filter(|(_, m)| **m != Mode::Warm) {
        table.row(
            std::iter::once(format!("**on top of the logic**, {}", mode.label()))
                .chain(samples.iter().map(|s| {
                    let extra = median(&s[mi], &|x| x.wall_ns) - median(&s[warm], &|x| x.wall_ns);
                    format!("**{}**", fmt_ns(extra))
                }))
                .collect(),
        );
    }
    for (mi, mode) in MODES.iter().enumerate() {
        table.row(
            std::iter::once(format!("minor page faults, {}", mode.label()))
                .chain(
                    samples
                        .iter()
                        .map(|s| format!("{:.0}", median(&s[mi], &|x| x.faults as f64))),
                )
                .collect(),
        );
    }
    for (mi, mode) in MODES.iter().enumerate() {
        table.row(
            std::iter::once(format!("fuel, {}", mode.label()))
                .chain(
                    samples
                        .iter()
                        .map(|s| format!("{:.0} k", median(&s[mi], &|x| x.fuel as f64) / 1e3)),
                )
                .collect(),
        );
    }
    report.table(
        "Fresh instance per event: Rust, Python, JavaScript (release, pooling allocator)",
        &table,
        &format!(
            "{rounds} rounds × {per_round} deliveries per mode and language, interleaved. \
             Wall time of `Runtime::deliver` on the calling thread; page faults of that \
             thread (`getrusage`). A prepared delivery's fuel includes its instance's \
             start-up, burnt before the event on the preparer thread. Rust handlers are not \
             prepared (too small to be worth a pool slot): their prepared row instantiates \
             on the event."
        ),
    );
    report.publish();
}
