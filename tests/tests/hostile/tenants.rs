//! Tenant isolation: routing never crosses tenants, a publish token scoped
//! to a tenant cannot publish to another, reads with a tenant-scoped token
//! (logs, events, dead letters, the live stream) show only that tenant, and
//! reads that cannot be narrowed to a tenant (stats, metrics, handler
//! records) are refused to it.

use std::time::Duration;

use hookbox_tests::daemon::{Body, Daemon};
use hookbox_tests::{guests, read};
use reqwest::Method;
use serde_json::{Value, json};

use super::{await_outcome, deploy, manifest, publish};

/// Tenant names an attacker might hope compare equal to `acme`.
const LOOKALIKES: &[&str] = &[
    "",
    "ACME",
    "acme ",
    " acme",
    "acme\u{200b}",
    "\u{430}cme",
    "acm\u{65}\u{301}",
    "acme/",
    "acme*",
    "*",
];

fn post_as(d: &Daemon, token: &str, path: &str, body: &Value) -> hookbox_tests::daemon::Reply {
    d.send(Method::POST, path, Some(token), Body::Json(body.clone()))
}

#[test]
fn a_handler_subscribed_to_a_tenant_never_receives_another_tenants_events() {
    let d = Daemon::start();
    let mut m = manifest("acme-only", &["*"]);
    m["subscription"]["tenants"] = json!(["acme"]);
    deploy(&d, &m, &read(guests::GOOD)).expect(201);

    let mut events = vec![json!({"type": "message", "tenant": "acme"})];
    events.extend(
        LOOKALIKES
            .iter()
            .map(|t| json!({"type": "message", "tenant": t})),
    );
    let r = d.publish(&json!(events), true).expect(200);
    let accepted = r.json["events"].as_array().unwrap();
    assert_eq!(accepted[0]["handlers"], json!(["acme-only"]), "{r}");
    for (tenant, a) in LOOKALIKES.iter().zip(&accepted[1..]) {
        assert_eq!(a["handlers"], json!([]), "tenant {tenant:?}: {r}");
    }
    // The handler's `seen` emissions stay in its event's tenant too.
    let logs = d.get("/v1/logs?handler=acme-only&limit=1000").expect(200);
    let entries = logs.json["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{logs}");
    for e in entries {
        assert_eq!(e["tenant"], "acme", "{logs}");
    }
}

#[test]
fn a_publish_token_scoped_to_a_tenant_cannot_publish_to_another() {
    let d = Daemon::start();
    let acme = d.token("acme-publisher", &["publish"], &["acme"]);
    let ok = post_as(
        &d,
        &acme,
        "/v1/events",
        &json!({"type": "x", "tenant": "acme"}),
    );
    ok.expect(202);
    let accepted_before = d.metric("hookbox_events_accepted_total");

    for tenant in LOOKALIKES.iter().chain(&["evil"]) {
        let r = post_as(
            &d,
            &acme,
            "/v1/events",
            &json!({"type": "x", "tenant": tenant}),
        );
        let msg = r.error(403, "forbidden");
        assert!(msg.contains("tenant"), "{tenant:?}: {msg}");
    }
    // A batch smuggling one foreign event is refused whole.
    let batch = json!([
        {"type": "x", "tenant": "acme"},
        {"type": "x", "tenant": "acme"},
        {"type": "x", "tenant": "evil"},
    ]);
    let msg = post_as(&d, &acme, "/v1/events?wait=true", &batch).error(403, "forbidden");
    assert!(msg.contains("event 2") && msg.contains("evil"), "{msg}");
    assert_eq!(d.metric("hookbox_events_accepted_total"), accepted_before);

    // Nor can it do anything but publish.
    for path in ["/v1/logs", "/v1/handlers", "/v1/dead-letters", "/v1/stats"] {
        d.get_as(path, &acme).error(403, "forbidden");
    }
    post_as(
        &d,
        &acme,
        "/v1/tokens",
        &json!({"name": "escalate", "scopes": ["admin"]}),
    )
    .error(403, "forbidden");
}

