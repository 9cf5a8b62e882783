//! The real daemon, release build, over HTTP:
//!
//! 1. **Cold start** — deploy → first delivery for the word-counter and for
//!    a ~10 MB component; a redeploy of the same bytes; a daemon restart
//!    with 100 handlers deployed (compiled-code cache hits) → ready.
//! 2. **Memory** — resident memory of the idle daemon with 0, 1, 100 and
//!    1000 handlers deployed.
//!
//! The end-to-end rates and latencies are the `pipeline` bench's.
//!
//! The daemon is `target/release/hookbox`, built by this bench with
//! `cargo build --release -p hookbox` (or `$HOOKBOX_BIN`).
//!
//! Run with `cargo bench -p hookbox-tests --bench daemon`.

#[path = "daemon/big.rs"]
mod big;
#[path = "daemon/process.rs"]
mod process;
#[path = "daemon/seed.rs"]
mod seed;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Report, Table, fmt_bytes, percentile, quick};

use process::{Api, Daemon};

/// The word-counter's manifest under another name, for `tenants` only
/// (empty: every tenant).
fn manifest(name: &str, tenants: &[&str]) -> Value {
    json!({
        "name": name,
        "subscription": {"events": ["message"], "tenants": tenants},
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut report = Report::new("daemon");
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
    let wasm = process::word_counter();
    let payload = support::zulip_message(support::PAYLOAD_SIZES[0]);

    cold_start(
        &rt,
        &bin,
        &tmp.path().join("cold"),
        &wasm,
        &payload,
        &mut report,
    );
    memory(
        &rt,
        &bin,
        &tmp.path().join("memory"),
        &wasm,
        &payload,
        &mut report,
    );
    report.publish();
}

/// Section 1 (part): deploy → first delivery.
fn cold_start(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    data: &Path,
    wasm: &[u8],
    payload: &Value,
    report: &mut Report,
) {
    let mut daemon = Daemon::start(bin, data, None);
    let api = Api::new(&daemon.url);
    let big_bytes = if quick() { 1 << 20 } else { 10 << 20 };
    let t = Instant::now();
    let big = big::component(big_bytes);
    let built = t.elapsed();
    let python = python_component();
    let mut cases: Vec<(&str, &str, &[u8])> = vec![
        ("word-counter (Rust)", "small", wasm),
        ("word-counter, same bytes again", "small", wasm),
        ("large data image", "big", &big),
        ("large data image, same bytes again", "big", &big),
    ];
    if let Some(py) = &python {
        cases.push(("Python handler (componentize-py)", "python", py));
        cases.push(("Python handler, same bytes again", "python", py));
    }
    let mut table = Table::new(&[
        "component",
        "size",
        "deploy",
        "first delivery",
        "deploy → first delivery",
        "next delivery",
    ]);
    rt.block_on(async {
        for (label, name, bytes) in &cases {
            let t = Instant::now();
            let answer = api.deploy(&manifest(name, &[name]), bytes).await;
            let deployed = t.elapsed();
            let first = api.deliver_one(name, payload).await;
            let next = api.deliver_one(name, payload).await;
            let cached = answer["compiled_from_cache"].as_bool().unwrap_or(false);
            table.row(vec![
                format!("{label}{}", if cached { " (cache hit)" } else { "" }),
                support::size_label(bytes.len()),
                ms(deployed),
                ms(first),
                ms(deployed + first),
                ms(next),
            ]);
        }
    });
    // Restart: every module must come from the compiled-code cache.
    daemon.restart();
    let api = Api::new(&daemon.url);
    // Code loads on each handler's first delivery after the restart.
    let (compiled, cached, after) = rt.block_on(async {
        let mut after = Vec::new();
        for (_, name, _) in cases.iter().step_by(2) {
            after.push(format!(
                "{name} {}",
                ms(api.deliver_one(name, payload).await)
            ));
        }
        let compiled = api.metric(hookbox::dispatch::metric_names::COMPILED).await;
        let cached = api
            .metric(hookbox::dispatch::metric_names::CACHE_LOADS)
            .await;
        (compiled, cached, after)
    });
    assert_eq!(compiled, 0.0, "a restart recompiled a cached component");
    report.table(
        "Cold start: deploy → first delivery (release daemon)",
        &table,
        &format!(
            "Deploy = `POST /v1/handlers` (multipart upload, validation, compilation or cache, \
             store) until its answer; a delivery = `POST /v1/events?wait=true` with one 1 KiB \
             message until the outcome returns (fresh instance each time; \"next\" is the \
             second one). The large data image is a core module with a {} pseudo-random data \
             segment that `handle` reads page by page (built in {:.1} s by the bench): \
             compilation follows code size, the image costs at upload (hash, store) and at \
             first touch. {}After a restart of this daemon ({} to ready): {compiled} \
             components compiled, {cached} loaded from the cache; first delivery per handler: \
             {}.",
            support::size_label(big_bytes as usize),
            built.as_secs_f64(),
            if python.is_some() {
                "The Python handler is `tests/other-toolchains/python` as built by \
                 `tests/other-toolchains/run.sh` (present in this run). "
            } else {
                "The Python handler row needs `tests/other-toolchains/run.sh` to have built \
                 `target/other-toolchains/out/python-handler.wasm` (absent in this run). "
            },
            ms(daemon.started_in),
            after.join(", ")
        ),
    );
}

/// The componentize-py handler `tests/other-toolchains/run.sh` builds, if
/// it has been built.
fn python_component() -> Option<Vec<u8>> {
    let path = support::workspace_root().join("target/other-toolchains/out/python-handler.wasm");
    std::fs::read(path).ok()
}

/// Writes handlers h`from`… h`from + n - 1` into a stopped daemon's store
/// ([`seed::handlers`]).
fn seed_handlers(data: &Path, wasm: &[u8], from: usize, n: usize) {
    seed::handlers(
        data,
        wasm,
        (from..from + n).map(|i| manifest(&format!("h{i}"), &["idle"])),
        n,
    );
}

/// RSS after the daemon has idled for a moment.
fn idle_rss(daemon: &Daemon) -> u64 {
    std::thread::sleep(Duration::from_millis(if quick() { 200 } else { 1500 }));
    daemon.rss()
}

/// Sections 1 (restart) and 2: idle memory by handler count.
fn memory(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    data: &Path,
    wasm: &[u8],
    payload: &Value,
    report: &mut Report,
) {
    let (api_deploys, seeded) = if quick() { (10, 90) } else { (100, 900) };
    let mut daemon = Daemon::start(bin, data, None);
    let mut mem = Table::new(&[
        "handlers deployed",
        "idle RSS",
        "per handler",
        "restart → ready",
    ]);
    let empty = idle_rss(&daemon);
    mem.row(vec![
        "0".into(),
        fmt_bytes(empty as f64),
        "–".into(),
        ms(daemon.started_in),
    ]);

    // Handlers over the API, each distinct bytes: each one compiles.
    let api = Api::new(&daemon.url);
    let mut deploy_times = Vec::new();
    rt.block_on(async {
        for i in 0..api_deploys {
            let bytes = seed::variant(wasm, &format!("h{i}"));
            let t = Instant::now();
            api.deploy(&manifest(&format!("h{i}"), &["idle"]), &bytes)
                .await;
            deploy_times.push(t.elapsed().as_secs_f64() * 1e3);
            if i == 0 {
                api.deliver_one("idle", payload).await;
            }
        }
    });
    let mut restart_rows = Vec::new();
    for add in [0, seeded] {
        daemon.stop();
        if add > 0 {
            seed_handlers(data, wasm, api_deploys, add);
        }
        daemon.resume();
        let api = Api::new(&daemon.url);
        let (compiled, cached) = rt.block_on(async {
            (
                api.metric(hookbox::dispatch::metric_names::COMPILED).await,
                api.metric(hookbox::dispatch::metric_names::CACHE_LOADS)
                    .await,
            )
        });
        let rss = idle_rss(&daemon);
        let loading = daemon
            .log_field("Dispatcher loaded", "took_ms")
            .unwrap_or_else(|| "?".into());
        restart_rows.push((
            api_deploys + add,
            rss,
            daemon.started_in,
            loading,
            compiled,
            cached,
        ));
        rt.block_on(api.deliver_one("idle", payload));
    }
    drop(daemon);

    // One handler: a daemon of its own, restarted once so that it is clean.
    let one_dir = data.with_file_name("memory-one");
    let mut one = Daemon::start(bin, &one_dir, None);
    rt.block_on(async {
        let api = Api::new(&one.url);
        api.deploy(&manifest("h0", &["idle"]), wasm).await;
    });
    one.restart();
    let rss_one = idle_rss(&one);
    mem.row(vec![
        "1".into(),
        fmt_bytes(rss_one as f64),
        fmt_bytes(rss_one.saturating_sub(empty) as f64),
        ms(one.started_in),
    ]);
    drop(one);
    let mut cache_note = String::new();
    for (count, rss, ready, loading, compiled, cached) in restart_rows {
        mem.row(vec![
            count.to_string(),
            fmt_bytes(rss as f64),
            fmt_bytes(rss.saturating_sub(empty) as f64 / count as f64),
            format!("{} (loading handlers: {loading} ms)", ms(ready)),
        ]);
        cache_note.push_str(&format!(
            " With {count}: {compiled} compiled, {cached} loaded from the cache."
        ));
        assert_eq!(compiled, 0.0, "a restart recompiled handlers");
    }
    deploy_times.sort_by(f64::total_cmp);
    report.table(
        "Idle memory and restart time by handlers deployed",
        &mem,
        &format!(
            "Each handler has its own component bytes (the word-counter with a distinct \
             custom section), so each is its own compiled module in memory. The first \
             {api_deploys} were deployed over the API: deploy (compile + store) took \
             p50 {:.0} ms, p99 {:.0} ms each. The other {seeded} were written into the \
             stopped daemon's store with their compiled code seeded from one compilation \
             (the same bytes the daemon would have cached). RSS is read from /proc after \
             the restarted daemon idled; restart → ready is process spawn until it \
             listens (handlers loaded, queue recovered).{cache_note}",
            percentile(&deploy_times, 50.0),
            percentile(&deploy_times, 99.0),
        ),
    );
}
