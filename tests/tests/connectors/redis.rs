//! The Redis event bus, end to end: a publisher written as the seed
//! application writes them (a JSON envelope on `event::<TYPE>`) reaches a
//! handler with the right type and tenant; malformed messages are counted
//! and skipped; stream mode loses nothing across `kill -9` of Hookbox and a
//! Redis restart; pub/sub loses what is published while Hookbox is away
//! (documented, and measured here); ticket events become Discord and Slack
//! messages and a `NOTIFICATION_SENT` back on the bus.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hookbox_tests::daemon::{Daemon, example};
use hookbox_tests::receiver::Receiver;
use hookbox_tests::redis_server::RedisServer;
use hookbox_tests::{guests, read};
use serde_json::{Value, json};

/// A seed-style envelope.
fn envelope(id: &str, event_type: &str, payload: Value) -> String {
    json!({"id": id, "eventType": event_type, "timestamp": "2026-01-05T10:00:00.000Z",
           "payload": payload})
    .to_string()
}

/// `PUBLISH event::<type> <message>`; returns how many subscribers got it.
fn publish(con: &mut redis::Connection, event_type: &str, message: impl redis::ToRedisArgs) -> i64 {
    redis::cmd("PUBLISH")
        .arg(format!("event::{event_type}"))
        .arg(message)
        .query(con)
        .expect("PUBLISH")
}

fn bus(redis: &RedisServer, mode: &str) -> String {
    format!(
        "[[redis]]\nname = \"bus\"\nurl = \"{}\"\nprefix = \"event:\"\nmode = \"{mode}\"\n",
        redis.url()
    )
}

/// Deploys the counter guest as `name`, subscribed to `events`.
fn deploy_counter(d: &Daemon, name: &str, events: &[&str]) {
    let manifest = json!({"name": name, "subscription": {"events": events}});
    d.deploy(&manifest.to_string(), &read(guests::COUNTER))
        .expect(201);
}

fn bus_status(d: &Daemon) -> Value {
    d.get("/v1/redis").expect(200).json["buses"][0].clone()
}

fn wait_connected(d: &Daemon) {
    d.wait_until("the bus to connect", || {
        (bus_status(d)["connected"] == true).then_some(())
    });
}

