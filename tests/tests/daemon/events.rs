//! Events end to end: the Zulip fixture events published in batches with
//! `?wait=true` to the six example handlers, event lookup, the delivery log
//! (every filter, cursor pagination), stats, `/metrics`, an event emitted by
//! a handler (keyword-responder's `zulip.send_message`) accepted as a new
//! event, and the live SSE stream.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hookbox_tests::daemon::{Daemon, zulip_inputs};
use hookbox_tests::guests::{self, EXAMPLES};
use serde_json::{Value, json};

use super::{array, sorted_field, subscribers, zulip_message};

const TENANT: &str = "zulip.example.com";
const OTHER: &str = "other.example.com";
/// Events per `POST /v1/events`.
const BATCH: usize = 20;

/// The fixture run, seen through the event lookup, the delivery log and
/// the stats: one daemon and one run (82 events, every example), each view
/// checked even when another fails, and every failure reported.
#[test]
fn zulip_fixtures_are_routed_logged_and_counted() {
    let d = Daemon::start();
    deploy(&d, &all_examples());
    let expected = publish_fixtures(&d);
    let views: [(&str, &dyn Fn()); 3] = [
        ("event lookup", &|| event_lookup(&d, &expected)),
        ("log filters and pages", &|| {
            log_filters_and_pages(&d, &expected)
        }),
        ("stats and metrics", &|| stats_and_metrics(&d, &expected)),
    ];
    let failed: Vec<&str> = views
        .iter()
        .filter(|(_, check)| std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).is_err())
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "failed (panics above): {failed:?}");
}

#[test]
fn emitted_events_are_accepted_as_new_events() {
    let d = Daemon::start();
    deploy(&d, &["keyword-responder", "tenant-analytics"]);
    emitted_events_are_accepted(&d);
}

#[test]
fn tickets_are_tracked_and_notified() {
    let d = Daemon::start();
    let deployed = ["ticket-notifier", "tenant-analytics"];
    deploy(&d, &deployed);
    tickets_are_tracked(&d, &deployed);
}

#[test]
fn the_stream_reports_deliveries() {
    let d = Daemon::start();
    deploy(&d, &["message-logger"]);
    stream_reports_deliveries(&d);
}

#[test]
fn idempotency_keys_dedupe_across_requests() {
    let d = Daemon::start();
    deploy(&d, &["tenant-analytics"]);
    idempotency_keys_dedupe(&d);
}

