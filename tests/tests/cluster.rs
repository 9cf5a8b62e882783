//! Cluster mode end to end: separate `hookbox serve` processes joined by a
//! real `nats-server` with JetStream (started by the test on free loopback
//! ports; a missing server fails the test with an install hint).
//!
//! Deliveries are observed through the delivery log (`GET /v1/logs`),
//! which is shared: the node that ran an attempt puts its line in
//! JetStream before it acks the delivery, and every node's log shows every
//! node's lines. Which node ran what is in each node's own metrics
//! (`hookbox_deliveries_total`).

use std::collections::{BTreeMap, BTreeSet};

use hookbox_tests::daemon::{Body, Daemon};
use hookbox_tests::guests;
use hookbox_tests::nats_server::NatsServer;
use hookbox_tests::read;
use reqwest::Method;
use serde_json::{Value, json};

/// Each node runs deliveries on two workers (CI has two cores).
const NODE: &str = "[dispatch]\nworkers = 2\n";

/// A handler that sleeps `sleep_ms` per delivery (a latency-bound handler:
/// the work spreads over nodes even on one machine) and never retries.
fn sleeper(sleep_ms: u64) -> String {
    slow_handler("sleepy", "job", sleep_ms)
}

/// The manifest of handler `name` for `event` events whose guest sleeps
/// `sleep_ms` per delivery (its config), under a 20-s limit, never retried.
fn slow_handler(name: &str, event: &str, sleep_ms: u64) -> String {
    json!({
        "name": name,
        "subscription": {"events": [event]},
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

/// `ok` deliveries of `sleepy` node `d` ran itself (its metrics).
fn ran_here(d: &Daemon) -> u64 {
    let series = "hookbox_deliveries_total{handler=\"sleepy\",outcome=\"ok\"}";
    d.metric(series).unwrap_or(0.0) as u64
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
        (ran(&a).len() == want.len()).then_some(())
    });
    let (on_a, on_b) = (ran_here(&a), ran_here(&b));
    eprintln!("two nodes: a ran {on_a}, b ran {on_b}");
    assert_eq!(on_a + on_b, 400, "each event runs once, on one node");
    assert!(
        on_a > 0 && on_b > 0,
        "both nodes should run deliveries: {on_a} on a, {on_b} on b"
    );
    // The log is shared: either node lists every delivery, each once.
    let all = b.wait_until("node b's log to show every delivery", || {
        let all = ran(&b);
        (all.len() == want.len()).then_some(all)
    });
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), want);
    let twice: Vec<_> = all.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "logged more than once: {twice:?}");
    assert_eq!(all, ran(&a));
    // Either node lists both, each taking deliveries for the handler.
    let listed = b.wait_until("GET /v1/cluster to list both nodes", || {
        let c = b.get("/v1/cluster").expect(200).json;
        let nodes = c["nodes"].as_array().cloned().unwrap_or_default();
        let running = nodes
            .iter()
            .filter(|n| n["runs"] == json!(["sleepy"]))
            .count();
        (nodes.len() == 2 && running == 2).then_some(c)
    });
    assert_eq!(listed["mode"], "cluster", "{listed}");
    let apis: BTreeSet<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["api"].as_str())
        .collect();
    assert_eq!(apis, BTreeSet::from([a.url(), b.url()]), "{listed}");
    // Each node's metrics name it.
    let me = listed["node"].as_str().expect("the answering node");
    let series = format!("hookbox_cluster_node{{node=\"{me}\"}}");
    assert_eq!(b.metric(&series), Some(1.0), "{}", b.metrics());
}

/// Without `[cluster]`, `GET /v1/cluster` says so.
#[test]
fn a_single_node_says_it_is_not_in_a_cluster() {
    let d = Daemon::start();
    let c = d.get("/v1/cluster").expect(200).json;
    assert_eq!(c, json!({"mode": "single", "node": null, "nodes": []}));
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
        (ran(&b).len() == want.len()).then_some(())
    });
    let all = ran(&b);
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), want);
    let on_b = ran_here(&b);
    eprintln!(
        "kill -9: a ran {before} before the kill, b ran {on_b}, {} delivered twice",
        all.values().filter(|n| **n > 1).count()
    );
    assert!(on_b > 0, "node b took over no deliveries");
}

