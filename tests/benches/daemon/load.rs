//! End-to-end load through `POST /v1/events`: batches of 100 message
//! events for the word-counter (or another number of events per request),
//! first as fast as the daemon takes them (the maximum rate), then paced
//! at fractions of it while the live stream
//! (`GET /v1/stream`, SSE) reports each outcome; latency is from the moment
//! the client starts a POST to the moment the event's outcome arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::process::{Api, TOKEN};
use super::support::process_cpu_secs;

/// Events per request (the batch size).
pub const BATCH: usize = 100;

/// One prepared request body: `BATCH` message events of `tenant`.
pub fn batch_body(payload: &Value, tenant: &str) -> Bytes {
    events_body(payload, tenant, BATCH)
}

/// One prepared request body of `events` message events of `tenant`: one
/// event as an object, the way a webhook sends it; more as an array.
pub fn events_body(payload: &Value, tenant: &str, events: usize) -> Bytes {
    let event = json!({"type": "message", "tenant": tenant, "payload": payload});
    let body = if events == 1 {
        serde_json::to_vec(&event)
    } else {
        serde_json::to_vec(&vec![event; events])
    };
    Bytes::from(body.expect("a JSON body"))
}

/// Outcomes seen on the live stream: event id → arrival (only while
/// `keep`: a saturated phase counts outcomes and stores none, so the load
/// generator takes less of the cores it shares with the daemon), plus a
/// count of notices the stream skipped (`event: lagged`).
#[derive(Debug, Default)]
pub struct Seen {
    pub at: HashMap<String, Arrival>,
    pub keep: bool,
    pub lagged: u64,
}

/// One outcome's arrival on the live stream, with the daemon's own times
/// from its notice (same machine, so the same wall clock).
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// When the notice arrived.
    pub at: Instant,
    /// The same moment on the wall clock, ms since the epoch.
    pub wall_ms: f64,
    /// The notice's `time_ms`: when the attempt ended.
    pub ended_ms: u64,
    /// The notice's `duration_us`: how long the attempt ran.
    pub ran_us: u64,
}

/// The wall clock, ms since the epoch (fractional).
fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

/// Where one delivery's accept → outcome time went, in ms, from the client's
/// and the daemon's clocks: the daemon's times have ms resolution (the
/// event id's ULID, the notice's `time_ms`), so each stage is ± 1 ms.
#[derive(Clone, Copy, Debug)]
pub struct Stages {
    /// Client starts the POST → the daemon assigns the event id.
    pub to_accept: f64,
    /// The id → the 202 reaches the client (the append and its commit).
    pub to_answer: f64,
    /// The id → the attempt starts (queue and scheduling).
    pub to_start: f64,
    /// The attempt itself.
    pub run: f64,
    /// The attempt ends → the notice reaches the client (the recorder's
    /// batch, the broadcast, the SSE write).
    pub to_notice: f64,
}

impl Stages {
    /// Each field's median over `all`; `None` when empty.
    fn median(all: &[Stages]) -> Option<Stages> {
        if all.is_empty() {
            return None;
        }
        let of = |f: fn(&Stages) -> f64| {
            let mut v: Vec<f64> = all.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Some(Stages {
            to_accept: of(|s| s.to_accept),
            to_answer: of(|s| s.to_answer),
            to_start: of(|s| s.to_start),
            run: of(|s| s.run),
            to_notice: of(|s| s.to_notice),
        })
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "http {:.0} + queue {:.0} + run {:.1} + notice {:.0} ms (202 after {:.0} ms)",
            self.to_accept, self.to_start, self.run, self.to_notice, self.to_answer
        )
    }
}

