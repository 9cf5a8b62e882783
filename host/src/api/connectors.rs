//! `GET /v1/redis` and `GET /v1/webhooks`: each configured Redis bus
//! (connected or not, what it reads, counters of read, accepted and
//! skipped messages, the last error and skipped message, its sink) and
//! each webhook endpoint (kind, origin, counters). A bus carries every
//! tenant's events and an endpoint's counters span tenants, so tokens
//! restricted to tenants are refused (403). Never a password, secret or
//! URL path.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::Ctx;
use super::auth::AllTenantsReader;
use super::error::ErrorBody;
use crate::connectors::redis::BusStatus;
use crate::connectors::webhook::EndpointStatus;

/// Body of `GET /v1/redis`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RedisStatusBody {
    /// Every configured bus, by name; empty when none is.
    buses: Vec<BusStatus>,
}

/// Body of `GET /v1/webhooks`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhooksBody {
    /// Every configured endpoint, by name; empty when none is.
    endpoints: Vec<EndpointStatus>,
}

/// The Redis buses' connection state, errors and counters.
#[utoipa::path(
    get, path = "/v1/redis", tag = "connectors", operation_id = "redis_status",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, body = RedisStatusBody),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn redis(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
) -> axum::Json<RedisStatusBody> {
    axum::Json(RedisStatusBody {
        buses: ctx.redis().snapshot(),
    })
}

/// The webhook endpoints and their counters.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "connectors", operation_id = "webhooks_status",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, body = WebhooksBody),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn webhooks(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
) -> axum::Json<WebhooksBody> {
    axum::Json(WebhooksBody {
        endpoints: ctx.webhooks().snapshot(),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testutil::TestApi;
    use crate::connectors::redis::{Redis, RedisConfig, RedisMode};
    use crate::connectors::webhook::{WebhookConfig, Webhooks};
    use crate::store::Scope;

    #[tokio::test]
    async fn buses_and_endpoints_without_secrets() {
        let mut bus = RedisConfig::new("bus", "redis://127.0.0.1:9/0", RedisMode::Stream).unwrap();
        bus.password = Some(crate::connectors::Secret::new("pa55word"));
        let redis = Redis::new(vec![bus]).unwrap();
        let hook = WebhookConfig::standard(
            "ops",
            "https://hooks.example.com/s3cret-path",
            "whsec_AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
        )
        .unwrap();
        let webhooks = Webhooks::new(vec![hook]).unwrap();
        let api = TestApi::with_connectors(redis.status(), webhooks.status());

        let r = api.get("/v1/redis", &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let b = &r.json["buses"][0];
        assert_eq!(b["name"], "bus");
        assert_eq!(b["mode"], "stream");
        assert_eq!(b["subscribed"], "event::stream/hookbox/hookbox");
        assert_eq!(b["connected"], false);
        assert_eq!(b["counters"]["malformed"], 0);
        assert_eq!(b["sink"]["handler"], "redis:bus");

        let r = api.get("/v1/webhooks", &api.read).await;
        let e = &r.json["endpoints"][0];
        assert_eq!(e["origin"], "https://hooks.example.com");
        assert_eq!(e["kind"], "standard");
        assert_eq!(e["handler"], "webhook:ops");

        let scoped = api.scoped_token(Scope::Read, &["acme"], &[]);
        let r = api.get("/v1/redis", &scoped).await;
        r.error(StatusCode::FORBIDDEN, "forbidden");

        let r = api.get("/metrics", &api.read).await;
        let text = std::str::from_utf8(&r.bytes).unwrap();
        assert!(
            text.contains("hookbox_redis_connected{bus=\"bus\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hookbox_webhook_sent_total{endpoint=\"ops\"} 0"),
            "{text}"
        );
        for secret in ["pa55word", "s3cret-path", "AQEB"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }

    #[tokio::test]
    async fn without_connectors_the_lists_are_empty() {
        let api = TestApi::new();
        let r = api.get("/v1/redis", &api.read).await;
        assert_eq!(r.json, json!({"buses": []}));
        let r = api.get("/v1/webhooks", &api.read).await;
        assert_eq!(r.json, json!({"endpoints": []}));
    }
}
