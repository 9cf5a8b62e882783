//! Many handlers on one release daemon (issue 20): code is loaded on first
//! delivery and evicted past the resident budget.
//!
//! 1. **Idle** — 10 000 deployed handlers (1 000 in quick mode), each the
//!    word-counter with its own custom section, so each its own content
//!    hash and compiled module: restart → ready and idle RSS; then the
//!    same daemon after one delivery to each of 1 000 of them (every one of
//!    those loaded, as eager loading kept every handler), for comparison.
//! 2. **Cold and warm deliveries** — `POST /v1/events?wait=true` to a
//!    handler whose code is not loaded (cache load, link, instantiate,
//!    call) and again to the same handler (warm), plus the daemon's own
//!    load timing (`hookbox_module_load_seconds`).
//! 3. **Mixed load** — 10 hot handlers at full rate, alone and next to
//!    1 000 handlers each receiving 1 event/s, under a resident budget that
//!    holds every busy handler and then under one smaller than the handlers
//!    that receive events: hot and background deliveries/s, loads,
//!    evictions, peak RSS; and a control with the same background events
//!    all to one handler.
//!
//! The daemon is `target/release/hookbox` (see `daemon/process.rs`).
//! Run with `cargo bench -p hookbox-tests --bench many_handlers`.

#[path = "daemon/load.rs"]
#[allow(dead_code)]
mod load;
#[path = "daemon/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "daemon/seed.rs"]
mod seed;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Report, Table, fmt_bytes, percentile, quick};

use process::{Api, Daemon};

/// Hot handlers in the mixed run; each takes every event of tenant `hot`.
const HOT: usize = 10;
/// Handlers receiving 1 event/s each in the mixed run.
const BACKGROUND: usize = 1_000;
/// The resident budget of the mixed and cold runs, in modules: fewer than
/// the handlers receiving events, so they keep evicting each other.
const BUDGET_MODULES: usize = 200;

/// Handler `name` for the message events of `tenant`.
fn manifest(name: &str, tenant: &str) -> Value {
    json!({"name": name, "subscription": {"events": ["message"], "tenants": [tenant]}})
}

/// A daemon config with the resident budget.
fn config(dir: &Path, modules: usize) -> std::path::PathBuf {
    let path = dir.join("hookbox.toml");
    std::fs::create_dir_all(dir).expect("the bench directory");
    std::fs::write(
        &path,
        format!("[runtime]\nresident_handlers = {modules}\nresident_mb = 1024\n"),
    )
    .expect("the config file");
    path
}

