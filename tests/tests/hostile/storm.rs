//! Hostile guests inside a real daemon: a good handler keeps being served
//! while others loop, sleep and hog memory; every attack is logged under
//! its named outcome; handlers cannot feed each other forever or read each
//! other's KV; and the daemon's memory returns to its baseline afterwards.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::guests;
use hookbox_tests::read;
use serde_json::{Value, json};

use super::{await_outcome, deploy, manifest, outcomes, publish};

/// Hard ceilings of the daemon (`Limits::default_ceilings`): fuel that
/// lasts minutes, so only the deadline stops a loop.
const CEILING_FUEL: u64 = 50_000_000_000;

/// Deploys `path` as handler `name` for `events`, with `config`, `limits`
/// and one delivery at a time (so one hostile handler holds one worker).
fn hostile(d: &Daemon, name: &str, path: &str, events: &[&str], config: Value, limits: Value) {
    let mut m = manifest(name, events);
    m["config"] = config;
    m["limits"] = limits;
    m["delivery"]["concurrency"] = json!(1);
    deploy(d, &m, &read(path)).expect(201);
}

/// Ready deliveries in the daemon's queues.
fn queued(d: &Daemon) -> u64 {
    let stats = d.get("/v1/stats").expect(200);
    ["critical", "high", "normal", "low"]
        .iter()
        .map(|p| {
            stats.json["queue"][p]
                .as_u64()
                .unwrap_or_else(|| panic!("{stats}"))
        })
        .sum()
}