/// All of NATS gone: ingest answers 503 and acknowledges nothing; when the
/// server is back, the node recovers by itself and every acknowledged
/// event is delivered.
#[test]
fn without_nats_ingest_answers_503_and_the_node_recovers() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "2s");
    a.deploy(&sleeper(1), &read(guests::SLEEP)).expect(201);
    let mut ids = publish(&a, 20);
    nats.kill();
    let r = a.publish(&json!([{"type": "job"}]), false);
    assert_eq!(r.status, 503, "{r}");
    nats.start_again();
    let again = a.wait_until("ingest to accept again", || {
        let r = a.publish(&json!([{"type": "job"}]), false);
        (r.status == 202).then_some(r)
    });
    ids.push(again.json["events"][0]["id"].as_str().unwrap().to_string());
    // The event refused with 503 may be delivered too (its publish may
    // have reached JetStream after all): only the acknowledged ones count.
    let want: BTreeSet<String> = ids.into_iter().collect();
    a.wait_until("every acknowledged event to be delivered", || {
        let ran: BTreeSet<String> = ran(&a).into_keys().collect();
        want.is_subset(&ran).then_some(())
    });
}

/// Publishes `job` events to `d` until one is routed to `sleepy` (the node
/// applied a deploy made on another); that event's id.
fn routed_on(d: &Daemon) -> String {
    d.wait_until(
        "the node to route to the handler deployed elsewhere",
        || {
            let r = d.publish(&json!({"type": "job"}), false).expect(202);
            let e = &r.json["events"][0];
            (e["handlers"] == json!(["sleepy"])).then(|| e["id"].as_str().unwrap().to_string())
        },
    )
}

/// The registry is shared: a handler deployed on one node runs on the
/// other, whose store got the component from the cluster.
#[test]
fn a_deploy_on_one_node_runs_on_the_other() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    let b = node(&nats, "30s");
    a.deploy(&sleeper(1), &read(guests::SLEEP)).expect(201);
    let first = routed_on(&b);
    let mut want: BTreeSet<String> = publish(&b, 20).into_iter().collect();
    want.insert(first);
    b.wait_until("every event published to b to be delivered", || {
        (ran(&b).len() == want.len()).then_some(())
    });
    // Deleting on b deletes on a.
    b.delete("/v1/handlers/sleepy").expect(204);
    a.wait_until("node a to drop the handler deleted on b", || {
        (a.get("/v1/handlers/sleepy").status == 404).then_some(())
    });
}

