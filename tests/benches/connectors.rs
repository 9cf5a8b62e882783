//! Issue 15's throughput figure: ticket events from a Redis stream →
//! the `ticket-alerts` example handler → the Redis sink, side by side with
//! HTTP ingest of the same events into the same handler and sink, and a
//! native consumer without Hookbox as the floor, in one run:
//!
//! - **native**: this process reads the input stream with a consumer
//!   group, writes one `NOTIFICATION_SENT` envelope per entry to the output
//!   stream and `XACK`s (pipelined per batch) — what Redis and a plain
//!   client cost on this machine;
//! - **redis**: the release daemon with `[[redis]] in` (stream mode, source
//!   only) and `[[redis]] out` (stream mode, sink only);
//! - **http**: the same daemon and config, the same events `POST`ed to
//!   `/v1/events` in batches.
//!
//! Every path is measured at the same place, the output stream, which this
//! process reads (`XREAD`): saturated (producers keep at most [`WINDOW`]
//! events sent and not yet seen there, batches of [`BATCH`]), then paced,
//! open loop, at one rate for every path (half the slower Hookbox path's
//! saturated rate), latency from before the send to the output entry read
//! back. The daemon's CPU by thread during the saturated phase is the
//! report's profile; with `HOOKBOX_BENCH_PERF=1`, `perf record` samples
//! the daemon during each saturated Hookbox phase too (files under
//! `target/hookbox-bench/`, for `perf report -i …`). Run with `cargo bench
//! -p hookbox-tests --bench connectors` (needs `redis-server`, like the
//! connector tests).

// Shared with the `daemon` bench, which uses more of it.
#[allow(dead_code)]
#[path = "daemon/process.rs"]
mod process;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hookbox_tests::redis_server::RedisServer;
use process::{Api, Daemon, TOKEN};
use redis::streams::StreamReadReply;
use serde_json::{Value, json};
use support::{Report, Table, fmt_rate, percentile, quick};

/// Events sent and not yet seen on the output stream, at most.
const WINDOW: u64 = 1_000;
/// Events per `XADD` pipeline or `POST` while saturating.
const BATCH: u64 = 100;
/// Events per send while paced.
const PACED_BATCH: u64 = 10;
/// Threads sending while saturating.
const PRODUCERS: usize = 4;
/// The tenant of every event.
const TENANT: &str = "t-bench";
/// Sequence numbers per phase (the saturated phases stay far below).
const MAX_EVENTS: usize = 1 << 21;
/// How long the output may take to catch up after a phase.
const DRAIN: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    Native,
    Redis,
    Http,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Native => "native consumer (no Hookbox): stream → XADD + XACK",
            Route::Redis => "Hookbox: Redis stream → ticket-alerts → Redis sink",
            Route::Http => "Hookbox: HTTP `POST /v1/events` → ticket-alerts → Redis sink",
        }
    }
}

/// Per sequence number: when it was sent and first seen on the output
/// stream, µs since `start` plus one (zero: not yet).
struct Track {
    start: Instant,
    sent: Vec<AtomicU64>,
    seen: Vec<AtomicU64>,
    n_seen: AtomicU64,
    next: AtomicU64,
}

