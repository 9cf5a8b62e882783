//! The example handlers (built from `example-handlers/` by `build.rs`)
//! against the real Zulip event examples in `tests/fixtures/zulip`, run the
//! way the daemon runs them: compiled with their manifest's capabilities,
//! given their manifest's config and the events their subscription matches.

use std::sync::Arc;

use hookbox::event::{Event, EventInput, zulip_event_type};
use hookbox::kv::{Kv, MemoryKv, Namespace};
use hookbox::manifest::Manifest;
use hookbox::runtime::{DeliveryReport, HandlerModule, Outcome};
use hookbox_tests::{Delivery, ZULIP_EVENTS, guests, module, read, runtime};
use serde_json::json;
use serde_json::value::RawValue;

const TENANT: &str = "zulip.example.com";

fn manifest(name: &str) -> Manifest {
    let path = format!(
        "{}/../example-handlers/{name}/manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    Manifest::from_json(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn example(name: &str) -> (HandlerModule, Manifest) {
    let (_, path) = guests::EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("example handler `{name}` was not built"));
    (module(path), manifest(name))
}

/// The fixture events as a Zulip source would accept them; payloads are
/// kept byte for byte.
fn zulip_events() -> Vec<Event> {
    let raw: Vec<Box<RawValue>> =
        serde_json::from_str(&std::fs::read_to_string(ZULIP_EVENTS).unwrap()).unwrap();
    raw.into_iter()
        .map(|payload| {
            let value: serde_json::Value = serde_json::from_str(payload.get()).unwrap();
            let mut input = EventInput::new(zulip_event_type(&value).unwrap(), &json!({}));
            input.tenant = TENANT.into();
            input.payload = Some(payload);
            input
                .accept(&format!("zulip:{TENANT}"), 0, 1 << 20)
                .unwrap()
        })
        .collect()
}

fn deliver(
    m: &HandlerModule,
    manifest: &Manifest,
    event: &Event,
    kv: &Arc<MemoryKv>,
) -> DeliveryReport {
    let mut d = Delivery::new(1);
    d.handler = manifest.name.clone();
    d.event = event.clone();
    d.config = manifest.config.to_string();
    d.kv = kv.clone();
    d.run(m)
}

fn ns(manifest: &Manifest) -> Namespace {
    Namespace {
        handler: manifest.name.clone(),
        tenant: TENANT.into(),
        ..Namespace::default()
    }
}

#[test]
fn the_fixtures_cover_many_event_types() {
    let events = zulip_events();
    assert_eq!(events.len(), 77);
    assert!(events.iter().any(|e| e.event_type == "message"));
}