/// One event for `tenant` through a handler that always traps (so it is
/// logged and dead-lettered); returns the event id.
fn dead_letter(d: &Daemon, tenant: &str) -> String {
    let id = publish(d, "boom", tenant);
    assert_eq!(await_outcome(d, &id, "trapper"), "trap");
    id
}

#[test]
fn reads_with_a_tenant_scoped_token_show_only_that_tenant() {
    let d = Daemon::start();
    deploy(&d, &manifest("trapper", &["boom"]), &read(guests::TRAP)).expect(201);
    let ours = dead_letter(&d, "acme");
    let theirs = dead_letter(&d, "evil");
    let reader = d.token("acme-reader", &["read"], &["acme"]);

    let logs = d.get_as("/v1/logs?limit=1000", &reader).expect(200);
    let tenants: Vec<&Value> = logs.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["tenant"])
        .collect();
    assert_eq!(tenants, [&json!("acme")], "{logs}");
    d.get_as("/v1/logs?tenant=evil", &reader)
        .error(403, "forbidden");

    d.get_as(&format!("/v1/events/{ours}"), &reader).expect(200);
    d.get_as(&format!("/v1/events/{theirs}"), &reader)
        .error(404, "not_found");

    let dead = d.get_as("/v1/dead-letters", &reader).expect(200);
    let letters = dead.json["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{dead}");
    assert_eq!(letters[0]["event"]["id"], json!(ours), "{dead}");
    let all = d.get("/v1/dead-letters").expect(200);
    let foreign = all.json["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"]["id"] == json!(theirs))
        .unwrap_or_else(|| panic!("{all}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    d.get_as(&format!("/v1/dead-letters/{foreign}"), &reader)
        .error(404, "not_found");
    // Replaying or purging needs admin, whatever the tenant.
    d.send(
        Method::POST,
        &format!("/v1/dead-letters/{foreign}/replay"),
        Some(&reader),
        Body::None,
    )
    .error(403, "forbidden");

    // The live stream: the other tenant's outcome never shows.
    let mut stream = d.http().stream(d.url(), "/v1/stream", &reader);
    let theirs = publish(&d, "boom", "evil");
    let ours = publish(&d, "boom", "acme");
    let mut seen = Vec::new();
    while let Some(ev) = stream.next_event(Duration::from_secs(10)) {
        let notice: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if notice["event_id"].is_string() {
            seen.push(notice["event_id"].as_str().unwrap().to_string());
        }
        if seen.contains(&ours) {
            break;
        }
    }
    assert!(
        seen.contains(&ours),
        "the stream showed our event: {seen:?}"
    );
    assert!(
        !seen.contains(&theirs),
        "the stream leaked the other tenant: {seen:?}"
    );
}

#[test]
fn aggregate_reads_are_refused_to_a_tenant_scoped_token() {
    // Stats and metrics are counted per handler, and handler records hold
    // every tenant's configs and subscriptions: none of it can be narrowed
    // to one tenant, so a token restricted to tenants is refused it (403,
    // saying why), and sees nothing of tenant `evil` anywhere.
    let d = Daemon::start();
    let mut m = manifest("trapper", &["boom"]);
    m["config"] = json!({"evil_api_key": "s3cret"});
    m["subscription"]["tenants"] = json!(["acme", "evil"]);
    deploy(&d, &m, &read(guests::TRAP)).expect(201);
    dead_letter(&d, "evil");
    let reader = d.token("acme-reader", &["read"], &["acme"]);
    for path in [
        "/v1/stats",
        "/metrics",
        "/v1/handlers",
        "/v1/handlers?config=true&stats=true",
        "/v1/handlers/trapper",
        "/v1/handlers/trapper/versions",
    ] {
        let r = d.get_as(path, &reader);
        let msg = r.error(403, "forbidden");
        assert!(
            msg.contains("every tenant") && msg.contains("acme-reader"),
            "{path}: {msg}"
        );
        assert!(
            !r.text.contains("evil") && !r.text.contains("s3cret"),
            "{path}: {r}"
        );
    }
    // What can be narrowed is: the acme reader's log holds nothing of evil.
    let logs = d.get_as("/v1/logs", &reader).expect(200);
    assert_eq!(logs.json["entries"], json!([]), "{logs}");
    // A read token for every tenant still sees all of it.
    let all = d.token("reader", &["read"], &[]);
    let stats = d.get_as("/v1/stats", &all).expect(200);
    assert_eq!(stats.json["handlers"][0]["processed"], 1, "{stats}");
    let metrics = d.get_as("/metrics", &all);
    assert!(
        metrics.status == 200 && metrics.text.contains("trapper"),
        "{metrics}"
    );
    d.get_as("/v1/handlers/trapper", &all).expect(200);
}

#[test]
fn a_revoked_or_expired_token_loses_its_live_stream() {
    // The stream checked its token only when it opened: revoked (204) or
    // expired, the token got 401 everywhere else while deliveries kept
    // arriving on its open stream.
    let d = Daemon::start();
    deploy(&d, &manifest("h", &["ping"]), &read(guests::GOOD)).expect(201);
    let create = |body: Value| {
        let r = d.post("/v1/tokens", &body).expect(201);
        let id = r.json["token"]["id"].as_str().unwrap().to_string();
        (id, r.json["secret"].as_str().unwrap().to_string())
    };
    let (id, revoked) = create(json!({"name": "reader", "scopes": ["read"]}));
    let (_, expiring) = create(json!({"name": "brief", "scopes": ["read"], "expires_in": "3s"}));
    let mut a = d.http().stream(d.url(), "/v1/stream", &revoked);
    let mut b = d.http().stream(d.url(), "/v1/stream", &expiring);
    let event = publish(&d, "ping", "acme");
    for stream in [&mut a, &mut b] {
        let ev = stream
            .next_event(Duration::from_secs(10))
            .expect("a delivery");
        assert!(ev.data.contains(&event), "{ev:?}");
    }

    d.delete(&format!("/v1/tokens/{id}")).expect(204);
    d.get_as("/v1/logs", &revoked).expect(401);
    // The server ends both streams (within a second of the revocation and
    // of the expiry at 3 s; not timed here) while events keep coming.
    for (stream, what) in [(&mut a, "revoked"), (&mut b, "expired")] {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !stream.ended() && std::time::Instant::now() < until {
            publish(&d, "ping", "acme");
            stream.next_event(Duration::from_millis(200));
        }
        assert!(stream.ended(), "the {what} token's stream is still open");
    }
    d.get_as("/v1/logs", &expiring).expect(401);
}

/// Issue 12, hole 4: a handler shared by tenants `evil` and `good`; evil's
/// events trap. On the old per-handler breaker, evil's two traps opened the
/// handler's breaker and (with `auto_disable_opens = 1`) disabled it, so
/// good's events were routed to no handler. Now only evil's breaker opens:
/// evil's next event waits, good's are delivered `ok`, the handler stays
/// enabled.
#[test]
fn one_tenants_failures_park_only_that_tenant_and_cannot_disable_a_shared_handler() {
    let d = Daemon::start();
    let mut m = manifest("shared", &["*"]);
    m["delivery"]["breaker"] = json!({
        "consecutive_failures": 2,
        "failure_rate": 0.0,
        "cooldown_ms": 600_000,
        "auto_disable_opens": 1,
    });
    deploy(&d, &m, &read(guests::TRAP_BOOM)).expect(201);
    let evil = d.token("evil-publisher", &["publish"], &["evil"]);
    let good = d.token("good-publisher", &["publish"], &["good"]);
    let boom = json!({"type": "boom", "tenant": "evil"});
    let message = json!({"type": "message", "tenant": "good"});

    for _ in 0..2 {
        let r = post_as(&d, &evil, "/v1/events?wait=true", &boom).expect(200);
        assert_eq!(r.json["events"][0]["handlers"], json!(["shared"]), "{r}");
        assert_eq!(
            r.json["outcomes"][0]["deliveries"][0]["outcome"], "trap",
            "{r}"
        );
    }
    // evil's breaker is open (for ten minutes): its next event waits.
    let held = post_as(&d, &evil, "/v1/events", &boom).expect(202);
    let held = held.json["events"][0]["id"].as_str().unwrap().to_string();

    for _ in 0..3 {
        let r = post_as(&d, &good, "/v1/events?wait=true", &message).expect(200);
        assert_eq!(r.json["events"][0]["handlers"], json!(["shared"]), "{r}");
        assert_eq!(r.json["outcomes"][0]["complete"], true, "{r}");
        assert_eq!(
            r.json["outcomes"][0]["deliveries"][0]["outcome"], "ok",
            "{r}"
        );
    }

    let h = d.get("/v1/handlers/shared").expect(200);
    assert_eq!(h.json["handler"]["enabled"], true, "{h}");
    let circuit = &h.json["circuit"];
    assert_eq!(circuit["state"], "closed", "{h}");
    assert_eq!(circuit["opened_total"], 0, "{h}");
    let tenants = circuit["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{h}");
    assert_eq!(tenants[0]["tenant"], "evil", "{h}");
    assert_eq!(tenants[0]["state"], "open", "{h}");
    assert!(
        tenants[0]["last_reason"]
            .as_str()
            .is_some_and(|r| r.contains("2 failures in a row")),
        "{h}"
    );
    // Held, not run, not failed.
    let e = d.get(&format!("/v1/events/{held}")).expect(200);
    assert_eq!(e.json["deliveries"], json!([]), "{e}");
    assert_eq!(
        d.metric("hookbox_circuit_tenants_open{handler=\"shared\"}"),
        Some(1.0)
    );
    assert_eq!(
        d.metric("hookbox_handlers_auto_disabled_total{handler=\"shared\"}")
            .unwrap_or(0.0),
        0.0
    );
    let stats = d.get("/v1/stats").expect(200);
    assert!(
        stats.json["circuits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["handler"] == "shared" && c["tenants"][0]["tenant"] == "evil"),
        "{stats}"
    );
}

#[test]
fn a_handler_serving_a_tenant_cannot_emit_into_another() {
    // Code serving `acme` asks to emit `pong` into `zeta`, where a handler
    // (or a sink restricted to `zeta`) trusts its events come from zeta's
    // producers. The host refuses the emit; the guest traps on the refusal.
    let d = Daemon::start();
    let mut crosser = manifest("crosser", &["ping"]);
    crosser["config"] = json!("zeta");
    deploy(&d, &crosser, &read(guests::EMIT_TENANT)).expect(201);
    let mut listener = manifest("zeta-listener", &["pong"]);
    listener["subscription"]["tenants"] = json!(["zeta"]);
    deploy(&d, &listener, &read(guests::GOOD)).expect(201);

    let from_acme = publish(&d, "ping", "acme");
    assert_eq!(await_outcome(&d, &from_acme, "crosser"), "trap");

    // An event without a tenant (only an unscoped producer can send one)
    // may fan out into tenants: the same handler's emit into zeta goes
    // through and reaches zeta's handler.
    let untenanted = publish(&d, "ping", "");
    assert_eq!(await_outcome(&d, &untenanted, "crosser"), "ok");
    let reached = d.wait_until("the pong to reach zeta's handler", || {
        let r = d.get("/v1/logs?handler=zeta-listener&limit=10").expect(200);
        let entries = r.json["entries"].as_array().unwrap().clone();
        (!entries.is_empty()).then_some(entries)
    });
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(reached[0]["tenant"], "zeta");
    assert_eq!(reached[0]["outcome"], "ok");
}
