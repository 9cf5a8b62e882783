//! The event source: every fixture event delivered with its type, tenant
//! and payload; queue loss, rate limits, a full delivery queue, restarts
//! and a widening subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookbox::dispatch::DispatchConfig;
use hookbox::event::zulip_event_type;
use hookbox::kv::{Kv, Namespace};
use hookbox::store::{Store, StoreOptions};
use hookbox_tests::fake_zulip::{FakeZulip, fixture_events, fixture_examples};
use serde_json::{Value, json};

use super::node::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_event_reaches_subscribers_with_its_type_tenant_and_payload() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let analytics = example("tenant-analytics", None);
    let node = Node::start(dir.path(), realm(&fake, None), vec![analytics]).await;
    fake.wait_for("a registration", |f| !f.registrations().is_empty())
        .await;
    // tenant-analytics subscribes to `*`: the queue takes every type.
    assert_eq!(fake.registrations(), [None]);

    let fixtures = fixture_events();
    for e in &fixtures {
        fake.push(e.clone());
    }
    let mut expected: Vec<String> = fixtures
        .iter()
        .filter_map(zulip_event_type)
        .filter(|t| t != "heartbeat")
        .collect();
    assert_eq!(expected.len(), fixtures.len() - 1);
    node.wait_for("every fixture event", |n| {
        n.zulip_events().len() >= expected.len()
    })
    .await;

    let seen = node.zulip_events();
    let mut types: Vec<String> = seen.iter().map(|s| s.event_type.clone()).collect();
    types.sort();
    expected.sort();
    assert_eq!(types, expected);
    let served: HashMap<i64, Value> = fake
        .served()
        .into_iter()
        .map(|(_, e)| (e["id"].as_i64().unwrap(), e))
        .collect();
    for s in &seen {
        assert_eq!(s.tenant, REALM, "{s:?}");
        assert_eq!(
            s.payload,
            served[&s.zulip_id()],
            "payload of {}",
            s.event_type
        );
    }

    // The heartbeats (the fixture's and the server's) are acknowledged but
    // not accepted; the position passes the last fixture event.
    let last_fixture = served
        .iter()
        .filter(|(_, e)| e["type"] != "heartbeat")
        .map(|(id, _)| *id)
        .max()
        .unwrap();
    node.wait_for("the last event acknowledged", |n| {
        let s = n.realm_status();
        s.last_event_id >= Some(last_fixture) && s.counters.heartbeats >= 1
    })
    .await;
    let status = node.realm_status();
    assert!(status.connected);
    assert_eq!(status.counters.events, expected.len() as u64);
    assert_eq!(status.counters.skipped, 0);

    // A deployed (wasm) handler saw each event with its tenant.
    let store = node.dispatcher.store().clone();
    let ns = Namespace {
        handler: "tenant-analytics".into(),
        tenant: REALM.into(),
        ..Namespace::default()
    };
    let total = expected.len().to_string();
    node.wait_for("tenant-analytics to count every event", |_| {
        store.get(&ns, "events:total").unwrap().as_deref() == Some(total.as_bytes())
    })
    .await;
    assert_eq!(
        store
            .get(&ns, "events:type:reaction.add")
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_queue_is_replaced_and_announced() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        realm(&fake, Some(&["message", "reaction"])),
        vec![],
    )
    .await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    assert_eq!(
        fake.registrations(),
        [Some(vec!["message".to_string(), "reaction".to_string()])]
    );
    let old_queue = fake.queue_ids().remove(0);
    fake.push(channel_message(1, "before"));
    node.wait_for("the first message", |n| n.zulip_events().len() == 1)
        .await;

    fake.expire_queues();
    fake.wait_for("a new registration", |f| f.registrations().len() == 2)
        .await;
    let new_queue = fake.queue_ids().remove(0);
    let reaction = fixture_events()
        .into_iter()
        .find(|e| e["type"] == "reaction" && e["op"] == "add")
        .unwrap();
    fake.push(reaction);
    node.wait_for("the loss and the reaction", |n| n.zulip_events().len() == 3)
        .await;

    let seen = node.zulip_events();
    let types: Vec<&str> = seen.iter().map(|s| s.event_type.as_str()).collect();
    assert_eq!(types, ["message", "zulip.queue_lost", "reaction.add"]);
    let lost = &seen[1];
    assert_eq!(lost.tenant, REALM);
    assert_eq!(lost.payload["queue_id"], json!(old_queue));
    assert_eq!(lost.payload["new_queue_id"], json!(new_queue));
    // The old queue's only event (the fake numbers each queue's events from
    // 0) was accepted before the queue was lost: the gap starts after it.
    assert_eq!(lost.payload["last_event_id"], json!(0), "{lost:?}");
    assert!(
        lost.payload["reason"]
            .as_str()
            .unwrap()
            .contains("BAD_EVENT_QUEUE_ID"),
        "{lost:?}"
    );
    let answered_400 = fake
        .requests_to("/api/v1/events")
        .iter()
        .any(|r| r.status == 400 && r.params["queue_id"] == old_queue);
    assert!(answered_400);
    let status = node.realm_status();
    assert_eq!(status.counters.queue_losses, 1);
    assert_eq!(status.counters.registrations, 2);
    assert_eq!(status.queue_id.as_deref(), Some(new_queue.as_str()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_as_the_server_asks() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), realm(&fake, Some(&["message"])), vec![]).await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    const RETRY_AFTER: f64 = 0.4;
    fake.rate_limit_polls(1, RETRY_AFTER);
    fake.wait_for("a 429", |f| {
        f.requests_to("/api/v1/events")
            .iter()
            .any(|r| r.status == 429)
    })
    .await;
    fake.push(channel_message(7, "after the limit"));
    node.wait_for("the message", |n| n.zulip_events().len() == 1)
        .await;

    let polls = fake.requests_to("/api/v1/events");
    let limited = polls.iter().position(|r| r.status == 429).unwrap();
    let next = &polls[limited + 1];
    // The body is the fixture's, and the next poll came no sooner than the
    // server asked (the backoff alone would have retried after ≤ 20 ms).
    assert!(
        next.at.duration_since(polls[limited].at) >= Duration::from_secs_f64(RETRY_AFTER),
        "retried after {:?}",
        next.at.duration_since(polls[limited].at)
    );
    let status = node.realm_status();
    assert_eq!(status.counters.rate_limited, 1);
    let error = status.last_error.expect("the 429 is recorded");
    assert_eq!(error.kind, "rate_limited");
    assert!(error.message.contains("0.4"), "{error:?}");
    assert!(status.connected);
    assert_eq!(
        fixture_examples()["RateLimitedError"]["code"],
        "RATE_LIMIT_HIT"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_delivery_queue_holds_the_position_until_the_events_fit() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    recorder.set_closed(true);
    let cfg = DispatchConfig {
        workers: 2,
        queue_capacity: 2,
        ..DispatchConfig::default()
    };
    let realm = realm(&fake, Some(&["message"]));
    let node = Node::start_with(dir.path(), realm, vec![], cfg, recorder.clone()).await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    for id in 1..=5 {
        fake.push(channel_message(id, "queued"));
    }
    node.wait_for("the queue to refuse events", |n| {
        n.realm_status().counters.busy >= 1
    })
    .await;
    // The source is stuck on the newest batch, which is not acknowledged.
    let newest = fake
        .served()
        .iter()
        .filter(|(_, e)| e["type"] == "message")
        .map(|(_, e)| e["id"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(node.realm_status().last_event_id < Some(newest));

    recorder.set_closed(false);
    node.wait_for("all five messages", |n| n.zulip_events().len() == 5)
        .await;
    let ids: Vec<Value> = node
        .zulip_events()
        .iter()
        .map(|s| s.payload["message"]["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4, 5].map(|i| json!(i)),
        "in order, once each"
    );
    node.wait_for("the position past them", |n| {
        n.realm_status().last_event_id >= Some(newest)
    })
    .await;
    node.stop().await;
}

/// An event that fans out to more deliveries than the whole queue holds
/// can never go in: the source skips it (counted, with why) and moves on,
/// rather than waiting for room forever at that position. Batches of
/// events that each fit are split until they do, without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_needing_more_than_the_whole_queue_is_skipped() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = DispatchConfig {
        workers: 2,
        queue_capacity: 1,
        ..DispatchConfig::default()
    };
    // With the test's recorder, every event goes to two handlers.
    let analytics = example("tenant-analytics", None);
    let realm = realm(&fake, None);
    let node = Node::start_with(dir.path(), realm, vec![analytics], cfg, Arc::default()).await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    fake.push(channel_message(1, "two deliveries, room for one"));
    node.wait_for("the message to be skipped", |n| {
        n.realm_status().counters.skipped == 1
    })
    .await;
    let status = node.realm_status();
    let error = status.last_error.expect("the skip is recorded");
    assert!(error.message.contains("`queue_capacity` = 1"), "{error:?}");
    assert_eq!(status.counters.busy, 0, "not waited for as a full queue");
    assert!(node.zulip_events().is_empty());
    let served = fake
        .served()
        .iter()
        .map(|(_, e)| e["id"].as_i64().unwrap())
        .max();
    node.wait_for("the position past it", |n| {
        n.realm_status().last_event_id >= served
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_saved_queue_without_redelivering() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let first = Node::start(dir.path(), realm(&fake, Some(&["message"])), vec![]).await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    for id in [101, 102, 103] {
        fake.push(channel_message(id, "before the restart"));
    }
    first
        .wait_for("three messages", |n| n.zulip_events().len() == 3)
        .await;
    let acked = first
        .zulip_events()
        .iter()
        .map(Seen::zulip_id)
        .max()
        .unwrap();
    first
        .wait_for("their position saved", |n| {
            n.realm_status().last_event_id >= Some(acked)
        })
        .await;
    first.stop().await;

    // What survived: the queue and the position.
    let store_dir = dir.path().join("store");
    let cursor = tokio::task::spawn_blocking(move || {
        // sled lets go of the directory a moment after the node stops.
        let opts = StoreOptions {
            lock_wait: std::time::Duration::from_secs(60),
            ..StoreOptions::default()
        };
        let store = Store::open(&store_dir, opts).expect("reopen");
        store
            .zulip_cursor(REALM)
            .expect("read")
            .expect("a saved cursor")
    })
    .await
    .unwrap();
    assert_eq!(cursor.queue_id, fake.queue_ids()[0]);
    assert!(cursor.last_event_id >= acked, "{cursor:?}");

    for id in [104, 105] {
        fake.push(channel_message(id, "while down"));
    }
    let polls_before = fake.requests_to("/api/v1/events").len();
    let second = Node::start(dir.path(), realm(&fake, Some(&["message"])), vec![]).await;
    second
        .wait_for("the two new messages", |n| n.zulip_events().len() == 2)
        .await;

    let ids: Vec<Value> = second
        .zulip_events()
        .iter()
        .map(|s| s.payload["message"]["id"].clone())
        .collect();
    assert_eq!(ids, [json!(104), json!(105)]);
    assert_eq!(fake.registrations().len(), 1, "the saved queue was resumed");
    let resumed = &fake.requests_to("/api/v1/events")[polls_before];
    assert_eq!(resumed.params["queue_id"], cursor.queue_id);
    assert_eq!(
        resumed.params["last_event_id"],
        cursor.last_event_id.to_string()
    );
    assert_eq!(second.realm_status().counters.queue_losses, 0);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subscriptions_move_the_source_to_a_wider_queue() {
    let fake = FakeZulip::start(EMAIL, KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let responder = example("keyword-responder", None);
    let node = Node::start(dir.path(), realm(&fake, None), vec![responder]).await;
    fake.wait_for("a registration", |f| f.registrations().len() == 1)
        .await;
    let old_queue = fake.queue_ids().remove(0);
    fake.push(channel_message(1, "on the old queue"));
    node.wait_for("the first message", |n| n.zulip_events().len() == 1)
        .await;

    deploy(&node.dispatcher, vec![example("user-status-tracker", None)]).await;
    fake.wait_for("the old queue deleted", |f| {
        f.requests_to("/api/v1/events")
            .iter()
            .any(|r| r.method == "DELETE" && r.status == 200)
    })
    .await;
    assert_eq!(
        fake.registrations()[1],
        Some(vec![
            "message".to_string(),
            "presence".to_string(),
            "user_status".to_string()
        ])
    );
    assert!(!fake.queue_ids().contains(&old_queue));
    let presence = fixture_events()
        .into_iter()
        .find(|e| e["type"] == "presence")
        .unwrap();
    fake.push(presence);
    node.wait_for("the presence event", |n| {
        n.zulip_events().iter().any(|s| s.event_type == "presence")
    })
    .await;
    let types: Vec<String> = node
        .zulip_events()
        .into_iter()
        .map(|s| s.event_type)
        .collect();
    assert_eq!(types, ["message", "presence"], "no loss was announced");
    node.stop().await;
}
