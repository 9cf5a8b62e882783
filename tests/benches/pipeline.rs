//! Issue 14's end-to-end targets: the release daemon over HTTP, once per
//! configuration, so the inboxes, durability modes and worker counts stand
//! side by side in one run:
//!
//! - **saturated**: `POST /v1/events` batches of 100 (1 KiB events, one
//!   word-counter handler) kept in flight for a while; events accepted and
//!   delivered (outcomes on the live stream) per second; one row sends one
//!   event per request instead, as a webhook does, for what a request
//!   costs apart from its events. Twice: with 8 requests in flight, which
//!   overloads the daemon (its queue full, most requests waiting for
//!   room, `[api] queue_wait`, some refused past it), and with 2, which
//!   keeps its cores busy and seldom fills the queue;
//! - **half load**: batches paced at half the saturated rate, open loop;
//!   accept → outcome latency percentiles (client starts the POST → the
//!   outcome arrives on `GET /v1/stream`), and each stage's median over
//!   its deliveries (request → id, id → run, run, run → notice).
//!
//! The daemon is `target/release/hookbox` (built by this bench, or
//! `$HOOKBOX_BIN`); the load generator runs in this process, on the same
//! 2 cores. Run with `cargo bench -p hookbox-tests --bench pipeline`.
//!
//! `HOOKBOX_BENCH_SOAK=<seconds>` runs the soak instead: the default
//! configuration (log inbox) with `group` durability and 2 workers,
//! saturated briefly for its rate, then at half that rate for the given
//! time in 10-second windows; after each window the daemon's RSS, the
//! data directory's size and the rate it wrote to the disk at are sampled
//! with the window's latency percentiles, and the window's slowest
//! delivery is split into its stages beside each stage's median (request
//! → id, id → run, run, run → notice on the stream; from the event id's ULID time and the notice's
//! `time_ms` and `duration_us`). The samples go to `docs/bench/soak.csv` and are plotted to
//! `docs/bench/soak.png` with gnuplot (`apt-get install gnuplot-nox`; a
//! missing gnuplot fails the run and says so). For an A/B of two binaries
//! (`HOOKBOX_BIN`), `HOOKBOX_BENCH_SOAK_RATE=<events/s>` paces both at the
//! same rate instead of half of what each saturated at, and
//! `HOOKBOX_BENCH_SOAK_LOG_MAX=<lines>` sets `[store] log_max_entries`
//! (default 1M) so the log reaches its cap, and retention runs at full
//! pace, sooner.

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

use process::{Api, Daemon, word_counter};

/// One daemon configuration of the matrix.
#[derive(Clone, Copy, Debug)]
struct Setup {
    inbox: &'static str,
    durability: &'static str,
    workers: usize,
    /// Events per request: [`load::BATCH`], or one, as a webhook sends them.
    events: usize,
}

impl Setup {
    fn label(&self) -> String {
        format!(
            "{} inbox, `{}`, {} worker{}{}",
            self.inbox,
            self.durability,
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            if self.events == load::BATCH {
                String::new()
            } else {
                format!(
                    ", **{} event{} per request**",
                    self.events,
                    if self.events == 1 { "" } else { "s" }
                )
            }
        )
    }

    fn toml(&self) -> String {
        format!(
            "[store]\ninbox = \"{}\"\ndurability = \"{}\"\n\n[dispatch]\nworkers = {}\n",
            self.inbox, self.durability, self.workers
        )
    }
}

const SETUPS: [Setup; 7] = [
    Setup {
        inbox: "sled",
        durability: "sync",
        workers: 2,
        events: load::BATCH,
    },
    Setup {
        inbox: "sled",
        durability: "group",
        workers: 2,
        events: load::BATCH,
    },
    Setup {
        inbox: "sled",
        durability: "group",
        workers: 1,
        events: load::BATCH,
    },
    Setup {
        inbox: "log",
        durability: "sync",
        workers: 2,
        events: load::BATCH,
    },
    Setup {
        inbox: "log",
        durability: "group",
        workers: 2,
        events: load::BATCH,
    },
    Setup {
        inbox: "log",
        durability: "group",
        workers: 1,
        events: load::BATCH,
    },
    Setup {
        inbox: "log",
        durability: "sync",
        workers: 2,
        events: 1,
    },
];

