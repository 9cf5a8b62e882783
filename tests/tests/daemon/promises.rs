//! README's promises that no other test held the daemon to, one test each,
//! so one broken promise does not hide the others: `max_age` skips what
//! waited too long in the queue.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::{guests, read};
use serde_json::json;

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