/// Every `ok` delivery of `handler`: (event id, type, tenant).
fn delivered(d: &Daemon, handler: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = d
            .get(&format!("/v1/logs?handler={handler}&limit=1000{cursor}"))
            .expect(200);
        for e in r.json["entries"].as_array().unwrap() {
            if e["outcome"] == "ok" {
                let s = |k: &str| e[k].as_str().unwrap().to_string();
                out.push((s("event_id"), s("event_type"), s("tenant")));
            }
        }
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn seed_events_reach_handlers_and_malformed_messages_are_skipped() {
    let redis = RedisServer::start();
    let d = Daemon::start_with(&bus(&redis, "pubsub"));
    deploy_counter(&d, "tickets", &["TICKET_CREATED", "TICKET_UPDATED"]);
    let schema = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../example-handlers/ticket-alerts/schemas/TICKET_UPDATED.json"
    ))
    .unwrap();
    d.put(
        "/v1/schemas/TICKET_UPDATED",
        &serde_json::from_str(&schema).unwrap(),
    )
    .expect(200);
    wait_connected(&d);

    let mut con = redis.connect();
    let t1 = "0b6f3c8e-8f7e-4c1a-9a53-1d2b3c4d5e6f";
    let created = envelope(
        "e-1",
        "TICKET_CREATED",
        json!({"tenantId": t1, "ticketId": "T-1", "title": "Printer on fire"}),
    );
    assert_eq!(publish(&mut con, "TICKET_CREATED", &created), 1);
    publish(&mut con, "TICKET_CREATED", "not json {");
    publish(
        &mut con,
        "TICKET_CREATED",
        json!({"id": "e-2", "payload": {"tenantId": t1}}).to_string(),
    );
    publish(
        &mut con,
        "TICKET_CREATED",
        envelope("e-3", "TICKET_CREATED", json!({"ticketId": "T-3"})),
    );
    publish(
        &mut con,
        "TICKET_UPDATED",
        envelope(
            "e-4",
            "TICKET_UPDATED",
            json!({"tenantId": t1, "ticketId": 42, "status": "open"}),
        ),
    );
    let huge = envelope(
        "e-5",
        "TICKET_CREATED",
        json!({"tenantId": t1, "blob": "x".repeat(10 << 20)}),
    );
    publish(&mut con, "TICKET_CREATED", huge.as_bytes());
    // Published again (a retrying publisher): accepted once.
    publish(&mut con, "TICKET_CREATED", &created);
    publish(
        &mut con,
        "TICKET_UPDATED",
        envelope(
            "e-6",
            "TICKET_UPDATED",
            json!({"tenantId": "t-2", "ticketId": "T-6", "status": "waiting"}),
        ),
    );

    let status = d.wait_until("every message taken or skipped", || {
        let s = bus_status(&d);
        let c = &s["counters"];
        let n = |k: &str| c[k].as_u64().unwrap();
        (n("accepted") + n("duplicates") + n("malformed") + n("refused") == 8).then_some(s)
    });
    assert_eq!(status["counters"]["received"], 8);
    let c = &status["counters"];
    assert_eq!(
        (
            c["accepted"].as_u64(),
            c["duplicates"].as_u64(),
            c["malformed"].as_u64(),
            c["refused"].as_u64()
        ),
        (Some(2), Some(1), Some(4), Some(1)),
        "{status}"
    );
    let skipped = status["last_skipped"]["message"].as_str().unwrap();
    assert!(skipped.contains("channel event::TICKET_"), "{status}");
    let got = d.wait_until("both deliveries", || {
        let got = delivered(&d, "tickets");
        (got.len() == 2).then_some(got)
    });
    let mut seen: Vec<(String, String)> = got.into_iter().map(|(_, t, n)| (t, n)).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("TICKET_CREATED".to_string(), t1.to_string()),
            ("TICKET_UPDATED".to_string(), "t-2".to_string())
        ]
    );
    assert_eq!(
        d.metric("hookbox_redis_messages_skipped_total{bus=\"bus\"}"),
        Some(5.0)
    );
    assert_eq!(d.metric("hookbox_redis_connected{bus=\"bus\"}"), Some(1.0));
    let log = d.stderr_tail();
    for why in [
        "not JSON",
        "no `eventType` string",
        "no `payload.tenantId`",
        "the limit is",
        "was refused",
    ] {
        assert!(log.contains(why), "no log line says {why:?}");
    }
}