/// Requests kept in flight while saturating.
const CLIENTS: usize = 8;
/// Requests kept in flight in the second saturated phase: enough to keep
/// the daemon's cores busy with batches of 100, few enough that its queue
/// is seldom full. [`CLIENTS`] overloads it (its queue stays full, and most
/// requests wait for room, `[api] queue_wait`, some past it and refused),
/// which measures the cost of the overload as well as the pipeline's; this
/// phase measures the pipeline at the load it takes without a queue.
const LIGHT_CLIENTS: usize = 2;

/// What one configuration measured.
struct Measured {
    max: load::MaxRate,
    /// With [`LIGHT_CLIENTS`] in flight; not for one event per request,
    /// which two requests in flight cannot saturate.
    light: Option<load::MaxRate>,
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
    let body = load::events_body(payload, "e2e", setup.events);
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
        let pid = daemon.pid();
        let saturate = |clients| {
            load::saturate(
                pid,
                &api,
                body.clone(),
                setup.events,
                &count,
                saturate_for,
                clients,
            )
        };
        let max = saturate(CLIENTS).await;
        load::drain(&count).await;
        let light = if setup.events > 1 {
            let light = saturate(LIGHT_CLIENTS).await;
            load::drain(&count).await;
            Some(light)
        } else {
            None
        };
        seen.lock().await.at.clear();
        let rate = max.delivered_per_s.min(max.accepted_per_s);
        let half = load::paced(
            &api,
            body.clone(),
            setup.events,
            &seen,
            rate * 0.5,
            paced_for,
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        follower.await.expect("the stream follower");
        Measured { max, light, half }
    })
}

/// Where the soak's samples and plot go, under the workspace root.
const SOAK_DIR: &str = "docs/bench";
/// The soak's sampling interval.
const SOAK_WINDOW: Duration = Duration::from_secs(10);
/// The soak stops early once the data directory passes this: the disk is
/// shared, and unbounded growth is the finding then.
const SOAK_MAX_DATA: u64 = 8 << 30;

