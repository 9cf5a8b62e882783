//! Restarts on the same data directory: handlers, versions, the delivery
//! log and the stats are all still there and nothing is recompiled (the
//! compiled-code cache is used); events accepted right before a SIGTERM or
//! a `kill -9` are delivered.

use hookbox_tests::daemon::{Daemon, Http, WAIT, zulip_inputs};
use hookbox_tests::{guests, read};
use serde_json::{Value, json};

use super::{array, sorted_field};

const TENANT: &str = "zulip.example.com";
const HANDLERS: &[&str] = &["message-logger", "tenant-analytics", "channel-activity"];

/// Everything that must survive a restart.
#[derive(Debug, PartialEq)]
struct Snapshot {
    handlers: Value,
    versions: Vec<Value>,
    logs: Value,
    stats: Value,
}

fn snapshot(d: &Daemon) -> Snapshot {
    Snapshot {
        handlers: d.get("/v1/handlers?config=true").expect(200).json,
        versions: HANDLERS
            .iter()
            .map(|h| {
                d.get(&format!("/v1/handlers/{h}/versions"))
                    .expect(200)
                    .json
            })
            .collect(),
        logs: d.get("/v1/logs?limit=1000").expect(200).json,
        stats: d.get("/v1/stats").expect(200).json["handlers"].clone(),
    }
}

/// Asserts the restarted daemon compiled nothing and loaded the code of at
/// least `handlers` handlers from the cache (on their first delivery).
fn assert_nothing_recompiled(d: &Daemon, handlers: usize) {
    let text = d.metrics();
    let metric = |s: &str| hookbox_tests::daemon::metric(&text, s);
    assert_eq!(
        metric("hookbox_components_compiled_total"),
        Some(0.0),
        "{text}"
    );
    let loads = metric("hookbox_components_cache_loads_total").unwrap_or(0.0);
    assert!(loads >= handlers as f64, "{text}");
}

/// Publishes `inputs` without waiting; returns each event id with the
/// handlers it was routed to.
fn publish_async(d: &Daemon, inputs: &[Value]) -> Vec<(String, Vec<String>)> {
    let r = d.publish(&Value::Array(inputs.to_vec()), false).expect(202);
    array(&r.json, "events")
        .iter()
        .map(|e| {
            let mut handlers: Vec<String> = array(e, "handlers")
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            handlers.sort();
            (e["id"].as_str().unwrap().to_string(), handlers)
        })
        .collect()
}

/// Waits until every event is out of the inbox with an `ok` delivery for
/// each handler it was routed to (at least once: a crash may repeat one).
fn assert_all_delivered(d: &Daemon, events: &[(String, Vec<String>)], after: &str) {
    for (id, handlers) in events {
        assert!(!handlers.is_empty(), "{id} was routed nowhere");
        d.wait_until(&format!("event {id} to be delivered after {after}"), || {
            let r = d.get(&format!("/v1/events/{id}")).expect(200);
            if r.json["complete"] != true {
                return None;
            }
            let ok: Vec<Value> = array(&r.json, "deliveries")
                .iter()
                .filter(|x| x["outcome"] == "ok")
                .cloned()
                .collect();
            let mut got = sorted_field(&ok, "handler");
            got.dedup();
            assert_eq!(&got, handlers, "{r}");
            Some(())
        });
    }
}

#[test]
fn state_survives_restarts_and_accepted_events_survive_crashes() {
    let mut d = Daemon::start();
    for h in HANDLERS {
        d.deploy_example(h);
    }
    d.deploy_example("message-logger"); // version 2
    let inputs = zulip_inputs(TENANT);
    let r = d
        .publish(&Value::Array(inputs[..30].to_vec()), true)
        .expect(200);
    for outcome in array(&r.json, "outcomes") {
        assert_eq!(outcome["complete"], true, "{r}");
    }
    let before = snapshot(&d);
    assert_eq!(array(&before.versions[0], "versions").len(), 2);
    assert!(!array(&before.logs, "entries").is_empty());

    // A graceful restart, with a live stream open (it must not hold the
    // shutdown up): everything is still there; code comes from the cache.
    let http = Http::new();
    let mut stream = http.stream(d.url(), "/v1/stream", d.admin());
    d.restart();
    let last = stream.next_event(WAIT);
    assert!(
        last.is_none() && stream.ended(),
        "the stream ends with the daemon: {last:?}"
    );
    assert_eq!(snapshot(&d), before);
    // Code loads on a handler's first delivery after the restart.
    let r = d.publish(&inputs[30], true).expect(200);
    let deliveries = array(&r.json["outcomes"][0], "deliveries");
    for delivery in deliveries {
        assert_eq!(delivery["outcome"], "ok", "cached code runs: {r}");
    }
    let mut ran = sorted_field(deliveries, "handler");
    ran.dedup();
    assert!(!ran.is_empty(), "{r}");
    assert_nothing_recompiled(&d, ran.len());

    // Accepted, then SIGTERM at once: delivered before the exit or after the restart.
    let events = publish_async(&d, &inputs[31..61]);
    d.stop();
    d.restart();
    assert_all_delivered(&d, &events, "a SIGTERM");

    // Accepted, then kill -9 at once: the inbox is durable.
    let events = publish_async(&d, &inputs[61..]);
    d.kill9();
    d.restart();
    assert_all_delivered(&d, &events, "a kill -9");
    let mut ran: Vec<&String> = events.iter().flat_map(|(_, h)| h).collect();
    ran.sort();
    ran.dedup();
    assert_nothing_recompiled(&d, ran.len());
    let r = d.get("/v1/handlers").expect(200);
    assert_eq!(array(&r.json, "handlers").len(), HANDLERS.len(), "{r}");
}