/// Publishes `events` with `wait=true` and asserts every delivery of every
/// event completed with `want`.
fn publish_and_expect(d: &Daemon, events: &Value, want: &str) {
    let r = d.publish(events, true).expect(200);
    for outcome in r.json["outcomes"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
    {
        assert_eq!(outcome["complete"], true, "{r}");
        for delivery in outcome["deliveries"].as_array().unwrap() {
            assert_eq!(delivery["outcome"], want, "{r}");
        }
    }
}

#[test]
fn a_good_handler_is_served_while_others_loop_and_sleep() {
    let d = Daemon::start_with("[dispatch]\nworkers = 4\n");
    deploy(&d, &manifest("good", &["good"]), &read(guests::GOOD)).expect(201);
    hostile(
        &d,
        "looper",
        guests::LOOP,
        &["loop"],
        json!({}),
        json!({"fuel": CEILING_FUEL, "timeout_ms": 3000}),
    );
    // Asks to sleep for a minute inside `pollable.block`.
    hostile(
        &d,
        "sleeper",
        guests::SLEEP,
        &["sleep"],
        json!(60_000),
        json!({"timeout_ms": 3000}),
    );
    let looping = publish(&d, "loop", "acme");
    let sleeping = publish(&d, "sleep", "acme");
    d.wait_until("the hostile deliveries to start", || {
        (queued(&d) == 0).then_some(())
    });

    let good: Vec<Value> = (0..20).map(|_| json!({"type": "good"})).collect();
    publish_and_expect(&d, &json!(good), "ok");
    assert!(
        outcomes(&d, &looping).is_empty() && outcomes(&d, &sleeping).is_empty(),
        "the good events were served while the loop and the sleep were still running"
    );

    assert_eq!(await_outcome(&d, &looping, "looper"), "timeout");
    assert_eq!(await_outcome(&d, &sleeping, "sleeper"), "timeout");
    d.get("/healthz").expect(200);
}

#[test]
fn a_looping_handler_with_the_default_policy_cannot_take_every_worker() {
    // The default policy asks for 16 deliveries at once; with another
    // handler enabled the looper gets at most `workers - 1` (here 1).
    let d = Daemon::start_with("[dispatch]\nworkers = 2\n");
    deploy(&d, &manifest("good", &["good"]), &read(guests::GOOD)).expect(201);
    let mut looper = manifest("looper", &["loop"]);
    looper["limits"] = json!({"fuel": CEILING_FUEL, "timeout_ms": 5000});
    deploy(&d, &looper, &read(guests::LOOP)).expect(201);
    let loops: Vec<String> = (0..4).map(|_| publish(&d, "loop", "acme")).collect();
    d.wait_until("the loops to start", || (queued(&d) <= 2).then_some(()));
    // A worker stays free for other handlers.
    publish_and_expect(&d, &json!({"type": "good"}), "ok");
    assert!(
        loops.iter().all(|id| outcomes(&d, id).is_empty()),
        "the good event was served while the loops still ran"
    );
}

#[test]
fn a_handler_that_turns_slow_is_lent_the_kept_worker_no_more() {
    // Fast on `tick`, a loop on `loop`: 64 fast deliveries earn it the
    // worker kept for the others while they are idle; its first long
    // delivery ends that for a minute, however fast it is again.
    let d = Daemon::start_with("[dispatch]\nworkers = 2\n");
    deploy(&d, &manifest("good", &["good"]), &read(guests::GOOD)).expect(201);
    let mut m = manifest("flip", &["tick", "loop"]);
    m["limits"] = json!({"fuel": CEILING_FUEL, "timeout_ms": 1000});
    // No breaker: the loops' timeouts must not hold its deliveries.
    m["delivery"]["breaker"] = json!({"consecutive_failures": 0, "failure_rate": 0.0});
    deploy(&d, &m, &read(guests::LOOP_ON)).expect(201);
    let ticks: Vec<Value> = (0..100).map(|_| json!({"type": "tick"})).collect();
    publish_and_expect(&d, &json!(ticks), "ok");
    // It turns slow: its loops may hold both workers, this once.
    let loops: Vec<String> = (0..2).map(|_| publish(&d, "loop", "acme")).collect();
    for id in &loops {
        assert_eq!(await_outcome(&d, id, "flip"), "timeout");
    }
    // Fast again, as long as it takes to earn the worker anew.
    publish_and_expect(&d, &json!(ticks), "ok");
    let loops: Vec<String> = (0..2).map(|_| publish(&d, "loop", "acme")).collect();
    publish_and_expect(&d, &json!({"type": "good"}), "ok");
    assert!(
        loops.iter().all(|id| outcomes(&d, id).is_empty()),
        "the good event waited for a loop: the kept worker was lent again"
    );
}

#[test]
fn every_hostile_guest_is_logged_with_its_named_outcome() {
    let d = Daemon::start();
    deploy(&d, &manifest("good", &["good"]), &read(guests::GOOD)).expect(201);
    let cases: &[(&str, &str, Value, Value, &str)] = &[
        // 2000 pages (125 MiB) against the default 64 MiB.
        (
            "memhog",
            guests::MEMORY_TOUCH,
            json!(2000),
            json!({}),
            "memory_limit",
        ),
        // A 1 GiB memory fits the daemon's pool slot, not the handler's limit.
        (
            "giant",
            guests::HUGE_MEMORY,
            json!({}),
            json!({}),
            "memory_limit",
        ),
        (
            "flooder",
            guests::LOG_FLOOD,
            json!({}),
            json!({"log_bytes": 50}),
            "log_limit",
        ),
        (
            "hoarder",
            guests::KV_FLOOD,
            json!(100),
            json!({"kv_value_bytes": 100}),
            "kv_limit",
        ),
        (
            "burner",
            guests::LOOP,
            json!({}),
            json!({"fuel": 1_000_000}),
            "out_of_fuel",
        ),
        ("trapper", guests::TRAP, json!({}), json!({}), "trap"),
        ("panicker", guests::PANIC, json!({}), json!({}), "trap"),
        ("liar", guests::GIANT_RESULT, json!({}), json!({}), "trap"),
        (
            "http",
            guests::WASI_HTTP,
            json!({}),
            json!({}),
            "capability_denied",
        ),
    ];
    for (name, path, config, limits, _) in cases {
        hostile(&d, name, path, &[name], config.clone(), limits.clone());
    }
    for (name, _, _, _, want) in cases {
        let id = publish(&d, name, "acme");
        assert_eq!(&await_outcome(&d, &id, name), want, "{name}");
    }
    // Denied WASI is not a failure: the guest sees nothing to use.
    for (name, path) in [
        ("nofs", guests::WASI_DENIED),
        ("nonet", guests::WASI_SOCKETS),
    ] {
        hostile(&d, name, path, &[name], json!({}), json!({}));
        let id = publish(&d, name, "acme");
        assert_eq!(await_outcome(&d, &id, name), "ok", "{name}");
    }
    publish_and_expect(&d, &json!({"type": "good"}), "ok");
}

/// Deliveries logged for `handler` (at most one page of 1000).
fn logged(d: &Daemon, handler: &str) -> usize {
    let r = d
        .get(&format!("/v1/logs?handler={handler}&limit=1000"))
        .expect(200);
    r.json["entries"].as_array().unwrap().len()
}

#[test]
fn handlers_emitting_to_each_other_stop_at_the_emit_depth_limit() {
    let d = Daemon::start_with("[dispatch]\nmax_emit_depth = 8\n");
    // `ping` handles ping and emits pong; `pong` the other way round.
    let m = |name: &str, handles: &str, emits: &str| {
        let mut m = manifest(name, &[handles]);
        m["config"] = json!(emits);
        m
    };
    deploy(&d, &m("ping", "ping", "pong"), &read(guests::EMIT_CONFIG)).expect(201);
    deploy(&d, &m("pong", "pong", "ping"), &read(guests::EMIT_CONFIG)).expect(201);
    publish(&d, "ping", "acme");
    // Depth 0 (the published event) to 8 are delivered: 9 deliveries; the
    // ninth delivery's emission (depth 9) is dropped and counted.
    d.wait_until("the emission chain to hit the depth limit", || {
        d.metric("hookbox_emitted_events_dropped_total")
            .filter(|&n| n >= 1.0)
    });
    d.wait_until("the last delivery to be logged", || {
        (logged(&d, "ping") + logged(&d, "pong") == 9).then_some(())
    });
    assert_eq!(d.metric("hookbox_emitted_events_dropped_total"), Some(1.0));
    assert_eq!((logged(&d, "ping"), logged(&d, "pong")), (5, 4));
    assert_eq!(queued(&d), 0);
}

#[test]
fn an_emit_fan_out_stays_within_the_queue_capacity() {
    // `tick` handlers emitting 100 `tick`s each (the default emit budget):
    // 100^8 events by depth 8. Emitted events may fill 90% of
    // `queue_capacity`; the surplus is dropped and counted like any other
    // emission that cannot be accepted, and producers keep the rest.
    let d = Daemon::start_with("[dispatch]\nqueue_capacity = 1000\n");
    let mut m = manifest("fanout", &["tick"]);
    m["config"] = json!(100);
    deploy(&d, &m, &read(guests::EMIT_FANOUT)).expect(201);
    publish(&d, "tick", "acme");
    d.wait_until(
        "emissions to be dropped at the queue's emitted share",
        || {
            d.metric("hookbox_emitted_events_dropped_total")
                .filter(|&n| n >= 100.0)
        },
    );
    for _ in 0..100 {
        let depth = queued(&d);
        assert!(depth <= 900, "{depth} deliveries queued");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The fan-out goes on, and a producer is still accepted.
    publish(&d, "tick", "acme");
    assert_eq!(d.metric("hookbox_events_rejected_total"), Some(0.0));
}

#[test]
fn a_handler_cannot_read_another_handlers_or_tenants_kv() {
    // Each copy of `kv_probe` fails if the key `shared` holds anything but
    // its own config; all four (handler, tenant) pairs write that key.
    let d = Daemon::start();
    for name in ["alpha", "beta"] {
        let mut m = manifest(name, &["probe"]);
        m["config"] = json!(name);
        deploy(&d, &m, &read(guests::KV_PROBE)).expect(201);
    }
    for _round in 0..3 {
        let events: Vec<Value> = ["acme", "evil"]
            .iter()
            .map(|t| json!({"type": "probe", "tenant": t}))
            .collect();
        publish_and_expect(&d, &json!(events), "ok");
    }
}

/// Resident memory of a process, in bytes (`VmRSS` of `/proc/<pid>/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib * 1024
}

#[test]
fn the_daemons_memory_returns_to_baseline_after_a_storm() {
    // No flush per delivery: this is about memory, not durability.
    let d = Daemon::start_with("[store]\ndurability = \"none\"\n");
    // `storm` events go to guests that succeed after real work; `fail`
    // events to guests refused a resource. Each failing handler gets fewer
    // than 10 events: 10 failures in a row would open its circuit breaker
    // and park the rest (a defence of its own, not what this test is about).
    let cases: &[(&str, &str, &str, Value, Value)] = &[
        // 1000 pages (62.5 MiB), every byte written: really resident.
        (
            "toucher",
            "storm",
            guests::MEMORY_TOUCH,
            json!(1000),
            json!({}),
        ),
        ("hoarder", "storm", guests::KV_FLOOD, json!(200), json!({})),
        ("deep", "storm", guests::RECURSE, json!({}), json!({})),
        (
            "memhog",
            "fail",
            guests::MEMORY_TOUCH,
            json!(2000),
            json!({}),
        ),
        ("giant", "fail", guests::HUGE_MEMORY, json!({}), json!({})),
        (
            "flooder",
            "fail",
            guests::LOG_FLOOD,
            json!({}),
            json!({"log_bytes": 50}),
        ),
        (
            "burner",
            "fail",
            guests::LOOP,
            json!({}),
            json!({"fuel": 10_000_000}),
        ),
        ("liar", "fail", guests::GIANT_RESULT, json!({}), json!({})),
    ];
    for (name, event_type, path, config, limits) in cases {
        hostile(
            &d,
            name,
            path,
            &[event_type],
            config.clone(),
            limits.clone(),
        );
    }
    let round = |event_type: &str, n: usize| {
        let events: Vec<Value> = (0..n).map(|_| json!({"type": event_type})).collect();
        let r = d.publish(&json!(events), true).expect(200);
        for o in r.json["outcomes"].as_array().unwrap() {
            assert_eq!(o["complete"], true, "{r}");
        }
    };
    // Warm up (compiled code, pool slots, store caches), then measure.
    round("storm", 4);
    round("fail", 2);
    let baseline = rss(d.pid());
    for _ in 0..5 {
        round("storm", 10);
    }
    round("fail", 7);
    let after = rss(d.pid());
    eprintln!(
        "daemon RSS: baseline {} MiB, after 185 hostile deliveries {} MiB",
        baseline >> 20,
        after >> 20
    );
    // Less than a quarter of one toucher's 62.5 MiB: a single instance's
    // memory kept after its delivery fails this (50 toucher deliveries ran).
    assert!(
        after <= baseline + (16 << 20),
        "RSS grew from {} MiB to {} MiB",
        baseline >> 20,
        after >> 20
    );
    d.get("/healthz").expect(200);
}