impl Track {
    fn new() -> Arc<Track> {
        Arc::new(Track {
            start: Instant::now(),
            sent: (0..MAX_EVENTS).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..MAX_EVENTS).map(|_| AtomicU64::new(0)).collect(),
            n_seen: AtomicU64::new(0),
            next: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    fn mark_sent(&self, seqs: std::ops::Range<u64>) {
        self.mark_due(seqs, Instant::now());
    }

    /// Marks `seqs` sent at `due`: when the schedule meant to send them,
    /// so a send that blocks (a slow `POST`) delays the events behind it
    /// in the figures too, instead of hiding (coordinated omission).
    fn mark_due(&self, seqs: std::ops::Range<u64>, due: Instant) {
        let t = due.saturating_duration_since(self.start).as_micros() as u64 + 1;
        for s in seqs {
            self.sent[s as usize].store(t, Ordering::Relaxed);
        }
    }

    fn mark_seen(&self, seq: u64) {
        let Some(slot) = self.seen.get(seq as usize) else {
            return;
        };
        if slot
            .compare_exchange(0, self.now(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.n_seen.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every event sent was seen, or [`DRAIN`] passed.
    fn drain(&self) {
        let deadline = Instant::now() + DRAIN;
        while self.n_seen.load(Ordering::Relaxed) < self.next.load(Ordering::Relaxed)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Latencies in ms of the events sent in `seqs`; and how many were not seen.
    fn latencies(&self, seqs: std::ops::Range<u64>) -> (Vec<f64>, u64) {
        let mut out = Vec::new();
        let mut missing = 0;
        for s in seqs {
            let (a, b) = (
                self.sent[s as usize].load(Ordering::Relaxed),
                self.seen[s as usize].load(Ordering::Relaxed),
            );
            if b == 0 {
                missing += 1;
            } else {
                out.push(b.saturating_sub(a) as f64 / 1000.0);
            }
        }
        out.sort_by(f64::total_cmp);
        (out, missing)
    }
}

/// The ticket payload of event `seq` (its `ticketId` comes back in the
/// handler's `NOTIFICATION_SENT`).
fn ticket(seq: u64) -> Value {
    json!({"tenantId": TENANT, "ticketId": seq.to_string(), "title": "Printer on fire",
           "status": "open", "priority": "high", "assignee": "ops@example.com"})
}

/// The bus envelope of event `seq` of phase `run`, as the seed application writes it.
fn envelope(run: u32, seq: u64) -> String {
    json!({"id": format!("{run:08x}-0000-4000-8000-{seq:012x}"), "eventType": "TICKET_UPDATED",
           "timestamp": "2026-12-03T21:00:00.000Z", "payload": ticket(seq)})
    .to_string()
}

/// The same events as a `POST /v1/events` body.
fn http_body(run: u32, seqs: std::ops::Range<u64>) -> bytes::Bytes {
    let events: Vec<Value> = seqs
        .map(|seq| {
            json!({"type": "TICKET_UPDATED", "tenant": TENANT, "payload": ticket(seq),
                   "idempotency_key": format!("{run:08x}-0000-4000-8000-{seq:012x}"),
                   "metadata": {"timestamp": "2026-12-03T21:00:00.000Z"}})
        })
        .collect();
    bytes::Bytes::from(serde_json::to_vec(&events).expect("a JSON batch"))
}

/// What every phase shares.
struct Env {
    redis_url: String,
    bin: std::path::PathBuf,
    tmp: tempfile::TempDir,
    wasm: Vec<u8>,
    rt: Arc<tokio::runtime::Runtime>,
}

/// One phase's streams, daemon and senders.
struct Phase {
    route: Route,
    run: u32,
    input: String,
    output: String,
    url: String,
    daemon: Option<Daemon>,
    api: Option<Api>,
    rt: Arc<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Phase {
    fn start(env: &Env, route: Route, run: u32, track: &Arc<Track>) -> Phase {
        let (rt, dir) = (&env.rt, env.tmp.path().join(run.to_string()));
        let input = format!("bench:{run}:in");
        let output = format!("bench:{run}:out");
        let mut phase = Phase {
            route,
            run,
            input,
            output,
            url: env.redis_url.clone(),
            daemon: None,
            api: None,
            rt: rt.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let mut con = phase.connect();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&phase.input)
            .arg(if route == Route::Native {
                "native"
            } else {
                "hookbox"
            })
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut con)
            .expect("XGROUP CREATE");
        let _: () = redis::cmd("XADD")
            .arg(&phase.output)
            .arg("*")
            .arg("event")
            .arg("{}")
            .query(&mut con)
            .expect("XADD to create the output stream");
        if route == Route::Native {
            phase.spawn_native();
        } else {
            std::fs::create_dir_all(&dir).expect("a directory");
            let config = dir.join("hookbox.toml");
            std::fs::write(&config, phase.config()).expect("the config file");
            let daemon = Daemon::start(&env.bin, &dir.join("data"), Some(&config));
            let api = Api::new(&daemon.url);
            rt.block_on(async {
                let mut manifest: Value = serde_json::from_str(
                    &std::fs::read_to_string(
                        support::workspace_root()
                            .join("example-handlers/ticket-alerts/manifest.json"),
                    )
                    .expect("the ticket-alerts manifest"),
                )
                .expect("a JSON manifest");
                manifest["config"] = json!({
                    "tenants": {TENANT: {"slack": "bench-slack"}},
                    "publish": true,
                });
                api.deploy(&manifest, &env.wasm).await;
                wait_connected(&api).await;
            });
            phase.daemon = Some(daemon);
            phase.api = Some(api);
        }
        phase.spawn_reader(track.clone());
        phase
    }

    fn connect(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .expect("a connection to redis-server")
    }

    /// Both buses, for the Redis and the HTTP route alike.
    fn config(&self) -> String {
        format!(
            "[[redis]]\nname = \"in\"\nurl = \"{url}\"\nmode = \"stream\"\nstream = \"{input}\"\n\
             sink = false\n\n\
             [[redis]]\nname = \"out\"\nurl = \"{url}\"\nmode = \"stream\"\nstream = \"{output}\"\n\
             source = false\n",
            url = self.url,
            input = self.input,
            output = self.output,
        )
    }

    /// Reads the output stream, marking each `ticketId` seen.
    fn spawn_reader(&mut self, track: Arc<Track>) {
        let mut con = self.connect();
        let (output, stop) = (self.output.clone(), self.stop.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut last = "0".to_string();
            while !stop.load(Ordering::Relaxed) {
                let reply: StreamReadReply = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&output)
                    .arg(&last)
                    .query(&mut con)
                    .expect("XREAD");
                for key in reply.keys {
                    for entry in key.ids {
                        if let Some(seq) = entry
                            .get::<String>("event")
                            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                            .and_then(|v| v["payload"]["ticketId"].as_str()?.parse().ok())
                        {
                            track.mark_seen(seq);
                        }
                        last = entry.id;
                    }
                }
            }
        }));
    }

    /// The native consumer: read a batch, write the notifications, ack.
    fn spawn_native(&mut self) {
        let mut con = self.connect();
        let (input, output, stop) = (self.input.clone(), self.output.clone(), self.stop.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let reply: StreamReadReply = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("native")
                    .arg("native")
                    .arg("COUNT")
                    .arg(BATCH)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&input)
                    .arg(">")
                    .query(&mut con)
                    .expect("XREADGROUP");
                let mut pipe = redis::pipe();
                let mut ids = Vec::new();
                for key in reply.keys {
                    for entry in key.ids {
                        let event: Value = entry
                            .get::<String>("event")
                            .and_then(|t| serde_json::from_str(&t).ok())
                            .unwrap_or(Value::Null);
                        n += 1;
                        let note = json!({
                            "id": format!("00000000-0000-4000-9000-{n:012x}"),
                            "eventType": "NOTIFICATION_SENT",
                            "timestamp": "2026-12-03T21:00:00.000Z",
                            "payload": {"tenantId": event["payload"]["tenantId"],
                                        "ticketId": event["payload"]["ticketId"],
                                        "action": "updated", "channels": ["slack"]},
                        });
                        pipe.cmd("XADD")
                            .arg(&output)
                            .arg("*")
                            .arg("event")
                            .arg(note.to_string())
                            .ignore();
                        ids.push(entry.id);
                    }
                }
                if !ids.is_empty() {
                    pipe.cmd("XACK")
                        .arg(&input)
                        .arg("native")
                        .arg(&ids)
                        .ignore();
                    let _: () = pipe.query(&mut con).expect("XADD + XACK");
                }
            }
        }));
    }

    /// Sends events `seqs` by this phase's route; waits out 429s.
    fn send(&self, con: &mut Option<redis::Connection>, seqs: std::ops::Range<u64>) {
        match self.route {
            Route::Native | Route::Redis => {
                let con = con.get_or_insert_with(|| self.connect());
                let mut pipe = redis::pipe();
                for seq in seqs {
                    pipe.cmd("XADD")
                        .arg(&self.input)
                        .arg("*")
                        .arg("event")
                        .arg(envelope(self.run, seq))
                        .ignore();
                }
                let _: () = pipe.query(con).expect("XADD");
            }
            Route::Http => {
                let api = self.api.as_ref().expect("a daemon");
                let body = http_body(self.run, seqs);
                while self.rt.block_on(api.publish(body.clone(), false)).is_none() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("a bench thread");
        }
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }
}