/// One soak sample: the window that ended `at_s` into the paced phase.
struct Sample {
    at_s: f64,
    rss: u64,
    data: u64,
    inbox: u64,
    /// What the daemon wrote to the device in the window, MiB/s.
    writes: f64,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

fn soak(seconds: u64) {
    let bin = process::release_binary();
    let setup = Setup {
        inbox: "log",
        durability: "group",
        workers: 2,
        events: load::BATCH,
    };
    let tmp = tempfile::Builder::new()
        .prefix("hookbox-soak-")
        .tempdir()
        .expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the load generator");
    let config = tmp.path().join("hookbox.toml");
    let mut toml = setup.toml();
    if let Some(n) = env_number("HOOKBOX_BENCH_SOAK_LOG_MAX") {
        toml = toml.replace("[store]\n", &format!("[store]\nlog_max_entries = {n}\n"));
    }
    std::fs::write(&config, toml).expect("the config file");
    let data = tmp.path().join("data");
    let daemon = Daemon::start(&bin, &data, Some(&config));
    let api = Api::new(&daemon.url);
    let body = load::batch_body(&support::zulip_message(support::PAYLOAD_SIZES[0]), "e2e");
    let seen = Arc::new(tokio::sync::Mutex::new(load::Seen::default()));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The machine (with the load average) as the soak begins.
    let machine = support::machine();
    let mut samples = Vec::new();
    let rate = rt.block_on(async {
        let manifest = json!({
            "name": "word-counter",
            "subscription": {"events": ["message"], "tenants": ["e2e"]},
        });
        api.deploy(&manifest, &word_counter()).await;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // The stream outlives the API client's 120 s request timeout.
        let stream = Api {
            client: reqwest::Client::new(),
            url: daemon.url.clone(),
        };
        let follower = tokio::spawn(load::follow(
            stream,
            seen.clone(),
            count.clone(),
            stop.clone(),
            ready_tx,
        ));
        ready_rx.await.expect("the stream is open");
        let max = load::saturate(
            daemon.pid(),
            &api,
            body.clone(),
            load::BATCH,
            &count,
            Duration::from_secs(10),
            CLIENTS,
        )
        .await;
        load::drain(&count).await;
        let rate = match env_number("HOOKBOX_BENCH_SOAK_RATE") {
            Some(r) => r as f64,
            None => max.delivered_per_s.min(max.accepted_per_s) * 0.5,
        };
        eprintln!(
            "soak: saturated {:.0} accepted/s, {:.0} delivered/s; pacing {rate:.0} events/s for {seconds} s (daemon pid {})",
            max.accepted_per_s,
            max.delivered_per_s,
            daemon.pid()
        );
        let start = std::time::Instant::now();
        let (mut before, mut since) = (written(&daemon), std::time::Instant::now());
        while start.elapsed() < Duration::from_secs(seconds) {
            seen.lock().await.at.clear();
            let w = load::paced(&api, body.clone(), load::BATCH, &seen, rate, SOAK_WINDOW).await;
            let l = &w.latencies_ms;
            let p = |q: f64| if l.is_empty() { f64::NAN } else { percentile(l, q) };
            let now_written = written(&daemon);
            let writes = now_written.saturating_sub(before) as f64
                / 1048576.0
                / since.elapsed().as_secs_f64();
            (before, since) = (now_written, std::time::Instant::now());
            let sample = Sample {
                at_s: start.elapsed().as_secs_f64(),
                rss: daemon.rss(),
                data: support::dir_bytes(&data),
                inbox: support::dir_bytes(&data.join("inbox")),
                writes,
                rate: w.achieved_per_s,
                p50: p(50.0),
                p99: p(99.0),
                max: p(100.0),
            };
            eprintln!(
                "soak: {:>5.0} s  rss {:>7.1} MiB  data {:>7.1} MiB (inbox {:>6.1})  writes {:>5.1} MiB/s  {:>6.0}/s  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} missing, {} refused)\n      slowest: {}\n      median:  {}",
                sample.at_s,
                sample.rss as f64 / 1048576.0,
                sample.data as f64 / 1048576.0,
                sample.inbox as f64 / 1048576.0,
                sample.writes,
                sample.rate,
                sample.p50,
                sample.p99,
                sample.max,
                w.missing,
                w.refused_requests,
                w.slowest.map_or("-".to_string(), |s| s.to_string()),
                w.median.map_or("-".to_string(), |s| s.to_string())
            );
            let full = sample.data > SOAK_MAX_DATA;
            samples.push(sample);
            if full {
                eprintln!("soak: stopped early, the data directory passed {SOAK_MAX_DATA} bytes");
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        follower.await.expect("the stream follower");
        rate
    });
    let dir = support::workspace_root().join(SOAK_DIR);
    std::fs::create_dir_all(&dir).expect("the soak output directory");
    let csv = dir.join("soak.csv");
    let pace = match env_number("HOOKBOX_BENCH_SOAK_RATE") {
        Some(_) => "HOOKBOX_BENCH_SOAK_RATE",
        None => "half the saturated rate",
    };
    let cap = env_number("HOOKBOX_BENCH_SOAK_LOG_MAX")
        .map(|n| format!(", log_max_entries = {n}"))
        .unwrap_or_default();
    let mut text = format!(
        "# hookbox soak: {}{cap} at {rate:.0} events/s ({pace}); {machine}, {} at the end\n\
         seconds,rss_mib,data_mib,inbox_mib,events_per_s,p50_ms,p99_ms,max_ms,writes_mib_per_s\n",
        setup.label(),
        support::load_average(),
    );
    for s in &samples {
        text.push_str(&format!(
            "{:.0},{:.2},{:.2},{:.2},{:.0},{:.3},{:.3},{:.3},{:.1}\n",
            s.at_s,
            s.rss as f64 / 1048576.0,
            s.data as f64 / 1048576.0,
            s.inbox as f64 / 1048576.0,
            s.rate,
            s.p50,
            s.p99,
            s.max,
            s.writes
        ));
    }
    std::fs::write(&csv, text).expect("writing the soak samples");
    plot(&csv, &dir.join("soak.png"));
    println!(
        "soak: samples in {}, plot in {}",
        csv.display(),
        dir.join("soak.png").display()
    );
}

/// Plots the soak's samples with gnuplot: memory and disk on top, latency
/// below.
fn plot(csv: &Path, png: &Path) {
    let script = format!(
        r#"set terminal pngcairo size 1000,700 font ",10"
set output "{png}"
set datafile separator ","
set multiplot layout 2,1 title "Hookbox soak at half load (log inbox, group, 2 workers)"
set xlabel "seconds"
set ylabel "MiB"
set key top left
plot "{csv}" using 1:2 with linespoints title "daemon RSS",      "{csv}" using 1:3 with linespoints title "data directory",      "{csv}" using 1:4 with linespoints title "inbox log"
set ylabel "ms (per 10 s window)"
set logscale y
plot "{csv}" using 1:6 with linespoints title "p50 accept -> outcome",      "{csv}" using 1:7 with linespoints title "p99",      "{csv}" using 1:8 with linespoints title "max"
unset multiplot
"#,
        png = png.display(),
        csv = csv.display()
    );
    let mut child = std::process::Command::new("gnuplot")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running gnuplot ({e}): install it with `apt-get install gnuplot-nox`")
        });
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("gnuplot's stdin")
        .write_all(script.as_bytes())
        .expect("writing to gnuplot");
    let status = child.wait().expect("waiting for gnuplot");
    assert!(status.success(), "gnuplot failed: {status}");
}

/// Bytes the daemon has had written to the storage device so far
/// (`write_bytes` of `/proc/<pid>/io`: its files' pages as they reach the
/// disk by fsync or writeback), 0 where that is not readable.
fn written(daemon: &Daemon) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/io", daemon.pid()))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A positive whole number from environment variable `name`; unset or
/// empty is `None`, anything else stops the bench with what was wrong.
fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("{name}={v:?}: expected a positive whole number"),
    }
}