/// Requests racing with one idempotency key, one event each (the size the
/// API queues on its reactor), are accepted once: every answer carries the
/// first one's id, and exactly one is not a duplicate. Keys of other
/// requests in flight at the same time do not hold them up.
#[test]
fn racing_requests_with_one_idempotency_key_are_accepted_once() {
    let d = Daemon::start();
    deploy(&d, &["tenant-analytics"]);
    for round in 0..10 {
        let key = format!("race-{round}");
        let answers: Vec<Value> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..12)
                .map(|_| {
                    let (d, key) = (&d, &key);
                    s.spawn(move || {
                        let event = json!({"type": "invoice.paid", "tenant": "acme", "idempotency_key": key});
                        d.publish(&event, false).expect(202).json["events"][0].clone()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let ids: BTreeSet<String> = answers.iter().map(|a| a["id"].to_string()).collect();
        assert_eq!(ids.len(), 1, "one key, several events: {answers:?}");
        let firsts = answers.iter().filter(|a| a["duplicate"] == false).count();
        assert_eq!(firsts, 1, "{answers:?}");
    }
}

/// Every example handler's name./// Every example handler's name.
fn all_examples() -> Vec<&'static str> {
    EXAMPLES.iter().map(|(name, _)| *name).collect()
}

fn deploy(d: &Daemon, names: &[&str]) {
    for name in names {
        d.deploy_example(name);
    }
}

/// What the fixtures should have produced: per event id, its type, tenant
/// and routed handlers.
struct Published {
    events: BTreeMap<String, (String, String, Vec<String>)>,
}

impl Published {
    fn deliveries(&self) -> usize {
        self.events.values().map(|(_, _, h)| h.len()).sum()
    }

    fn deliveries_of(&self, handler: &str) -> usize {
        self.events
            .values()
            .filter(|(_, _, h)| h.iter().any(|x| x == handler))
            .count()
    }
}

/// Publishes every fixture for `TENANT` and a handful for `OTHER`, in
/// batches, waiting for the outcomes; checks routing and that every
/// delivery was `ok`.
fn publish_fixtures(d: &Daemon) -> Published {
    let mut inputs = zulip_inputs(TENANT);
    assert_eq!(inputs.len(), 77);
    inputs.extend(zulip_inputs(OTHER).into_iter().take(5));
    let mut events = BTreeMap::new();
    for batch in inputs.chunks(BATCH) {
        let r = d.publish(&Value::Array(batch.to_vec()), true).expect(200);
        let accepted = array(&r.json, "events");
        let outcomes = array(&r.json, "outcomes");
        assert_eq!(accepted.len(), batch.len(), "{r}");
        assert_eq!(outcomes.len(), batch.len(), "{r}");
        for ((input, accepted), outcome) in batch.iter().zip(accepted).zip(outcomes) {
            let t = input["type"].as_str().unwrap();
            let id = accepted["id"].as_str().unwrap().to_string();
            let want = subscribers(t);
            let mut routed: Vec<String> = accepted["handlers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            routed.sort();
            assert_eq!(routed, want, "routing of {t}");
            assert_eq!(outcome["id"], id.as_str(), "{r}");
            assert_eq!(outcome["complete"], true, "{t}: {outcome}");
            let deliveries = array(outcome, "deliveries");
            assert_eq!(sorted_field(deliveries, "handler"), want, "{t}: {outcome}");
            for delivery in deliveries {
                assert_eq!(delivery["outcome"], "ok", "{t}: {delivery}");
                assert_eq!(delivery["attempt"], 1, "{t}: {delivery}");
                assert_eq!(delivery["event_type"], t, "{delivery}");
            }
            let tenant = input["tenant"].as_str().unwrap().to_string();
            events.insert(id, (t.to_string(), tenant, want));
        }
    }
    assert_eq!(events.len(), 82, "every event got its own id");
    Published { events }
}

fn event_lookup(d: &Daemon, expected: &Published) {
    let (id, (_, _, handlers)) = expected
        .events
        .iter()
        .find(|(_, (t, tenant, _))| t == "message" && tenant == TENANT)
        .unwrap();
    let r = d.get(&format!("/v1/events/{id}")).expect(200);
    let deliveries = array(&r.json, "deliveries");
    assert_eq!(&sorted_field(deliveries, "handler"), handlers, "{r}");
    for delivery in deliveries {
        assert_eq!(delivery["event_id"], id.as_str(), "{r}");
        assert_eq!(delivery["tenant"], TENANT, "{r}");
        assert_eq!(delivery["outcome"], "ok", "{r}");
    }
    d.get("/v1/events/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .error(404, "not_found");
}

/// Every log entry matching `query`, following `next_cursor` page by page.
fn all_pages(d: &Daemon, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/v1/logs?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = d.get(&path).expect(200);
        let page = array(&r.json, "entries");
        assert!(page.len() <= limit, "{r}");
        out.extend(page.iter().cloned());
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("the log of {query:?} did not end after 1000 pages");
}

fn log_filters_and_pages(d: &Daemon, expected: &Published) {
    let all = all_pages(d, "", 7);
    assert_eq!(all.len(), expected.deliveries(), "every attempt, once");
    let ids: BTreeSet<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "no entry on two pages");
    let times: Vec<u64> = all.iter().map(|e| e["time_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    for e in &all {
        let (t, tenant, handlers) = &expected.events[e["event_id"].as_str().unwrap()];
        assert_eq!(e["event_type"], t.as_str(), "{e}");
        assert_eq!(e["tenant"], tenant.as_str(), "{e}");
        assert!(handlers.iter().any(|h| e["handler"] == h.as_str()), "{e}");
    }
    // The first page of the default size is the newest entries.
    let r = d.get("/v1/logs?limit=7").expect(200);
    assert_eq!(array(&r.json, "entries"), &all[..7]);

    let count = |query: &str| all_pages(d, query, 100).len();
    assert_eq!(
        count("handler=message-logger"),
        expected.deliveries_of("message-logger")
    );
    assert_eq!(
        count("handler=tenant-analytics"),
        expected.deliveries_of("tenant-analytics")
    );
    let creates = expected
        .events
        .values()
        .filter(|(t, _, _)| t == "stream.create")
        .map(|(_, _, h)| h.len())
        .sum::<usize>();
    assert_eq!(creates, 2, "one stream.create, for two handlers");
    let entries = all_pages(d, "type=stream.create", 100);
    assert_eq!(entries.len(), creates);
    assert!(entries.iter().all(|e| e["event_type"] == "stream.create"));
    let other = all_pages(d, &format!("tenant={OTHER}"), 100);
    let want_other = expected
        .events
        .values()
        .filter(|(_, tenant, _)| tenant == OTHER)
        .map(|(_, _, h)| h.len())
        .sum::<usize>();
    assert_eq!(other.len(), want_other);
    assert!(other.iter().all(|e| e["tenant"] == OTHER));
    let (first_other, _, _) = expected
        .events
        .values()
        .find(|(_, tenant, _)| tenant == OTHER)
        .unwrap();
    assert_eq!(
        count(&format!(
            "tenant={OTHER}&handler=tenant-analytics&type={first_other}"
        )),
        1
    );
    assert_eq!(count("outcome=ok"), expected.deliveries());
    assert_eq!(count("outcome=trap"), 0);
    assert_eq!(count("failed=true"), 0);
    assert_eq!(count("handler=no-such-handler"), 0);
}

fn stats_and_metrics(d: &Daemon, expected: &Published) {
    let r = d.get("/v1/stats").expect(200);
    let stats = array(&r.json, "handlers");
    assert_eq!(stats.len(), EXAMPLES.len(), "{r}");
    for s in stats {
        let name = s["handler"].as_str().unwrap();
        let n = expected.deliveries_of(name) as u64;
        // ticket-notifier and ticket-alerts take TICKET_* events only: see
        // `tickets_are_tracked` and tests/tests/connectors.
        assert!(
            n > 0 || name == "ticket-notifier" || name == "ticket-alerts",
            "{name} got no event"
        );
        assert_eq!(s["processed"], n, "{s}");
        assert_eq!(s["ok"], n, "{s}");
        assert_eq!(s["failed"], 0, "{s}");
        assert_eq!(s["dead_lettered"], 0, "{s}");
        let by_outcome = if n > 0 { json!({"ok": n}) } else { json!({}) };
        assert_eq!(s["by_outcome"], by_outcome, "{s}");
    }
    assert_eq!(
        r.json["queue"],
        json!({"critical": 0, "high": 0, "normal": 0, "low": 0}),
        "{r}"
    );

    let text = d.metrics();
    let metric = |series: &str| hookbox_tests::daemon::metric(&text, series);
    assert_eq!(
        metric("hookbox_events_accepted_total"),
        Some(expected.events.len() as f64),
        "{text}"
    );
    for (name, _) in EXAMPLES {
        let series = format!("hookbox_deliveries_total{{handler=\"{name}\",outcome=\"ok\"}}");
        let n = expected.deliveries_of(name);
        // A series with no samples yet is left out.
        let want = (n > 0).then_some(n as f64);
        assert_eq!(metric(&series), want, "{series} in\n{text}");
    }
    assert_eq!(
        metric("hookbox_components_compiled_total"),
        Some(EXAMPLES.len() as f64),
        "{text}"
    );
}

/// keyword-responder replies to a message naming a keyword with a
/// `zulip.send_message` event; the daemon accepts it as a new event from
/// `handler:keyword-responder` and routes it (tenant-analytics takes `*`).
/// A trapping sink subscribed to the reply type dead-letters it, which
/// keeps the whole emitted event for inspection.
fn emitted_events_are_accepted(d: &Daemon) {
    let sink = json!({
        "name": "reply-sink",
        "subscription": {"events": ["zulip.send_message"]},
        "delivery": {"max_attempts": 1}
    });
    d.deploy(&sink.to_string(), &hookbox_tests::read(guests::TRAP))
        .expect(201);

    let accepted_before = d.metric("hookbox_events_accepted_total").unwrap();
    let event = json!({
        "type": "message",
        "tenant": TENANT,
        "payload": zulip_message(4242, "<p>Can we <em>deploy</em> today?</p>"),
    });
    let r = d.publish(&event, true).expect(200);
    assert_eq!(r.json["outcomes"][0]["complete"], true, "{r}");
    for delivery in array(&r.json["outcomes"][0], "deliveries") {
        assert_eq!(delivery["outcome"], "ok", "{r}");
    }
    let parent = r.json["events"][0]["id"].as_str().unwrap().to_string();

    let reply = d.wait_until("tenant-analytics to log the emitted reply", || {
        let r = d
            .get("/v1/logs?handler=tenant-analytics&type=zulip.send_message")
            .expect(200);
        array(&r.json, "entries").first().cloned()
    });
    assert_eq!(reply["outcome"], "ok", "{reply}");
    assert_eq!(
        reply["tenant"], TENANT,
        "the reply keeps the tenant: {reply}"
    );
    let reply_id = reply["event_id"].as_str().unwrap().to_string();
    assert_ne!(reply_id, parent);

    let dead = d.wait_until("the reply to reach the sink's dead letters", || {
        let r = d.get("/v1/dead-letters?handler=reply-sink").expect(200);
        array(&r.json, "dead_letters").first().cloned()
    });
    let emitted = &dead["event"];
    assert_eq!(emitted["id"], reply_id.as_str(), "{dead}");
    assert_eq!(emitted["type"], "zulip.send_message", "{dead}");
    assert_eq!(emitted["source"], "handler:keyword-responder", "{dead}");
    assert_eq!(emitted["tenant"], TENANT, "{dead}");
    assert_eq!(emitted["metadata"]["keyword"], "deploy", "{dead}");
    assert_eq!(emitted["metadata"]["in_reply_to"], "4242", "{dead}");
    let content = emitted["payload"]["content"].as_str().unwrap_or_default();
    assert!(content.contains("*deploy*"), "{dead}");

    assert_eq!(
        d.metric("hookbox_events_accepted_total"),
        Some(accepted_before + 2.0),
        "the message and its reply are counted"
    );
}

/// ticket-notifier keeps tickets in KV and emits a `notification` per
/// ticket event, which tenant-analytics (`*`) receives in turn.
fn tickets_are_tracked(d: &Daemon, deployed: &[&str]) {
    let subscribers = |t: &str| -> Vec<String> {
        subscribers(t)
            .into_iter()
            .filter(|h| deployed.contains(&h.as_str()))
            .collect()
    };
    let ticket = |t: &str, status: &str| {
        json!({
            "type": t,
            "tenant": "acme",
            "payload": {"tenantId": "acme", "ticketId": 7, "title": "Printer on fire", "status": status},
        })
    };
    let batch = json!([
        ticket("TICKET_CREATED", "open"),
        ticket("TICKET_UPDATED", "in_progress"),
        ticket("TICKET_CLOSED", "closed"),
    ]);
    let r = d.publish(&batch, true).expect(200);
    for outcome in array(&r.json, "outcomes") {
        assert_eq!(outcome["complete"], true, "{r}");
        let deliveries = array(outcome, "deliveries");
        let t = deliveries[0]["event_type"].as_str().unwrap();
        assert_eq!(sorted_field(deliveries, "handler"), subscribers(t), "{r}");
        assert!(subscribers(t).contains(&"ticket-notifier".to_string()));
        for delivery in deliveries {
            assert_eq!(delivery["outcome"], "ok", "{r}");
        }
    }
    d.wait_until("tenant-analytics to get the three notifications", || {
        let r = d
            .get("/v1/logs?handler=tenant-analytics&type=notification&tenant=acme")
            .expect(200);
        let entries = array(&r.json, "entries");
        assert!(entries.len() <= 3, "{r}");
        (entries.len() == 3 && entries.iter().all(|e| e["outcome"] == "ok")).then_some(())
    });
}

fn stream_reports_deliveries(d: &Daemon) {
    let mut stream = d.stream("/v1/stream?handler=message-logger");
    let event = json!({
        "type": "message",
        "tenant": OTHER,
        "payload": zulip_message(77, "<p>streamed</p>"),
    });
    let r = d.publish(&event, false).expect(202);
    let id = r.json["events"][0]["id"].as_str().unwrap().to_string();
    let got = stream
        .next_event(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no SSE event for {id}; daemon stderr:\n{}", d.stderr_tail()));
    assert_eq!(got.event, "delivery", "{got:?}");
    let notice: Value = serde_json::from_str(&got.data).unwrap();
    assert_eq!(notice["handler"], "message-logger", "{notice}");
    assert_eq!(notice["event_id"], id.as_str(), "{notice}");
    assert_eq!(notice["event_type"], "message", "{notice}");
    assert_eq!(notice["tenant"], OTHER, "{notice}");
    assert_eq!(notice["outcome"], "ok", "{notice}");
    assert_eq!(notice["final_attempt"], true, "{notice}");
}

/// A second event with the same idempotency key (and tenant) is answered
/// with the first one's id and not delivered again.
fn idempotency_keys_dedupe(d: &Daemon) {
    let event = |tenant: &str| json!({"type": "invoice.paid", "tenant": tenant, "idempotency_key": "inv-1"});
    let first = d.publish(&event("acme"), true).expect(200);
    let id = first.json["events"][0]["id"].clone();
    assert_eq!(first.json["events"][0]["duplicate"], false, "{first}");
    assert_eq!(
        first.json["events"][0]["handlers"],
        json!(subscribers("invoice.paid")),
        "{first}"
    );
    let again = d.publish(&event("acme"), true).expect(200);
    assert_eq!(again.json["events"][0]["duplicate"], true, "{again}");
    assert_eq!(again.json["events"][0]["id"], id, "{again}");
    let other = d.publish(&event("globex"), true).expect(200);
    assert_eq!(
        other.json["events"][0]["duplicate"], false,
        "per tenant: {other}"
    );
    assert_ne!(other.json["events"][0]["id"], id, "{other}");
    let r = d.get("/v1/logs?type=invoice.paid&tenant=acme").expect(200);
    assert_eq!(array(&r.json, "entries").len(), 1, "delivered once: {r}");
}