/// Follows `GET /v1/stream` until `stop`; counts every outcome in `count`.
pub async fn follow(
    api: Api,
    seen: Arc<Mutex<Seen>>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut resp = api
        .client
        .get(format!("{}/v1/stream", api.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the live stream opens");
    assert_eq!(resp.status().as_u16(), 200, "GET /v1/stream");
    let _ = ready.send(());
    let mut buf = String::new();
    while !stop.load(Ordering::Relaxed) {
        let chunk = match tokio::time::timeout(Duration::from_millis(50), resp.chunk()).await {
            Err(_) => continue,
            Ok(Ok(Some(c))) => c,
            Ok(_) => break,
        };
        let (now, wall) = (Instant::now(), wall_ms());
        buf.push_str(&String::from_utf8_lossy(&chunk));
        let mut seen = seen.lock().await;
        // Whole blocks are read in place and cut off the buffer once.
        let mut from = 0;
        while let Some(end) = buf[from..].find("\n\n") {
            let block = &buf[from..from + end + 2];
            from += end + 2;
            if block.contains("event: lagged") {
                let n = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .and_then(|d| d.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                seen.lagged += n;
                count.fetch_add(n, Ordering::Relaxed);
            } else if let Some(id) = field(block, "\"event_id\":\"") {
                if seen.keep {
                    let arrival = Arrival {
                        at: now,
                        wall_ms: wall,
                        ended_ms: number(block, "\"time_ms\":").unwrap_or(0),
                        ran_us: number(block, "\"duration_us\":").unwrap_or(0),
                    };
                    seen.at.insert(id.to_string(), arrival);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        buf.drain(..from);
    }
}

/// The string value after `prefix` (no JSON parse: the stream is hot).
fn field<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let start = text.find(prefix)? + prefix.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The unsigned number after `prefix`.
fn number(text: &str, prefix: &str) -> Option<u64> {
    let start = text.find(prefix)? + prefix.len();
    let len = text[start..].find(|c: char| !c.is_ascii_digit())?;
    text[start..start + len].parse().ok()
}

/// The maximum rate: accepted and delivered events per second while
/// `clients` requests are always in flight for `duration`, and the CPU
/// (in cores) the daemon and this process (the load generator) used over
/// the counted part.
#[derive(Debug)]
pub struct MaxRate {
    pub accepted_per_s: f64,
    pub delivered_per_s: f64,
    pub refused_requests: u64,
    pub daemon_cores: f64,
    pub generator_cores: f64,
}

/// `body` holds `events` events; `daemon` is the daemon's pid.
pub async fn saturate(
    daemon: u32,
    api: &Api,
    body: Bytes,
    events: usize,
    count: &AtomicU64,
    duration: Duration,
    clients: usize,
) -> MaxRate {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, body) = (api.clone(), body.clone());
        let (stop, accepted, refused) = (stop.clone(), accepted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match api.publish(body.clone(), false).await {
                    Some(_) => accepted.fetch_add(events as u64, Ordering::Relaxed),
                    None => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        0
                    }
                };
            }
        }));
    }
    // Skip the first fifth: connections open, the queue starts filling.
    tokio::time::sleep(duration / 5).await;
    let cpu = || {
        (
            process_cpu_secs(daemon).unwrap_or(f64::NAN),
            process_cpu_secs(std::process::id()).unwrap_or(f64::NAN),
        )
    };
    let (a0, d0, t0, c0) = (
        accepted.load(Ordering::Relaxed),
        count.load(Ordering::Relaxed),
        Instant::now(),
        cpu(),
    );
    tokio::time::sleep(duration - duration / 5).await;
    let (a1, d1, c1) = (
        accepted.load(Ordering::Relaxed),
        count.load(Ordering::Relaxed),
        cpu(),
    );
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a load task");
    }
    MaxRate {
        accepted_per_s: (a1 - a0) as f64 / secs,
        delivered_per_s: (d1 - d0) as f64 / secs,
        refused_requests: refused.load(Ordering::Relaxed),
        daemon_cores: (c1.0 - c0.0) / secs,
        generator_cores: (c1.1 - c0.1) / secs,
    }
}

