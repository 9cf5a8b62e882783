//! A failing handler end to end: a trapping guest with two attempts and a
//! short backoff ends in the dead-letter queue; list, show, the stats and
//! metrics that count it, replay onto a fixed version and onto the failing
//! one, and purge.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::{guests, read};
use serde_json::{Value, json};

use super::array;

/// The trapping handler: two attempts, 50–100 ms apart.
fn manifest() -> Value {
    json!({
        "name": "flaky",
        "subscription": {"events": ["job.*"]},
        "delivery": {"max_attempts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 100}
    })
}

fn dead_letters(d: &Daemon) -> Vec<Value> {
    let r = d.get("/v1/dead-letters?handler=flaky").expect(200);
    array(&r.json, "dead_letters").clone()
}

/// A daemon with the trapping `flaky` and two of its events (tenants acme
/// and globex) dead-lettered; returns it, the events' ids and the answer of
/// the waited-for publish.
fn two_dead_letters() -> (Daemon, Vec<String>, Value) {
    let d = Daemon::start();
    d.deploy(&manifest().to_string(), &read(guests::TRAP))
        .expect(201);

    let batch = json!([
        {"type": "job.run", "tenant": "acme", "payload": {"n": 1}},
        {"type": "job.run", "tenant": "globex", "payload": {"n": 2}},
    ]);
    let r = d.publish(&batch, true).expect(200);
    let ids: Vec<String> = array(&r.json, "events")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    (d, ids, r.json)
}

/// The dead letter of the event `event_id`.
fn dead_letter_of(d: &Daemon, event_id: &str) -> Value {
    dead_letters(d)
        .into_iter()
        .find(|x| x["event"]["id"] == event_id)
        .unwrap_or_else(|| panic!("no dead letter for {event_id}"))
}

#[test]
fn failing_deliveries_are_retried_then_dead_lettered_with_every_error() {
    let (d, ids, r) = two_dead_letters();
    for outcome in array(&r, "outcomes") {
        assert_eq!(outcome["complete"], true, "dead-lettered is final: {r}");
        let deliveries = array(outcome, "deliveries");
        let attempts: Vec<&Value> = deliveries.iter().map(|x| &x["attempt"]).collect();
        assert_eq!(attempts, [1, 2], "{r}");
        for delivery in deliveries {
            assert_eq!(delivery["outcome"], "trap", "{r}");
            let error = delivery["error"].as_str().unwrap_or_default();
            assert!(!error.is_empty(), "a failed attempt says why: {r}");
        }
    }

    // The queue, newest first, with the whole event and every attempt's error.
    let dead = dead_letters(&d);
    assert_eq!(dead.len(), 2, "{dead:?}");
    let mut dead_events: Vec<&str> = dead
        .iter()
        .map(|x| x["event"]["id"].as_str().unwrap())
        .collect();
    dead_events.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(dead_events, want);
    assert!(
        dead[0]["id"].as_str() > dead[1]["id"].as_str(),
        "newest first"
    );
    let first = dead
        .iter()
        .find(|x| x["event"]["id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(first["handler"], "flaky", "{first}");
    assert_eq!(first["version"], 1, "{first}");
    assert_eq!(first["event"]["type"], "job.run", "{first}");
    assert_eq!(first["event"]["tenant"], "acme", "{first}");
    assert_eq!(first["event"]["payload"], json!({"n": 1}), "{first}");
    assert_eq!(array(first, "errors").len(), 2, "{first}");
    let first_id = first["id"].as_str().unwrap().to_string();
    let r = d.get(&format!("/v1/dead-letters/{first_id}")).expect(200);
    assert_eq!(&r.json, first);
    d.get("/v1/dead-letters/nope").error(404, "not_found");
    let r = d.get("/v1/dead-letters?limit=1").expect(200);
    assert_eq!(array(&r.json, "dead_letters").len(), 1, "{r}");
    assert_eq!(r.json["next_cursor"], dead[0]["id"], "{r}");

    let r = d.get("/v1/handlers/flaky").expect(200);
    let stats = &r.json["stats"];
    assert_eq!(stats["processed"], 4, "{r}");
    assert_eq!(stats["failed"], 4, "{r}");
    assert_eq!(stats["ok"], 0, "{r}");
    assert_eq!(stats["retries"], 2, "{r}");
    assert_eq!(stats["dead_lettered"], 2, "{r}");
    assert_eq!(stats["by_outcome"], json!({"trap": 4}), "{r}");
    let r = d.get("/v1/logs?failed=true").expect(200);
    assert_eq!(array(&r.json, "entries").len(), 4, "{r}");
    let metrics = d.metrics();
    let metric = |s: &str| hookbox_tests::daemon::metric(&metrics, s);
    assert_eq!(metric("hookbox_dead_letters_total"), Some(2.0), "{metrics}");
    assert_eq!(
        metric("hookbox_retries_scheduled_total"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric("hookbox_deliveries_total{handler=\"flaky\",outcome=\"trap\"}"),
        Some(4.0),
        "{metrics}"
    );
}

#[test]
fn a_dead_letter_replayed_onto_a_fixed_version_succeeds_and_leaves_the_queue() {
    let (d, ids, _) = two_dead_letters();
    let first_id = dead_letter_of(&d, &ids[0])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Fix the handler (version 2) and replay the first dead letter onto it.
    d.deploy(&manifest().to_string(), &read(guests::GOOD))
        .expect(201);
    let r = d
        .post(&format!("/v1/dead-letters/{first_id}/replay"), &json!({}))
        .expect(202);
    assert_eq!(r.json, json!({"replayed": first_id}));
    d.wait_until("the replayed delivery to succeed", || {
        let r = d
            .get("/v1/logs?handler=flaky&outcome=ok&tenant=acme")
            .expect(200);
        let entries = array(&r.json, "entries");
        entries.first().map(|e| {
            assert_eq!(e["event_id"], ids[0].as_str(), "{r}");
            assert_eq!(e["version"], 2, "{r}");
        })
    });
    let dead = dead_letters(&d);
    assert_eq!(
        dead.len(),
        1,
        "the replayed letter left the queue: {dead:?}"
    );
    assert_eq!(dead[0]["event"]["id"], ids[1].as_str(), "{dead:?}");
    d.post(&format!("/v1/dead-letters/{first_id}/replay"), &json!({}))
        .error(404, "not_found");
}

#[test]
fn a_dead_letter_replayed_onto_the_failing_version_dead_letters_again() {
    let (d, ids, _) = two_dead_letters();
    d.deploy(&manifest().to_string(), &read(guests::GOOD))
        .expect(201);
    // Replayed onto the failing version 1, it dead-letters again.
    let second_id = dead_letter_of(&d, &ids[1])["id"]
        .as_str()
        .unwrap()
        .to_string();
    d.post(
        &format!("/v1/dead-letters/{second_id}/replay"),
        &json!({"version": 1}),
    )
    .expect(202);
    let again = d.wait_until("the replay on version 1 to dead-letter again", || {
        dead_letters(&d)
            .into_iter()
            .find(|x| x["event"]["id"] == ids[1].as_str() && x["id"] != second_id.as_str())
    });
    assert_eq!(again["event"]["id"], ids[1].as_str(), "{again}");
    assert_eq!(again["version"], 1, "{again}");
    // The first one was not replayed: two letters, the old second one gone.
    assert_eq!(dead_letters(&d).len(), 2);
    d.post(
        &format!("/v1/dead-letters/{}/replay", again["id"].as_str().unwrap()),
        &json!({"version": 9}),
    )
    .error(404, "not_found");
}

#[test]
fn purge_empties_a_handlers_dead_letters() {
    let (d, _, _) = two_dead_letters();
    let r = d.delete("/v1/dead-letters?handler=flaky").expect(200);
    assert_eq!(r.json, json!({"purged": 2}));
    assert!(dead_letters(&d).is_empty());
    let r = d.delete("/v1/dead-letters").expect(200);
    assert_eq!(r.json, json!({"purged": 0}));
}
