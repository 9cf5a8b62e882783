//! Routes about the daemon itself: liveness (`/healthz`), readiness
//! (`/readyz`), Prometheus metrics (`/metrics`) and the OpenAPI document
//! (`/v1/openapi.json`), which is generated from the router so it cannot
//! drift from the routes.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::Ctx;
use super::auth::AllTenantsReader;
use super::error::{ApiError, ApiResult, ErrorBody};

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` (alive) or `ready` (taking work).
    status: &'static str,
}

/// The Prometheus text exposition format we emit.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Liveness: the process answers HTTP.
#[utoipa::path(
    get, path = "/healthz", tag = "meta", operation_id = "healthz",
    responses((status = 200, description = "The daemon is alive", body = Status)),
)]
pub(crate) async fn healthz() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// Readiness: the dispatcher is running and taking events.
#[utoipa::path(
    get, path = "/readyz", tag = "meta", operation_id = "readyz",
    responses(
        (status = 200, description = "The daemon takes events", body = Status),
        (status = 503, description = "Starting or shutting down", body = ErrorBody),
    ),
)]
pub(crate) async fn readyz(State(ctx): State<Ctx>) -> ApiResult<axum::Json<Status>> {
    if ctx.dispatcher().is_ready() {
        Ok(axum::Json(Status { status: "ready" }))
    } else {
        Err(ApiError::unavailable(
            "not ready: starting or shutting down",
        ))
    }
}

/// Prometheus metrics of the dispatcher, its queues and the connectors.
///
/// Tokens restricted to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/metrics", tag = "meta", operation_id = "metrics",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String,
         content_type = "text/plain; version=0.0.4"),
        (status = "4XX", description = "Not authorised", body = ErrorBody),
    ),
)]
pub(crate) async fn metrics(_: AllTenantsReader, State(ctx): State<Ctx>) -> Response {
    let d = ctx.dispatcher();
    let mut text = d.metrics().render_prometheus(d.queue_depths());
    text.push_str(&d.render_waiting_metrics());
    text.push_str(&ctx.zulip().render_prometheus());
    text.push_str(&ctx.redis().render_prometheus());
    text.push_str(&ctx.webhooks().render_prometheus());
    text.push_str(&d.render_cluster_metrics());
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

/// The document is built once: the routes do not change at run time.
static OPENAPI_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| super::openapi().to_pretty_json().map_err(|e| e.to_string()));

/// This API's OpenAPI 3.1 document, generated from the routes.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
)]
pub(crate) async fn openapi_json() -> ApiResult<Response> {
    match &*OPENAPI_JSON {
        Ok(text) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text.clone(),
        )
            .into_response()),
        Err(e) => Err(ApiError::internal("openapi", e)),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode, header};
    use serde_json::json;
    use std::time::Duration;

    use crate::api::testutil::TestApi;

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let api = TestApi::new();
        let r = api.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(r.json, json!({"status": "ok"}));
        let r = api.send(Method::GET, "/readyz", None, None).await;
        assert_eq!(r.json, json!({"status": "ready"}));

        let r = api.get("/metrics", &api.read).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[header::CONTENT_TYPE], "text/plain; version=0.0.4");
        let text = std::str::from_utf8(&r.bytes).unwrap();
        assert!(text.contains("hookbox_queue_depth"), "{text}");

        api.dispatcher.shutdown(Duration::ZERO);
        let r = api.send(Method::GET, "/readyz", None, None).await;
        r.error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        let r = api.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
}