#[test]
fn every_example_compiles_with_its_manifest_capabilities() {
    assert!(
        !guests::EXAMPLES.is_empty(),
        "no example handlers were built"
    );
    for (name, path) in guests::EXAMPLES {
        let m = manifest(name);
        assert_eq!(&m.name, name, "manifest name of {name}");
        runtime()
            .compile(&read(path), &m.capabilities)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_example_handles_every_event_it_subscribes_to() {
    let events = zulip_events();
    for (name, _) in guests::EXAMPLES {
        let (m, manifest) = example(name);
        let kv = Arc::new(MemoryKv::new());
        for event in &events {
            let report = deliver(&m, &manifest, event, &kv);
            let subscribed = manifest
                .subscription
                .matches_type_and_tenant(&event.event_type, &event.tenant);
            if subscribed {
                assert_eq!(
                    report.outcome,
                    Outcome::Ok,
                    "{name} on {}: {:?}",
                    event.event_type,
                    report.error
                );
            } else {
                // Not routed to it by the daemon, but it must still not
                // crash or exhaust a budget on an unexpected event.
                assert!(
                    matches!(report.outcome, Outcome::Ok | Outcome::HandlerError),
                    "{name} on unsubscribed {}: {} {:?}",
                    event.event_type,
                    report.outcome,
                    report.error
                );
            }
        }
    }
}

#[test]
fn message_logger_logs_the_message() {
    let (m, manifest) = example("message-logger");
    let kv = Arc::new(MemoryKv::new());
    let message = zulip_events()
        .into_iter()
        .find(|e| e.event_type == "message")
        .unwrap();
    let report = deliver(&m, &manifest, &message, &kv);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    let record = report
        .logs
        .iter()
        .find(|r| r.fields.iter().any(|(k, v)| k == "message_id" && v == "31"))
        .unwrap_or_else(|| panic!("no record about message 31 in {:?}", report.logs));
    assert!(
        record.message.contains("user10@zulip.testserver"),
        "{}",
        record.message
    );
}

#[test]
fn tenant_analytics_counts_every_event() {
    let (m, manifest) = example("tenant-analytics");
    let kv = Arc::new(MemoryKv::new());
    let events = zulip_events();
    for event in &events {
        assert_eq!(deliver(&m, &manifest, event, &kv).outcome, Outcome::Ok);
    }
    let total = kv.get(&ns(&manifest), "events:total").unwrap();
    assert_eq!(total, Some(events.len().to_string().into_bytes()));
    let messages = kv.get(&ns(&manifest), "events:type:message").unwrap();
    assert_eq!(messages.as_deref(), Some(&b"1"[..]));
}

#[test]
fn channel_activity_counts_channel_messages() {
    let (m, manifest) = example("channel-activity");
    let kv = Arc::new(MemoryKv::new());
    let message = zulip_events()
        .into_iter()
        .find(|e| e.event_type == "message")
        .unwrap();
    for _ in 0..2 {
        assert_eq!(deliver(&m, &manifest, &message, &kv).outcome, Outcome::Ok);
    }
    // The fixture message went to channel 1.
    let count = kv.get(&ns(&manifest), "stream:1:messages").unwrap();
    assert_eq!(count.as_deref(), Some(&b"2"[..]));
}

#[test]
fn keyword_responder_replies_only_to_keywords() {
    let (m, manifest) = example("keyword-responder");
    let kv = Arc::new(MemoryKv::new());
    let message = zulip_events()
        .into_iter()
        .find(|e| e.event_type == "message")
        .unwrap();
    let quiet = deliver(&m, &manifest, &message, &kv);
    assert_eq!(quiet.outcome, Outcome::Ok, "{:?}", quiet.error);
    assert!(quiet.emitted.is_empty(), "{:?}", quiet.emitted);

    let mut payload: serde_json::Value = serde_json::from_str(message.payload.get()).unwrap();
    payload["message"]["content"] = json!("<p>Shall we deploy today?</p>");
    let mut mention = message.clone();
    mention.payload = serde_json::value::to_raw_value(&payload).unwrap();
    let reply = deliver(&m, &manifest, &mention, &kv);
    assert_eq!(reply.outcome, Outcome::Ok, "{:?}", reply.error);
    assert_eq!(reply.emitted.len(), 1, "{:?}", reply.emitted);
    assert_eq!(reply.emitted[0].event_type, "zulip.send_message");
    assert_eq!(reply.emitted[0].tenant, TENANT);
}

#[test]
fn ticket_notifier_tracks_open_tickets() {
    let (m, manifest) = example("ticket-notifier");
    let kv = Arc::new(MemoryKv::new());
    let created = hookbox_tests::event(
        "TICKET_CREATED",
        TENANT,
        &json!({"tenantId": TENANT, "ticketId": 7, "title": "Printer on fire"}),
    );
    let report = deliver(&m, &manifest, &created, &kv);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
    assert_eq!(report.emitted.len(), 1);
    assert_eq!(report.emitted[0].event_type, "notification");
    let open = kv.get(&ns(&manifest), &format!("open:{TENANT}")).unwrap();
    assert_eq!(open.as_deref(), Some(&b"1"[..]));

    let anonymous = hookbox_tests::event("TICKET_CREATED", TENANT, &json!({"ticketId": 8}));
    let report = deliver(&m, &manifest, &anonymous, &kv);
    assert_eq!(report.outcome, Outcome::HandlerError);
    assert!(
        !report.retryable,
        "a ticket without tenantId cannot be fixed by a retry"
    );
}

#[test]
fn user_status_tracker_keeps_the_latest_status() {
    let (m, manifest) = example("user-status-tracker");
    let kv = Arc::new(MemoryKv::new());
    let status = zulip_events()
        .into_iter()
        .find(|e| e.event_type == "user_status")
        .unwrap();
    assert_eq!(deliver(&m, &manifest, &status, &kv).outcome, Outcome::Ok);
    let stored = kv
        .get(&ns(&manifest), "status:10")
        .unwrap()
        .expect("status:10 stored");
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert!(stored.to_string().contains("out to lunch"), "{stored}");
}
