//! Bad input end to end: malformed and oversized bodies, unknown fields,
//! wrong content types, bad query strings, core modules and garbage
//! uploaded as components, invalid manifests. Each gets a 4xx in the one
//! JSON error shape with a message naming the problem, and the daemon goes
//! on serving.

use hookbox_tests::daemon::{Body, Daemon};
use hookbox_tests::{guests, read};
use reqwest::Method;
use serde_json::json;

use super::array;

/// Small limits, so that "too large" is cheap to send.
const CONFIG: &str = "[api]\nmax_body_bytes = 65536\nmax_component_bytes = 8388608\n";

fn raw(
    d: &Daemon,
    method: Method,
    path: &str,
    content_type: &'static str,
    body: &[u8],
) -> hookbox_tests::daemon::Reply {
    d.send(
        method,
        path,
        Some(d.admin()),
        Body::Raw(content_type, body.to_vec()),
    )
}

fn deploy_parts(d: &Daemon, parts: Vec<(&str, Vec<u8>)>) -> hookbox_tests::daemon::Reply {
    d.send(
        Method::POST,
        "/v1/handlers",
        Some(d.admin()),
        Body::Multipart(parts.into_iter().map(|(n, b)| (n.to_string(), b)).collect()),
    )
}

// One daemon per kind of bad input, so one failure does not hide the
// others; each ends by checking the daemon still serves and stored nothing.

#[test]
fn bad_events_get_a_precise_error() {
    bad_input(events);
}

#[test]
fn bad_components_get_a_precise_error() {
    bad_input(components);
}

#[test]
fn bad_manifests_get_a_precise_error() {
    bad_input(manifests);
}

#[test]
fn bad_routes_and_queries_get_a_precise_error() {
    bad_input(routes_and_queries);
}

