//! Cluster mode end to end: separate `hookbox serve` processes joined by a
//! real `nats-server` with JetStream (started by the test on free loopback
//! ports; a missing server fails the test with an install hint).
//!
//! Deliveries are observed through each node's delivery log (`GET
//! /v1/logs`): a node logs the deliveries it ran, durably before it acks
//! them to JetStream, so the union of the nodes' logs is what was delivered.

use std::collections::{BTreeMap, BTreeSet};

use hookbox_tests::daemon::Daemon;
use hookbox_tests::guests;
use hookbox_tests::nats_server::NatsServer;
use hookbox_tests::read;
use serde_json::{Value, json};

/// Each node runs deliveries on two workers (CI has two cores).
const NODE: &str = "[dispatch]\nworkers = 2\n";

/// A handler that sleeps `sleep_ms` per delivery (a latency-bound handler:
/// the work spreads over nodes even on one machine) and never retries.
fn sleeper(sleep_ms: u64) -> String {
    json!({
        "name": "sleepy",
        "subscription": {"events": ["job"]},
        "config": sleep_ms,
        "limits": {"timeout_ms": 20000},
        "delivery": {"max_attempts": 1},
    })
    .to_string()
}

fn node(nats: &NatsServer, ack_wait: &str) -> Daemon {
    Daemon::start_with(&format!("{NODE}{}", nats.cluster_config(ack_wait)))
}

/// Publishes `n` `job` events to `d` in batches of 50; their ids.
fn publish(d: &Daemon, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(50) {
        let batch: Vec<Value> = (start..n.min(start + 50))
            .map(|i| json!({"type": "job", "payload": {"i": i}}))
            .collect();
        let r = d.publish(&json!(batch), false).expect(202);
        for e in r.json["events"].as_array().expect("events") {
            assert_eq!(e["handlers"], json!(["sleepy"]), "{}", r.json);
            ids.push(e["id"].as_str().expect("an id").to_string());
        }
    }
    ids
}

/// Event id → how many `ok` deliveries node `d` logged for it.
fn ran(d: &Daemon) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/logs?handler=sleepy&limit=1000".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = d.get(&path).expect(200);
        for e in r.json["entries"].as_array().expect("entries") {
            assert_eq!(e["outcome"], "ok", "{e}");
            *out.entry(e["event_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn merged(nodes: &[&Daemon]) -> BTreeMap<String, usize> {
    let mut all = BTreeMap::new();
    for d in nodes {
        for (id, n) in ran(d) {
            *all.entry(id).or_default() += n;
        }
    }
    all
}

/// Two nodes, one stream: events published to either node are each
/// delivered exactly once, and both nodes take part.
#[test]
fn two_nodes_deliver_each_event_exactly_once() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    let b = node(&nats, "30s");
    for d in [&a, &b] {
        d.deploy(&sleeper(10), &read(guests::SLEEP)).expect(201);
    }
    let mut ids = publish(&a, 200);
    ids.extend(publish(&b, 200));
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(want.len(), 400);
    a.wait_until("every event to be delivered by one of the nodes", || {
        (merged(&[&a, &b]).len() == want.len()).then_some(())
    });
    let (on_a, on_b) = (ran(&a), ran(&b));
    eprintln!("two nodes: a ran {}, b ran {}", on_a.len(), on_b.len());
    let all = merged(&[&a, &b]);
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), want);
    let twice: Vec<_> = all.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both nodes should run deliveries: {} on a, {} on b",
        on_a.len(),
        on_b.len()
    );
}

/// `kill -9` of a node holding deliveries: every acknowledged event is
/// still delivered (at-least-once); the dead node's held deliveries reach
/// the other node after `ack_wait`.
#[test]
fn a_killed_node_s_deliveries_reach_the_other_node() {
    let nats = NatsServer::start();
    let mut a = node(&nats, "2s");
    a.deploy(&sleeper(40), &read(guests::SLEEP)).expect(201);
    // Every event is acknowledged by `a` before `b` exists.
    let ids = publish(&a, 300);
    let before = a.wait_until("node a to run some deliveries", || {
        let n = ran(&a).len();
        (n >= 10).then_some(n)
    });
    a.kill9();
    assert!(before < 250, "node a finished most events before the kill");
    let b = node(&nats, "2s");
    b.deploy(&sleeper(40), &read(guests::SLEEP)).expect(201);
    // `a` comes back on its own data: its log keeps what it ran before.
    a.restart();
    let want: BTreeSet<String> = ids.into_iter().collect();
    b.wait_until("every acknowledged event to be delivered", || {
        (merged(&[&a, &b]).len() == want.len()).then_some(())
    });
    let all = merged(&[&a, &b]);
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), want);
    let on_b = ran(&b).len();
    eprintln!(
        "kill -9: a ran {before} before the kill, b ran {on_b}, {} delivered twice",
        all.values().filter(|n| **n > 1).count()
    );
    assert!(on_b > 0, "node b took over no deliveries");
}