fn idle_rss(daemon: &Daemon) -> u64 {
    std::thread::sleep(Duration::from_millis(if quick() { 300 } else { 1500 }));
    daemon.rss()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn stats(api: &Api) -> Value {
    api.client
        .get(format!("{}/v1/stats", api.url))
        .bearer_auth(process::TOKEN)
        .send()
        .await
        .expect("stats request")
        .json()
        .await
        .expect("stats answer")
}

fn main() {
    let mut report = Report::new("many_handlers");
    let bin = process::release_binary();
    let tmp = tempfile::Builder::new()
        .prefix("hookbox-bench-many-")
        .tempdir()
        .expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the load generator");
    let wasm = process::word_counter();
    let payload = support::zulip_message(support::PAYLOAD_SIZES[0]);
    let total = if quick() { 1_000 } else { 10_000 };
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), BUDGET_MODULES);

    // Handlers h0… take tenant t<i>; the first HOT are the hot ones (tenant
    // `hot`), the next BACKGROUND the 1-event/s ones.
    let handlers: Vec<(String, String)> = (0..total)
        .map(|i| {
            let tenant = if i < HOT {
                "hot".to_string()
            } else {
                format!("t{i}")
            };
            (format!("h{i}"), tenant)
        })
        .collect();
    // Compiled code for the handlers this bench delivers to (hot,
    // background, cold samples); writing 800 KB of code for each of 10 000
    // would put 8 GB on the shared disk, and start-up reads none of it.
    let samples = if quick() { 100 } else { 500 };
    let with_code = (HOT + BACKGROUND).max(HOT + samples).min(total);
    let t = Instant::now();
    seed::handlers(
        &data,
        &wasm,
        handlers.iter().map(|(name, tenant)| manifest(name, tenant)),
        with_code,
    );
    let seeded_in = t.elapsed();
    let disk = support::dir_bytes(&data);

    // 1. Idle.
    // The first start on the seeded store is a restart with 10 000
    // handlers deployed.
    let mut daemon = Daemon::start(&bin, &data, Some(&cfg));
    let api = Api::new(&daemon.url);
    let idle = idle_rss(&daemon);
    let ready = daemon.started_in;
    let loading = daemon
        .log_field("Dispatcher loaded", "took_ms")
        .unwrap_or_else(|| "?".into());
    let before = rt.block_on(stats(&api));
    assert_eq!(before["resident"]["modules"], 0, "{}", before["resident"]);
    assert_eq!(
        before["resident"]["deployed"], total,
        "{}",
        before["resident"]
    );

    // 2. Cold then warm deliveries, one handler after another.
    let (cold, warm) = rt.block_on(async {
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for i in HOT..HOT + samples {
            let tenant = format!("t{i}");
            cold.push(api.deliver_one(&tenant, &payload).await.as_secs_f64() * 1e3);
            warm.push(api.deliver_one(&tenant, &payload).await.as_secs_f64() * 1e3);
        }
        (cold, warm)
    });
    let load_sum = rt.block_on(api.metric("hookbox_module_load_seconds_sum"));
    let load_count = rt.block_on(api.metric("hookbox_module_load_seconds_count"));
    let load_le_1ms = rt.block_on(bucket(&api, "hookbox_module_load_seconds_bucket", "0.001"));
    let load_le_3ms = rt.block_on(bucket(&api, "hookbox_module_load_seconds_bucket", "0.003"));
    let after_cold = daemon.rss();
    let cold_stats = rt.block_on(stats(&api));

    // "Everything loaded" for comparison: a daemon allowed to keep 1 000
    // modules, after one delivery to each of 1 000 handlers.
    daemon.stop();
    let all_cfg = config(&tmp.path().join("all"), 1_000);
    let mut all = Daemon::start(&bin, &data, Some(&all_cfg));
    let all_api = Api::new(&all.url);
    let n_all = 1_000.min(total - HOT);
    let t = Instant::now();
    rt.block_on(async {
        for i in HOT..HOT + n_all {
            all_api.deliver_one(&format!("t{i}"), &payload).await;
        }
    });
    let load_all = t.elapsed();
    let all_rss = idle_rss(&all);
    let all_stats = rt.block_on(stats(&all_api));
    all.stop();
    drop(all);

    let mut table = Table::new(&["state", "RSS", "per handler", "restart → ready"]);
    table.row(vec![
        format!("{total} deployed, none loaded (after restart)"),
        fmt_bytes(idle as f64),
        fmt_bytes(idle as f64 / total as f64),
        format!("{} (loading the routing table: {loading} ms)", ms(ready)),
    ]);
    table.row(vec![
        format!(
            "{total} deployed, {} loaded after {samples} cold deliveries (budget {BUDGET_MODULES})",
            cold_stats["resident"]["modules"]
        ),
        fmt_bytes(after_cold as f64),
        "–".into(),
        "–".into(),
    ]);
    table.row(vec![
        format!(
            "{total} deployed, {} loaded (budget 1 000; as eager loading kept them)",
            all_stats["resident"]["modules"]
        ),
        fmt_bytes(all_rss as f64),
        fmt_bytes(all_rss.saturating_sub(idle) as f64 / n_all as f64),
        format!(
            "– (first delivery to each: {:.1} s)",
            load_all.as_secs_f64()
        ),
    ]);
    report.table(
        "Idle memory and restart with many handlers (release daemon)",
        &table,
        &format!(
            "Each handler is the word-counter with its own custom section: its own content \
             hash, its own compiled module. They were written into the stopped daemon's store \
             ({:.0} s for {total}; the data directory is {}), the compiled code of the \
             {with_code} this bench delivers to seeded from one compilation (start-up reads \
             no compiled code, so the others' would change nothing here but 800 KB of disk \
             each). RSS from /proc after the daemon idled; restart → ready is \
             spawn until it listens. The per-handler figure of the last row is its RSS above \
             the idle daemon's, per loaded handler. Shared machine: RSS is exact, times are \
             noisy (other builds ran on the 2 cores).",
            seeded_in.as_secs_f64(),
            fmt_bytes(disk as f64),
        ),
    );

    let mut sorted_cold = cold.clone();
    sorted_cold.sort_by(f64::total_cmp);
    let mut sorted_warm = warm.clone();
    sorted_warm.sort_by(f64::total_cmp);
    let mut table = Table::new(&["delivery", "p50", "p90", "p99", "max"]);
    for (label, v) in [
        ("cold (code not loaded)", &sorted_cold),
        ("warm (same handler again)", &sorted_warm),
    ] {
        table.row(vec![
            label.into(),
            format!("{:.2} ms", percentile(v, 50.0)),
            format!("{:.2} ms", percentile(v, 90.0)),
            format!("{:.2} ms", percentile(v, 99.0)),
            format!("{:.2} ms", v.last().copied().unwrap_or(0.0)),
        ]);
    }
    report.table(
        "First delivery to a cold handler vs a warm one",
        &table,
        &format!(
            "{samples} handlers, one after another: `POST /v1/events?wait=true` with one 1 KiB \
             message until its outcome returns (accept with fsync, route, queue, load, fresh \
             instance, call, record), then the same again. The daemon's own load timing \
             (`hookbox_module_load_seconds`: map the cached file, link): {:.0} loads, mean \
             {:.2} ms, {:.0}% within 1 ms, {:.0}% within 3 ms. Shared machine: latencies are \
             noisy.",
            load_count,
            if load_count > 0.0 {
                load_sum / load_count * 1e3
            } else {
                0.0
            },
            100.0 * load_le_1ms / load_count.max(1.0),
            100.0 * load_le_3ms / load_count.max(1.0),
        ),
    );

    // 3. Mixed load: first under a budget that holds every handler receiving
    // events (the target's case: cost follows the busy handlers), then under
    // one that does not, so they keep evicting each other.
    let secs = if quick() { 3 } else { 10 };
    let fits = HOT + BACKGROUND + 100;
    let fits_cfg = config(&tmp.path().join("fits"), fits);
    let mut roomy = Daemon::start(&bin, &data, Some(&fits_cfg));
    let roomy_api = Api::new(&roomy.url);
    let alone = rt.block_on(mixed(&roomy_api, &roomy, &payload, Background::None, secs));
    let beside = rt.block_on(mixed(&roomy_api, &roomy, &payload, Background::Many, secs));
    let control = rt.block_on(mixed(&roomy_api, &roomy, &payload, Background::One, secs));
    roomy.stop();
    drop(roomy);
    daemon.resume();
    let api = Api::new(&daemon.url);
    let thrash = rt.block_on(mixed(&api, &daemon, &payload, Background::Many, secs));
    let mut table = Table::new(&[
        "run",
        "resident budget",
        "hot deliveries/s",
        "background deliveries/s",
        "loads/s",
        "evictions/s",
        "peak RSS",
    ]);
    for (label, budget, run) in [
        ("10 hot handlers only", fits, &alone),
        ("10 hot + 1 000 at 1 event/s", fits, &beside),
        ("10 hot + 1 at 1 000 events/s (control)", fits, &control),
        ("10 hot + 1 000 at 1 event/s", BUDGET_MODULES, &thrash),
    ] {
        table.row(vec![
            label.into(),
            format!("{budget} modules, 1 GiB"),
            format!("{:.0}", run.hot),
            format!("{:.0}", run.background),
            format!("{:.0}", run.loads),
            format!("{:.0}", run.evictions),
            fmt_bytes(run.peak_rss as f64),
        ]);
    }
    report.table(
        "Hot handlers next to many slow ones",
        &table,
        &format!(
            "The same store ({total} deployed), {secs} s per run after 1 s of warm-up. Hot: 4 \
             clients posting batches of 100 events of tenant `hot` back to back (each event \
             goes to all {HOT} hot handlers), so the hot path runs saturated. Background: one \
             event to each of {BACKGROUND} other handlers per second (a batch of 100 every \
             100 ms from one producer; a batch refused with 429 is sent again after 10 ms \
             until accepted, the producer falling behind meanwhile). The control sends the \
             same background events to one handler, so what it costs the hot handlers is the \
             background's events themselves and not their {BACKGROUND} handlers: next to it \
             the hot handlers run at {:.0}% of their rate alone. Rates from `hookbox_deliveries_total` and \
             `hookbox_module_*` over the run; RSS sampled every 200 ms. With a budget that \
             holds the {} busy handlers, hot throughput next to the background is {:.0}% of \
             it alone; with a budget of {BUDGET_MODULES} modules (every background handler \
             evicted before its next event) {:.0}%. Shared machine: rates are noisy.",
            100.0 * control.hot / alone.hot.max(1.0),
            HOT + BACKGROUND,
            100.0 * beside.hot / alone.hot.max(1.0),
            100.0 * thrash.hot / alone.hot.max(1.0),
        ),
    );
    daemon.stop();
    report.publish();
}