/// Concurrent deploys of one name on two nodes get distinct consecutive
/// versions, and both nodes end on the same active version.
#[test]
fn concurrent_deploys_on_two_nodes_get_distinct_versions() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    let b = node(&nats, "30s");
    let wasm = read(guests::SLEEP);
    let versions: Vec<u64> = std::thread::scope(|s| {
        let deploys: Vec<_> = [&a, &b]
            .into_iter()
            .map(|d| {
                let wasm = &wasm;
                s.spawn(move || {
                    (0..3)
                        .map(|i| {
                            let r = d.deploy(&sleeper(i), wasm).expect(201);
                            r.json["version"]["version"].as_u64().expect("a version")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        deploys
            .into_iter()
            .flat_map(|t| t.join().expect("a deploy thread"))
            .collect()
    });
    let got: BTreeSet<u64> = versions.iter().copied().collect();
    assert_eq!(got, (1..=6).collect(), "versions handed out: {versions:?}");
    let active = |d: &Daemon| {
        let h = d.get("/v1/handlers/sleepy").expect(200).json;
        let n = d.get("/v1/handlers/sleepy/versions").expect(200).json["versions"]
            .as_array()
            .map_or(0, Vec::len);
        (h["handler"]["active_version"].as_u64(), n)
    };
    // Each commit takes the next number, so the last one committed is 6.
    a.wait_until("both nodes to end on version 6 of 6", || {
        let (x, y) = (active(&a), active(&b));
        (x == (Some(6), 6) && y == x).then_some(())
    });
}

/// Publishes `n` `job` events to `d`, sending a batch again while the
/// answer is 503 (NATS failing over); the ids of the acknowledged ones.
fn publish_through_failover(d: &Daemon, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(25) {
        let batch: Vec<Value> = (start..n.min(start + 25))
            .map(|i| json!({"type": "job", "payload": {"i": i}}))
            .collect();
        let r = d.wait_until("a batch to be acknowledged", || {
            let r = d.publish(&json!(batch), false);
            match r.status {
                202 => Some(r),
                503 => None,
                other => panic!("publishing answered {other}: {r}"),
            }
        });
        for e in r.json["events"].as_array().expect("events") {
            ids.push(e["id"].as_str().expect("an id").to_string());
        }
    }
    ids
}

/// Three nats-servers in a JetStream cluster, streams with three replicas,
/// two nodes: one server killed mid-stream loses no acknowledged event and
/// ingest keeps answering.
#[test]
fn one_of_three_nats_servers_killed_loses_nothing() {
    let mut servers = NatsServer::cluster(3);
    let config = NatsServer::cluster_config_of(&servers, "5s", 3);
    let a = Daemon::start_with(&format!("{NODE}{config}"));
    let b = Daemon::start_with(&format!("{NODE}{config}"));
    a.deploy(&sleeper(5), &read(guests::SLEEP)).expect(201);
    let first = routed_on(&b);
    let mut ids = publish_through_failover(&a, 100);
    ids.push(first);
    ids.extend(publish_through_failover(&b, 100));
    servers[0].kill();
    ids.extend(publish_through_failover(&a, 100));
    ids.extend(publish_through_failover(&b, 100));
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(want.len(), 401);
    a.wait_until("every acknowledged event to be delivered", || {
        let ran: BTreeSet<String> = ran(&a).into_keys().chain(ran(&b).into_keys()).collect();
        want.is_subset(&ran).then_some(())
    });
    // Each node's log also shows the other's deliveries: its copy of the
    // shared log follows again when its consumer went with the server.
    for d in [&a, &b] {
        d.wait_until("the node's log to show every delivery", || {
            let ran: BTreeSet<String> = ran(d).into_keys().collect();
            want.is_subset(&ran).then_some(())
        });
    }
}

/// A node started while its NATS cluster is not whole (one of three
/// servers not up yet, so streams with three replicas cannot be placed)
/// waits for it, saying so, and then joins and delivers: an operator who
/// starts NATS and Hookbox together does not get a node that exited.
#[test]
fn a_node_started_before_its_nats_cluster_is_whole_waits_for_it() {
    let mut servers = NatsServer::cluster_partly(3, 2);
    let config = NatsServer::cluster_config_of(&servers, "5s", 3);
    let late = &mut servers[2];
    let a = std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(3));
            late.start_again();
        });
        Daemon::start_with(&format!("{NODE}{config}"))
    });
    let said = a.stderr_tail();
    assert!(
        said.contains("the NATS cluster is not ready"),
        "the node did not say it waited for NATS:\n{said}"
    );
    a.deploy(&sleeper(1), &read(guests::SLEEP)).expect(201);
    let want: BTreeSet<String> = publish(&a, 20).into_iter().collect();
    a.wait_until("every event to be delivered", || {
        let ran: BTreeSet<String> = ran(&a).into_keys().collect();
        want.is_subset(&ran).then_some(())
    });
}

/// An idempotency key accepted on one node is a duplicate on the other:
/// the keys live in JetStream, not in a node's store.
#[test]
fn an_idempotency_key_accepted_on_one_node_is_a_duplicate_on_the_other() {
    let nats = NatsServer::start();
    let (a, b) = (node(&nats, "5s"), node(&nats, "5s"));
    a.deploy(&sleeper(1), &read(guests::SLEEP)).expect(201);
    let event = json!({"type": "job", "payload": {"i": 1}, "idempotency_key": "order-7"});
    let first = a.publish(&event, false).expect(202);
    let id = &first.json["events"][0]["id"];
    assert_eq!(first.json["events"][0]["duplicate"], false, "{first}");
    for d in [&a, &b] {
        let again = d.publish(&event, false).expect(202);
        assert_eq!(again.json["events"][0]["duplicate"], true, "{again}");
        assert_eq!(&again.json["events"][0]["id"], id, "{again}");
    }
}

