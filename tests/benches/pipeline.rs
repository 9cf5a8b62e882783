//! Issue 14's end-to-end targets: the release daemon over HTTP, once per
//! configuration, so the inboxes, durability modes and worker counts stand
//! side by side in one run:
//!
//! - **saturated**: `POST /v1/events` batches of 100 (1 KiB events, one
//!   word-counter handler) kept in flight for a while; events accepted and
//!   delivered (outcomes on the live stream) per second;
//! - **half load**: batches paced at half the saturated rate, open loop;
//!   accept → outcome latency percentiles (client starts the POST → the
//!   outcome arrives on `GET /v1/stream`).
//!
//! The daemon is `target/release/hookbox` (built by this bench, or
//! `$HOOKBOX_BIN`); the load generator runs in this process, on the same
//! 2 cores. Run with `cargo bench -p hookbox-tests --bench pipeline`.

#[path = "daemon/load.rs"]
mod load;
// Shared with the `daemon` bench, which uses more of it.
#[allow(dead_code)]
#[path = "daemon/process.rs"]
mod process;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Report, Table, fmt_rate, percentile, quick};

use process::{Api, Daemon};

/// One daemon configuration of the matrix.
#[derive(Clone, Copy, Debug)]
struct Setup {
    inbox: &'static str,
    durability: &'static str,
    workers: usize,
}

impl Setup {
    fn label(&self) -> String {
        format!(
            "{} inbox, `{}`, {} worker{}",
            self.inbox,
            self.durability,
            self.workers,
            if self.workers == 1 { "" } else { "s" }
        )
    }

    fn toml(&self) -> String {
        format!(
            "[store]\ninbox = \"{}\"\ndurability = \"{}\"\n\n[dispatch]\nworkers = {}\n",
            self.inbox, self.durability, self.workers
        )
    }
}

const SETUPS: [Setup; 6] = [
    Setup {
        inbox: "sled",
        durability: "sync",
        workers: 2,
    },
    Setup {
        inbox: "sled",
        durability: "group",
        workers: 2,
    },
    Setup {
        inbox: "sled",
        durability: "group",
        workers: 1,
    },
    Setup {
        inbox: "log",
        durability: "sync",
        workers: 2,
    },
    Setup {
        inbox: "log",
        durability: "group",
        workers: 2,
    },
    Setup {
        inbox: "log",
        durability: "group",
        workers: 1,
    },
];

/// Requests kept in flight while saturating.
const CLIENTS: usize = 8;

fn word_counter() -> Vec<u8> {
    let (_, path) = hookbox_tests::guests::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "word-counter")
        .expect("tests/build.rs built example-handlers/word-counter");
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What one configuration measured.
struct Measured {
    max: load::MaxRate,
    half: load::Paced,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    dir: &Path,
    setup: Setup,
    wasm: &[u8],
    payload: &Value,
) -> Measured {
    let (saturate_for, paced_for) = if quick() {
        (Duration::from_secs(2), Duration::from_secs(1))
    } else {
        (Duration::from_secs(10), Duration::from_secs(6))
    };
    std::fs::create_dir_all(dir).expect("a directory");
    let config = dir.join("hookbox.toml");
    std::fs::write(&config, setup.toml()).expect("the config file");
    let daemon = Daemon::start(bin, &dir.join("data"), Some(&config));
    let api = Api::new(&daemon.url);
    let body = load::batch_body(payload, "e2e");
    let seen = Arc::new(tokio::sync::Mutex::new(load::Seen::default()));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let manifest = json!({
            "name": "word-counter",
            "subscription": {"events": ["message"], "tenants": ["e2e"]},
        });
        api.deploy(&manifest, wasm).await;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let follower = tokio::spawn(load::follow(
            api.clone(),
            seen.clone(),
            count.clone(),
            stop.clone(),
            ready_tx,
        ));
        ready_rx.await.expect("the stream is open");
        let max = load::saturate(&api, body.clone(), &count, saturate_for, CLIENTS).await;
        load::drain(&count).await;
        seen.lock().await.at.clear();
        let rate = max.delivered_per_s.min(max.accepted_per_s);
        let half = load::paced(&api, body.clone(), &seen, rate * 0.5, paced_for).await;
        stop.store(true, Ordering::Relaxed);
        follower.await.expect("the stream follower");
        Measured { max, half }
    })
}

fn main() {
    let mut report = Report::new("pipeline");
    let bin = process::release_binary();
    report.note(&format!("Daemon binary: `{}` (release).", bin.display()));
    let tmp = tempfile::Builder::new()
        .prefix("hookbox-bench-")
        .tempdir()
        .expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the load generator");
    let wasm = word_counter();
    let payload = support::zulip_message(support::PAYLOAD_SIZES[0]);

    let mut table = Table::new(&[
        "configuration",
        "saturated: accepted",
        "saturated: delivered",
        "429s",
        "half load: events/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "samples",
    ]);
    let mut delivered = Vec::new();
    for (i, setup) in SETUPS.iter().enumerate() {
        let m = measure(
            &rt,
            &bin,
            &tmp.path().join(i.to_string()),
            *setup,
            &wasm,
            &payload,
        );
        let l = &m.half.latencies_ms;
        let p = |q: f64| {
            if l.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2} ms", percentile(l, q))
            }
        };
        table.row(vec![
            setup.label(),
            format!("{}", fmt_rate(m.max.accepted_per_s)),
            format!("{}", fmt_rate(m.max.delivered_per_s)),
            (m.max.refused_requests + m.half.refused_requests).to_string(),
            fmt_rate(m.half.achieved_per_s),
            p(50.0),
            p(99.0),
            p(99.9),
            p(100.0),
            format!("{} ({} missing)", l.len(), m.half.missing),
        ]);
        delivered.push((*setup, m.max.delivered_per_s));
    }
    let ratio = |inbox: &str| {
        let rate = |w: usize| {
            delivered
                .iter()
                .find(|(s, _)| s.inbox == inbox && s.durability == "group" && s.workers == w)
                .map_or(f64::NAN, |(_, r)| *r)
        };
        format!("{inbox} inbox {:.2}x", rate(2) / rate(1))
    };
    report.table(
        "End to end by inbox, durability and workers (release daemon, batches of 100, 1 KiB events)",
        &table,
        &format!(
            "One word-counter handler (fresh instance per delivery), a fresh data directory \
             and daemon per row, configured with `[store] inbox`, `[store] durability` and \
             `[dispatch] workers`. Saturated: {CLIENTS} requests kept in flight for {} s \
             (the first fifth not counted); delivered = outcomes on the live stream. Half \
             load: a batch every 100 ÷ (half the saturated delivered rate) seconds for {} s, \
             open loop; latency from the client starting the POST to the event's outcome \
             arriving on `GET /v1/stream`. 429s: refused requests in both phases. The load \
             generator shares the 2 cores with the daemon. 2 workers ÷ 1, saturated \
             delivered, `group`: {}, {}.",
            if quick() { 2 } else { 10 },
            if quick() { 1 } else { 6 },
            ratio("sled"),
            ratio("log"),
        ),
    );
    report.publish();
}
