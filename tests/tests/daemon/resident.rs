//! Handler code is loaded on first delivery and evicted past the resident
//! budget (`[runtime] resident_handlers`): with room for one module, two
//! handlers taking turns evict each other on every delivery, and every
//! delivery still runs — queued ones for an evicted handler included; a
//! redeploy of an evicted handler takes effect; a restart loads nothing
//! until a delivery needs it; the daemon runs without transparent huge
//! pages.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::{guests, read};
use serde_json::{Value, json};

use super::array;

fn manifest(name: &str, event: &str) -> String {
    json!({
        "name": name,
        "subscription": {"events": [event]},
        "delivery": {"max_attempts": 1},
    })
    .to_string()
}

/// `/v1/stats`' `resident` object.
fn resident(d: &Daemon) -> Value {
    d.get("/v1/stats").expect(200).json["resident"].clone()
}

/// Waits until every event has a final delivery; returns their outcomes.
fn outcomes(d: &Daemon, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            d.wait_until(&format!("event {id} to be delivered"), || {
                let r = d.get(&format!("/v1/events/{id}")).expect(200);
                if r.json["complete"] != true {
                    return None;
                }
                let deliveries = array(&r.json, "deliveries");
                assert_eq!(deliveries.len(), 1, "{r}");
                Some(deliveries[0]["outcome"].as_str().unwrap().to_string())
            })
        })
        .collect()
}

#[test]
fn evicted_handlers_still_get_their_deliveries_and_redeploys() {
    // One worker, so deliveries run in queue order and each one for `a`
    // follows one for `b` that evicted `a`'s code.
    let mut d = Daemon::start_with("resident_handlers = 1\n[dispatch]\nworkers = 1\n");
    d.deploy(&manifest("a", "to.a"), &read(guests::GOOD))
        .expect(201);
    d.deploy(&manifest("b", "to.b"), &read(guests::COUNTER))
        .expect(201);
    let r = resident(&d);
    assert_eq!(
        (r["modules"].clone(), r["deployed"].clone()),
        (json!(1), json!(2)),
        "{r}"
    );

    // Alternating events, all queued before the first runs.
    let inputs: Vec<Value> = (0..20)
        .map(|i| json!({"type": if i % 2 == 0 { "to.a" } else { "to.b" }}))
        .collect();
    let r = d.publish(&Value::Array(inputs), false).expect(202);
    let ids: Vec<String> = array(&r.json, "events")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(outcomes(&d, &ids).iter().all(|o| o == "ok"));
    let r = resident(&d);
    assert_eq!(r["modules"], 1, "the budget holds: {r}");
    assert!(r["evictions"].as_u64().unwrap() >= 10, "{r}");
    assert!(r["loads"].as_u64().unwrap() >= 12, "{r}");
    assert_eq!(d.metric("hookbox_components_compiled_total"), Some(2.0));

    // `a` is evicted (b ran last); its redeploy with other code is what
    // its next delivery runs.
    let r = d.publish(&json!({"type": "to.b"}), true).expect(200);
    assert_eq!(
        r.json["outcomes"][0]["deliveries"][0]["outcome"], "ok",
        "{r}"
    );
    d.deploy(&manifest("a", "to.a"), &read(guests::TRAP))
        .expect(201);
    d.publish(&json!({"type": "to.b"}), true).expect(200);
    let r = d.publish(&json!({"type": "to.a"}), true).expect(200);
    let delivery = &r.json["outcomes"][0]["deliveries"][0];
    assert_eq!(
        (delivery["outcome"].clone(), delivery["version"].clone()),
        (json!("trap"), json!(2)),
        "{r}"
    );

    // After a restart nothing is loaded until a delivery needs it, and
    // that load comes from the compiled-code cache.
    d.restart();
    let r = resident(&d);
    assert_eq!(
        (
            r["modules"].clone(),
            r["handlers"].clone(),
            r["deployed"].clone()
        ),
        (json!(0), json!(0), json!(2)),
        "{r}"
    );
    let r = d.publish(&json!({"type": "to.b"}), true).expect(200);
    assert_eq!(
        r.json["outcomes"][0]["deliveries"][0]["outcome"], "ok",
        "{r}"
    );
    let r = resident(&d);
    assert_eq!(
        (r["handlers"].clone(), r["loads"].clone()),
        (json!(1), json!(1)),
        "{r}"
    );
    assert_eq!(d.metric("hookbox_components_compiled_total"), Some(0.0));
    assert_eq!(d.metric("hookbox_components_cache_loads_total"), Some(1.0));
    let text = d.cli(&["stats"]).expect(0).stdout;
    assert!(
        text.contains("resident: 1 of 2 handlers loaded, 1 modules"),
        "{text}"
    );
}

/// mimalloc asks for huge pages on its arenas; the binary turns them off
/// for itself first thing (a cold delivery's p99 was 2–3x slower with
/// them), so `/proc/<pid>/status` says so.
#[test]
fn the_daemon_runs_without_transparent_huge_pages() {
    let d = Daemon::start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .expect("the daemon's /proc status");
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line (Linux ≥ 5.0 prints one):\n{status}"));
    assert_eq!(thp.trim(), "0", "{status}");
}