/// A node pointed at a nats-server without JetStream exits at once with an
/// error that says so and how to fix it, instead of waiting for a cluster
/// that would never form.
#[test]
fn a_node_refuses_a_nats_server_without_jetstream_at_once() {
    let nats = NatsServer::start_without_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, nats.cluster_config("5s")).unwrap();
    let out = std::process::Command::new(hookbox_tests::daemon::hookbox_bin())
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .output()
        .expect("running hookbox serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without JetStream: {stderr}");
    assert!(
        stderr.contains("does not have JetStream enabled: start it with `-js`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not ready"),
        "waited for a server that cannot get ready: {stderr}"
    );
}

/// `sleepy` taking `sleep_ms` per delivery with a 100 ms timeout and one
/// attempt: a long sleep dead-letters every delivery.
fn timing_out(sleep_ms: u64) -> String {
    json!({
        "name": "sleepy",
        "subscription": {"events": ["job"]},
        "config": sleep_ms,
        "limits": {"timeout_ms": 100},
        "delivery": {"max_attempts": 1},
    })
    .to_string()
}

/// Dead letters, the log, events and stats are the cluster's, not a
/// node's: what node a ran is listed, replayed and counted through node b,
/// and a purge on one node empties every node's dead letters.
#[test]
fn dead_letters_log_and_stats_are_read_from_any_node() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    // Only a serves the handler at first: it runs every delivery.
    a.deploy(&timing_out(5000), &read(guests::SLEEP))
        .expect(201);
    let ids = publish(&a, 3);
    let b = node(&nats, "30s");
    let listed = b.wait_until("node b to list a's three dead letters", || {
        let r = b.get("/v1/dead-letters?handler=sleepy").expect(200).json;
        let list = r["dead_letters"].as_array().cloned().unwrap_or_default();
        (list.len() == 3).then_some(list)
    });
    let dl_events: BTreeSet<&str> = listed
        .iter()
        .filter_map(|d| d["event"]["id"].as_str())
        .collect();
    assert_eq!(dl_events, ids.iter().map(String::as_str).collect());
    let shown = b.get(&format!("/v1/events/{}", ids[0])).expect(200).json;
    assert_eq!(shown["event"]["id"], ids[0].as_str(), "{shown}");
    assert_eq!(shown["deliveries"][0]["outcome"], "timeout", "{shown}");
    let timeouts = b.get("/v1/logs?handler=sleepy&outcome=timeout").expect(200);
    assert_eq!(timeouts.json["entries"].as_array().map(Vec::len), Some(3));
    // Fixed in version 2 (deployed on b); one dead letter replayed from b
    // is taken once, and runs.
    b.deploy(&timing_out(1), &read(guests::SLEEP)).expect(201);
    let first = listed[0]["id"].as_str().unwrap();
    let replay = format!("/v1/dead-letters/{first}/replay");
    b.post(&replay, &json!({})).expect(202);
    assert_eq!(a.post(&replay, &json!({})).status, 404, "replayed twice");
    a.wait_until("node a to drop the dead letter replayed on b", || {
        (a.get(&format!("/v1/dead-letters/{first}")).status == 404).then_some(())
    });
    let replayed = listed[0]["event"]["id"].as_str().unwrap();
    a.wait_until("the replayed delivery to be logged ok on a", || {
        let d = a.get(&format!("/v1/events/{replayed}")).expect(200).json;
        let outcomes: Vec<&str> = d["deliveries"]
            .as_array()?
            .iter()
            .filter_map(|e| e["outcome"].as_str())
            .collect();
        (outcomes == ["timeout", "ok"]).then_some(())
    });
    // Stats sum both nodes' counters, whichever node answers.
    for d in [&a, &b] {
        d.wait_until("stats to count every node's attempts", || {
            let s = d.get("/v1/handlers/sleepy").expect(200).json["stats"].clone();
            let want = s["processed"] == 4 && s["ok"] == 1 && s["dead_lettered"] == 3;
            want.then_some(())
        });
    }
    // A purge through b empties a too.
    let purged = b.delete("/v1/dead-letters?handler=sleepy").expect(200).json;
    assert_eq!(purged["purged"], 2, "{purged}");
    a.wait_until("node a to drop the purged dead letters", || {
        let r = a.get("/v1/dead-letters?handler=sleepy").expect(200).json;
        (r["dead_letters"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
}

/// Handler KV is the cluster's: a counter incremented by deliveries on
/// both nodes at once counts every one (each increment a compare-and-set
/// in the shared bucket), and either node's API reads it.
#[test]
fn handler_kv_is_shared_and_atomic_across_nodes() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    let b = node(&nats, "30s");
    let good = json!({"name": "counter", "subscription": {"events": ["tick"]}});
    a.deploy(&good.to_string(), &read(guests::GOOD)).expect(201);
    b.wait_until("node b to route to the handler deployed on a", || {
        let r = b.publish(&json!({"type": "tick"}), false).expect(202);
        (r.json["events"][0]["handlers"] == json!(["counter"])).then_some(())
    });
    // Both nodes fetch its deliveries before the rest is published.
    a.wait_until("both nodes to take deliveries for the handler", || {
        let c = a.get("/v1/cluster").expect(200).json;
        let running = c["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["runs"] == json!(["counter"]))
            .count();
        (running == 2).then_some(())
    });
    let mut sent = 1;
    for d in [&a, &b, &a, &b] {
        let batch: Vec<Value> = (0..25).map(|_| json!({"type": "tick"})).collect();
        for e in d.publish(&json!(batch), false).expect(202).json["events"]
            .as_array()
            .unwrap()
        {
            assert_eq!(e["handlers"], json!(["counter"]), "{e}");
        }
        sent += 25;
    }
    let ran = |d: &Daemon| {
        d.metric("hookbox_deliveries_total{handler=\"counter\",outcome=\"ok\"}")
            .unwrap_or(0.0) as u64
    };
    a.wait_until("every tick to be delivered", || {
        (ran(&a) + ran(&b) == sent).then_some(())
    });
    eprintln!("kv: a ran {}, b ran {}", ran(&a), ran(&b));
    let want = sent.to_string();
    for d in [&b, &a] {
        let item = d
            .get("/v1/handlers/counter/kv/count?tenant=")
            .expect(200)
            .json;
        assert_eq!(item["value"], want.as_str(), "{item}");
        let page = d.get("/v1/handlers/counter/kv?tenant=").expect(200).json;
        assert_eq!(page["entries"][0]["key"], "count", "{page}");
    }
    // Deleting the handler drops its keys for every node.
    a.delete("/v1/handlers/counter").expect(204);
    a.deploy(&good.to_string(), &read(guests::GOOD)).expect(201);
    b.wait_until("node b to have the redeployed handler", || {
        (b.get("/v1/handlers/counter").status == 200).then_some(())
    });
    assert_eq!(b.get("/v1/handlers/counter/kv/count?tenant=").status, 404);
}

/// A delete on one node while a delivery of the handler runs on another:
/// what that delivery writes at its end goes with the deleted handler
/// (each node drops the handler's shared keys once its own deliveries of
/// it ended), and the handler deployed again under the name meanwhile
/// starts with none of them and keeps its own writes (its keys belong to
/// its incarnation, which no drop of the old one reaches).
#[test]
fn a_delete_outlives_a_delivery_running_on_another_node() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    let b = node(&nats, "30s");
    // The guest sleeps `config` ms, then sets the KV key `late`.
    let writer = |sleep_ms| slow_handler("late-writer", "slow", sleep_ms);
    a.deploy(&writer(3000), &read(guests::SLEEP_KV)).expect(201);
    b.wait_until("node b to have the handler deployed on a", || {
        (b.get("/v1/handlers/late-writer").status == 200).then_some(())
    });
    let b_name = b.get("/v1/cluster").expect(200).json["node"].clone();
    let b_holds = || {
        let c = b.get("/v1/cluster").expect(200).json;
        let me = c["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == b_name)?;
        me["held"].as_u64()
    };
    // One event at a time until node b runs one (both nodes fetch, once
    // they found the handler's consumer, made by the first event).
    let mut sent = 0;
    while b_holds() == Some(0) {
        assert!(sent < 30, "node b took none of {sent} deliveries");
        a.publish(&json!({"type": "slow", "tenant": "acme"}), false)
            .expect(202);
        sent += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!("node b took a delivery of the first {sent}");
    // Its delivery started at most 200 ms ago (a worker was free): well
    // into its sleep, the handler is deleted.
    let b_took = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(500));
    a.delete("/v1/handlers/late-writer").expect(204);
    // Deployed again at once, writing at once, while b's delivery of the
    // deleted handler still sleeps.
    a.deploy(&writer(0), &read(guests::SLEEP_KV)).expect(201);
    b.wait_until("node b to have the redeployed handler", || {
        (b.get("/v1/handlers/late-writer").status == 200).then_some(())
    });
    let ids = b
        .publish(&json!({"type": "slow", "tenant": "other"}), false)
        .expect(202);
    assert_eq!(
        ids.json["events"][0]["handlers"],
        json!(["late-writer"]),
        "{ids}"
    );
    for d in [&a, &b] {
        d.wait_until("the redeployed handler to write its key", || {
            (d.get("/v1/handlers/late-writer/kv/late?tenant=other")
                .status
                == 200)
                .then_some(())
        });
    }
    // Past the end of every delivery of the deleted handler (those on a
    // ended before its delete returned).
    std::thread::sleep(std::time::Duration::from_millis(5000).saturating_sub(b_took.elapsed()));
    // Node b ran one of them to its end, its write included, after the
    // delete (it ran nothing else that took over a second).
    let bucket = |le: &str| {
        b.metric(&format!(
            "hookbox_delivery_duration_seconds_bucket{{le=\"{le}\"}}"
        ))
        .unwrap_or(0.0)
    };
    assert!(
        bucket("10") - bucket("1") >= 1.0,
        "node b ran no 3-s delivery"
    );
    for d in [&a, &b] {
        let acme = d.get("/v1/handlers/late-writer/kv?tenant=acme").expect(200);
        assert_eq!(
            acme.json["entries"],
            json!([]),
            "the deleted handler's delivery wrote into the new one's KV: {acme}"
        );
        let other = d
            .get("/v1/handlers/late-writer/kv?tenant=other")
            .expect(200);
        assert_eq!(
            other.json["entries"][0]["key"], "late",
            "dropping the deleted handler's keys took the new one's: {other}"
        );
    }
    // What the deleted handler's deliveries wrote is gone from the bucket:
    // it holds the new handler's entry and its namespace's usage record.
    a.wait_until("the deleted handler's keys to be dropped", || {
        (nats.stream_messages("KV_hookbox_kv") == Some(2)).then_some(())
    });
}

/// API tokens and payload schemas are the cluster's: a token created on
/// node a authenticates on node b until b revokes it, which a then
/// refuses; a schema put on a validates on b until b removes it.
#[test]
fn tokens_and_schemas_made_on_one_node_hold_on_the_other() {
    let nats = NatsServer::start();
    let a = node(&nats, "30s");
    let b = node(&nats, "30s");
    let made = a
        .post("/v1/tokens", &json!({"name": "ci", "scopes": ["publish"]}))
        .expect(201)
        .json;
    let (id, secret) = (
        made["token"]["id"].as_str().unwrap(),
        made["secret"].as_str().unwrap(),
    );
    let publish_as = |d: &Daemon, event: Value| {
        d.send(Method::POST, "/v1/events", Some(secret), Body::Json(event))
            .status
    };
    b.wait_until("node b to accept a token made on a", || {
        (publish_as(&b, json!({"type": "order"})) == 202).then_some(())
    });
    b.delete(&format!("/v1/tokens/{id}")).expect(204);
    assert_eq!(publish_as(&b, json!({"type": "order"})), 401);
    a.wait_until("node a to refuse the token revoked on b", || {
        (publish_as(&a, json!({"type": "order"})) == 401).then_some(())
    });

    let schema = json!({
        "type": "object",
        "required": ["n"],
        "properties": {"n": {"type": "integer"}},
    });
    a.put("/v1/schemas/order", &schema).expect(200);
    let bad = json!({"type": "order", "payload": {"n": "x"}});
    b.wait_until("node b to validate against a schema put on a", || {
        let r = b.publish(&bad, false);
        (r.status != 202).then_some(r)
    })
    .expect(422);
    b.publish(&json!({"type": "order", "payload": {"n": 1}}), false)
        .expect(202);
    assert_eq!(
        b.get("/v1/schemas/order").expect(200).json["schema"],
        schema
    );
    b.delete("/v1/schemas/order").expect(204);
    a.wait_until("node a to drop the schema removed on b", || {
        (a.publish(&bad, false).status == 202).then_some(())
    });
}
