//! Handler administration over HTTP: every example handler deployed from
//! its `manifest.json`, list, show, versions, a redeploy (version 2),
//! rollbacks, disable/enable and what they do to routing, and a config
//! change that alters a running handler's behaviour without a restart.

use hookbox_tests::daemon::{Body, Daemon, example};
use hookbox_tests::guests::{self, EXAMPLES};
use hookbox_tests::read;
use reqwest::Method;
use serde_json::{Value, json};

use super::{array, sorted_field, zulip_message};

const TENANT: &str = "zulip.example.com";

// One daemon per scenario, so one failure does not hide the others; each
// deploys only the examples its scenario needs.

#[test]
fn every_example_deploys_and_is_listed_and_shown() {
    let d = Daemon::start();
    deploy_every_example(&d);
}

#[test]
fn a_redeploy_adds_a_version_and_rollback_moves_the_pointer() {
    let d = Daemon::start();
    d.deploy_example("keyword-responder");
    redeploy_and_rollback(&d);
}

#[test]
fn disable_stops_routing_and_enable_resumes_it() {
    let d = Daemon::start();
    for name in MESSAGE_HANDLERS {
        d.deploy_example(name);
    }
    disable_and_enable(&d);
}

#[test]
fn config_changes_apply_without_a_restart() {
    let d = Daemon::start();
    d.deploy_example("keyword-responder");
    d.deploy_example("tenant-analytics");
    config_change(&d);
}

#[test]
fn delete_removes_a_handler() {
    let d = Daemon::start();
    for name in MESSAGE_HANDLERS {
        d.deploy_example(name);
    }
    delete(&d);
}

/// A delete catches a delivery mid-run: it waits for it, so what the
/// delivery writes at its end (a KV key, here) goes with the handler, and
/// the next handler deployed under the name starts with nothing.
#[test]
fn a_delete_waits_for_a_running_delivery_and_its_kv_goes_with_the_handler() {
    let d = Daemon::start();
    let manifest = json!({
        "name": "late-writer",
        "subscription": {"events": ["slow"]},
        // The guest sleeps this many ms, then sets the KV key `late`.
        "config": 3000,
        "limits": {"timeout_ms": 20000},
        "delivery": {"max_attempts": 1},
    });
    d.deploy(&manifest.to_string(), &read(guests::SLEEP_KV))
        .expect(201);
    d.publish(&json!({"type": "slow", "tenant": "acme"}), false)
        .expect(202);
    let published = std::time::Instant::now();
    // Well into the delivery's sleep.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let started = std::time::Instant::now();
    d.delete("/v1/handlers/late-writer").expect(204);
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1000),
        "the delete returned after {waited:?}, before the running delivery could end"
    );
    d.deploy(&manifest.to_string(), &read(guests::SLEEP_KV))
        .expect(201);
    // Past the end of the first delivery, had it outlived the delete.
    std::thread::sleep(std::time::Duration::from_millis(4000).saturating_sub(published.elapsed()));
    let kv = d.get("/v1/handlers/late-writer/kv?tenant=acme").expect(200);
    assert_eq!(
        array(&kv.json, "entries").len(),
        0,
        "the deleted handler's last delivery wrote after the delete: {kv}"
    );
}

/// Two examples subscribed to `message`, for the routing scenarios.
const MESSAGE_HANDLERS: [&str; 2] = ["message-logger", "word-counter"];

fn manifest_json(name: &str) -> Value {
    serde_json::from_str(&example(name).0).unwrap()
}

fn deploy_every_example(d: &Daemon) {
    for (name, _) in EXAMPLES {
        let r = d.deploy_example(name);
        let m = manifest_json(name);
        assert_eq!(r.json["handler"]["name"], *name, "{r}");
        assert_eq!(r.json["handler"]["enabled"], true, "{r}");
        assert_eq!(r.json["handler"]["active_version"], 1, "{r}");
        assert_eq!(r.json["handler"]["config"], m["config"], "{r}");
        assert_eq!(r.json["version"]["version"], 1, "{r}");
        assert_eq!(
            r.json["version"]["manifest"]["subscription"]["events"], m["subscription"]["events"],
            "{r}"
        );
    }

    let list = d.get("/v1/handlers").expect(200);
    let handlers = array(&list.json, "handlers");
    let mut names: Vec<String> = EXAMPLES.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(sorted_field(handlers, "name"), names, "{list}");
    for h in handlers {
        let m = manifest_json(h["name"].as_str().unwrap());
        assert_eq!(h["enabled"], true, "{h}");
        assert_eq!(h["active_version"], 1, "{h}");
        assert_eq!(h["events"], m["subscription"]["events"], "{h}");
        assert_eq!(h["description"], m["description"], "{h}");
        assert!(h.get("stats").is_none() && h.get("config").is_none(), "{h}");
    }
    let list = d.get("/v1/handlers?stats=true&config=true").expect(200);
    for h in array(&list.json, "handlers") {
        assert_eq!(h["stats"]["processed"], 0, "{h}");
        let m = manifest_json(h["name"].as_str().unwrap());
        assert_eq!(h["config"], m["config"], "{h}");
    }

    let r = d.get("/v1/handlers/keyword-responder").expect(200);
    assert_eq!(r.json["handler"]["name"], "keyword-responder", "{r}");
    assert_eq!(r.json["version"]["version"], 1, "{r}");
    assert_eq!(r.json["stats"]["processed"], 0, "{r}");
    let m = d
        .get("/v1/handlers/no-such-handler")
        .error(404, "not_found");
    assert!(m.contains("no-such-handler"), "{m}");
    d.get("/v1/handlers/no-such-handler/versions")
        .error(404, "not_found");
}

