//! The real daemon with a `[[zulip]]` config.

use hookbox_tests::daemon::Daemon;
use hookbox_tests::fake_zulip::FakeZulip;
use serde_json::{Value, json};

use super::node::{EMAIL, KEY, REALM, channel_message};

/// The fake (on its own runtime: the daemon harness blocks) and the real
/// daemon with a `[[zulip]]` table for it, plus `extra` keys of that table.
struct Setup {
    rt: tokio::runtime::Runtime,
    fake: FakeZulip,
    daemon: Daemon,
    _keys: tempfile::TempDir,
}

impl Setup {
    fn start(extra: &str) -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = rt.block_on(FakeZulip::start(EMAIL, KEY));
        let keys = tempfile::tempdir().unwrap();
        let key_file = keys.path().join("zulip.key");
        std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
        let daemon = Daemon::start_with(&format!(
            "[[zulip]]\nname = \"{REALM}\"\nsite = \"{}\"\nemail = \"{EMAIL}\"\napi_key_file = {:?}\n{extra}",
            fake.site(),
            key_file.display().to_string()
        ));
        Setup {
            rt,
            fake,
            daemon,
            _keys: keys,
        }
    }

    fn wait_for(&self, what: &str, done: impl Fn(&FakeZulip) -> bool) {
        self.rt.block_on(self.fake.wait_for(what, done));
    }

    /// Publishes one event for the realm and waits for its outcome.
    fn publish(&self, event_type: &str, payload: Value) -> Value {
        let r = self
            .daemon
            .publish(
                &json!({"type": event_type, "tenant": REALM, "payload": payload}),
                true,
            )
            .expect(200);
        r.json["outcomes"][0].clone()
    }
}

/// The daemon's wiring: a `[[zulip]]` table starts the source and the
/// sink, the queue follows what is deployed, `GET /v1/zulip` and `/metrics`
/// report the realm, and SIGTERM stops everything cleanly.
#[test]
fn the_daemon_serves_a_configured_realm() {
    // The fake runs on its own runtime: the daemon harness blocks.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeZulip::start(EMAIL, KEY));
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("zulip.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut daemon = Daemon::start_with(&format!(
        "[[zulip]]\nname = \"{REALM}\"\nsite = \"{}\"\nemail = \"{EMAIL}\"\napi_key_file = {:?}\n",
        fake.site(),
        key_file.display().to_string()
    ));
    // Nothing is deployed yet: the queue takes no event types.
    rt.block_on(fake.wait_for("a registration", |f| !f.registrations().is_empty()));
    assert_eq!(fake.registrations()[0], Some(vec![]));

    daemon.deploy_example("keyword-responder");
    rt.block_on(fake.wait_for("a queue for messages", |f| {
        f.registrations().last() == Some(&Some(vec!["message".to_string()]))
    }));
    fake.push(channel_message(40, "<p>can someone deploy?</p>"));
    rt.block_on(fake.wait_for("the reply", |f| {
        !f.requests_to("/api/v1/messages").is_empty()
    }));
    let reply = &fake.requests_to("/api/v1/messages")[0];
    assert_eq!(reply.status, 200);
    assert_eq!(reply.params["topic"], "test");
    assert!(reply.params["content"].contains("deploy"), "{reply:?}");

    let status = daemon.wait_until("the realm's status", || {
        let r = daemon.get("/v1/zulip").expect(200);
        let realm = r.json["realms"][0].clone();
        (realm["sink"]["sent"] == 1).then_some(realm)
    });
    assert_eq!(status["name"], REALM);
    assert_eq!(status["connected"], true);
    assert_eq!(status["counters"]["events"], 1);
    assert_eq!(
        status["queue_id"].as_str(),
        fake.queue_ids().first().map(String::as_str)
    );
    assert_eq!(
        daemon.metric(&format!("hookbox_zulip_connected{{realm=\"{REALM}\"}}")),
        Some(1.0)
    );
    assert!(
        !daemon.stderr_tail().contains(KEY),
        "the API key was logged"
    );
    daemon.stop();
}

