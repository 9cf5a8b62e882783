//! `GET /v1/zulip`: the state of each configured Zulip realm — connected or
//! not, the event queue and last acknowledged event id, the last error,
//! source and sink counters. A token restricted to tenants sees only the
//! realms of those tenants (a realm's name is its tenant).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::Ctx;
use super::auth::Reader;
use super::error::ErrorBody;
use crate::connectors::zulip::RealmStatus;

/// Body of `GET /v1/zulip`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ZulipStatusBody {
    /// Every configured realm the token may see, by name; empty when Zulip
    /// is not configured.
    realms: Vec<RealmStatus>,
}

/// The Zulip realms' connection state, queue position, errors and counters.
#[utoipa::path(
    get, path = "/v1/zulip", tag = "zulip", operation_id = "zulip_status",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, body = ZulipStatusBody),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn status(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
) -> axum::Json<ZulipStatusBody> {
    let realms = ctx
        .zulip()
        .snapshot()
        .into_iter()
        .filter(|r| caller.tenant_allowed(&r.name))
        .collect();
    axum::Json(ZulipStatusBody { realms })
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::testutil::TestApi;
    use crate::connectors::Secret;
    use crate::connectors::zulip::{RealmConfig, Zulip};
    use crate::store::Scope;

    #[tokio::test]
    async fn lists_the_realms_a_token_may_see() {
        let realms = ["acme", "beta"]
            .map(|n| RealmConfig::new(n, "http://127.0.0.1:9", "bot@x", Secret::new("k")));
        let zulip = Zulip::new(realms.to_vec()).unwrap();
        let api = TestApi::with_zulip(zulip.status());

        let r = api.get("/v1/zulip", &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let names: Vec<_> = r.json["realms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect();
        assert_eq!(names, [json!("acme"), json!("beta")]);
        let acme = &r.json["realms"][0];
        assert_eq!(acme["connected"], false);
        assert_eq!(acme["queue_id"], json!(null));
        assert_eq!(acme["sink"]["handler"], "zulip:acme");
        assert_eq!(acme["counters"]["events"], 0);
        assert!(
            !r.json.to_string().contains("\"k\""),
            "the key leaked: {}",
            r.json
        );

        let scoped = api.scoped_token(Scope::Read, &["beta"], &[]);
        let r = api.get("/v1/zulip", &scoped).await;
        assert_eq!(r.json["realms"].as_array().unwrap().len(), 1);
        assert_eq!(r.json["realms"][0]["name"], "beta");

        let r = api.send(Method::GET, "/v1/zulip", None, None).await;
        r.error(StatusCode::UNAUTHORIZED, "unauthorized");

        let r = api.get("/metrics", &api.read).await;
        let text = std::str::from_utf8(&r.bytes).unwrap();
        assert!(
            text.contains("hookbox_zulip_connected{realm=\"acme\"} 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn without_zulip_the_list_is_empty() {
        let api = TestApi::new();
        let r = api.get("/v1/zulip", &api.read).await;
        assert_eq!(r.json, json!({"realms": []}));
    }
}
