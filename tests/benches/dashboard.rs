//! The dashboard under load, in the browser test's headless Chromium
//! (`tests/browser/dashboard.py`, its `bench` mode): the release daemon with
//! 1000 handlers deployed, the handlers page timed from the click to a full
//! table, then 2000 events/s (one delivery each) for 10 s while the live
//! view is open, reporting whether it kept up.
//!
//! Needs what the browser test needs (Chromium, Playwright for Python).
//! `HOOKBOX_BENCH_QUICK=1` deploys 100 handlers and sends 500 events/s for
//! 3 s, and leaves BENCHMARKS.md alone.

// The daemon bench's process harness; this target uses part of it.
#[allow(dead_code)]
#[path = "daemon/process.rs"]
mod process;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hookbox_tests::daemon::{Body, Http};
use reqwest::Method;
use serde_json::{Value, json};

use support::{Report, Table, quick};

/// The handler every deployed copy runs: a real Rust example handler.
const HANDLER: &str = "message-logger";

fn main() {
    let (handlers, rate, seconds) = if quick() {
        (100, 500, 3)
    } else {
        (1000, 2000, 10)
    };
    let mut report = Report::new("dashboard");
    let bin = process::release_binary();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut daemon = process::Daemon::start(&bin, &dir.path().join("data"), None);
    let http = Http::new();

    let (_, component) = hookbox_tests::daemon::example(HANDLER);
    let started = Instant::now();
    let types: Vec<String> = (0..handlers).map(|i| format!("t{i:04}")).collect();
    for (i, t) in types.iter().enumerate() {
        let manifest = json!({
            "name": format!("h{i:04}"),
            "description": "message-logger, one of many",
            "subscription": {"events": [t]},
        });
        http.send(
            &daemon.url,
            Method::POST,
            "/v1/handlers",
            Some(process::TOKEN),
            Body::Multipart(vec![
                ("manifest".into(), manifest.to_string().into_bytes()),
                ("component".into(), component.clone()),
            ]),
        )
        .expect(201);
    }
    let deploy_s = started.elapsed().as_secs_f64();
    println!("deployed {handlers} handlers in {deploy_s:.1} s");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    let setup = json!({
        "url": daemon.url,
        "admin_token": process::TOKEN,
        "shots": shots,
        "bench": {
            "handlers": handlers,
            "event_types": types,
            "payload": support::zulip_message(support::PAYLOAD_SIZES[0]),
            "events_per_s": rate,
            "seconds": seconds,
        },
    });
    let setup_path = dir.path().join("setup.json");
    std::fs::write(&setup_path, setup.to_string()).expect("writing the setup");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/dashboard.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(&script)
        .arg(&setup_path)
        .output()
        .expect("running the browser script (needs python3 with playwright==1.65.2)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser script failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    let result: Value = serde_json::from_str(line).expect("the RESULT line is JSON");
    let b = &result["bench"];
    daemon.stop();

    let ms_list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{} ms", x))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut t = Table::new(&["measure", "value"]);
    t.row(vec![
        format!("handlers page, click to {handlers} rows (3 runs)"),
        ms_list(&b["handlers_page_ms"]),
    ]);
    t.row(vec![
        "of which building the table (DOM)".into(),
        ms_list(&b["handlers_render_ms"]),
    ]);
    let live = &b["live"];
    let sent = b["sent"].as_u64().unwrap_or(0);
    let send_s = b["send_s"].as_f64().unwrap_or(0.0);
    t.row(vec![
        "events sent (one delivery each)".into(),
        format!(
            "{sent} in {send_s} s ({:.0}/s offered)",
            sent as f64 / send_s.max(0.001)
        ),
    ]);
    t.row(vec![
        "all outcomes on the live page after".into(),
        format!("{} s", b["all_received_s"]),
    ]);
    t.row(vec![
        "notices received by the page / missed by the stream".into(),
        format!("{} / {}", live["received"], live["lagged"]),
    ]);
    t.row(vec![
        "delivery end → row on screen, p99 / max".into(),
        format!("{} ms / {} ms", live["lagP99"], live["lagMax"]),
    ]);
    report.table(
        &format!("Dashboard: {handlers} handlers, {rate} events/s offered for {seconds} s"),
        &t,
        &format!(
            "Release daemon (default config, 2 workers), headless Chromium (Debian's, via \
             Playwright) and the Python load generator on the same 2 cores. {handlers} copies of \
             `{HANDLER}` deployed in {deploy_s:.0} s, each subscribed to its own event type. The \
             handlers page is timed in the browser from the navigation click to the last row \
             (it fetches `GET /v1/handlers?stats=true` and builds the table); the live view \
             renders the newest 100 rows at most 10 times a second, and the lag is measured in \
             the page from each shown delivery's `time_ms` to the render that showed it."
        ),
    );
    report.publish();
}