/// Runs `scenario` against a fresh daemon, then checks it is still serving
/// and nothing of the bad input was stored.
fn bad_input(scenario: fn(&Daemon)) {
    let d = Daemon::start_with(CONFIG);
    scenario(&d);
    d.send(Method::GET, "/healthz", None, Body::None)
        .expect(200);
    d.send(Method::GET, "/readyz", None, Body::None).expect(200);
    let r = d.get("/v1/handlers").expect(200);
    assert_eq!(array(&r.json, "handlers").len(), 0, "{r}");
    assert_eq!(d.metric("hookbox_events_accepted_total"), Some(0.0));
    let good = json!({"name": "good", "subscription": {"events": ["ping"]}});
    d.deploy(&good.to_string(), &read(guests::GOOD)).expect(201);
    let r = d.publish(&json!({"type": "ping"}), true).expect(200);
    assert_eq!(
        r.json["outcomes"][0]["deliveries"][0]["outcome"], "ok",
        "{r}"
    );
    let log = d.stderr_tail();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

fn events(d: &Daemon) {
    let post = |ct, body: &[u8]| raw(d, Method::POST, "/v1/events", ct, body);
    let m = post("application/json", br#"{"type": "ping""#).error(400, "bad_request");
    assert!(m.to_lowercase().contains("json"), "{m}");
    let m = post("application/json", br#""ping""#).error(400, "bad_request");
    assert!(m.contains("array"), "{m}");
    post("application/json", b"[]").error(400, "bad_request");
    post("application/json", b"").error(400, "bad_request");

    let big = json!({"type": "ping", "payload": {"blob": "x".repeat(70_000)}}).to_string();
    post("application/json", big.as_bytes()).error(413, "payload_too_large");

    let m = post("application/json", br#"{"type": "ping", "tenat": "acme"}"#)
        .error(422, "unprocessable");
    assert!(m.contains("tenat"), "{m}");
    let m = post(
        "application/json",
        br#"[{"type": "ok"}, {"type": "has space"}]"#,
    )
    .error(422, "unprocessable");
    assert!(m.contains("event 1") && m.contains("type"), "{m}");
    let m = post(
        "application/json",
        br#"{"type": "ping", "priority": "urgent"}"#,
    )
    .error(422, "unprocessable");
    assert!(m.contains("urgent"), "{m}");

    let m = post("text/plain", br#"{"type": "ping"}"#).error(415, "unsupported_media_type");
    assert!(m.contains("text/plain"), "{m}");

    let m = d
        .post("/v1/tokens", &json!({"name": "x", "scopes": ["root"]}))
        .error(422, "unprocessable");
    assert!(m.contains("root"), "{m}");
    let m = raw(
        d,
        Method::PUT,
        "/v1/handlers/good/config",
        "application/json",
        b"{nope",
    )
    .error(400, "bad_request");
    assert!(!m.is_empty());
}

fn components(d: &Daemon) {
    let manifest = || {
        json!({"name": "upload", "subscription": {"events": ["ping"]}})
            .to_string()
            .into_bytes()
    };

    let m = deploy_parts(
        d,
        vec![
            ("manifest", manifest()),
            ("component", read(guests::TRAP_CORE)),
        ],
    )
    .error(422, "unprocessable");
    assert!(m.contains("core WebAssembly module"), "{m}");
    let m = deploy_parts(
        d,
        vec![("manifest", manifest()), ("component", b"garbage".to_vec())],
    )
    .error(422, "unprocessable");
    assert!(m.contains("not a WebAssembly binary"), "{m}");
    let m = deploy_parts(d, vec![("manifest", manifest()), ("component", Vec::new())])
        .error(422, "unprocessable");
    assert!(!m.is_empty());
    let m = deploy_parts(
        d,
        vec![
            ("manifest", manifest()),
            ("component", read(guests::EVIL_IMPORT)),
        ],
    );
    let m = m.error(422, "unprocessable");
    assert!(m.contains("import"), "{m}");
    let m = deploy_parts(
        d,
        vec![
            ("manifest", manifest()),
            ("component", read(guests::WRONG_EXPORT)),
        ],
    )
    .error(422, "unprocessable");
    assert!(m.contains("handle") || m.contains("export"), "{m}");

    let big = vec![0u8; 8 * 1024 * 1024 + 1];
    let m = deploy_parts(d, vec![("manifest", manifest()), ("component", big)])
        .error(413, "payload_too_large");
    assert!(m.contains("`component`"), "{m}");

    let m = deploy_parts(d, vec![("manifest", manifest())]).error(400, "bad_request");
    assert!(m.contains("`component`"), "{m}");
    let m = d
        .post("/v1/handlers", &json!({"manifest": {}}))
        .error(415, "unsupported_media_type");
    assert!(m.contains("multipart/form-data"), "{m}");
}

fn manifests(d: &Daemon) {
    let component = read(guests::GOOD);
    let deploy = |manifest: serde_json::Value| {
        deploy_parts(
            d,
            vec![
                ("manifest", manifest.to_string().into_bytes()),
                ("component", component.clone()),
            ],
        )
    };
    // Valid JSON of the wrong shape or with invalid values is 422, naming
    // the field, as README says of every JSON body; text that is not JSON
    // is 400.
    let m = deploy(json!({})).error(422, "unprocessable");
    assert!(m.contains("name"), "{m}");
    let m = deploy(json!({"name": "Bad Name!", "subscription": {"events": ["ping"]}}))
        .error(422, "unprocessable");
    assert!(m.contains("name"), "{m}");
    let m = deploy(json!({"name": "", "subscription": {"events": ["ping"]}}))
        .error(422, "unprocessable");
    assert!(m.contains("name"), "{m}");
    let m = deploy(json!({"name": "x".repeat(65), "subscription": {"events": ["ping"]}}))
        .error(422, "unprocessable");
    assert!(m.contains("name"), "{m}");
    let m = deploy(json!({"name": "ok", "subscription": {"events": ["ping"]}, "retries": 3}))
        .error(422, "unprocessable");
    assert!(m.contains("retries"), "{m}");
    let m = deploy(json!({"name": "ok", "subscription": {"events": ["bad pattern"]}}))
        .error(422, "unprocessable");
    assert!(m.contains("bad pattern"), "{m}");
    let m = deploy(json!({
        "name": "ok",
        "subscription": {"events": ["ping"]},
        "delivery": {"max_attempts": 0}
    }))
    .error(422, "unprocessable");
    assert!(m.contains("max_attempts"), "{m}");
    let m = deploy_parts(
        d,
        vec![
            ("manifest", b"{".to_vec()),
            ("component", component.clone()),
        ],
    )
    .error(400, "bad_request");
    assert!(m.contains("`manifest`"), "{m}");
}

fn routes_and_queries(d: &Daemon) {
    let m = d.get("/v1/nope").error(404, "not_found");
    assert!(m.contains("/v1/nope"), "{m}");
    let r = d.send(Method::DELETE, "/v1/events", Some(d.admin()), Body::None);
    r.error(405, "method_not_allowed");
    for (path, needle) in [
        ("/v1/logs?limit=0", "limit"),
        ("/v1/logs?since=tomorrow", "since"),
        ("/v1/logs?handlr=x", "handlr"),
        ("/v1/dead-letters?limit=-1", "limit"),
        ("/v1/handlers?status=sleeping", "status"),
    ] {
        let m = d.get(path).error(400, "bad_request");
        assert!(m.contains(needle), "{path}: {m}");
    }
    let m = d
        .post("/v1/events?wait=maybe", &json!({"type": "ping"}))
        .error(400, "bad_request");
    assert!(m.contains("wait"), "{m}");
}

/// A config file with an unknown key stops `hookbox serve` before it
/// listens, and the error names the key (the harness reports the daemon's
/// stderr when it does not come up).
#[test]
fn an_unknown_config_key_stops_the_daemon_naming_it() {
    let failed = std::panic::catch_unwind(|| Daemon::start_with("[api]\nmax_body_kb = 1\n"))
        .expect_err("the daemon must refuse the config");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("hookbox listening on"), "{message}");
    assert!(message.contains("max_body_kb"), "{message}");
}
