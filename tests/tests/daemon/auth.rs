//! Authentication and authorisation over the wire. The route table comes
//! from the daemon's own OpenAPI document (built from the router), so a new
//! route is covered the day it is added: each refuses a missing or wrong
//! token (401) and a token without its scope (403), and lets a holder of
//! the scope through. Then tenant-restricted tokens, revocation and expiry.

use hookbox_tests::daemon::{Body, Daemon};
use reqwest::Method;
use serde_json::{Value, json};

use super::array;

/// A token the daemon never issued.
const WRONG: &str = "hbx_0000000000000000000000000000000000000000";
/// Stands in for `{id}` path parameters.
const SOME_ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

/// One operation of the OpenAPI document.
#[derive(Debug)]
struct Route {
    method: Method,
    /// With its parameters filled in.
    path: String,
    /// The scope its `bearer` security asks for ([`ANY_TOKEN`] when it asks
    /// for none); `None` for public routes.
    scope: Option<String>,
}

/// The "scope" of a route that takes any valid token, whatever its scopes.
const ANY_TOKEN: &str = "any token";

fn routes(doc: &Value) -> Vec<Route> {
    let mut out = Vec::new();
    let paths = doc["paths"].as_object().expect("`paths` in the document");
    for (template, ops) in paths {
        // Parameters name things that do not exist: the scope check comes first.
        let path = template
            .split('/')
            .map(|segment| match segment {
                "{id}" => SOME_ID,
                s if s.starts_with('{') => "no-such-thing",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in ops.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let scope = op["security"].as_array().map(|s| {
                assert_eq!(
                    s.len(),
                    1,
                    "one security requirement on {method} {template}"
                );
                let scopes = s[0]["bearer"].as_array().unwrap();
                assert!(
                    scopes.len() <= 1,
                    "one scope at most on {method} {template}"
                );
                // No scope: any valid token (`GET /v1/whoami`).
                scopes
                    .first()
                    .map_or(ANY_TOKEN, |s| s.as_str().unwrap())
                    .to_string()
            });
            out.push(Route {
                method,
                path: path.clone(),
                scope,
            });
        }
    }
    out
}

#[test]
fn every_route_checks_its_token_and_scope() {
    let d = Daemon::start();
    let read = d.token("reader", &["read"], &[]);
    let publish = d.token("publisher", &["publish"], &[]);
    let doc = d
        .send(Method::GET, "/v1/openapi.json", None, Body::None)
        .expect(200);
    let routes = routes(&doc.json);
    assert!(
        routes.len() >= 25,
        "too few routes in the document: {routes:?}"
    );
    let guarded = routes.iter().filter(|r| r.scope.is_some()).count();
    assert_eq!(
        routes.len() - guarded,
        3,
        "only /healthz, /readyz and the document are public: {routes:?}"
    );

    for route in &routes {
        let Route {
            method,
            path,
            scope,
        } = route;
        let send = |token: Option<&str>| d.send(method.clone(), path, token, Body::None);
        let Some(scope) = scope else {
            send(None).expect(200);
            continue;
        };
        let r = send(None);
        let m = r.error(401, "unauthorized");
        assert!(m.contains("Authorization"), "{r}");
        assert!(r.headers.contains_key("www-authenticate"), "{r}");
        send(Some(WRONG)).error(401, "unauthorized");
        let (holder, lacking): (&str, Vec<&str>) = match scope.as_str() {
            // Any valid token: the weakest one gets in, none is lacking.
            ANY_TOKEN => (&publish, vec![]),
            "admin" => (d.admin(), vec![&read, &publish]),
            "read" => (&read, vec![&publish]),
            "publish" => (&publish, vec![&read]),
            other => panic!("unknown scope {other:?} on {method} {path}"),
        };
        for token in lacking {
            let r = send(Some(token));
            let m = r.error(403, "forbidden");
            assert!(m.contains(scope.as_str()), "{r}");
        }
        if path == "/v1/stream" {
            // A holder gets the stream (which does not end by itself).
            d.stream_as(path, holder);
        } else {
            let r = send(Some(holder));
            assert!(
                r.status != 401 && r.status != 403,
                "a `{scope}` token was refused: {r}"
            );
        }
    }

    // Malformed `Authorization` headers.
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer  ",
        "token-without-scheme",
    ] {
        let r = d
            .http()
            .send_with_header(d.url(), "/v1/handlers", "authorization", value);
        r.error(401, "unauthorized");
    }
}

