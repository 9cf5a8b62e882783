//! Cluster mode (issue 17): does work spread over nodes, and what does the
//! JetStream inbox cost a node?
//!
//! 1. **Latency-bound scaling** — a handler that waits ~10 ms per delivery
//!    (the `sleep` test guest, no CPU while it waits), 2 workers per node,
//!    on 1, 2 and 3 `hookbox serve` nodes sharing one nats-server: events
//!    published round-robin to the nodes, delivered/s until the last one
//!    is logged. One node can deliver at most 2 / 10 ms = 200/s.
//! 2. **Deploy propagation** — a deploy on node A until node B's API shows
//!    the new active version.
//! 3. **CPU-bound, one node** — the same guest with 0 ms, one node, in
//!    cluster mode and in single-node sled mode, side by side.
//!
//! Every node is a separate process on this machine (so the nodes share
//! its cores). The daemon binary is the one next to the bench executable
//! (`cargo bench` → `target/release/hookbox`; `cargo test --bench
//! cluster` → the dev build) or `$HOOKBOX_BIN`; the report names which.
//! Run with `cargo bench -p hookbox-tests --bench cluster`.

mod support;

use std::time::{Duration, Instant};

use hookbox_tests::daemon::{Daemon, hookbox_bin};
use hookbox_tests::guests;
use hookbox_tests::nats_server::NatsServer;
use hookbox_tests::read;
use serde_json::{Value, json};
use support::{Report, Table, fmt_rate, quick};

const NODE: &str = "[dispatch]\nworkers = 2\n";

fn sleeper(ms: u64) -> String {
    json!({
        "name": "sleepy",
        "subscription": {"events": ["job"]},
        "config": ms,
        "limits": {"timeout_ms": 20000},
        "delivery": {"max_attempts": 1},
    })
    .to_string()
}

/// Deliveries of `sleepy` the nodes ran: the sum of each node's own
/// count in its metrics (`/v1/stats` sums every node's counters in
/// cluster mode, a second behind).
fn processed(nodes: &[Daemon]) -> u64 {
    let series = "hookbox_deliveries_total{handler=\"sleepy\",outcome=\"ok\"}";
    nodes
        .iter()
        .map(|d| d.metric(series).unwrap_or(0.0) as u64)
        .sum()
}

/// Waits until every node routes `job` events to `sleepy`; how many
/// routed probe events that took (they are delivered too).
fn wait_routed(nodes: &[Daemon]) -> u64 {
    let mut probes = 0;
    for d in nodes {
        d.wait_until("the node to route to the handler", || {
            let r = d.publish(&json!({"type": "job"}), false).expect(202);
            let routed = r.json["events"][0]["handlers"] == json!(["sleepy"]);
            routed.then_some(())
        });
        probes += 1;
    }
    probes
}

/// Publishes `events` `job` events round-robin to `nodes` in batches of
/// 100 and waits until all are delivered; delivered/s from the first
/// publish to the last delivery.
fn run(nodes: &[Daemon], events: usize) -> f64 {
    let before = processed(nodes);
    let start = Instant::now();
    for (k, from) in (0..events).step_by(100).enumerate() {
        let batch: Vec<Value> = (from..events.min(from + 100))
            .map(|i| json!({"type": "job", "payload": {"i": i}}))
            .collect();
        nodes[k % nodes.len()]
            .publish(&json!(batch), false)
            .expect(202);
    }
    let want = before + events as u64;
    nodes[0].wait_until("every event to be delivered", || {
        (processed(nodes) >= want).then_some(())
    });
    events as f64 / start.elapsed().as_secs_f64()
}

/// `n` nodes on one fresh nats-server with `sleepy` deployed (waiting `ms`).
fn cluster(n: usize, ms: u64) -> (NatsServer, Vec<Daemon>) {
    let nats = NatsServer::start();
    let config = format!("{NODE}{}", nats.cluster_config("30s"));
    let nodes: Vec<Daemon> = (0..n).map(|_| Daemon::start_with(&config)).collect();
    nodes[0]
        .deploy(&sleeper(ms), &read(guests::SLEEP))
        .expect(201);
    let probes = wait_routed(&nodes);
    nodes[0].wait_until("the probe events to be delivered", || {
        (processed(&nodes) >= probes).then_some(())
    });
    (nats, nodes)
}