/// DESIGN.md: "compiled code is cached (content hash + engine fingerprint)
/// so restarts and redeploys do not recompile". A second deploy of the same
/// bytes, as a new version or as another handler, loads the cached code.
#[test]
fn redeploying_the_same_component_does_not_recompile() {
    let d = Daemon::start();
    let wasm = read(guests::GOOD);
    let manifest =
        |name: &str| json!({"name": name, "subscription": {"events": ["ping"]}}).to_string();
    let r = d.deploy(&manifest("first"), &wasm).expect(201);
    assert_eq!(r.json["compiled_from_cache"], false, "{r}");
    let r = d.deploy(&manifest("first"), &wasm).expect(201);
    assert_eq!(r.json["version"]["version"], 2, "{r}");
    assert_eq!(
        r.json["compiled_from_cache"], true,
        "same bytes, new version: {r}"
    );
    let r = d.deploy(&manifest("second"), &wasm).expect(201);
    assert_eq!(
        r.json["compiled_from_cache"], true,
        "same bytes, other handler: {r}"
    );
    assert_eq!(d.metric("hookbox_components_compiled_total"), Some(1.0));
    let r = d.publish(&json!({"type": "ping"}), true).expect(200);
    for delivery in array(&r.json["outcomes"][0], "deliveries") {
        assert_eq!(delivery["outcome"], "ok", "{r}");
    }
}

/// Regression: a `POST /v1/events?wait=true` still waiting held a SIGTERM
/// up for as long as its wait (`max_wait`, 60 s by default). A shutdown now
/// answers it at once with the outcomes so far.
#[test]
fn sigterm_answers_a_waiting_publisher_at_once() {
    let mut d = Daemon::start();
    let manifest = json!({
        "name": "slow-retry",
        "subscription": {"events": ["job.run"]},
        "delivery": {"max_attempts": 3, "initial_backoff_ms": 600_000, "max_backoff_ms": 600_000}
    });
    d.deploy(&manifest.to_string(), &read(guests::TRAP))
        .expect(201);
    let (url, token) = (d.url().to_string(), d.admin().to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let body = hookbox_tests::daemon::Body::Json(json!({"type": "job.run"}));
        let r = Http::new().send(
            &url,
            reqwest::Method::POST,
            "/v1/events?wait=true",
            Some(&token),
            body,
        );
        let _ = tx.send(());
        r
    });
    // The first attempt failed and its retry is ten minutes away: the
    // publisher is waiting.
    d.wait_until("the first attempt", || {
        let r = d.get("/v1/logs?handler=slow-retry").expect(200);
        (!array(&r.json, "entries").is_empty()).then_some(())
    });
    assert!(rx.try_recv().is_err(), "the publisher is still waiting");
    d.stop();
    let r = waiter.join().expect("the publisher thread").expect(200);
    let outcome = &r.json["outcomes"][0];
    assert_eq!(outcome["complete"], false, "{r}");
    assert_eq!(outcome["deliveries"][0]["outcome"], "trap", "{r}");

    // The retry is durable: still scheduled after the restart.
    d.restart();
    let id = r.json["events"][0]["id"].as_str().unwrap();
    let r = d.get(&format!("/v1/events/{id}")).expect(200);
    assert_eq!(r.json["event"]["id"], id, "{r}");
    assert_eq!(r.json["complete"], false, "still pending: {r}");
}

/// The log inbox is the default; a data directory whose inbox log still
/// holds an unfinished delivery does not start on `inbox = "sled"` (which
/// would strand it) and says why; back on the log inbox the delivery is
/// still there.
#[test]
fn switching_to_the_sled_inbox_over_unfinished_deliveries_is_refused() {
    let mut d = Daemon::start();
    let manifest = json!({
        "name": "slow-retry",
        "subscription": {"events": ["job.run"]},
        "delivery": {"max_attempts": 3, "initial_backoff_ms": 600_000, "max_backoff_ms": 600_000}
    });
    d.deploy(&manifest.to_string(), &read(guests::TRAP))
        .expect(201);
    let r = d.publish(&json!({"type": "job.run"}), false).expect(202);
    let id = r.json["events"][0]["id"].as_str().unwrap().to_string();
    d.wait_until("the first attempt", || {
        let r = d.get("/v1/logs?handler=slow-retry").expect(200);
        (!array(&r.json, "entries").is_empty()).then_some(())
    });
    d.stop();
    assert!(
        d.data_dir().join("inbox").is_dir(),
        "the log inbox is the default"
    );

    let sled = d.scratch().join("sled.toml");
    std::fs::write(
        &sled,
        format!(
            "{}[store]\ninbox = \"sled\"\n",
            hookbox_tests::daemon::BASE_CONFIG
        ),
    )
    .unwrap();
    let out = std::process::Command::new(hookbox_tests::daemon::hookbox_bin())
        .arg("serve")
        .arg("--data")
        .arg(d.data_dir())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--config")
        .arg(&sled)
        .env("HOOKBOX_ADMIN_TOKEN", d.admin())
        .env("NO_COLOR", "1")
        .output()
        .expect("running hookbox serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started over the inbox log: {stderr}"
    );
    assert!(
        stderr.contains("still holds unfinished deliveries (1)")
            && stderr.contains("inbox = \"log\""),
        "{stderr}"
    );

    d.restart();
    let r = d.get(&format!("/v1/events/{id}")).expect(200);
    assert_eq!(r.json["complete"], false, "still pending: {r}");
}
