//! Issue 13, item 6: a finished event keeps its payload for the delivery
//! log's retention. `GET /v1/events/{id}` answers with the event (payload
//! included) and `complete: true` after every delivery ended — ok or
//! dead-lettered, across a restart — and stops once retention has dropped
//! the event's log lines.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::{guests, read};
use serde_json::json;

use super::array;

#[test]
fn a_finished_event_keeps_its_payload_until_retention_drops_its_log() {
    // Retention keeps two log lines; it runs at start and every minute.
    let mut d = Daemon::start_with("[store]\nlog_max_entries = 2\n");
    let good = json!({"name": "good", "subscription": {"events": ["ok.*"]}});
    d.deploy(&good.to_string(), &read(guests::GOOD)).expect(201);
    let trap = json!({"name": "trap", "subscription": {"events": ["bad.*"]},
                      "delivery": {"max_attempts": 1}});
    d.deploy(&trap.to_string(), &read(guests::TRAP)).expect(201);

    let publish = |d: &Daemon, event_type: &str, n: u32| {
        let body =
            json!({"type": event_type, "tenant": "acme", "payload": {"n": n, "text": "kept"}});
        let r = d.publish(&body, true).expect(200);
        assert_eq!(r.json["outcomes"][0]["complete"], true, "{r}");
        r.json["events"][0]["id"].as_str().unwrap().to_string()
    };
    let first = publish(&d, "ok.one", 1);
    let dead = publish(&d, "bad.one", 2);

    for (id, event_type, n, outcome) in [(&first, "ok.one", 1, "ok"), (&dead, "bad.one", 2, "trap")]
    {
        let r = d.get(&format!("/v1/events/{id}")).expect(200);
        assert_eq!(r.json["complete"], true, "{r}");
        assert_eq!(r.json["event"]["id"], id.as_str(), "{r}");
        assert_eq!(r.json["event"]["type"], event_type, "{r}");
        assert_eq!(
            r.json["event"]["payload"],
            json!({"n": n, "text": "kept"}),
            "{r}"
        );
        assert_eq!(array(&r.json, "deliveries")[0]["outcome"], outcome, "{r}");
    }

    // Still there after a restart (two log lines: within retention).
    d.restart();
    let r = d.get(&format!("/v1/events/{first}")).expect(200);
    assert_eq!(r.json["event"]["payload"]["n"], 1, "{r}");

    // Two more deliveries push the first two out of the log; the restart
    // runs retention, and their events go with their last lines.
    let third = publish(&d, "ok.two", 3);
    publish(&d, "ok.three", 4);
    d.restart();
    for id in [&first, &dead] {
        d.wait_until(&format!("retention to drop {id}"), || {
            (d.get(&format!("/v1/events/{id}")).status == 404).then_some(())
        });
    }
    let r = d.get(&format!("/v1/events/{third}")).expect(200);
    assert_eq!(r.json["event"]["payload"]["n"], 3, "{r}");
}

/// `hookbox event <id>`: the payload and each attempt with what the handler
/// logged, for a finished event; `--attempt` picks one.
#[test]
fn the_cli_shows_an_event_with_each_attempts_logs() {
    let d = Daemon::start();
    let good = json!({"name": "good", "subscription": {"events": ["job.*"]}});
    d.deploy(&good.to_string(), &read(guests::GOOD)).expect(201);
    let body = json!({"type": "job.run", "tenant": "acme", "payload": {"order": 42}});
    let r = d.publish(&body, true).expect(200);
    let id = r.json["events"][0]["id"].as_str().unwrap().to_string();

    let out = d.cli(&["event", &id]).expect(0);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("event {id}  job.run  tenant=acme"))
            && first.ends_with("complete"),
        "{out}"
    );
    assert!(out.stdout.contains("\"order\": 42"), "{out}");
    assert!(out.stdout.contains("good v1  job.run"), "{out}");
    assert!(
        out.stdout.contains("handled"),
        "the handler's log line: {out}"
    );

    let out = d.cli(&["event", &id, "--attempt", "2"]).expect(0);
    assert!(out.stdout.contains("no delivery attempts"), "{out}");
    let out = d.cli(&["event", &id, "--json"]).expect(0);
    assert_eq!(out.json()["event"]["payload"]["order"], 42, "{out}");
    let out = d.cli(&["event", "01NOSUCHEVENT"]).expect(1);
    assert!(out.stderr.contains("no event"), "{out}");
}