/// Waits until `count` (outcomes seen) stops moving: the backlog drained.
pub async fn drain(count: &AtomicU64) {
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = count.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// One paced run: latencies (ms, sorted), achieved events/s, samples lost,
/// and where the slowest delivery's time went.
#[derive(Debug)]
pub struct Paced {
    pub latencies_ms: Vec<f64>,
    pub slowest: Option<Stages>,
    /// Each stage's median over every delivery of the run (each field on
    /// its own, so they need not add up to the median latency).
    pub median: Option<Stages>,
    pub achieved_per_s: f64,
    pub missing: usize,
    pub refused_requests: u64,
}

/// Sends `body` (`events` events) every `events / rate` seconds for
/// `duration`, open loop (each request in its own task), then waits for
/// every outcome.
pub async fn paced(
    api: &Api,
    body: Bytes,
    events: usize,
    seen: &Arc<Mutex<Seen>>,
    rate: f64,
    duration: Duration,
) -> Paced {
    seen.lock().await.keep = true;
    let period = Duration::from_secs_f64(events as f64 / rate);
    let start = tokio::time::Instant::now();
    let mut sends = Vec::new();
    let mut k = 0u32;
    while start.elapsed() < duration {
        tokio::time::sleep_until(start + period * k).await;
        k += 1;
        let (api, body) = (api.clone(), body.clone());
        sends.push(tokio::spawn(async move {
            let sent = (Instant::now(), wall_ms());
            let answer = api.publish(body, false).await;
            (sent, wall_ms(), answer)
        }));
    }
    let took = start.elapsed().as_secs_f64();
    let mut sent_at: Vec<(String, Sent)> = Vec::new();
    let mut refused = 0u64;
    for s in sends {
        let ((at, wall_ms), answered_ms, answer) = s.await.expect("a send task");
        let Some(answer) = answer else {
            refused += 1;
            continue;
        };
        for e in answer["events"].as_array().expect("accepted events") {
            let sent = Sent {
                at,
                wall_ms,
                answered_ms,
            };
            sent_at.push((e["id"].as_str().expect("an id").to_string(), sent));
        }
    }
    // Wait (bounded) for the last outcomes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = seen.lock().await;
        let missing = sent_at
            .iter()
            .filter(|(id, _)| !s.at.contains_key(id))
            .count();
        if missing as u64 <= s.lagged || Instant::now() > deadline {
            break;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = seen.lock().await;
    let mut slowest: Option<(f64, Stages)> = None;
    let mut all = Vec::new();
    let mut latencies_ms: Vec<f64> = sent_at
        .iter()
        .filter_map(|(id, sent)| {
            let done = s.at.get(id)?;
            let ms = done.at.saturating_duration_since(sent.at).as_secs_f64() * 1e3;
            let st = stages(id, sent, done);
            if slowest.is_none_or(|(max, _)| ms > max) {
                slowest = st.map(|st| (ms, st));
            }
            all.extend(st);
            Some(ms)
        })
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    Paced {
        slowest: slowest.map(|(_, st)| st),
        median: Stages::median(&all),
        missing: sent_at.len() - latencies_ms.len(),
        achieved_per_s: sent_at.len() as f64 / took,
        latencies_ms,
        refused_requests: refused,
    }
}

/// One accepted event's request: when it started (both clocks) and when
/// its 202 arrived (wall clock, ms).
struct Sent {
    at: Instant,
    wall_ms: f64,
    answered_ms: f64,
}

/// The stages of one delivery, from its id's ULID time and its notice.
fn stages(id: &str, sent: &Sent, done: &Arrival) -> Option<Stages> {
    let accepted = ulid::Ulid::from_string(id).ok()?.timestamp_ms() as f64;
    let ended = done.ended_ms as f64;
    let run = done.ran_us as f64 / 1e3;
    Some(Stages {
        to_accept: accepted - sent.wall_ms,
        to_answer: sent.answered_ms - accepted,
        to_start: ended - run - accepted,
        run,
        to_notice: done.wall_ms - ended,
    })
}