fn main() {
    let mut report = Report::new("cluster");
    let q = quick();
    report.note(&format!(
        "Daemon binary: `{}`; each node `[dispatch] workers = 2`; one nats-server {} \
         (JetStream, `sync_interval: always`) on loopback.",
        hookbox_bin()
            .strip_prefix(support::workspace_root())
            .unwrap_or(&hookbox_bin())
            .display(),
        String::from_utf8_lossy(
            &std::process::Command::new(
                std::env::var_os("NATS_SERVER").unwrap_or_else(|| "nats-server".into())
            )
            .arg("--version")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default()
        )
        .trim()
        .trim_start_matches("nats-server: ")
    ));

    let events = if q { 200 } else { 1200 };
    let mut table = Table::new(&["nodes", "events", "delivered/s", "vs 1 node"]);
    let mut one = None;
    for n in 1..=3 {
        let (_nats, nodes) = cluster(n, 10);
        let rate = run(&nodes, events);
        let base = *one.get_or_insert(rate);
        table.row(vec![
            n.to_string(),
            events.to_string(),
            fmt_rate(rate),
            format!("{:.2}x", rate / base),
        ]);
        drop(nodes);
        std::thread::sleep(Duration::from_millis(200));
    }
    report.table(
        "Latency-bound handler (~10 ms per delivery), 1–3 nodes",
        &table,
        "Targets (issue 17): 2 nodes ≥ 1.8x, 3 nodes ≥ 2.6x one node. One node's ceiling is \
         2 workers / 10 ms = 200/s.",
    );

    // A deploy on one node, until another routes events to it.
    {
        let nats = NatsServer::start();
        let config = format!("{NODE}{}", nats.cluster_config("30s"));
        let (a, b) = (Daemon::start_with(&config), Daemon::start_with(&config));
        let mut samples = Vec::new();
        for i in 0..if q { 3 } else { 10 } {
            let t = Instant::now();
            a.deploy(&sleeper(i), &read(guests::SLEEP)).expect(201);
            let deployed = t.elapsed();
            let want = json!(i + 1);
            b.wait_until("node b to apply the deploy", || {
                let h = b.get("/v1/handlers/sleepy");
                (h.status == 200 && h.json["handler"]["active_version"] == want).then_some(())
            });
            samples.push((deployed, t.elapsed()));
        }
        let mut table = Table::new(&["deploy", "answered on A", "active on B"]);
        for (i, (deployed, seen)) in samples.iter().enumerate() {
            table.row(vec![
                format!("version {}", i + 1),
                format!("{:.0} ms", deployed.as_secs_f64() * 1e3),
                format!("{:.0} ms", seen.as_secs_f64() * 1e3),
            ]);
        }
        report.table(
            "A deploy on node A, active on node B",
            &table,
            "From the start of the deploy request on A (upload, compile, compare-and-set in the \
             registry bucket) until B's `GET /v1/handlers/sleepy` shows the new active version \
             (B polled every 25 ms, so up to 25 ms late). Issue 17 asks for under 1 s.",
        );
    }

    let events = if q { 300 } else { 3000 };
    let mut table = Table::new(&["mode", "events", "delivered/s"]);
    {
        let single = Daemon::start_with(NODE);
        single.deploy(&sleeper(0), &read(guests::SLEEP)).expect(201);
        let rate = run(std::slice::from_ref(&single), events);
        table.row(vec![
            "single node, sled inbox".into(),
            events.to_string(),
            fmt_rate(rate),
        ]);
    }
    {
        let (_nats, nodes) = cluster(1, 0);
        let rate = run(&nodes, events);
        table.row(vec![
            "1 cluster node, JetStream inbox".into(),
            events.to_string(),
            fmt_rate(rate),
        ]);
    }
    report.table(
        "CPU-bound handler (0 ms), one node: cluster mode vs single-node mode",
        &table,
        "Published in batches of 100 without waiting; the rate runs from the first publish to \
         the last delivery in the node's metrics.",
    );
    report.publish();
}
