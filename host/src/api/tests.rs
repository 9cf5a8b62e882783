//! Tests of the router as a whole: every route refuses missing, wrong and
//! insufficient tokens; unknown routes and methods answer in the error
//! shape; the OpenAPI document lists exactly the routes of the router.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode, header};

use super::testutil::TestApi;
use crate::store::Scope;

/// Every route: method, a concrete path, the scope it needs (`None`: open).
const ROUTES: &[(&str, &str, Option<Scope>)] = &[
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", Some(Scope::Read)),
    ("GET", "/v1/openapi.json", None),
    ("POST", "/v1/handlers", Some(Scope::Admin)),
    ("GET", "/v1/handlers", Some(Scope::Read)),
    ("GET", "/v1/handlers/{name}", Some(Scope::Read)),
    ("DELETE", "/v1/handlers/{name}", Some(Scope::Admin)),
    ("GET", "/v1/handlers/{name}/versions", Some(Scope::Read)),
    ("POST", "/v1/handlers/{name}/rollback", Some(Scope::Admin)),
    ("POST", "/v1/handlers/{name}/enable", Some(Scope::Admin)),
    ("POST", "/v1/handlers/{name}/disable", Some(Scope::Admin)),
    ("PUT", "/v1/handlers/{name}/config", Some(Scope::Admin)),
    ("GET", "/v1/handlers/{name}/kv", Some(Scope::Read)),
    ("GET", "/v1/handlers/{name}/kv/{key}", Some(Scope::Read)),
    ("POST", "/v1/events", Some(Scope::Publish)),
    ("GET", "/v1/events/{id}", Some(Scope::Read)),
    ("GET", "/v1/logs", Some(Scope::Read)),
    ("GET", "/v1/stats", Some(Scope::Read)),
    ("GET", "/v1/cluster", Some(Scope::Read)),
    ("GET", "/v1/stream", Some(Scope::Read)),
    ("POST", "/v1/tokens", Some(Scope::Admin)),
    ("GET", "/v1/tokens", Some(Scope::Admin)),
    ("DELETE", "/v1/tokens/{id}", Some(Scope::Admin)),
    ("GET", "/v1/dead-letters", Some(Scope::Read)),
    ("DELETE", "/v1/dead-letters", Some(Scope::Admin)),
    ("GET", "/v1/dead-letters/{id}", Some(Scope::Read)),
    ("POST", "/v1/dead-letters/{id}/replay", Some(Scope::Admin)),
    ("POST", "/v1/dead-letters/replay", Some(Scope::Admin)),
    ("GET", "/v1/audit", Some(Scope::Admin)),
    ("GET", "/v1/schemas", Some(Scope::Read)),
    ("GET", "/v1/schemas/{type}", Some(Scope::Read)),
    ("PUT", "/v1/schemas/{type}", Some(Scope::Admin)),
    ("DELETE", "/v1/schemas/{type}", Some(Scope::Admin)),
    ("GET", "/v1/zulip", Some(Scope::Read)),
    ("GET", "/v1/redis", Some(Scope::Read)),
    ("GET", "/v1/webhooks", Some(Scope::Read)),
    ("GET", "/v1/series", Some(Scope::Read)),
];

/// The route's template with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "nope")
        .replace("{id}", "nope")
        .replace("{type}", "nope")
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