async fn wait_connected(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = api
            .client
            .get(format!("{}/v1/redis", api.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET /v1/redis")
            .json()
            .await
            .expect("a JSON status");
        if status["buses"].as_array().is_some_and(|b| {
            b.iter()
                .any(|b| b["name"] == "in" && b["connected"] == true)
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bus did not connect: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU ticks per thread name (digits dropped: `hookbox-worker-1` and `-2`
/// are one row) of process `pid`.
fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // `pid (comm) state …`: utime and stime are fields 14 and 15.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name: String = head
            .split_once(" (")
            .map_or("?", |(_, n)| n)
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_default() += ticks;
    }
    out
}

/// `name 45%, name 30%` — each thread group's share of one core over `secs`.
fn cpu_profile(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, secs: f64) -> String {
    // USER_HZ is 100 on Linux.
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(name, t)| {
            let d = t.saturating_sub(before.get(name).copied().unwrap_or(0));
            (name.clone(), d as f64 / 100.0 / secs * 100.0)
        })
        .filter(|(_, pct)| *pct >= 1.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let parts: Vec<String> = rows.iter().map(|(n, p)| format!("`{n}` {p:.0}%")).collect();
    format!("{total:.0}% of a core: {}", parts.join(", "))
}

/// `HOOKBOX_BENCH_PERF=1`: samples the daemon `pid` for `secs` with
/// `perf record` into `target/hookbox-bench/connectors-<route>.perf.data`.
fn perf_record(pid: u32, route: Route, secs: Duration) -> Option<std::process::Child> {
    if std::env::var("HOOKBOX_BENCH_PERF").map_or(true, |v| v.is_empty() || v == "0") {
        return None;
    }
    let dir = support::workspace_root()
        .join("target")
        .join("hookbox-bench");
    std::fs::create_dir_all(&dir).ok()?;
    let out = dir.join(format!("connectors-{route:?}.perf.data").to_lowercase());
    std::process::Command::new("perf")
        .args(["record", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(&out)
        .args(["--", "sleep", &format!("{:.1}", secs.as_secs_f64())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("perf record: {e}"))
        .ok()
}

/// What a saturated phase measured.
struct Saturated {
    per_s: f64,
    profile: String,
}

fn saturate(phase: &Phase, track: &Arc<Track>, duration: Duration) -> Saturated {
    let stop = Arc::new(AtomicBool::new(false));
    let phase_ref = phase;
    let result = std::thread::scope(|s| {
        for _ in 0..PRODUCERS {
            let (stop, track) = (stop.clone(), track.clone());
            s.spawn(move || {
                let mut con = None;
                while !stop.load(Ordering::Relaxed) {
                    let first = track.next.fetch_add(BATCH, Ordering::Relaxed);
                    while first + BATCH > track.n_seen.load(Ordering::Relaxed) + WINDOW
                        && !stop.load(Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    track.mark_sent(first..first + BATCH);
                    phase_ref.send(&mut con, first..first + BATCH);
                }
            });
        }
        // The first fifth warms up: connections open, code loads.
        std::thread::sleep(duration / 5);
        let pid = phase.daemon.as_ref().map(Daemon::pid);
        let cpu0 = pid.map(thread_ticks).unwrap_or_default();
        let (n0, t0) = (track.n_seen.load(Ordering::Relaxed), Instant::now());
        let perf = pid.and_then(|pid| perf_record(pid, phase.route, duration - duration / 5));
        std::thread::sleep(duration - duration / 5);
        let n1 = track.n_seen.load(Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = pid.map(thread_ticks).unwrap_or_default();
        stop.store(true, Ordering::Relaxed);
        if let Some(mut p) = perf {
            let _ = p.wait();
        }
        Saturated {
            per_s: (n1 - n0) as f64 / secs,
            profile: if pid.is_some() {
                cpu_profile(&cpu0, &cpu1, secs)
            } else {
                "–".into()
            },
        }
    });
    track.drain();
    result
}

/// What a paced phase measured.
struct Paced {
    per_s: f64,
    latencies_ms: Vec<f64>,
    missing: u64,
}

fn paced(phase: &Phase, track: &Arc<Track>, rate: f64, duration: Duration) -> Paced {
    let interval = Duration::from_secs_f64(PACED_BATCH as f64 / rate);
    let mut con = None;
    let start = Instant::now();
    let mut k = 0u32;
    while start.elapsed() < duration {
        let due = start + interval * k;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let first = track.next.fetch_add(PACED_BATCH, Ordering::Relaxed);
        track.mark_due(first..first + PACED_BATCH, due);
        phase.send(&mut con, first..first + PACED_BATCH);
        k += 1;
    }
    let sent = track.next.load(Ordering::Relaxed);
    let per_s = sent as f64 / start.elapsed().as_secs_f64();
    track.drain();
    let (latencies_ms, missing) = track.latencies(0..sent);
    Paced {
        per_s,
        latencies_ms,
        missing,
    }
}

fn main() {
    let mut report = Report::new("connectors");
    let bin = process::release_binary();
    report.note(&format!("Daemon binary: `{}` (release).", bin.display()));
    let (saturate_for, paced_for) = if quick() {
        (Duration::from_secs(2), Duration::from_secs(1))
    } else {
        (Duration::from_secs(10), Duration::from_secs(8))
    };
    let server = RedisServer::start();
    // The test server fsyncs every write; a bus in production runs with
    // Redis's own default for AOF.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query(&mut server.connect())
        .expect("CONFIG SET appendfsync");
    let tmp = tempfile::Builder::new()
        .prefix("hookbox-bench-")
        .tempdir()
        .expect("a temporary directory");
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the HTTP client"),
    );
    let (_, wasm_path) = hookbox_tests::guests::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "ticket-alerts")
        .expect("tests/build.rs built example-handlers/ticket-alerts");
    let wasm = std::fs::read(wasm_path).expect("the ticket-alerts component");

    let routes = [Route::Native, Route::Redis, Route::Http];
    let env = Env {
        redis_url: server.url(),
        bin,
        tmp,
        wasm,
        rt,
    };
    let mut run = 0u32;
    let mut phase = |route: Route, track: &Arc<Track>| {
        run += 1;
        Phase::start(&env, route, run, track)
    };
    let mut saturated = Vec::new();
    for route in routes {
        let track = Track::new();
        let p = phase(route, &track);
        saturated.push(saturate(&p, &track, saturate_for));
        p.finish();
    }
    let rate = saturated[1].per_s.min(saturated[2].per_s) * 0.5;
    let mut table = Table::new(&[
        "path",
        "saturated: events/s",
        "paced: events/s",
        "p50",
        "p99",
        "max",
        "samples",
    ]);
    for (route, sat) in routes.iter().zip(&saturated) {
        let track = Track::new();
        let p = phase(*route, &track);
        let m = paced(&p, &track, rate, paced_for);
        p.finish();
        let l = &m.latencies_ms;
        let at = |q: f64| {
            if l.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2} ms", percentile(l, q))
            }
        };
        table.row(vec![
            route.label().to_string(),
            fmt_rate(sat.per_s),
            fmt_rate(m.per_s),
            at(50.0),
            at(99.0),
            at(100.0),
            format!("{} ({} missing)", l.len(), m.missing),
        ]);
    }
    report.table(
        "Redis stream → handler → Redis sink, beside HTTP ingest (release daemon)",
        &table,
        &format!(
            "Events: `TICKET_UPDATED` envelopes (≈ 250 B) for one tenant; handler: the \
             `ticket-alerts` example, configured to send a Slack message to an endpoint name \
             the daemon does not configure (accepted, routed to no sink) and to publish \
             `NOTIFICATION_SENT` (the Redis sink `XADD`s it). So each event is one delivery, \
             two emitted events and one sink delivery. Both Hookbox paths run a fresh daemon \
             with the same two buses (`in`: stream, source only; `out`: stream, sink only), \
             default `[store]` and `[dispatch]`; `redis-server` with `appendfsync everysec`. \
             Measured at the output stream, which the bench reads: saturated = {PRODUCERS} \
             producer threads keeping at most {WINDOW} events in flight, batches of {BATCH} \
             (`XADD` pipelines or `POST`s), for {} s (the first fifth not counted); paced = \
             {rate:.0} events/s for every path (half the slower Hookbox path's saturated \
             rate), batches of {PACED_BATCH}, open loop, for {} s; latency from when the \
             schedule meant to send the batch (a send that blocks delays the batches behind \
             it) to the `NOTIFICATION_SENT` entry read back. The load generator and \
             `redis-server` share the 2 cores with the daemon.",
            saturate_for.as_secs(),
            paced_for.as_secs(),
        ),
    );
    for (route, sat) in routes.iter().zip(&saturated).skip(1) {
        report.note(&format!(
            "Daemon CPU by thread, saturated, {}: {}.",
            if *route == Route::Redis {
                "Redis path"
            } else {
                "HTTP path"
            },
            sat.profile
        ));
    }
    report.publish();
}