/// A 429 is backpressure: the sink waits out `Retry-After` (fractional, as
/// Zulip sends it) without using up attempts or opening its breaker, so
/// twelve 429s in a row — more than the breaker's ten failures and the
/// sink's eight attempts — end with every message sent once.
#[test]
fn rate_limits_are_waited_out_not_failed() {
    // One call at a time, so every call after a 429 was made knowing it.
    let s = Setup::start("sink_concurrency = 1\n");
    s.wait_for("a registration", |f| !f.registrations().is_empty());
    const LIMITED: usize = 12;
    s.fake.rate_limit_sends(LIMITED, 0.05);
    let ids: Vec<String> = (0..3)
        .map(|n| {
            let payload = json!({"type": "stream", "to": "general", "topic": "t", "content": format!("m{n}")});
            let r = s
                .daemon
                .publish(
                    &json!({"type": "zulip.send_message", "tenant": REALM, "payload": payload}),
                    false,
                )
                .expect(202);
            r.json["events"][0]["id"].as_str().unwrap().to_string()
        })
        .collect();
    s.wait_for("three messages sent", |f| {
        f.requests_to("/api/v1/messages")
            .iter()
            .filter(|r| r.status == 200)
            .count()
            == 3
    });
    let sent = s.fake.requests_to("/api/v1/messages");
    assert_eq!(sent.iter().filter(|r| r.status == 429).count(), LIMITED);
    assert_eq!(sent.len(), LIMITED + 3, "each message sent once: {sent:#?}");
    // No call went out inside a window.
    for pair in sent.windows(2) {
        if pair[0].status == 429 {
            assert!(
                pair[1].at.duration_since(pair[0].at).as_secs_f64() >= 0.05,
                "a call inside the Retry-After window: {pair:#?}"
            );
        }
    }
    let handler = format!("zulip:{REALM}");
    for id in &ids {
        let r = s.daemon.get(&format!("/v1/events/{id}")).expect(200);
        let deliveries = r.json["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "one attempt, no failures logged: {r}");
        assert_eq!(deliveries[0]["outcome"], "ok", "{r}");
        assert_eq!(deliveries[0]["attempt"], 1, "{r}");
    }
    let circuit = s
        .daemon
        .metric(&format!(
            "hookbox_circuit_opened_total{{handler=\"{handler}\"}}"
        ))
        .unwrap_or(0.0);
    assert_eq!(circuit, 0.0, "a rate limit opened the breaker");
    let throttled = s
        .daemon
        .metric(&format!(
            "hookbox_deliveries_throttled_total{{handler=\"{handler}\"}}"
        ))
        .unwrap_or(0.0);
    assert!(throttled >= LIMITED as f64, "{throttled}");
    let dead = s.daemon.get("/v1/dead-letters").expect(200);
    assert_eq!(dead.json["dead_letters"], json!([]), "{dead}");
}

/// Adding a reaction that is there, or removing one that is not, is what
/// the handler wanted: `ok`, not a dead letter. And the sink's dead letters
/// can be replayed, one or in bulk.
#[test]
fn reaction_repeats_are_done_and_sink_dead_letters_replay() {
    let s = Setup::start("");
    s.wait_for("a registration", |f| !f.registrations().is_empty());
    let reaction = json!({"message_id": 31, "emoji_name": "tada"});
    for event_type in [
        "zulip.add_reaction",
        "zulip.add_reaction",
        "zulip.remove_reaction",
        "zulip.remove_reaction",
    ] {
        let outcome = s.publish(event_type, reaction.clone());
        assert_eq!(outcome["complete"], true, "{outcome}");
        let deliveries = outcome["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "{outcome}");
        assert_eq!(deliveries[0]["outcome"], "ok", "{event_type}: {outcome}");
    }
    let calls: Vec<(String, u16)> = s
        .fake
        .requests_to("/api/v1/messages/31/reactions")
        .iter()
        .map(|r| (r.method.to_string(), r.status))
        .collect();
    let want = [
        ("POST", 200),
        ("POST", 400),
        ("DELETE", 200),
        ("DELETE", 400),
    ]
    .map(|(m, st)| (m.to_string(), st));
    assert_eq!(calls, want);

    // A refusal is dead-lettered; replaying it (by id, then in bulk) sends it.
    let handler = format!("zulip:{REALM}");
    let message = json!({"type": "stream", "to": "general", "topic": "t", "content": "x"});
    for _ in 0..2 {
        s.fake.fail_sends([(
            400,
            json!({"result": "error", "msg": "Channel 'general' does not exist", "code": "BAD_REQUEST"}),
        )]);
        s.publish("zulip.send_message", message.clone());
    }
    let dead = s
        .daemon
        .get(&format!("/v1/dead-letters?handler={handler}"))
        .expect(200);
    let dead = dead.json["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let id = dead[0]["id"].as_str().unwrap();
    s.daemon
        .post(&format!("/v1/dead-letters/{id}/replay"), &json!({}))
        .expect(202);
    s.wait_for("the replayed message", |f| {
        f.requests_to("/api/v1/messages")
            .iter()
            .filter(|r| r.status == 200)
            .count()
            == 1
    });
    let r = s
        .daemon
        .post("/v1/dead-letters/replay", &json!({"handler": handler}))
        .expect(202);
    assert_eq!(r.json["replayed"], 1, "{r}");
    s.wait_for("the bulk-replayed message", |f| {
        f.requests_to("/api/v1/messages")
            .iter()
            .filter(|r| r.status == 200)
            .count()
            == 2
    });
}

/// Zulip echoes the bot's own messages to its queue. The keyword-responder
/// as shipped (`ignore_senders: []`, a reply that repeats the keyword)
/// answered its own reply, and that one, … — hundreds of messages in
/// seconds. Its echo is now acknowledged and skipped by the source.
#[test]
fn the_shipped_keyword_responder_does_not_answer_itself() {
    let s = Setup::start("");
    s.daemon.deploy_example("keyword-responder");
    s.wait_for("a queue for messages", |f| {
        f.registrations().last() == Some(&Some(vec!["message".to_string()]))
    });
    s.fake
        .push(channel_message(40, "<p>can someone deploy?</p>"));
    s.wait_for("the reply's echo acknowledged", |f| {
        let echo = f.served().into_iter().find(|(_, e)| {
            e["message"]["sender_id"] == json!(hookbox_tests::fake_zulip::BOT_USER_ID)
        });
        echo.is_some_and(|(queue, e)| {
            f.requests_to("/api/v1/events").iter().any(|r| {
                r.params.get("queue_id") == Some(&queue)
                    && r.params["last_event_id"].parse::<i64>().ok() >= e["id"].as_i64()
            })
        })
    });
    let realm = s
        .daemon
        .wait_until("the echo counted as the bot's own", || {
            let r = s.daemon.get("/v1/zulip").expect(200);
            let realm = r.json["realms"][0].clone();
            (realm["counters"]["own_skipped"] == 1).then_some(realm)
        });
    assert_eq!(
        realm["bot_user_id"],
        json!(hookbox_tests::fake_zulip::BOT_USER_ID)
    );
    assert_eq!(realm["counters"]["events"], 1, "{realm}");
    let sent = s.fake.requests_to("/api/v1/messages");
    assert_eq!(sent.len(), 1, "one reply, no reply to the reply: {sent:#?}");
    let logs = s
        .daemon
        .get("/v1/logs?handler=keyword-responder")
        .expect(200);
    assert_eq!(logs.json["entries"].as_array().unwrap().len(), 1, "{logs}");
}

/// With `own_events = true` the echo is delivered, marked as the bot's,
/// and the keyword-responder (through the SDK's `reply_to_event`) still
/// does not answer it.
#[test]
fn delivered_own_events_are_marked_and_not_answered() {
    let s = Setup::start("own_events = true\n");
    s.daemon.deploy_example("keyword-responder");
    s.wait_for("a queue for messages", |f| {
        f.registrations().last() == Some(&Some(vec!["message".to_string()]))
    });
    s.fake.push(channel_message(41, "<p>deploy now</p>"));
    let entries = s.daemon.wait_until("the echo delivered", || {
        let r = s
            .daemon
            .get("/v1/logs?handler=keyword-responder")
            .expect(200);
        let entries = r.json["entries"].as_array().unwrap().clone();
        (entries.len() == 2).then_some(entries)
    });
    assert!(entries.iter().all(|e| e["outcome"] == "ok"), "{entries:?}");
    let echo = &entries[0]["logs"][0];
    assert_eq!(
        echo["message"], "Ignored the bot's own message",
        "{entries:?}"
    );
    assert_eq!(s.fake.requests_to("/api/v1/messages").len(), 1);
}

/// A realm of 4 000 members: registering for every type (a handler
/// subscribed to `*`) used to return all of them as initial state, past
/// the client's 1 MiB cap, so the register failed forever. Hookbox asks
/// for no initial state, and deletes the queue it switches away from.
#[test]
fn a_large_realm_registers_and_delivers() {
    let s = Setup::start("");
    const MEMBERS: usize = 4_000;
    s.fake.set_members(MEMBERS);
    let state: Vec<Value> = (0..MEMBERS)
        .map(hookbox_tests::fake_zulip::realm_member)
        .collect();
    assert!(
        serde_json::to_vec(&state).unwrap().len() > 1 << 20,
        "the realm's member list must pass 1 MiB to test the cap"
    );
    s.wait_for("a registration", |f| !f.registrations().is_empty());
    s.daemon.deploy_example("tenant-analytics");
    s.wait_for("a queue for every type", |f| {
        f.registrations().last() == Some(&None)
    });
    let registers = s.fake.requests_to("/api/v1/register");
    for r in &registers {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.params.get("fetch_event_types").map(String::as_str),
            Some("[]"),
            "{r:?}"
        );
    }
    let first_queue = "fake-queue-1".to_string();
    s.wait_for("the first queue deleted", |f| {
        f.requests_to("/api/v1/events").iter().any(|r| {
            r.method == axum::http::Method::DELETE && r.params.get("queue_id") == Some(&first_queue)
        })
    });
    let user_update = hookbox_tests::fake_zulip::fixture_events()
        .into_iter()
        .find(|e| e["type"] == "realm_user")
        .unwrap();
    s.fake.push(user_update);
    let realm = s.daemon.wait_until("the member update accepted", || {
        let r = s.daemon.get("/v1/zulip").expect(200);
        let realm = r.json["realms"][0].clone();
        (realm["counters"]["events"] == 1).then_some(realm)
    });
    assert_eq!(realm["connected"], true, "{realm}");
    assert_eq!(
        realm["queue_id"].as_str(),
        s.fake.queue_ids().first().map(String::as_str)
    );
    assert_eq!(s.fake.queue_ids().len(), 1, "{:?}", s.fake.queue_ids());
    let logs = s.daemon.wait_until("the delivery", || {
        let r = s
            .daemon
            .get("/v1/logs?handler=tenant-analytics&type=realm_user.update")
            .expect(200);
        (!r.json["entries"].as_array().unwrap().is_empty()).then_some(r)
    });
    assert_eq!(logs.json["entries"][0]["outcome"], "ok", "{logs}");
}