#[tokio::test]
async fn every_protected_route_refuses_missing_wrong_and_weak_tokens() {
    let api = TestApi::new();
    for &(m, path, scope) in ROUTES {
        let Some(scope) = scope else { continue };
        let uri = concrete(path);
        let r = api.send(method(m), &uri, None, None).await;
        let msg = r.error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(msg.contains("Authorization"), "{m} {path}: {msg}");
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));

        let r = api.send(method(m), &uri, Some("hbx_wrong"), None).await;
        r.error(StatusCode::UNAUTHORIZED, "unauthorized");

        // Not a bearer scheme at all.
        let req = axum::http::Request::builder()
            .method(method(m))
            .uri(&uri)
            .header(header::AUTHORIZATION, format!("Basic {}", api.admin))
            .body(axum::body::Body::empty())
            .unwrap();
        let res = tower::ServiceExt::oneshot(api.router.clone(), req)
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{m} {path}");

        let weak: &[&str] = match scope {
            Scope::Admin => &[&api.read, &api.publish],
            Scope::Publish => &[&api.read],
            Scope::Read => &[&api.publish],
        };
        for token in weak {
            let r = api.send(method(m), &uri, Some(token), None).await;
            let msg = r.error(StatusCode::FORBIDDEN, "forbidden");
            assert!(
                msg.contains(super::auth::scope_name(scope)),
                "{m} {path}: {msg}"
            );
        }
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused() {
    let api = TestApi::new();
    let (_, expired) = api
        .store()
        .create_token("old", &[Scope::Admin], vec![], vec![], Some(1))
        .unwrap();
    api.get("/v1/tokens", &expired)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");

    let (rec, secret) = api
        .store()
        .create_token("gone", &[Scope::Read], vec![], vec![], None)
        .unwrap();
    assert_eq!(api.get("/v1/stats", &secret).await.status, StatusCode::OK);
    api.store().revoke_token(&rec.id).unwrap();
    api.get("/v1/stats", &secret)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn admin_holds_every_scope_and_open_routes_need_none() {
    let api = TestApi::new();
    for &(m, path, scope) in ROUTES {
        if m != "GET" || path.contains('{') || path == "/v1/stream" {
            continue;
        }
        let token = scope.map(|_| api.admin.as_str());
        let r = api.send(method(m), path, token, None).await;
        assert_eq!(r.status, StatusCode::OK, "{m} {path}: {r:?}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let api = TestApi::new();
    let r = api.get("/v1/nothing-here", &api.admin).await;
    let msg = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(msg.contains("/v1/nothing-here"), "{msg}");

    let r = api
        .send(Method::PATCH, "/v1/handlers", Some(&api.admin), None)
        .await;
    let msg = r.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(msg.contains("PATCH"), "{msg}");
    let allow = r.headers[header::ALLOW].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    let r = api.send(Method::POST, "/healthz", None, None).await;
    r.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_with_their_scopes() {
    let api = TestApi::new();
    let r = api.send(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(
                operation_ids.insert(id),
                "{m} {path}: duplicate operationId"
            );
            let roles = op["security"][0]["bearer"].as_array().map(|a| {
                a.iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            });
            documented.insert((m.to_uppercase(), path.clone(), roles));
        }
    }
    // `GET /v1/whoami` takes any valid token, whatever its scopes
    // (`api::dashboard::tests`).
    let whoami = ("GET".to_string(), "/v1/whoami".to_string(), Some(vec![]));
    assert!(documented.remove(&whoami), "{documented:?}");
    let expected: BTreeSet<_> = ROUTES
        .iter()
        .map(|&(m, path, scope)| {
            let roles = scope.map(|s| vec![super::auth::scope_name(s).to_string()]);
            (m.to_string(), path.to_string(), roles)
        })
        .collect();
    assert_eq!(documented, expected);

    // And every route of the table is served by the router: none answers
    // 404/405 from the router itself (a handler's own 404 names its object).
    for &(m, path, _) in ROUTES {
        if path == "/v1/stream" {
            continue; // never ends; see `streams_end_when_the_server_shuts_down`
        }
        let r = api
            .send(method(m), &concrete(path), Some(&api.admin), None)
            .await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
        if r.status == StatusCode::NOT_FOUND {
            let msg = r.json["error"]["message"].as_str().unwrap();
            assert!(!msg.starts_with("no route"), "{m} {path}: {msg}");
        }
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_in_the_error_shape() {
    let api = TestApi::with_limits(super::ApiLimits {
        max_body_bytes: 1024,
        ..super::ApiLimits::default()
    });
    let big = format!(r#"{{"type":"t","payload":"{}"}}"#, "x".repeat(2048));
    let r = api
        .send(
            Method::POST,
            "/v1/events",
            Some(&api.publish),
            Some(("application/json", big.into_bytes())),
        )
        .await;
    r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let big = serde_json::json!({"blob": "x".repeat(2048)});
    let r = api
        .json(Method::PUT, "/v1/handlers/x/config", &api.admin, &big)
        .await;
    r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let api = TestApi::new();
    let req = axum::http::Request::builder()
        .uri("/v1/stream")
        .header(header::AUTHORIZATION, format!("Bearer {}", api.read))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(api.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    api.shutdown.send_replace(true);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        axum::body::to_bytes(res.into_body(), usize::MAX),
    )
    .await
    .expect("the stream ends on shutdown")
    .unwrap();
    assert!(body.is_empty() || body.starts_with(b":"), "{body:?}");
}

/// Read routes whose data spans every tenant and cannot be narrowed to
/// some: a token restricted to tenants is refused them.
const ALL_TENANTS: &[&str] = &[
    "/metrics",
    "/v1/handlers",
    "/v1/handlers/{name}",
    "/v1/handlers/{name}/versions",
    "/v1/stats",
    "/v1/cluster",
    "/v1/redis",
    "/v1/webhooks",
    "/v1/series",
];

#[tokio::test]
async fn routes_spanning_every_tenant_refuse_tenant_scoped_tokens() {
    let api = TestApi::new();
    api.record_handler("greeter");
    let scoped = api.scoped_token(Scope::Read, &["acme"], &[]);
    let scoped_admin = api.scoped_token(Scope::Admin, &["acme"], &[]);
    for &(m, path, scope) in ROUTES {
        // The stream never ends; its tenant filtering is tested in stream.rs.
        if scope != Some(Scope::Read) || path == "/v1/stream" {
            continue;
        }
        let uri = path
            .replace("{name}", "greeter")
            .replace("{id}", "nope")
            .replace("{type}", "nope");
        let r = api.send(method(m), &uri, Some(&scoped), None).await;
        if ALL_TENANTS.contains(&path) {
            let msg = r.error(StatusCode::FORBIDDEN, "forbidden");
            assert!(
                msg.contains(&format!("`{uri}`")) && msg.contains("every tenant"),
                "{path}: {msg}"
            );
            assert!(msg.contains(r#"["acme"]"#), "{path}: {msg}");
            let r = api.send(method(m), &uri, Some(&scoped_admin), None).await;
            r.error(StatusCode::FORBIDDEN, "forbidden");
            // A token for every tenant reads it.
            let r = api.send(method(m), &uri, Some(&api.read), None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
        } else {
            assert_ne!(r.status, StatusCode::FORBIDDEN, "{path}: {r:?}");
        }
    }
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_states_what_parameters_and_bodies_accept() {
    let api = TestApi::new();
    let doc = api
        .send(Method::GET, "/v1/openapi.json", None, None)
        .await
        .json;
    // Every reference resolves (a dangling one hides a parameter's values).
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(doc["components"]["schemas"][name].is_object(), "{r}");
    }
    let param = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"))["schema"]
            .clone()
    };
    for path in ["/v1/logs", "/v1/dead-letters", "/v1/audit"] {
        let limit = param(path, "limit");
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&1.into(), &1000.into()),
            "{path}"
        );
    }
    let since = param("/v1/logs", "since").to_string();
    assert!(
        since.contains("date-time") && since.contains("[0-9]{1,19}"),
        "{since}"
    );
    let cursor = param("/v1/logs", "cursor");
    assert_eq!(cursor["pattern"], "^([0-9a-fA-F]{52}|[0-9a-fA-F]{32})$");
    let status = param("/v1/handlers", "status").to_string();
    assert!(
        status.contains("enabled") && status.contains("disabled"),
        "{status}"
    );
    // The event and the manifest are described in full, from the Rust types,
    // so a generated client can build a valid request.
    let schemas = &doc["components"]["schemas"];
    let schema = |name: &str| {
        let s = &schemas[name];
        assert!(s.is_object(), "no schema {name}");
        s.clone()
    };
    let publish = doc["paths"]["/v1/events"]["post"]["requestBody"].to_string();
    assert!(publish.contains("PublishBody"), "{publish}");
    let body = schema("PublishBody").to_string();
    assert!(body.contains("#/components/schemas/EventInput"), "{body}");
    let event = schema("EventInput");
    assert_eq!(event["required"], serde_json::json!(["type"]), "{event}");
    assert_eq!(event["additionalProperties"], false, "{event}");
    for field in [
        "tenant",
        "payload",
        "metadata",
        "key",
        "priority",
        "idempotency_key",
    ] {
        assert!(event["properties"][field].is_object(), "{field}: {event}");
    }
    let form = schema("DeployForm");
    assert_eq!(
        form["properties"]["manifest"]["$ref"], "#/components/schemas/Manifest",
        "{form}"
    );
    let manifest = schema("Manifest");
    assert_eq!(
        manifest["required"],
        serde_json::json!(["name", "subscription"]),
        "{manifest}"
    );
    for (name, field, refers_to) in [
        ("Manifest", "subscription", "Subscription"),
        ("Manifest", "limits", "LimitsSpec"),
        ("Manifest", "delivery", "DeliveryPolicy"),
        ("DeliveryPolicy", "breaker", "BreakerSpec"),
    ] {
        let f = schema(name)["properties"][field].to_string();
        assert!(
            f.contains(&format!("#/components/schemas/{refers_to}")),
            "{name}.{field}: {f}"
        );
    }
    let filters = schema("Filter").to_string();
    for kind in ["equals", "user_ids", "max_age"] {
        assert!(filters.contains(kind), "{filters}");
    }
    assert!(schema("LimitsSpec")["properties"]["fuel"].is_object());
    // Bodies that may be left out are not required; a config is any JSON.
    for (path, op) in [
        ("/v1/handlers/{name}/disable", "post"),
        ("/v1/handlers/{name}/rollback", "post"),
        ("/v1/dead-letters/{id}/replay", "post"),
    ] {
        let rb = &doc["paths"][path][op]["requestBody"];
        assert_eq!(rb["required"], false, "{path}: {rb}");
    }
    let config = &doc["paths"]["/v1/handlers/{name}/config"]["put"]["requestBody"];
    assert_eq!(config["required"], true, "{config}");
    let any = &config["content"]["application/json"]["schema"];
    assert!(
        any.get("type").is_none() && any.get("$ref").is_none(),
        "{any}"
    );
    // A manifest of the wrong shape is documented as 422.
    let deploy = &doc["paths"]["/v1/handlers"]["post"]["responses"];
    assert!(
        deploy["422"].is_object() && deploy["400"].is_object(),
        "{deploy}"
    );
    // A JSON Schema document may be `true` or `false`.
    let doc_schema = doc["components"]["schemas"]["TypeSchema"]["properties"]["schema"].to_string();
    assert!(
        doc_schema.contains("boolean") && doc_schema.contains("object"),
        "{doc_schema}"
    );
}

#[tokio::test]
async fn documented_cursors_and_times_are_accepted() {
    // Values of the forms the document gives are not refused as malformed.
    let api = TestApi::new();
    for uri in [
        "/v1/logs?cursor=00000000000000000000000000000000&since=0&until=9999999999999999999",
        "/v1/logs?since=2024-05-01T14:00:00.250%2B02:00&until=1969-01-01T00:00:00Z",
        "/v1/dead-letters?cursor=7zzzzzzzzzzzzzzzzzzzzzzzzz&since=0001-01-01T00:00:00Z",
        "/v1/audit?cursor=01hzzzzzzzzzzzzzzzzzzzzzzz&limit=1000",
    ] {
        let token = if uri.starts_with("/v1/audit") {
            &api.admin
        } else {
            &api.read
        };
        let r = api.get(uri, token).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {r:?}");
    }
    // A schema of `false` is a valid JSON Schema, stored and served as such.
    let r = api
        .json(
            Method::PUT,
            "/v1/schemas/never",
            &api.admin,
            &serde_json::json!(false),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["schema"], false);
}