fn versions(d: &Daemon, name: &str) -> Vec<(u64, String)> {
    let r = d.get(&format!("/v1/handlers/{name}/versions")).expect(200);
    array(&r.json, "versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["manifest"]["description"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn active(d: &Daemon, name: &str) -> (u64, String) {
    let r = d.get(&format!("/v1/handlers/{name}")).expect(200);
    assert_eq!(
        r.json["handler"]["active_version"], r.json["version"]["version"],
        "{r}"
    );
    (
        r.json["version"]["version"].as_u64().unwrap(),
        r.json["version"]["manifest"]["description"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn redeploy_and_rollback(d: &Daemon) {
    let name = "keyword-responder";
    let (manifest, wasm) = example(name);
    let original = manifest_json(name)["description"]
        .as_str()
        .unwrap()
        .to_string();
    let mut second: Value = serde_json::from_str(&manifest).unwrap();
    second["description"] = json!("the second version");
    let r = d.deploy(&second.to_string(), &wasm).expect(201);
    assert_eq!(r.json["version"]["version"], 2, "{r}");
    assert_eq!(r.json["handler"]["active_version"], 2, "{r}");
    assert_eq!(
        versions(d, name),
        [(1, original.clone()), (2, "the second version".to_string())]
    );
    assert_eq!(active(d, name), (2, "the second version".into()));

    let rollback = format!("/v1/handlers/{name}/rollback");
    // No body: the version before the active one.
    let r = d
        .send(Method::POST, &rollback, Some(d.admin()), Body::None)
        .expect(200);
    assert_eq!(r.json["active_version"], 1, "{r}");
    assert_eq!(active(d, name), (1, original.clone()));
    let r = d.post(&rollback, &json!({"version": 2})).expect(200);
    assert_eq!(r.json["active_version"], 2, "{r}");
    assert_eq!(active(d, name), (2, "the second version".into()));

    let m = d
        .post(&rollback, &json!({"version": 7}))
        .error(404, "not_found");
    assert!(m.contains('7'), "{m}");
    assert_eq!(active(d, name).0, 2);
    assert_eq!(versions(d, name).len(), 2, "a rollback adds no version");
}

/// Publishes one Zulip message and waits for its outcome; returns the
/// handlers it was routed to (sorted) and the outcome.
fn send_message(d: &Daemon, id: u64, html: &str) -> (Vec<String>, Value) {
    let event = json!({"type": "message", "tenant": TENANT, "payload": zulip_message(id, html)});
    let r = d.publish(&event, true).expect(200);
    let mut routed: Vec<String> = array(&r.json["events"][0], "handlers")
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    routed.sort();
    let outcome = r.json["outcomes"][0].clone();
    assert_eq!(outcome["complete"], true, "{r}");
    for delivery in array(&outcome, "deliveries") {
        assert_eq!(delivery["outcome"], "ok", "{r}");
    }
    assert_eq!(
        sorted_field(array(&outcome, "deliveries"), "handler"),
        routed,
        "one delivery per routed handler: {r}"
    );
    (routed, outcome)
}

fn disable_and_enable(d: &Daemon) {
    let all: Vec<String> = MESSAGE_HANDLERS.iter().map(|h| h.to_string()).collect();
    let (routed, _) = send_message(d, 100, "<p>hello</p>");
    assert_eq!(routed, all);

    let r = d
        .post(
            "/v1/handlers/message-logger/disable",
            &json!({"reason": "maintenance"}),
        )
        .expect(200);
    assert_eq!(r.json["enabled"], false, "{r}");
    assert_eq!(r.json["disabled_reason"], "maintenance", "{r}");
    let r = d.get("/v1/handlers?status=disabled").expect(200);
    assert_eq!(
        sorted_field(array(&r.json, "handlers"), "name"),
        ["message-logger"]
    );
    let r = d.get("/v1/handlers?status=enabled").expect(200);
    assert_eq!(
        sorted_field(array(&r.json, "handlers"), "name"),
        ["word-counter"]
    );

    let logged = |d: &Daemon| {
        let r = d.get("/v1/logs?handler=message-logger").expect(200);
        array(&r.json, "entries").len()
    };
    let before = logged(d);
    let (routed, _) = send_message(d, 101, "<p>while disabled</p>");
    let without: Vec<String> = all
        .iter()
        .filter(|h| *h != "message-logger")
        .cloned()
        .collect();
    assert_eq!(routed, without);
    assert_eq!(logged(d), before, "a disabled handler got a delivery");

    let r = d
        .send(
            Method::POST,
            "/v1/handlers/message-logger/enable",
            Some(d.admin()),
            Body::None,
        )
        .expect(200);
    assert_eq!(r.json["enabled"], true, "{r}");
    assert_eq!(r.json["disabled_reason"], Value::Null, "{r}");
    let (routed, _) = send_message(d, 102, "<p>enabled again</p>");
    assert_eq!(routed, all);
    assert_eq!(logged(d), before + 1);
}

/// How many `zulip.send_message` events tenant-analytics has seen.
fn replies_seen(d: &Daemon) -> usize {
    let r = d
        .get("/v1/logs?handler=tenant-analytics&type=zulip.send_message")
        .expect(200);
    array(&r.json, "entries").len()
}

/// Publishes one message and returns how many events keyword-responder's
/// delivery of it emitted (its outcome says, once the wait is over).
fn replies_to(d: &Daemon, id: u64, html: &str) -> u64 {
    let (_, outcome) = send_message(d, id, html);
    let delivery = array(&outcome, "deliveries")
        .iter()
        .find(|x| x["handler"] == "keyword-responder")
        .unwrap_or_else(|| panic!("no keyword-responder delivery: {outcome}"))
        .clone();
    delivery["emitted_total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no emitted_total: {delivery}"))
}

fn config_change(d: &Daemon) {
    // The manifest's keywords: "deploy" gets a reply, "release" does not.
    assert_eq!(replies_to(d, 200, "<p>we deploy at noon</p>"), 1);
    assert_eq!(replies_to(d, 201, "<p>the release is out</p>"), 0);

    let config = json!({
        "keywords": ["release"],
        "reply": "Release noted ({keyword}).",
        "ignore_senders": []
    });
    let r = d
        .put("/v1/handlers/keyword-responder/config", &config)
        .expect(200);
    assert_eq!(r.json["config"], config, "{r}");
    let r = d.get("/v1/handlers/keyword-responder").expect(200);
    assert_eq!(r.json["handler"]["config"], config, "{r}");
    assert_eq!(
        r.json["handler"]["active_version"], 1,
        "a config change is not a deploy"
    );

    // "deploy" no longer triggers a reply; "release" does.
    assert_eq!(replies_to(d, 202, "<p>we deploy at noon</p>"), 0);
    assert_eq!(replies_to(d, 203, "<p>the release is out</p>"), 1);
    // Exactly the two replies emitted exist, so once tenant-analytics has
    // seen two there is nothing more in flight to wait for.
    d.wait_until("2 zulip.send_message deliveries", || {
        (replies_seen(d) >= 2).then_some(())
    });
    assert_eq!(replies_seen(d), 2);

    let m = d
        .put("/v1/handlers/no-such-handler/config", &config)
        .error(404, "not_found");
    assert!(m.contains("no-such-handler"), "{m}");
}

fn delete(d: &Daemon) {
    d.delete("/v1/handlers/message-logger").expect(204);
    d.get("/v1/handlers/message-logger").error(404, "not_found");
    d.get("/v1/handlers/message-logger/versions")
        .error(404, "not_found");
    let r = d.get("/v1/handlers").expect(200);
    let names = sorted_field(array(&r.json, "handlers"), "name");
    assert_eq!(names, ["word-counter"], "{r}");
    let (routed, _) = send_message(d, 300, "<p>after the delete</p>");
    assert_eq!(routed, ["word-counter"]);
    d.delete("/v1/handlers/message-logger")
        .error(404, "not_found");
    // The name is free again.
    let r = d.deploy_example("message-logger");
    assert_eq!(r.json["version"]["version"], 1, "{r}");
}