/// The value of one histogram bucket in `GET /metrics`.
async fn bucket(api: &Api, name: &str, le: &str) -> f64 {
    let text = api.metrics_text().await;
    let series = format!("{name}{{le=\"{le}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

/// Ok deliveries so far: (hot handlers, the others).
async fn delivered(api: &Api) -> (f64, f64) {
    let text = api.metrics_text().await;
    let (mut hot, mut other) = (0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("hookbox_deliveries_total{handler=\"h") else {
            continue;
        };
        let Some((index, tail)) = rest.split_once('"') else {
            continue;
        };
        if !tail.contains("outcome=\"ok\"") {
            continue;
        }
        let n: f64 = tail
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        match index.parse::<usize>() {
            Ok(i) if i < HOT => hot += n,
            Ok(_) => other += n,
            Err(_) => {}
        }
    }
    (hot, other)
}

/// What one mixed-load run measured, per second over the run.
struct Mixed {
    hot: f64,
    background: f64,
    loads: f64,
    evictions: f64,
    peak_rss: u64,
}

/// Where a mixed-load run sends its background events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Background {
    /// Nowhere: the hot handlers alone.
    None,
    /// One event per second to each of the [`BACKGROUND`] handlers.
    Many,
    /// As many events, all to the first background handler (the control).
    One,
}

/// One mixed-load run on `daemon`: hot publishers back to back, and the
/// `background` events beside them.
async fn mixed(
    api: &Api,
    daemon: &Daemon,
    payload: &Value,
    background: Background,
    secs: u64,
) -> Mixed {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let hot_body = load::batch_body(payload, "hot");
    for _ in 0..4 {
        let (api, body, stop) = (api.clone(), hot_body.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if api.publish(body.clone(), false).await.is_none() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    if background != Background::None {
        // One producer, in order: a batch every 100 ms, and a batch refused
        // with 429 is sent again after 10 ms until accepted, so the
        // producer falls behind rather than piling up resends.
        let (api, stop, payload) = (api.clone(), stop.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(start + Duration::from_millis(100) * k).await;
                let first = HOT + (k as usize % (BACKGROUND / 100)) * 100;
                k += 1;
                let events: Vec<Value> = (first..first + 100)
                    .map(|i| if background == Background::One { HOT } else { i })
                    .map(|i| json!({"type": "message", "tenant": format!("t{i}"), "payload": payload}))
                    .collect();
                let body = bytes::Bytes::from(serde_json::to_vec(&events).expect("json"));
                while api.publish(body.clone(), false).await.is_none()
                    && !stop.load(Ordering::Relaxed)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    // Skip the first second (queues fill), then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (h0, b0) = delivered(api).await;
    let e0 = api.metric("hookbox_module_evictions_total").await;
    let l0 = api.metric("hookbox_module_load_seconds_count").await;
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(daemon.rss());
    }
    let (h1, b1) = delivered(api).await;
    let e1 = api.metric("hookbox_module_evictions_total").await;
    let l1 = api.metric("hookbox_module_load_seconds_count").await;
    let took = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let the queue drain before the next run.
    let mut last = (-1.0, -1.0);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = delivered(api).await;
        if now == last {
            break;
        }
        last = now;
    }
    Mixed {
        hot: (h1 - h0) / took,
        background: (b1 - b0) / took,
        loads: (l1 - l0) / took,
        evictions: (e1 - e0) / took,
        peak_rss: peak,
    }
}