/// `POST /v1/events?wait=true` of `events` with `token`.
fn publish_as(d: &Daemon, token: &str, events: Value) -> hookbox_tests::daemon::Reply {
    d.send(
        Method::POST,
        "/v1/events?wait=true",
        Some(token),
        Body::Json(events),
    )
}

#[test]
fn a_publish_token_publishes_only_to_its_tenants_and_a_mixed_batch_is_refused_whole() {
    let d = Daemon::start();
    d.deploy_example("tenant-analytics");
    let acme_pub = d.token("acme-publisher", &["publish"], &["acme"]);
    publish_as(&d, &acme_pub, json!({"type": "ping", "tenant": "acme"})).expect(200);
    let m = publish_as(&d, &acme_pub, json!({"type": "ping", "tenant": "globex"}))
        .error(403, "forbidden");
    assert!(m.contains("globex"), "{m}");
    let m = publish_as(
        &d,
        &acme_pub,
        json!([{"type": "ping", "tenant": "acme"}, {"type": "ping", "tenant": "globex"}]),
    )
    .error(403, "forbidden");
    assert!(m.contains("event 1"), "{m}");
    d.publish(&json!({"type": "ping", "tenant": "globex"}), true)
        .expect(200);
    let r = d.get("/v1/logs").expect(200);
    assert_eq!(
        array(&r.json, "entries").len(),
        2,
        "one acme and one globex delivery, nothing of the refused batches: {r}"
    );
}

#[test]
fn a_read_token_reads_only_its_tenants() {
    let d = Daemon::start();
    d.deploy_example("tenant-analytics");
    let acme_read = d.token("acme-reader", &["read"], &["acme"]);
    let event = |tenant: &str| {
        let r = d
            .publish(&json!({"type": "ping", "tenant": tenant}), true)
            .expect(200);
        r.json["events"][0]["id"].as_str().unwrap().to_string()
    };
    let (acme_event, globex_event) = (event("acme"), event("globex"));
    let r = d.get_as("/v1/logs", &acme_read).expect(200);
    let entries = array(&r.json, "entries");
    assert_eq!(entries.len(), 1, "{r}");
    assert_eq!(entries[0]["tenant"], "acme", "{r}");
    d.get_as("/v1/logs?tenant=globex", &acme_read)
        .error(403, "forbidden");
    d.get_as(&format!("/v1/events/{acme_event}"), &acme_read)
        .expect(200);
    d.get_as(&format!("/v1/events/{globex_event}"), &acme_read)
        .error(404, "not_found");
    d.get_as(&format!("/v1/events/{globex_event}"), d.admin())
        .expect(200);
}

#[test]
fn revoking_a_token_takes_effect_at_once_and_is_audited() {
    let d = Daemon::start();
    let reader = d.token("acme-reader", &["read"], &["acme"]);
    d.get_as("/v1/logs", &reader).expect(200);
    let r = d.get("/v1/tokens").expect(200);
    let tokens = array(&r.json, "tokens");
    assert!(
        tokens.iter().all(|t| t.get("secret").is_none()),
        "no secrets in the list: {r}"
    );
    let id = tokens
        .iter()
        .find(|t| t["name"] == "acme-reader")
        .unwrap_or_else(|| panic!("{r}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    d.delete(&format!("/v1/tokens/{id}")).expect(204);
    d.get_as("/v1/logs", &reader).error(401, "unauthorized");
    d.delete(&format!("/v1/tokens/{id}"))
        .error(404, "not_found");

    let r = d.get("/v1/audit").expect(200);
    let actions: Vec<&str> = array(&r.json, "entries")
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"token_create"), "{r}");
    assert!(actions.contains(&"token_revoke"), "{r}");
}

#[test]
fn an_expired_token_is_refused() {
    let d = Daemon::start();
    let r = d
        .post(
            "/v1/tokens",
            &json!({"name": "brief", "scopes": ["read"], "expires_in": "1ms"}),
        )
        .expect(201);
    let brief = r.json["secret"].as_str().unwrap().to_string();
    d.wait_until("a 1 ms token to expire", || {
        (d.get_as("/v1/stats", &brief).status == 401).then_some(())
    });
}
