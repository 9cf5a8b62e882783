//! Hostile HTTP against the admin API: malformed and deeply nested JSON,
//! wrong content types, oversized bodies and headers, slow clients, bad
//! tokens on every route, a batch of 100 000 events and unicode edge cases.
//! Every answer is a clean 4xx in the one error shape (never a 5xx), and
//! the daemon keeps answering others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hookbox_tests::daemon::{Body, Daemon, Reply, WAIT};
use hookbox_tests::{guests, read};
use reqwest::Method;
use serde_json::{Value, json};

use super::{deploy, manifest};

/// `host:port` of the daemon.
fn addr(d: &Daemon) -> String {
    d.url().trim_start_matches("http://").to_string()
}

/// Sends raw bytes on a fresh connection and reads the answer until the
/// server closes it (requests say `Connection: close`). Returns the status
/// (0 if the server closed without answering) and the whole answer.
fn raw(d: &Daemon, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr(d)).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    // The server may answer and close before it has read everything.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A request with a JSON-ish body as raw bytes.
fn post_bytes(d: &Daemon, path: &str, content_type: &'static str, body: Vec<u8>) -> Reply {
    d.send(
        Method::POST,
        path,
        Some(d.admin()),
        Body::Raw(content_type, body),
    )
}

/// Asserts a clean client error: 4xx in the one error shape.
#[track_caller]
fn client_error(r: &Reply) -> String {
    assert!((400..500).contains(&r.status), "{r}");
    let code = r.json["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    r.error(r.status, &code)
}

/// The daemon still answers a normal request.
fn still_serving(d: &Daemon) {
    d.get("/healthz").expect(200);
    d.publish(&json!({"type": "ping"}), false).expect(202);
}

#[test]
fn malformed_json_gets_a_clean_400_or_422() {
    let d = Daemon::start();
    let cases: &[(&str, &[u8], u16)] = &[
        ("truncated", br#"{"type": "x""#, 400),
        ("trailing garbage", br#"{"type": "x"} {"#, 400),
        ("single quotes", b"{'type': 'x'}", 400),
        ("trailing comma", br#"{"type": "x",}"#, 400),
        ("NaN", br#"{"type": NaN}"#, 400),
        ("invalid UTF-8", b"{\"type\": \"\xff\xfe\"}", 400),
        ("byte order mark", b"\xef\xbb\xbf{\"type\": \"x\"}", 400),
        ("empty", b"", 400),
        ("a string", br#""event""#, 400),
        ("null", b"null", 400),
        ("a number", b"1e999", 400),
        ("wrong type", br#"{"type": 7}"#, 422),
        ("duplicate field", br#"{"type": "x", "type": "y"}"#, 422),
        ("unknown field", br#"{"type": "x", "tenat": "a"}"#, 422),
        (
            "metadata not strings",
            br#"{"type": "x", "metadata": {"a": {"b": 1}}}"#,
            422,
        ),
    ];
    for (what, body, status) in cases {
        let r = post_bytes(&d, "/v1/events", "application/json", body.to_vec());
        let msg = client_error(&r);
        assert_eq!(r.status, *status, "{what}: {msg}");
    }
    still_serving(&d);
}

#[test]
fn deeply_nested_json_is_refused_cleanly() {
    let d = Daemon::start();
    deploy(&d, &manifest("h", &["x"]), &read(guests::GOOD)).expect(201);
    let depth = 100_000;
    let nested = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
    // Where the shape is fixed, the type check refuses it at the first
    // level (422 naming the place); nothing recurses 100 000 deep.
    let shaped = [
        nested("[", "]"),
        format!(
            r#"{{"type": "x", "metadata": {}}}"#,
            nested(r#"{"a":"#, "}")
        ),
        format!(r#"[{{"type": "x"}}, {}]"#, nested("[", "]")),
    ];
    for body in shaped {
        let r = post_bytes(&d, "/v1/events", "application/json", body.into_bytes());
        client_error(&r);
    }
    let r = d.send(
        Method::POST,
        "/v1/tokens",
        Some(d.admin()),
        Body::Raw("application/json", nested(r#"{"name":"#, "}").into_bytes()),
    );
    client_error(&r);
    // Where any JSON is allowed (a handler's config), serde_json's
    // recursion limit (128 levels) ends the parse: a clean 400.
    let r = d.send(
        Method::PUT,
        "/v1/handlers/h/config",
        Some(d.admin()),
        Body::Raw("application/json", nested("[", "]").into_bytes()),
    );
    let msg = client_error(&r);
    assert_eq!(r.status, 400, "{msg}");
    assert!(msg.contains("recursion limit"), "{msg}");
    let manifest_text = format!(
        r#"{{"name": "n", "subscription": {{"events": ["x"]}}, "config": {}}}"#,
        nested(r#"{"a":"#, "}")
    );
    // The manifest part is checked to be JSON before its shape is read:
    // that check ends at the first error (the innermost `{"a":}` here, or
    // serde_json's recursion limit), a clean 400 either way.
    let r = d.deploy(&manifest_text, &read(guests::GOOD));
    let msg = r.error(400, "bad_request");
    assert!(
        msg.contains("recursion limit") || msg.contains("is not valid JSON"),
        "{msg}"
    );
    still_serving(&d);
}

#[test]
fn a_payload_nested_past_64_levels_is_refused_at_every_boundary() {
    // Payloads are kept as text, but filters, schemas, guests and clients
    // parse them (serde_json stops at 128 levels): 64 levels are carried,
    // deeper is refused by name where it enters — publish, emit, `run`.
    let d = Daemon::start();
    let mut filtered = manifest("filtered", &["deep"]);
    filtered["subscription"]["filters"] = json!([{"kind": "equals", "pointer": "/a", "value": 1}]);
    deploy(&d, &filtered, &read(guests::GOOD)).expect(201);
    deploy(&d, &manifest("plain", &["deep"]), &read(guests::GOOD)).expect(201);
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for (depth, wait) in [(100_000, false), (65, true)] {
        let body = format!(r#"{{"type": "deep", "payload": {}}}"#, nested(depth));
        let r = post_bytes(
            &d,
            &format!("/v1/events?wait={wait}"),
            "application/json",
            body.into_bytes(),
        );
        r.error(422, "unprocessable");
        assert!(r.to_string().contains("64 levels deep"), "{r}");
    }
    let body = format!(r#"{{"type": "deep", "payload": {}}}"#, nested(64));
    let r = post_bytes(
        &d,
        "/v1/events?wait=true",
        "application/json",
        body.into_bytes(),
    );
    let r = r.expect(200);
    assert_eq!(r.json["events"][0]["handlers"], json!(["plain"]), "{r}");
    assert_eq!(
        r.json["outcomes"][0]["deliveries"][0]["outcome"], "ok",
        "{r}"
    );

    // A handler emitting 500 000 levels under `hookbox run --json` (it
    // panicked in serde_json's recursion limit, exit 101): the emit is
    // refused, the guest goes on, and the report is JSON.
    let out = std::process::Command::new(d.bin())
        .args(["run", "--json", guests::EMIT_DEEP, "--type", "x"])
        .args(["--config", "500000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["deliveries"][0]["outcome"], "ok", "{report}");
    assert_eq!(report["deliveries"][0]["emitted"], json!([]), "{report}");
    still_serving(&d);
}

#[test]
fn wrong_content_types_are_415() {
    let d = Daemon::start();
    let event = br#"{"type": "x"}"#.to_vec();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "",
    ] {
        let r = post_bytes(&d, "/v1/events", ct, event.clone());
        r.error(415, "unsupported_media_type");
    }
    let r = d.send(Method::POST, "/v1/events", Some(d.admin()), Body::None);
    r.error(415, "unsupported_media_type");
    // A deploy must be multipart; a config update must be JSON.
    let r = post_bytes(&d, "/v1/handlers", "application/json", b"{}".to_vec());
    r.error(415, "unsupported_media_type");
    deploy(&d, &manifest("h", &["x"]), &read(guests::GOOD)).expect(201);
    let r = d.send(
        Method::PUT,
        "/v1/handlers/h/config",
        Some(d.admin()),
        Body::Raw("text/plain", b"{}".to_vec()),
    );
    r.error(415, "unsupported_media_type");
    still_serving(&d);
}

#[test]
fn oversized_bodies_headers_and_urls_are_refused() {
    let d = Daemon::start_with("[api]\nmax_body_bytes = 65536\n");
    // Just inside the limit: a payload padding the body to exactly 65 536.
    let shell = r#"{"type": "x", "payload": ""}"#;
    let pad = "a".repeat(65_536 - shell.len());
    let fits = format!(r#"{{"type": "x", "payload": "{pad}"}}"#);
    assert_eq!(fits.len(), 65_536);
    post_bytes(&d, "/v1/events", "application/json", fits.into_bytes()).expect(202);
    let over = format!(r#"{{"type": "x", "payload": "{pad}a"}}"#);
    let r = post_bytes(&d, "/v1/events", "application/json", over.into_bytes());
    r.error(413, "payload_too_large");

    // No Content-Length: a chunked body cut off at the limit all the same.
    let chunk = "a".repeat(16_384);
    let mut req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        d.admin()
    );
    for _ in 0..8 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let (status, answer) = raw(&d, req.as_bytes());
    assert_eq!(status, 413, "{answer}");

    // A 1 MiB header, 10 000 headers, a 1 MiB URL: refused by the HTTP
    // layer (431 / 414 / 400, or the connection closed), never a 5xx.
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        (0..10_000)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let long_url = format!(
        "GET /v1/handlers/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    for req in [big_header, many_headers, long_url] {
        let (status, answer) = raw(&d, req.as_bytes());
        assert!(
            status == 0 || (400..500).contains(&status),
            "{}",
            answer.lines().next().unwrap_or("")
        );
    }
    still_serving(&d);
}

#[test]
fn a_batch_of_100k_tiny_events_is_refused_whole() {
    let d = Daemon::start();
    deploy(&d, &manifest("all", &["*"]), &read(guests::GOOD)).expect(201);
    let accepted = d.metric("hookbox_events_accepted_total");
    let batch: Vec<Value> = (0..100_000).map(|_| json!({"type": "t"})).collect();
    let r = d.publish(&json!(batch), false);
    let msg = r.error(413, "payload_too_large");
    assert!(msg.contains("100000") && msg.contains("10000"), "{msg}");
    assert_eq!(d.metric("hookbox_events_accepted_total"), accepted);
    still_serving(&d);
}

#[test]
fn slow_clients_do_not_block_others() {
    let d = Daemon::start();
    // 50 connections that send half a request line, 50 that send headers
    // announcing a body and then a trickle of it, all left hanging.
    let mut hanging = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(addr(&d)).expect("connect");
        let start = if i % 2 == 0 {
            "GET /hea".to_string()
        } else {
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"ty",
                d.admin()
            )
        };
        s.write_all(start.as_bytes()).unwrap();
        hanging.push(s);
    }
    // Everyone else is served meanwhile, and the trickle goes on.
    for round in 0..20 {
        for s in &mut hanging {
            let _ = s.write_all(b"p");
        }
        d.get("/healthz").expect(200);
        let r = d.publish(
            &json!({"type": "x", "metadata": {"round": round.to_string()}}),
            false,
        );
        r.expect(202);
    }
    drop(hanging);
    still_serving(&d);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let d = Daemon::start();
    let mut s = TcpStream::connect(addr(&d)).expect("connect");
    s.set_read_timeout(Some(WAIT * 2)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    // Trickle one header byte a second; the server must hang up anyway.
    // The loop ends only when it does (or the bound on a hang fails it).
    let mut buf = [0u8; 1024];
    let mut answer = Vec::new();
    loop {
        assert!(
            started.elapsed() < WAIT * 2,
            "the connection is still open after {:?}",
            started.elapsed()
        );
        if s.write_all(b"X").is_err() {
            break;
        }
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            // An answer before closing is fine, if it is a refusal; keep
            // reading until the close.
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 408")
            || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    still_serving(&d);
}

#[test]
fn a_request_body_that_stalls_is_failed() {
    let d = Daemon::start();
    let mut s = TcpStream::connect(addr(&d)).expect("connect");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{{\"type\"",
        d.admin()
    );
    s.write_all(head.as_bytes()).unwrap();
    // Then nothing: the server gives up on the body and answers.
    s.set_read_timeout(Some(WAIT * 2)).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.get(9..12).unwrap_or_default();
    assert!(status.starts_with('4'), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    still_serving(&d);
}

/// What a route asks of its caller, as its OpenAPI operation says.
#[derive(Debug)]
enum Needs {
    /// No `security`: health and the API document.
    Nothing,
    /// `bearer` with no scope: any valid token (`GET /v1/whoami`).
    AnyToken,
    /// `bearer` with this scope.
    Scope(String),
}

/// Every route in the OpenAPI document with what it needs, path parameters
/// filled with placeholders.
fn routes(d: &Daemon) -> Vec<(Method, String, Needs)> {
    let doc = d.get("/v1/openapi.json").expect(200).json;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let bearer = op["security"]
                .as_array()
                .and_then(|s| s.first())
                .and_then(|s| s["bearer"].as_array());
            let needs = match bearer {
                None => Needs::Nothing,
                Some(scopes) => match scopes.first().and_then(Value::as_str) {
                    None => Needs::AnyToken,
                    Some(scope) => Needs::Scope(scope.to_string()),
                },
            };
            // Path parameters: a ULID-shaped placeholder fits every `{id}`
            // and is a valid name everywhere else.
            let path: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "01arz3ndektsv4rrffq69g5fav"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            out.push((m, path, needs));
        }
    }
    assert!(out.len() >= 20, "{out:?}");
    out
}

#[test]
fn every_route_refuses_missing_forged_expired_and_insufficient_tokens() {
    let d = Daemon::start();
    let read_only = d.token("reader", &["read"], &[]);
    let publish_only = d.token("publisher", &["publish"], &[]);
    let expiring = d
        .post(
            "/v1/tokens",
            &json!({"name": "brief", "scopes": ["admin"], "expires_in": "1s"}),
        )
        .expect(201)
        .json["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = d
        .post("/v1/tokens", &json!({"name": "gone", "scopes": ["admin"]}))
        .expect(201);
    let revoked_secret = revoked.json["secret"].as_str().unwrap().to_string();
    let revoked_id = revoked.json["token"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{revoked}"));
    // Used once first, so the daemon has it among the tokens it remembers.
    d.get_as("/v1/logs", &revoked_secret).expect(200);
    d.delete(&format!("/v1/tokens/{revoked_id}")).expect(204);
    std::thread::sleep(Duration::from_millis(1100));

    let forged = [
        "hbx_0000000000000000000000000000000000000000000000000000000000000000".to_string(),
        format!("{}x", d.admin()),
        d.admin()[..d.admin().len() - 1].to_string(),
        d.admin().to_uppercase(),
        "a".repeat(10_000),
        "tokén".to_string(),
        expiring,
        revoked_secret,
    ];
    let malformed_headers: &[&[u8]] = &[
        b"Basic YWRtaW46YWRtaW4=",
        b"Bearer",
        b"Bearer ",
        b"bearer",
        b"Token abc",
        b"Bearer \xff\xfe",
    ];
    for (method, path, needs) in routes(&d) {
        let what = format!("{method} {path}");
        let send = |auth: Option<&[u8]>| {
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
                .into_bytes();
            if let Some(a) = auth {
                req.extend_from_slice(b"Authorization: ");
                req.extend_from_slice(a);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            raw(&d, &req)
        };
        if let Needs::Nothing = needs {
            // Public: health and the API document.
            assert_eq!(send(None).0, 200, "{what}");
            continue;
        }
        let (status, answer) = send(None);
        assert_eq!(status, 401, "{what} without a token: {answer}");
        assert!(answer.contains("\"unauthorized\""), "{what}: {answer}");
        for token in &forged {
            let header = format!("Bearer {token}");
            let (status, answer) = send(Some(header.as_bytes()));
            assert_eq!(status, 401, "{what} with {:.20}…: {answer}", token);
        }
        for header in malformed_headers {
            let (status, answer) = send(Some(header));
            assert_eq!(
                status,
                401,
                "{what} with {:?}: {answer}",
                String::from_utf8_lossy(header)
            );
        }
        // A valid token without the scope: 403, before the body is looked at.
        let Needs::Scope(scope) = needs else {
            // Any valid token will do: the weakest one gets in.
            let header = format!("Bearer {publish_only}");
            let (status, answer) = send(Some(header.as_bytes()));
            assert_eq!(status, 200, "{what} with a publish token: {answer}");
            continue;
        };
        let weaker = match scope.as_str() {
            "admin" | "publish" => &read_only,
            "read" => &publish_only,
            other => panic!("{what}: unknown scope {other}"),
        };
        let header = format!("Bearer {weaker}");
        let (status, answer) = send(Some(header.as_bytes()));
        assert_eq!(status, 403, "{what} with a weaker token: {answer}");
    }
    still_serving(&d);
}

/// Strings an attacker hopes will break parsing, storage, logs or display.
const NASTY: &[&str] = &[
    "nul\u{0}byte",
    "rtl\u{202e}txt.exe",
    "e\u{301}\u{301}\u{301}",
    "😀🏳️‍🌈",
    "\u{feff}bom",
    "line\nbreak",
    "\u{7f}del",
    "\u{fffd}",
    "\u{10ffff}",
];

#[test]
fn unicode_edge_cases_in_every_string_field_round_trip_or_are_refused() {
    let d = Daemon::start();
    // A handler that sleeps through its first delivery, one at a time: every
    // event stays pending, so the store keeps it and serves it back.
    let mut sink = manifest("sink", &["*"]);
    sink["config"] = json!(600_000);
    sink["limits"] = json!({"timeout_ms": 300_000});
    sink["delivery"]["concurrency"] = json!(1);
    deploy(&d, &sink, &read(guests::SLEEP)).expect(201);
    let mut kept = Vec::new();
    for s in NASTY {
        let fields = [
            json!({"type": s}),
            json!({"type": "u", "tenant": s}),
            json!({"type": "u", "key": s}),
            json!({"type": "u", "idempotency_key": s}),
            json!({"type": "u", "metadata": {*s: "v"}}),
            json!({"type": "u", "metadata": {"k": s}}),
            json!({"type": "u", "payload": {"text": s, *s: s}}),
        ];
        for event in fields {
            let r = d.publish(&event, false);
            if r.status != 202 {
                let msg = client_error(&r);
                assert_eq!(r.status, 422, "{event}: {msg}");
                continue;
            }
            let id = r.json["events"][0]["id"].as_str().unwrap().to_string();
            kept.push((id, event));
        }
    }
    assert!(
        kept.len() > 30,
        "most fields take any Unicode: {}",
        kept.len()
    );
    for (id, sent) in &kept {
        let stored = d.get(&format!("/v1/events/{id}")).expect(200);
        for (field, value) in sent.as_object().unwrap() {
            assert_eq!(&stored.json["event"][field], value, "{field} of {sent}");
        }
    }
    // Lone surrogates are not Unicode scalar values: refused in every
    // string field as invalid JSON (400)…
    for body in [
        r#"{"type": "\ud800"}"#,
        r#"{"type": "u", "tenant": "\udfff"}"#,
        r#"{"type": "u", "metadata": {"\ud800": "v"}}"#,
        r#"{"type": "u", "key": "a\ud83dz"}"#,
    ] {
        let r = post_bytes(
            &d,
            "/v1/events",
            "application/json",
            body.as_bytes().to_vec(),
        );
        let msg = client_error(&r);
        assert_eq!(r.status, 400, "{body}: {msg}");
        assert!(msg.contains("escape"), "{body}: {msg}");
    }
    // …and carried as opaque text inside a payload, which Hookbox does not
    // parse (the guest decides what to make of it).
    let body = r#"{"type": "u", "payload": {"s": "\ud800"}}"#;
    let r = post_bytes(
        &d,
        "/v1/events",
        "application/json",
        body.as_bytes().to_vec(),
    );
    let r = r.expect(202);
    let id = r.json["events"][0]["id"].as_str().unwrap();
    let stored = d.get(&format!("/v1/events/{id}")).expect(200);
    assert!(stored.text.contains(r#"{"s": "\ud800"}"#), "{stored}");
    // Names elsewhere: a token name and a handler description.
    // A token name with a control character is refused saying so; any
    // other is kept as sent. A description is free text, kept as sent.
    for s in NASTY {
        let r = d.post("/v1/tokens", &json!({"name": s, "scopes": ["read"]}));
        if s.chars().any(char::is_control) {
            let msg = r.error(400, "bad_request");
            assert!(msg.contains("control characters"), "{s:?}: {msg}");
        } else {
            let id = r.expect(201).json["token"]["id"].clone();
            let list = d.get("/v1/tokens").expect(200);
            let listed = list.json["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == id)
                .unwrap_or_else(|| panic!("{s:?}: token {id} not listed: {list}"));
            assert_eq!(listed["name"], json!(s), "{list}");
        }
        let mut m = manifest("described", &["x"]);
        m["description"] = json!(s);
        deploy(&d, &m, &read(guests::GOOD)).expect(201);
        let shown = d.get("/v1/handlers/described").expect(200);
        assert_eq!(
            shown.json["version"]["manifest"]["description"],
            json!(s),
            "{shown}"
        );
    }
    still_serving(&d);
}

/// A client uploading with a token that lacks the scope gets the 403 that
/// says so, not a broken pipe: the daemon reads a small body before it
/// refuses, so no unread bytes make the connection end in a reset. (The
/// CLI once saw "Broken pipe" instead of "403 … admin" when its multipart
/// body was still on its way.)
#[test]
fn a_refused_upload_gets_its_answer_not_a_reset() {
    let d = Daemon::start();
    let reader = d.token("uploader", &["read"], &[]);
    let body = vec![b'x'; 8 << 10];
    for round in 0..3 {
        let mut s = TcpStream::connect(addr(&d)).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let head = format!(
            "POST /v1/handlers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\n\
             Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).expect("the head is sent");
        // The rest arrives in pieces, after the server could have answered.
        for piece in body.chunks(body.len() / 4) {
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(piece)
                .unwrap_or_else(|e| panic!("round {round}: writing the body failed: {e}"));
        }
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("round {round}: reading the answer failed: {e}"));
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 403"),
            "round {round}: {answer}"
        );
        assert!(answer.contains("\"forbidden\""), "round {round}: {answer}");
    }
    still_serving(&d);
}

/// Opens `n` connections from `from` (a loopback address of its own) to
/// the daemon, each sending `requests` pipelined `GET path` and never
/// reading; returns those the server accepted (connect may be refused).
fn pipelining_readers(
    d: &Daemon,
    from: &str,
    n: usize,
    path: &str,
    requests: usize,
) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target: std::net::SocketAddr = addr(d).parse().unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(requests);
    let mut streams = Vec::new();
    for _ in 0..n {
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(local)?;
            // A small window, so the server's answers stall soon.
            socket.set_recv_buffer_size(4096)?;
            tokio::time::timeout(Duration::from_secs(2), socket.connect(target))
                .await
                .map_err(std::io::Error::other)?
        });
        let Ok(stream) = stream else { continue };
        let mut stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = stream.write_all(request.as_bytes());
        streams.push(stream);
    }
    streams
}

/// Whether the server has closed `stream`: a write fails with a reset or
/// a broken pipe (a write that only blocks means it is still open).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    match stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") {
        Err(e) => matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted),
        Ok(()) => false,
    }
}

#[test]
fn slow_readers_cannot_take_every_descriptor() {
    // 600 connections from one address (more than the daemon's 512
    // descriptors), each pipelining requests for the OpenAPI document and
    // never reading: they held every descriptor, and health checks and
    // admins timed out until the clients left.
    let d = Daemon::start_limited("", "-n 512");
    let mut flood = pipelining_readers(&d, "127.0.0.2", 600, "/v1/openapi.json", 50);
    // Others, and even a client at the flood's address, still get in: its
    // connections past the per-address cap are in the reserve, which
    // serves health checks and admins.
    still_serving(&d);
    assert_eq!(open_files(&d), ["512", "512"]);
    let mut same = pipelining_readers(&d, "127.0.0.2", 1, "/healthz", 1).remove(0);
    same.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = [0u8; 12];
    same.read_exact(&mut answer).unwrap();
    assert_eq!(
        &answer, b"HTTP/1.1 200",
        "a health check from the flood's address"
    );
    let mut reserve = pipelining_readers(&d, "127.0.0.2", 1, "/v1/stats", 1).remove(0);
    reserve.set_read_timeout(Some(WAIT)).unwrap();
    let mut text = String::new();
    let _ = reserve.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");

    // The flood's connections are all closed by the server: refused at the
    // cap, answered 503 in the reserve, or — those that were served and
    // stopped reading — after 10 s without write progress.
    let until = Instant::now() + Duration::from_secs(60);
    while !flood.is_empty() && Instant::now() < until {
        flood.retain_mut(|s| !closed_by_server(s));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        flood.is_empty(),
        "{} stalled connections stay open",
        flood.len()
    );
    still_serving(&d);
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let d = Daemon::start_limited("", "-S -n 256");
    let [soft, hard] = open_files(&d);
    assert_eq!(soft, hard);
    assert_ne!(soft, "256");
}

/// The daemon's soft and hard open-files limits, from `/proc`.
fn open_files(d: &Daemon) -> [String; 2] {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line.split_whitespace().skip(3).map(str::to_string);
    [numbers.next().unwrap(), numbers.next().unwrap()]
}

#[test]
fn a_body_of_a_million_tiny_events_is_refused_before_they_are_built() {
    // 16 MiB of `{"type":"x"}`: 1.3 M events, each ~200 bytes once built,
    // used to be parsed before the batch limit was checked.
    const PEAK_BOUND: u64 = 256 << 20;
    let d = Daemon::start();
    let one = br#"{"type":"x"},"#;
    let n = (16 << 20) / one.len() - 1;
    let mut body = b"[".to_vec();
    body.extend(one.repeat(n));
    body.pop();
    body.push(b']');
    let r = post_bytes(&d, "/v1/events", "application/json", body);
    let msg = r.error(413, "payload_too_large");
    assert!(msg.contains(&format!("batch of {n} events")), "{msg}");
    let peak = hookbox_tests::daemon::peak_rss(d.pid());
    assert!(peak < PEAK_BOUND, "the daemon peaked at {} MiB", peak >> 20);
    still_serving(&d);
}
