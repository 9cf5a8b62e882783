//! README's promises that no other test held the daemon to, one test each,
//! so one broken promise does not hide the others: `max_age` skips what
//! waited too long in the queue; routing is fixed at accept; a full queue
//! answers 429 with `Retry-After` once `queue_wait` passed without room,
//! and a request that finds room within it goes in; `delivery.ordered` holds through
//! retries and a restart; a restart closes every breaker; outcomes that
//! are not retried are not, whatever `max_attempts` allows.

use hookbox_tests::daemon::{Body, Daemon, Reply};
use hookbox_tests::{guests, read};
use reqwest::Method;
use serde_json::{Value, json};

use super::{array, sorted_field};

/// `max_age_ms` is checked when a delivery is taken, not at accept: with
/// concurrency 1, the second of two events waits behind a first that sleeps
/// three times the max_age, and is then skipped as `expired`, logged and
/// counted as such (and not as a failure).
#[test]
fn max_age_skips_an_event_that_waited_past_it_in_the_queue() {
    let d = Daemon::start();
    let manifest = json!({
        "name": "slow",
        "subscription": {"events": ["slow"], "filters": [{"kind": "max_age", "max_age_ms": 500}]},
        // The sleeper's parameter: each delivery sleeps 1.5 s.
        "config": 1500,
        "limits": {"timeout_ms": 20000},
        "delivery": {"concurrency": 1, "max_attempts": 1},
    });
    d.deploy(&manifest.to_string(), &read(guests::SLEEP))
        .expect(201);
    let r = d
        .post(
            "/v1/events?wait=true&timeout=30s",
            &json!([{"type": "slow"}, {"type": "slow"}]),
        )
        .expect(200);
    let outcomes = array(&r.json, "outcomes");
    assert!(outcomes.iter().all(|o| o["complete"] == true), "{r}");
    let deliveries: Vec<_> = outcomes
        .iter()
        .flat_map(|o| array(o, "deliveries").clone())
        .collect();
    assert_eq!(
        sorted_field(&deliveries, "outcome"),
        ["expired", "ok"],
        "both events were routed; the one that waited is skipped: {r}"
    );
    let skipped = deliveries
        .iter()
        .find(|e| e["outcome"] == "expired")
        .unwrap();
    let error = skipped["error"].as_str().unwrap_or_default();
    assert!(error.contains("max_age is 500 ms"), "{error}");

    let stats = d.get("/v1/stats").expect(200);
    let slow = array(&stats.json, "handlers")
        .iter()
        .find(|h| h["handler"] == "slow")
        .unwrap_or_else(|| panic!("{stats}"))
        .clone();
    assert_eq!(
        (&slow["ok"], &slow["expired"], &slow["failed"]),
        (&json!(1), &json!(1), &json!(0)),
        "{slow}"
    );
    assert_eq!(slow["by_outcome"]["expired"], 1, "{slow}");
    let logs = d.get("/v1/logs?outcome=expired").expect(200);
    assert_eq!(array(&logs.json, "entries").len(), 1, "{logs}");
    let failed = d.get("/v1/logs?failed=true").expect(200);
    assert_eq!(array(&failed.json, "entries").len(), 0, "{failed}");
    assert_eq!(
        d.metric("hookbox_deliveries_total{handler=\"slow\",outcome=\"expired\"}"),
        Some(1.0)
    );
}