#[test]
fn rediss_verifies_the_server_against_ca_file_and_presents_a_client_certificate() {
    // The server's TLS port requires a client certificate signed by its own
    // throwaway CA. Three buses on it: one with that CA and a client
    // certificate connects and delivers; one trusting only the system's CA
    // store, and one without a client certificate, are refused and say so.
    let redis = RedisServer::start_tls();
    let tls = redis.tls();
    let url = format!("rediss://127.0.0.1:{}/0", tls.port);
    let d = Daemon::start_with(&format!(
        r#"
[[redis]]
name = "trusted"
url = "{url}"
ca_file = "{ca}"
client_cert_file = "{cert}"
client_key_file = "{key}"

[[redis]]
name = "system-ca"
url = "{url}"
client_cert_file = "{cert}"
client_key_file = "{key}"
sink = false

[[redis]]
name = "no-client-cert"
url = "{url}"
ca_file = "{ca}"
sink = false
"#,
        ca = tls.ca.display(),
        cert = tls.client_cert.display(),
        key = tls.client_key.display(),
    ));
    deploy_counter(&d, "tickets", &["TICKET_CREATED"]);
    let buses = || d.get("/v1/redis").expect(200).json["buses"].clone();
    let named = |all: &Value, name: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no bus {name} in {all}"))
    };
    d.wait_until("the trusted bus to connect over TLS", || {
        (named(&buses(), "trusted")["connected"] == true).then_some(())
    });
    let refused = d.wait_until("the other two buses to report their TLS errors", || {
        let all = buses();
        let errors: Vec<String> = ["system-ca", "no-client-cert"]
            .iter()
            .map(|n| {
                named(&all, n)["last_error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        errors.iter().all(|e| !e.is_empty()).then_some(errors)
    });
    assert!(
        refused[0].to_lowercase().contains("certificate"),
        "system-ca: {}",
        refused[0]
    );
    let all = buses();
    assert_eq!(named(&all, "system-ca")["connected"], false, "{all}");
    assert_eq!(named(&all, "no-client-cert")["connected"], false, "{all}");

    // Published on the plain port, read over TLS by the trusted bus only.
    let mut con = redis.connect();
    let created = envelope(
        "e-tls",
        "TICKET_CREATED",
        json!({"tenantId": "t-1", "ticketId": "T-1"}),
    );
    assert_eq!(publish(&mut con, "TICKET_CREATED", &created), 1);
    let got = d.wait_until("the event to be delivered", || {
        let got = delivered(&d, "tickets");
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].1.as_str(), got[0].2.as_str()),
        ("TICKET_CREATED", "t-1")
    );
    // No key material in the API's answer.
    let text = d.get("/v1/redis").expect(200).text;
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[test]
fn pubsub_loses_what_is_published_while_hookbox_is_away() {
    let redis = RedisServer::start();
    let mut d = Daemon::start_with(&bus(&redis, "pubsub"));
    deploy_counter(&d, "tickets", &["TICKET_CREATED"]);
    wait_connected(&d);
    let mut con = redis.connect();
    let ticket = |i: usize| {
        envelope(
            &format!("e-{i}"),
            "TICKET_CREATED",
            json!({"tenantId": "t", "ticketId": i}),
        )
    };
    assert_eq!(publish(&mut con, "TICKET_CREATED", ticket(0)), 1);
    d.wait_until("the first event", || {
        (delivered(&d, "tickets").len() == 1).then_some(())
    });

    d.stop();
    // What pub/sub does while nobody listens: the publisher is told no one
    // received it, and Redis keeps nothing.
    let receivers: i64 = (1..=5)
        .map(|i| publish(&mut con, "TICKET_CREATED", ticket(i)))
        .sum();
    assert_eq!(receivers, 0);
    d.restart();
    wait_connected(&d);
    assert_eq!(publish(&mut con, "TICKET_CREATED", ticket(6)), 1);
    d.wait_until("the event after the restart", || {
        (delivered(&d, "tickets").len() == 2).then_some(())
    });
    assert_eq!(
        bus_status(&d)["counters"]["received"],
        1,
        "events 1-5 are lost: measured 5 of 5"
    );
}

#[test]
fn stream_mode_loses_nothing_across_kill_9_and_a_redis_restart() {
    const N: usize = 300;
    let mut redis = RedisServer::start();
    let mut d = Daemon::start_with(&bus(&redis, "stream"));
    deploy_counter(&d, "tickets", &["TICKET_CREATED"]);
    wait_connected(&d);

    // The publisher XADDs N envelopes, each for its own tenant, retrying
    // through the Redis restart (a retried XADD may add an entry twice: the
    // envelope id makes it one event).
    let sent = Arc::new(AtomicUsize::new(0));
    let pause = Arc::new(AtomicBool::new(false));
    let url = redis.url();
    let publisher = {
        let (sent, pause) = (sent.clone(), pause.clone());
        std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut con: Option<redis::Connection> = None;
            let mut i = 0;
            while i < N {
                if pause.load(Ordering::SeqCst) {
                    con = None;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                if con.is_none() {
                    con = client
                        .get_connection_with_timeout(Duration::from_secs(1))
                        .ok();
                }
                let Some(c) = con.as_mut() else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let env = envelope(
                    &format!("e-{i}"),
                    "TICKET_CREATED",
                    json!({"tenantId": format!("t-{i}"), "ticketId": i}),
                );
                let added: redis::RedisResult<String> = redis::cmd("XADD")
                    .arg("event::stream")
                    .arg("*")
                    .arg("event")
                    .arg(env)
                    .query(c);
                match added {
                    Ok(_) => {
                        i += 1;
                        sent.store(i, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    Err(_) => con = None,
                }
            }
        })
    };
    let wait_sent = |d: &Daemon, n: usize| {
        d.wait_until(&format!("{n} entries added"), || {
            (sent.load(Ordering::SeqCst) >= n).then_some(())
        })
    };
    wait_sent(&d, 60);
    d.kill9();
    wait_sent(&d, 120);
    d.restart();
    wait_sent(&d, 170);
    pause.store(true, Ordering::SeqCst);
    redis.restart();
    pause.store(false, Ordering::SeqCst);
    wait_sent(&d, 230);
    d.kill9();
    d.restart();
    publisher.join().unwrap();

    let got = d.wait_until("every entry handled", || {
        let got = delivered(&d, "tickets");
        let tenants: BTreeSet<String> = got.iter().map(|(_, _, t)| t.clone()).collect();
        (tenants.len() == N).then_some(got)
    });
    let ids: BTreeSet<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        N,
        "each entry is one event, however often it was read"
    );
    d.wait_until("every entry acknowledged", || {
        let mut con = redis.connect();
        let n: redis::Value = redis::cmd("XPENDING")
            .arg("event::stream")
            .arg("hookbox")
            .query(&mut con)
            .unwrap();
        match n {
            redis::Value::Array(v) => (v.first() == Some(&redis::Value::Int(0))).then_some(()),
            _ => None,
        }
    });
}

#[test]
fn ticket_events_become_discord_and_slack_messages_and_a_bus_event() {
    let redis = RedisServer::start();
    let rx = Receiver::start();
    let d = Daemon::start_with(&format!(
        "{}[[webhook]]\nname = \"acme-discord\"\nkind = \"discord\"\nurl = \"{}\"\ntenants = [\"t-acme\"]\n\
         [[webhook]]\nname = \"acme-slack\"\nkind = \"slack\"\nurl = \"{}\"\ntenants = [\"t-acme\"]\n",
        bus(&redis, "pubsub"),
        rx.url("/discord"),
        rx.url("/slack"),
    ));
    let (manifest, wasm) = example("ticket-alerts");
    let mut manifest: Value = serde_json::from_str(&manifest).unwrap();
    manifest["config"] = json!({"tenants": {"t-acme": {"discord": "acme-discord", "slack": "acme-slack"}},
                                "publish": true});
    d.deploy(&manifest.to_string(), &wasm).expect(201);
    wait_connected(&d);

    let mut sub = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("event::NOTIFICATION_SENT").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let mut con = redis.connect();
    publish(
        &mut con,
        "TICKET_CREATED",
        envelope(
            "e-1",
            "TICKET_CREATED",
            json!({"tenantId": "t-acme", "ticketId": "T-9",
            "title": "Printer on fire", "status": "open", "priority": "urgent"}),
        ),
    );
    let discord = rx.wait_for("/discord", 1);
    let embed = &discord[0].json()["embeds"][0];
    assert_eq!(embed["title"], "T-9: Printer on fire");
    assert_eq!(embed["fields"][1]["value"], "urgent");
    assert_eq!(embed["timestamp"], "2026-01-05T10:00:00.000Z");
    let slack = rx.wait_for("/slack", 1);
    assert_eq!(
        slack[0].json()["text"],
        "Ticket T-9 opened: Printer on fire"
    );

    let msg = pubsub.get_message().expect("NOTIFICATION_SENT on the bus");
    let back: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
    assert_eq!(back["eventType"], "NOTIFICATION_SENT");
    assert_eq!(back["payload"]["tenantId"], "t-acme");
    assert_eq!(back["payload"]["channels"], json!(["discord", "slack"]));
    assert_eq!(back["publisher"], "hookbox:bus");
    // Hookbox does not read back what it published.
    let status = d.wait_until("the sink's count", || {
        let s = bus_status(&d);
        (s["sink"]["published"] == 1 && s["counters"]["own"] == 1).then_some(s)
    });
    assert_eq!(status["counters"]["accepted"], 1, "{status}");
}