fn main() {
    if let Some(seconds) = env_number("HOOKBOX_BENCH_SOAK") {
        soak(seconds);
        return;
    }
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
        "saturated: CPU, daemon + generator",
        "2 in flight: delivered (429s; daemon CPU)",
        "half load: events/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "samples",
        "half load: median of each stage",
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
            format!(
                "{:.2} + {:.2} cores",
                m.max.daemon_cores, m.max.generator_cores
            ),
            m.light.as_ref().map_or("–".to_string(), |l| {
                format!(
                    "{} ({}; {:.2} cores)",
                    fmt_rate(l.delivered_per_s),
                    l.refused_requests,
                    l.daemon_cores
                )
            }),
            fmt_rate(m.half.achieved_per_s),
            p(50.0),
            p(99.0),
            p(99.9),
            p(100.0),
            format!("{} ({} missing)", l.len(), m.half.missing),
            m.half.median.map_or("–".to_string(), |s| s.to_string()),
        ]);
        let light = m.light.as_ref().map_or(f64::NAN, |l| l.delivered_per_s);
        delivered.push((*setup, m.max.delivered_per_s, light));
    }
    let ratio = |inbox: &str| {
        let rate = |w: usize, light: bool| {
            delivered
                .iter()
                .find(|(s, ..)| s.inbox == inbox && s.durability == "group" && s.workers == w)
                .map_or(f64::NAN, |(_, max, l)| if light { *l } else { *max })
        };
        format!(
            "{inbox} inbox {:.2}x ({LIGHT_CLIENTS} in flight: {:.2}x)",
            rate(2, false) / rate(1, false),
            rate(2, true) / rate(1, true)
        )
    };
    report.table(
        "End to end by inbox, durability and workers (release daemon, batches of 100 unless the row says otherwise, 1 KiB events)",
        &table,
        &format!(
            "One word-counter handler (fresh instance per delivery), a fresh data directory \
             and daemon per row, configured with `[store] inbox`, `[store] durability` and \
             `[dispatch] workers`. Saturated: {CLIENTS} requests kept in flight for {} s \
             (the first fifth not counted); delivered = outcomes on the live stream. This \
             overloads the daemon: its queue stays full, and most requests wait for room \
             (`[api] queue_wait`, default 250 ms) after one sketch of their body; those \
             still without room are refused. {LIGHT_CLIENTS} in \
             flight: the same for as long with {LIGHT_CLIENTS} requests in flight, which keep \
             its cores busy and seldom fill the queue (not run for one \
             event per request). Half \
             load: a request every 100 (or 1) ÷ (half the saturated delivered rate, {CLIENTS} in \
             flight) seconds for {} s, \
             open loop; latency from the client starting the POST to the event's outcome \
             arriving on `GET /v1/stream`; each stage's median over the \
             half-load deliveries (from the event id's ULID time and the notice's \
             `time_ms` and `duration_us`, ± 1 ms each) splits it. 429s: refused requests in the {CLIENTS}-in-flight and half-load phases. The load \
             generator shares the 2 cores with the daemon; the CPU column is what each used \
             over the counted part of the saturated phase (from `/proc/<pid>/stat`), in \
             cores. 2 workers ÷ 1, saturated \
             delivered, `group`: {}, {}.",
            if quick() { 2 } else { 10 },
            if quick() { 1 } else { 6 },
            ratio("sled"),
            ratio("log"),
        ),
    );
    report.publish();
}