/// The ids of a `POST /v1/events` answer, in order.
fn ids(r: &hookbox_tests::daemon::Reply) -> Vec<String> {
    array(&r.json, "events")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every delivery-log entry of `handler`, oldest first (one page: tests
/// here log far fewer than 1000).
fn log_of(d: &Daemon, handler: &str) -> Vec<Value> {
    let r = d
        .get(&format!("/v1/logs?handler={handler}&limit=1000"))
        .expect(200);
    assert!(r.json["next_cursor"].is_null(), "{r}");
    let mut entries = array(&r.json, "entries").clone();
    entries.reverse();
    entries
}

/// Waits until the event has no pending delivery left and returns its
/// deliveries (`complete` in `GET /v1/events/{id}`).
fn settled(d: &Daemon, id: &str) -> Vec<Value> {
    d.wait_until(&format!("event {id} to settle"), || {
        let r = d.get(&format!("/v1/events/{id}")).expect(200);
        (r.json["complete"] == true).then(|| array(&r.json, "deliveries").clone())
    })
}

/// "Routing is fixed at accept": events accepted before a handler was
/// deployed are not delivered to it, neither while they wait in the queue
/// nor after a restart reloads them; the next event is.
#[test]
fn a_handler_deployed_later_does_not_receive_earlier_events() {
    let mut d = Daemon::start();
    // One delivery at a time, each asleep for a while: the earlier events
    // are still queued when the second handler arrives.
    let blocker = json!({
        "name": "blocker",
        "subscription": {"events": ["x"]},
        "config": 300,
        "delivery": {"concurrency": 1},
    });
    d.deploy(&blocker.to_string(), &read(guests::SLEEP))
        .expect(201);
    let r = d
        .publish(&json!([{"type": "x"}, {"type": "x"}, {"type": "x"}]), false)
        .expect(202);
    let earlier = ids(&r);
    let late = json!({"name": "late", "subscription": {"events": ["x"]}});
    d.deploy(&late.to_string(), &read(guests::GOOD)).expect(201);
    let pending = d.get(&format!("/v1/events/{}", earlier[2])).expect(200);
    assert!(
        pending.json["complete"] == false,
        "the last earlier event is still queued when `late` is deployed: {pending}"
    );
    d.restart();
    let r = d.publish(&json!({"type": "x"}), true).expect(200);
    assert_eq!(
        r.json["events"][0]["handlers"],
        json!(["blocker", "late"]),
        "{r}"
    );
    let next = &r.json["outcomes"][0];
    assert_eq!(next["complete"], true, "{r}");
    assert_eq!(
        sorted_field(array(next, "deliveries"), "handler"),
        ["blocker", "late"],
        "{r}"
    );
    for id in &earlier {
        let deliveries = settled(&d, id);
        assert_eq!(
            sorted_field(&deliveries, "handler"),
            ["blocker"],
            "{id}: {deliveries:?}"
        );
    }
    assert_eq!(log_of(&d, "late").len(), 1);
}

/// Deploys `slow`: every `x` event, one at a time, `ms` each.
fn deploy_slow(d: &Daemon, ms: u64) {
    let slow = json!({
        "name": "slow",
        "subscription": {"events": ["x"]},
        "config": ms,
        "delivery": {"concurrency": 1},
    });
    d.deploy(&slow.to_string(), &read(guests::SLEEP))
        .expect(201);
}

/// `r` is a 429 whose message says `why`, with `Retry-After: 1`.
#[track_caller]
fn assert_busy(r: &Reply, why: &str) {
    let m = r.error(429, "too_many_requests");
    assert!(m.contains(why), "{m}");
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1"),
        "{r}"
    );
}

/// A batch of `n` events of type `x`.
fn batch(n: usize) -> Value {
    json!((0..n).map(|_| json!({"type": "x"})).collect::<Vec<_>>())
}

/// A batch of `n` events of type `x` with idempotency keys `<tag>-<i>`.
fn keyed(tag: &str, n: usize) -> Value {
    json!(
        (0..n)
            .map(|i| json!({"type": "x", "idempotency_key": format!("{tag}-{i}")}))
            .collect::<Vec<_>>()
    )
}

/// Each of `ids` settles with one delivery, `ok`.
fn assert_each_ok(d: &Daemon, ids: &[String]) {
    for id in ids {
        let deliveries = settled(d, id);
        assert_eq!(
            sorted_field(&deliveries, "outcome"),
            ["ok"],
            "{id}: {deliveries:?}"
        );
    }
}

/// "Backpressure, not loss": with the queue full, `POST /v1/events`
/// answers 429 with `Retry-After` and accepts none of the batch; what was
/// accepted is delivered, and once the queue drained the same batch is
/// accepted.
#[test]
fn a_full_queue_answers_429_with_retry_after_and_loses_nothing() {
    let d = Daemon::start_with("[dispatch]\nqueue_capacity = 4\n");
    deploy_slow(&d, 200);
    let batch = |tag: &str| {
        json!(
            (0..4)
                .map(|n| json!({"type": "x", "idempotency_key": format!("{tag}-{n}")}))
                .collect::<Vec<_>>()
        )
    };
    let accepted = ids(&d.publish(&batch("first"), false).expect(202));
    // At most one of the four is running: three or more still queued, and
    // four more do not fit.
    assert_busy(&d.publish(&batch("second"), false), "queue is full");
    assert_eq!(d.metric("hookbox_events_rejected_total"), Some(4.0));
    assert_each_ok(&d, &accepted);
    // Drained: the refused batch goes in whole, as new events.
    let r = d.publish(&batch("second"), false).expect(202);
    assert!(
        array(&r.json, "events")
            .iter()
            .all(|e| e["duplicate"] == false),
        "nothing of the refused batch was kept: {r}"
    );
}

/// A publish that finds the queue full waits for room, up to `queue_wait`:
/// one whose room comes within it is accepted (a client retrying at once
/// would have cost a refusal per retry), one whose room does not is
/// refused when the wait is over, and the waits are counted. Events with
/// idempotency keys, which the sketch does not count (they may be
/// duplicates), wait for the room their accept found missing.
#[test]
fn a_publish_waits_for_room_up_to_queue_wait() {
    use std::time::{Duration, Instant};
    let d = Daemon::start_with("[dispatch]\nqueue_capacity = 4\n[api]\nqueue_wait = \"10s\"\n");
    deploy_slow(&d, 300);
    let mut accepted = ids(&d.publish(&batch(4), false).expect(202));
    // One runs and three are queued: three more fit once two of those
    // were taken, 600 ms after the first began, well within the wait.
    let started = Instant::now();
    accepted.extend(ids(&d.publish(&batch(3), false).expect(202)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    // The same for keyed events, refused by their accept, not the sketch.
    let started = Instant::now();
    accepted.extend(ids(&d.publish(&keyed("k", 3), false).expect(202)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert_eq!(d.metric("hookbox_queue_waits_total"), Some(2.0));
    assert_eq!(
        d.metric("hookbox_queue_waiting"),
        Some(0.0),
        "none waits now"
    );
    assert_eq!(d.metric("hookbox_events_rejected_total"), Some(0.0));
    assert_each_ok(&d, &accepted);
    assert_eq!(accepted.len(), 10);

    // With a wait shorter than the room takes to come, the same requests
    // are refused, after the wait and not before, and counted once.
    let d = Daemon::start_with("[dispatch]\nqueue_capacity = 4\n[api]\nqueue_wait = \"400ms\"\n");
    deploy_slow(&d, 2000);
    d.publish(&batch(4), false).expect(202);
    for (body, rejected) in [(batch(2), 2.0), (keyed("k", 3), 5.0)] {
        let started = Instant::now();
        assert_busy(&d.publish(&body, false), "queue is full");
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(d.metric("hookbox_events_rejected_total"), Some(rejected));
    }
    assert_eq!(d.metric("hookbox_queue_waits_total"), Some(2.0));
}

/// A batch that makes more deliveries than the whole queue holds can never
/// go in: it is answered 413 at once, saying why and what to do, not 429
/// (which a client would retry forever), on an idle queue and a loaded one
/// alike, keyed or not; a batch that fits still goes in.
#[test]
fn a_batch_needing_more_than_the_whole_queue_is_refused_at_once() {
    use std::time::{Duration, Instant};
    let d = Daemon::start_with("[dispatch]\nqueue_capacity = 4\n[api]\nqueue_wait = \"10s\"\n");
    deploy_slow(&d, 300);
    let too_big = |r: Reply| {
        let m = r.error(413, "payload_too_large");
        assert!(
            m.contains("needs room for 5 deliveries")
                && m.contains("`queue_capacity` = 4")
                && m.contains("smaller batches"),
            "{m}"
        );
    };
    // An idle queue: the accept refuses it.
    too_big(d.publish(&batch(5), false));
    too_big(d.publish(&keyed("k", 5), false));
    // A loaded one, where a batch that does not fit waits: refused at
    // once, by the quick read of the body, not after the wait.
    let accepted = ids(&d.publish(&batch(4), false).expect(202));
    let started = Instant::now();
    too_big(d.publish(&batch(5), false));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(d.metric("hookbox_events_rejected_total"), Some(15.0));
    assert_eq!(d.metric("hookbox_queue_waits_total"), Some(0.0));
    assert_each_ok(&d, &accepted);
}

/// A graceful shutdown ends a publish's wait for room: the request is
/// answered 503 (not held for its `queue_wait`, then 429), and the daemon
/// still exits cleanly.
#[test]
fn a_shutdown_ends_a_publish_waiting_for_room() {
    let mut d = Daemon::start_with("[dispatch]\nqueue_capacity = 4\n[api]\nqueue_wait = \"10s\"\n");
    deploy_slow(&d, 1500);
    d.publish(&batch(4), false).expect(202);
    let waiting = std::thread::scope(|scope| {
        let publish = scope.spawn(|| d.publish(&batch(4), false));
        d.wait_until("the publish to wait for room", || {
            (d.metric("hookbox_queue_waits_total") == Some(1.0)).then_some(())
        });
        assert_eq!(d.metric("hookbox_queue_waiting"), Some(1.0), "waiting now");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &d.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(kill.success());
        publish.join().expect("the publishing thread")
    });
    let m = waiting.error(503, "unavailable");
    assert!(m.contains("shutting down"), "{m}");
    d.stop();
}

/// Under load a batch the queue will refuse is refused before its events
/// are built (a client that retries at once costs little), and one the
/// queue takes is still taken: events no handler takes need no room.
#[test]
fn a_batch_the_full_queue_will_refuse_is_refused_before_it_is_built() {
    let d = Daemon::start_with("[dispatch]\nqueue_capacity = 4\n");
    deploy_slow(&d, 1000);
    let acme = d.token("acme", &["publish"], &["acme"]);
    let batch = |ty: &str, n: usize| json!((0..n).map(|_| json!({"type": ty})).collect::<Vec<_>>());
    // One runs, three wait for a second or more: the queue is under load.
    let accepted = ids(&d.publish(&batch("x", 4), false).expect(202));
    // Two more cannot fit; that its second event is malformed is not
    // even read.
    let r = d.publish(
        &json!([{"type": "x"}, {"type": "x", "tenat": "acme"}]),
        false,
    );
    assert_busy(&r, "queue is full");
    assert_eq!(d.metric("hookbox_events_rejected_total"), Some(2.0));
    // Events nobody subscribes to are accepted, whatever their number.
    assert_eq!(
        ids(&d.publish(&batch("y", 50), false).expect(202)).len(),
        50
    );
    // A token scoped to a tenant is refused the same way within it, and
    // outside it told so first: the queue's state is not its business.
    let as_acme = |tenant: &str| {
        let events = json!([{"type": "x", "tenant": tenant}, {"type": "x", "tenant": tenant}]);
        d.send(Method::POST, "/v1/events", Some(&acme), Body::Json(events))
    };
    assert_busy(&as_acme("acme"), "queue is full");
    let m = as_acme("globex").error(403, "forbidden");
    assert!(m.contains("globex"), "{m}");
    // Drained, the malformed batch gets its precise error.
    assert_each_ok(&d, &accepted);
    let r = d.publish(
        &json!([{"type": "x"}, {"type": "x", "tenat": "acme"}]),
        false,
    );
    let m = r.error(422, "unprocessable");
    assert!(m.contains("[1]") && m.contains("tenat"), "{m}");
}

/// "One tenant cannot crowd out the others": a tenant alone may fill the
/// queue past its share, but while another tenant has deliveries queued it
/// gets 429 past `tenant_queue_share`, and the other tenant is still
/// accepted; everything accepted is delivered.
#[test]
fn a_tenant_past_its_share_of_the_queue_is_refused_while_another_waits() {
    // Refused at once: waiting would let the slow handler free room.
    let d = Daemon::start_with(
        "[dispatch]\nqueue_capacity = 10\ntenant_queue_share = 50\n[api]\nqueue_wait = \"0s\"\n",
    );
    deploy_slow(&d, 300);
    let batch = |tenant: &str, n: usize| {
        json!(
            (0..n)
                .map(|_| json!({"type": "x", "tenant": tenant}))
                .collect::<Vec<_>>()
        )
    };
    // Alone, `hot` queues 8, past its share of 5 (one runs, 7 stay queued
    // for at least a second).
    let mut accepted = ids(&d.publish(&batch("hot", 8), false).expect(202));
    // `bg` is under its share and the queue has room.
    accepted.extend(ids(&d.publish(&batch("bg", 1), false).expect(202)));
    // Now `hot` is refused, though the queue has room for its event.
    assert_busy(
        &d.publish(&batch("hot", 1), false),
        "tenant `hot` holds its share",
    );
    // `bg` still gets in, up to the queue's capacity.
    accepted.extend(ids(&d.publish(&batch("bg", 1), false).expect(202)));
    let r = d.publish(&batch("bg", 3), false);
    let m = r.error(429, "too_many_requests");
    assert!(m.contains("queue is full"), "{m}");
    assert_each_ok(&d, &accepted);
    assert_eq!(accepted.len(), 10);
}

/// Logged attempts of `handler` as (event index in `ids`, attempt,
/// outcome), oldest first.
fn attempts(d: &Daemon, handler: &str, ids: &[String]) -> Vec<(usize, u64, String)> {
    log_of(d, handler)
        .iter()
        .map(|e| {
            let id = e["event_id"].as_str().unwrap();
            (
                ids.iter().position(|x| x == id).unwrap(),
                e["attempt"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Whether, per key, each event's first attempt comes after every attempt
/// of the events before it with that key (`key_of` an event index), the
/// last of which ended `ok`: one at a time, in accept order.
fn in_key_order(log: &[(usize, u64, String)], key_of: impl Fn(usize) -> usize) -> bool {
    let mut last: std::collections::BTreeMap<usize, &(usize, u64, String)> = Default::default();
    for entry in log {
        let key = key_of(entry.0);
        if let Some(prev) = last.get(&key)
            && prev.0 != entry.0
            && (prev.0 > entry.0 || prev.2 != "ok")
        {
            return false;
        }
        last.insert(key, entry);
    }
    true
}

/// `delivery.ordered`: events sharing a key reach the handler one at a
/// time in accept order, retries included, and across a restart with
/// retries waiting in the store. The same handler unordered (same events,
/// same failures) interleaves them, so the check can tell.
#[test]
fn ordered_delivery_holds_through_retries_and_a_restart() {
    let mut d = Daemon::start_with("[dispatch]\nworkers = 4\n");
    // Every event fails its first attempt (retryable) and succeeds on the
    // second, 300 ms later.
    for (name, ordered) in [("ordered", true), ("unordered", false)] {
        let m = json!({
            "name": name,
            "subscription": {"events": ["step"]},
            "delivery": {"ordered": ordered, "concurrency": 4, "max_attempts": 3,
                         "initial_backoff_ms": 300, "max_backoff_ms": 300, "jitter": 0.0,
                         "breaker": {"consecutive_failures": 0, "failure_rate": 0.0}},
        });
        d.deploy(&m.to_string(), &read(guests::FAIL_FIRST))
            .expect(201);
    }
    // Two keys, alternating: event n has key n % 2.
    let events: Vec<Value> = (0..8)
        .map(|n| json!({"type": "step", "key": format!("k{}", n % 2), "payload": {"n": n}}))
        .collect();
    let ids = ids(&d.publish(&json!(events), false).expect(202));
    // The first attempt failed and its retry waits in the store: restart.
    d.wait_until("a first attempt of the ordered handler", || {
        (!log_of(&d, "ordered").is_empty()).then_some(())
    });
    d.restart();
    for id in &ids {
        settled(&d, id);
    }
    let key_of = |n: usize| n % 2;
    let ordered = attempts(&d, "ordered", &ids);
    let oks: Vec<usize> = ordered
        .iter()
        .filter(|e| e.2 == "ok")
        .map(|e| e.0)
        .collect();
    assert_eq!(oks.len(), 8, "every event ends ok once: {ordered:?}");
    assert!(
        ordered.iter().any(|e| e.1 == 2 && e.2 == "ok"),
        "retries happened: {ordered:?}"
    );
    assert!(in_key_order(&ordered, key_of), "{ordered:?}");
    let unordered = attempts(&d, "unordered", &ids);
    assert!(
        !in_key_order(&unordered, key_of),
        "the unordered handler was served in key order too: the check cannot tell: {unordered:?}"
    );
}

/// "Breaker state is in memory: a restart closes every breaker." Two
/// failures open the breaker for ten minutes and park the retries; after
/// a restart it is closed and they run at once, and succeed.
#[test]
fn a_restart_closes_every_breaker() {
    let mut d = Daemon::start();
    let m = json!({
        "name": "flaky",
        "subscription": {"events": ["job"]},
        "delivery": {"max_attempts": 3, "initial_backoff_ms": 50, "max_backoff_ms": 50,
                     "jitter": 0.0, "concurrency": 1,
                     "breaker": {"consecutive_failures": 2, "failure_rate": 0.0,
                                 "cooldown_ms": 600_000, "auto_disable_opens": 0}},
    });
    d.deploy(&m.to_string(), &read(guests::FAIL_FIRST))
        .expect(201);
    let ids = ids(&d
        .publish(&json!([{"type": "job"}, {"type": "job"}]), false)
        .expect(202));
    let circuit = |d: &Daemon| d.get("/v1/handlers/flaky").expect(200).json["circuit"].clone();
    let open = d.wait_until("the breaker to open", || {
        let c = circuit(&d);
        (c["state"] == "open").then_some(c)
    });
    assert_eq!(open["opened_total"], 1, "{open}");
    // The retries wait for the cool-down, not lost and not run.
    for id in &ids {
        let r = d.get(&format!("/v1/events/{id}")).expect(200);
        assert_eq!(r.json["complete"], false, "{id} is still pending: {r}");
    }
    d.restart();
    for id in &ids {
        let deliveries = settled(&d, id);
        let outcomes: Vec<(&Value, &Value)> = deliveries
            .iter()
            .map(|x| (&x["attempt"], &x["outcome"]))
            .collect();
        assert_eq!(
            outcomes,
            [
                (&json!(1), &json!("handler_error")),
                (&json!(2), &json!("ok"))
            ],
            "{id}"
        );
    }
    let closed = circuit(&d);
    assert_eq!(closed["state"], "closed", "{closed}");
}

/// Outcomes README marks "not retried" go to the dead letters after one
/// attempt even when the policy allows five; a trap, which is retried,
/// uses all five (so the policy did allow them).
#[test]
fn outcomes_that_are_not_retried_are_not_with_max_attempts_above_one() {
    let d = Daemon::start();
    let cases: &[(&str, &str, Value, Value)] = &[
        (
            "out_of_fuel",
            guests::LOOP,
            json!({}),
            json!({"fuel": 1_000_000}),
        ),
        ("memory_limit", guests::MEMORY_TOUCH, json!(2000), json!({})),
        (
            "log_limit",
            guests::LOG_FLOOD,
            json!({}),
            json!({"log_bytes": 50}),
        ),
        (
            "kv_limit",
            guests::KV_FLOOD,
            json!(100),
            json!({"kv_value_bytes": 100}),
        ),
        (
            "emit_limit",
            guests::EMIT_FANOUT,
            json!(20),
            json!({"emits": 10}),
        ),
        (
            "emit_bytes_limit",
            guests::EMIT_BIG,
            json!(1),
            json!({"emit_bytes": 100_000}),
        ),
        ("capability_denied", guests::WASI_HTTP, json!({}), json!({})),
        ("trap", guests::TRAP, json!({}), json!({})),
    ];
    for (outcome, path, config, limits) in cases {
        let m = json!({
            "name": outcome.replace('_', "-"),
            "subscription": {"events": [outcome]},
            "config": config,
            "limits": limits,
            "delivery": {"max_attempts": 5, "initial_backoff_ms": 20, "max_backoff_ms": 20,
                         "breaker": {"consecutive_failures": 0, "failure_rate": 0.0}},
        });
        d.deploy(&m.to_string(), &read(path)).expect(201);
    }
    for (outcome, ..) in cases {
        let r = d.publish(&json!({"type": outcome}), true).expect(200);
        let result = &r.json["outcomes"][0];
        assert_eq!(result["complete"], true, "dead-lettered is final: {r}");
        let got: Vec<(&Value, &Value)> = array(result, "deliveries")
            .iter()
            .map(|x| (&x["attempt"], &x["outcome"]))
            .collect();
        let attempts = if *outcome == "trap" { 5 } else { 1 };
        let want: Vec<(Value, Value)> =
            (1..=attempts).map(|n| (json!(n), json!(outcome))).collect();
        let want: Vec<(&Value, &Value)> = want.iter().map(|(a, o)| (a, o)).collect();
        assert_eq!(got, want, "{r}");
        let name = outcome.replace('_', "-");
        let dead = d
            .get(&format!("/v1/dead-letters?handler={name}"))
            .expect(200);
        let dead = array(&dead.json, "dead_letters");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(array(&dead[0], "errors").len(), attempts, "{:?}", dead[0]);
    }
}
