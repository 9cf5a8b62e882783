//! Handler administration: list, show, versions, rollback, enable, disable,
//! config and delete. Every change goes to the store first, then the
//! dispatcher reloads the handler into its routing table. (Deploy, the one
//! multipart route, is in `deploy.rs`.) Handler records hold every
//! tenant's configs and subscriptions, so the read routes refuse tokens
//! restricted to tenants.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Ctx;
use super::auth::{Admin, AllTenantsReader};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, OptionalJson, Path, Query};
use crate::dispatch::CircuitStatus;
use crate::store::{HandlerRecord, HandlerStats, Store, StoreError, VersionRecord};

/// Which handlers `GET /v1/handlers` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatusFilter {
    /// Only enabled handlers.
    Enabled,
    /// Only disabled handlers.
    Disabled,
}

/// Query of `GET /v1/handlers`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only enabled or only disabled handlers.
    #[param(inline)]
    status: Option<StatusFilter>,
    /// Include each handler's delivery stats and circuit breaker.
    #[serde(default)]
    stats: bool,
    /// Include each handler's config.
    #[serde(default)]
    config: bool,
}

/// One handler in the list: its record and what its active manifest subscribes to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HandlerSummary {
    name: String,
    enabled: bool,
    active_version: u32,
    disabled_reason: Option<String>,
    description: String,
    /// Event-type patterns of the active version.
    events: Vec<String>,
    /// Tenants of the active version; empty means all.
    tenants: Vec<String>,
    created_ms: u64,
    updated_ms: u64,
    /// With `config=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<Value>,
    /// With `stats=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<HandlerStats>,
    /// With `stats=true`: the circuit breaker (absent when the handler is
    /// not loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit: Option<CircuitStatus>,
}

/// Body of `GET /v1/handlers`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HandlerList {
    handlers: Vec<HandlerSummary>,
}

/// Body of `GET /v1/handlers/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HandlerDetail {
    handler: HandlerRecord,
    /// The active version.
    version: VersionRecord,
    stats: HandlerStats,
    /// The circuit breaker; `null` when the handler is not loaded.
    circuit: Option<CircuitStatus>,
}

/// Body of `GET /v1/handlers/{name}/versions`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionList {
    /// Oldest first.
    versions: Vec<VersionRecord>,
}

/// Body of `POST /v1/handlers/{name}/rollback`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackRequest {
    /// The version to run; omitted: the one before the active version.
    #[serde(default, deserialize_with = "super::extract::whole")]
    version: Option<u32>,
}

/// Body of `POST /v1/handlers/{name}/disable`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisableRequest {
    /// Why, for other operators.
    reason: Option<String>,
}

/// Longest disable reason kept.
const REASON_MAX_BYTES: usize = 1024;

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("no handler named {name:?}"))
}

/// The active version of a handler, which must exist.
fn active_version(store: &Store, h: &HandlerRecord) -> Result<VersionRecord, StoreError> {
    store.version(&h.name, h.active_version)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "handler {} has no active version {}",
            h.name, h.active_version
        ))
    })
}

/// Lists handlers with what they subscribe to.
///
/// Tokens restricted to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/v1/handlers", tag = "handlers", operation_id = "list_handlers",
    security(("bearer" = ["read"])),
    params(ListQuery),
    responses(
        (status = 200, body = HandlerList),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<HandlerList>> {
    let handlers = ctx
        .with_dispatcher(move |d| {
            let store = d.store();
            let mut out = Vec::new();
            for h in store.handlers()? {
                let keep = match q.status {
                    None => true,
                    Some(StatusFilter::Enabled) => h.enabled,
                    Some(StatusFilter::Disabled) => !h.enabled,
                };
                if !keep {
                    continue;
                }
                let v = active_version(store, &h)?;
                let stats = q.stats.then(|| store.handler_stats(&h.name)).transpose()?;
                let circuit = q.stats.then(|| d.circuit(&h.name)).flatten();
                let sub = v.manifest.subscription;
                out.push(HandlerSummary {
                    config: q.config.then_some(h.config),
                    name: h.name,
                    enabled: h.enabled,
                    active_version: h.active_version,
                    disabled_reason: h.disabled_reason,
                    description: v.manifest.description,
                    events: sub.events,
                    tenants: sub.tenants,
                    created_ms: h.created_ms,
                    updated_ms: h.updated_ms,
                    stats,
                    circuit,
                });
            }
            Ok::<_, StoreError>(out)
        })
        .await?;
    Ok(axum::Json(HandlerList { handlers }))
}

/// One handler with its active version and stats.
///
/// Tokens restricted to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/v1/handlers/{name}", tag = "handlers", operation_id = "show_handler",
    security(("bearer" = ["read"])),
    params(("name" = String, Path, description = "Handler name")),
    responses(
        (status = 200, body = HandlerDetail),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn show(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<HandlerDetail>> {
    let detail = ctx
        .with_dispatcher(move |d| {
            let store = d.store();
            let Some(handler) = store.handler(&name)? else {
                return Err(not_found(&name));
            };
            let version = active_version(store, &handler)?;
            let stats = store.handler_stats(&name)?;
            // After the record: a handler the breaker disabled shows the
            // opening that disabled it.
            let circuit = d.circuit(&name);
            Ok(HandlerDetail {
                handler,
                version,
                stats,
                circuit,
            })
        })
        .await?;
    Ok(axum::Json(detail))
}

/// Every deployed version of a handler.
///
/// Tokens restricted to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/v1/handlers/{name}/versions", tag = "handlers", operation_id = "list_versions",
    security(("bearer" = ["read"])),
    params(("name" = String, Path, description = "Handler name")),
    responses(
        (status = 200, body = VersionList),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn versions(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<VersionList>> {
    let versions = ctx
        .with_store(move |store| {
            if store.handler(&name)?.is_none() {
                return Err(not_found(&name));
            }
            Ok(store.versions(&name)?)
        })
        .await?;
    Ok(axum::Json(VersionList { versions }))
}

/// Runs a store change, then reloads the handler into the dispatcher.
async fn change(
    ctx: &Ctx,
    name: String,
    f: impl FnOnce(&Store, &str) -> Result<HandlerRecord, StoreError> + Send + 'static,
) -> ApiResult<axum::Json<HandlerRecord>> {
    let record = ctx
        .with_dispatcher(move |d| {
            let record = f(d.store(), &name)?;
            d.refresh_handler(&name)?;
            Ok::<_, ApiError>(record)
        })
        .await?;
    Ok(axum::Json(record))
}

/// Makes another deployed version the active one.
#[utoipa::path(
    post, path = "/v1/handlers/{name}/rollback", tag = "handlers", operation_id = "rollback_handler",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Handler name")),
    request_body(content = RollbackRequest, description = "Optional; `{}` or no body: the previous version"),
    responses(
        (status = 200, body = HandlerRecord),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn rollback(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    OptionalJson(req): OptionalJson<RollbackRequest>,
) -> ApiResult<axum::Json<HandlerRecord>> {
    let actor = caller.actor();
    change(&ctx, name, move |s, n| s.rollback(n, req.version, &actor)).await
}

/// Lets a handler receive deliveries again.
#[utoipa::path(
    post, path = "/v1/handlers/{name}/enable", tag = "handlers", operation_id = "enable_handler",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Handler name")),
    responses(
        (status = 200, body = HandlerRecord),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn enable(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<HandlerRecord>> {
    let actor = caller.actor();
    change(&ctx, name, move |s, n| s.set_enabled(n, true, None, &actor)).await
}

/// Stops new deliveries to a handler.
#[utoipa::path(
    post, path = "/v1/handlers/{name}/disable", tag = "handlers", operation_id = "disable_handler",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Handler name")),
    request_body(content = DisableRequest, description = "Optional"),
    responses(
        (status = 200, body = HandlerRecord),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn disable(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    OptionalJson(req): OptionalJson<DisableRequest>,
) -> ApiResult<axum::Json<HandlerRecord>> {
    if let Some(r) = &req.reason
        && r.len() > REASON_MAX_BYTES
    {
        return Err(ApiError::bad_request(format!(
            "`reason` is {} bytes; the limit is {REASON_MAX_BYTES}",
            r.len()
        )));
    }
    let actor = caller.actor();
    change(&ctx, name, move |s, n| {
        s.set_enabled(n, false, req.reason.as_deref(), &actor)
    })
    .await
}

/// Replaces a handler's config; the next delivery reads the new one.
#[utoipa::path(
    put, path = "/v1/handlers/{name}/config", tag = "handlers", operation_id = "set_handler_config",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Handler name")),
    request_body(content = Value, description = "The new config: any JSON value"),
    responses(
        (status = 200, body = HandlerRecord),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn set_config(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Json(config): Json<Value>,
) -> ApiResult<axum::Json<HandlerRecord>> {
    let actor = caller.actor();
    change(&ctx, name, move |s, n| s.set_config(n, &config, &actor)).await
}

/// Deletes a handler with its versions, KV data, pending deliveries and dead
/// letters: out of routing at once, the rest once its running deliveries end
/// (within their wall-clock limit), so none of them writes after the sweep.
#[utoipa::path(
    delete, path = "/v1/handlers/{name}", tag = "handlers", operation_id = "delete_handler",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Handler name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = caller.actor();
    ctx.with_dispatcher(move |d| {
        let Some(record) = d.store().handler(&name)? else {
            return Err(not_found(&name));
        };
        // Out of routing first, as the store asks: no new deliveries while
        // the data goes. A handler whose module no longer loads must still
        // be deletable, so a failed reload does not stop the delete.
        d.store()
            .set_enabled(&name, false, Some("deleting"), &actor)?;
        if let Err(e) = d.refresh_handler(&name) {
            tracing::warn!(handler = %name, error = %e, "Reload before delete failed; deleting anyway");
        }
        // A delivery still running could write KV, a retry, a dead letter
        // or its stats after the sweep below, for the next handler of
        // this name.
        if !d.wait_until_idle(&name) {
            tracing::warn!(handler = %name, "A delivery of the handler outlived its wall-clock limit, or its outcome was not written by then; deleting anyway");
        }
        d.store().delete_handler(&name, &actor)?;
        d.refresh_handler(&name)?;
        d.drop_shared_kv(&record);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use super::*;
    use crate::api::testutil::TestApi;

    #[tokio::test]
    async fn list_shows_subscriptions_and_optional_parts() {
        let api = TestApi::new();
        let r = api.get("/v1/handlers", &api.read).await;
        assert_eq!(r.json, json!({"handlers": []}));

        api.record_handler("greeter");
        let r = api.get("/v1/handlers", &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let h = &r.json["handlers"][0];
        assert_eq!(h["name"], "greeter");
        assert_eq!(h["enabled"], true);
        assert_eq!(h["active_version"], 1);
        assert_eq!(h["description"], "test handler");
        assert_eq!(h["events"], json!(["message", "reaction.*"]));
        assert_eq!(h["tenants"], json!(["acme"]));
        assert!(h.get("config").is_none() && h.get("stats").is_none(), "{h}");

        let r = api
            .get("/v1/handlers?stats=true&config=true", &api.read)
            .await;
        let h = &r.json["handlers"][0];
        assert_eq!(h["config"], json!({"greeting": "hi"}));
        assert_eq!(h["stats"]["processed"], 0);

        let r = api.get("/v1/handlers?status=disabled", &api.read).await;
        assert_eq!(r.json, json!({"handlers": []}));
        let r = api.get("/v1/handlers?status=enabled", &api.read).await;
        assert_eq!(r.json["handlers"].as_array().unwrap().len(), 1);
        let r = api.get("/v1/handlers?status=sleeping", &api.read).await;
        let m = r.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(m.contains("sleeping"), "{m}");
        let r = api.get("/v1/handlers?stats=yes", &api.read).await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
    }

    #[tokio::test]
    async fn show_and_versions() {
        let api = TestApi::new();
        api.record_handler("greeter");
        let r = api.get("/v1/handlers/greeter", &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["handler"]["name"], "greeter");
        assert_eq!(r.json["version"]["version"], 1);
        assert_eq!(r.json["version"]["deployed_by"], "test");
        assert_eq!(r.json["stats"]["handler"], "greeter");

        let r = api.get("/v1/handlers/greeter/versions", &api.read).await;
        assert_eq!(r.json["versions"].as_array().unwrap().len(), 1);

        for uri in ["/v1/handlers/ghost", "/v1/handlers/ghost/versions"] {
            let m = api
                .get(uri, &api.read)
                .await
                .error(StatusCode::NOT_FOUND, "not_found");
            assert!(m.contains("ghost"), "{m}");
        }
    }

    #[tokio::test]
    async fn changes_to_unknown_handlers_are_404() {
        let api = TestApi::new();
        let a = &api.admin;
        for (method, uri) in [
            (Method::POST, "/v1/handlers/ghost/rollback"),
            (Method::POST, "/v1/handlers/ghost/enable"),
            (Method::POST, "/v1/handlers/ghost/disable"),
            (Method::DELETE, "/v1/handlers/ghost"),
        ] {
            let r = api.send(method, uri, Some(a), None).await;
            let m = r.error(StatusCode::NOT_FOUND, "not_found");
            assert!(m.contains("ghost"), "{uri}: {m}");
        }
        let r = api
            .json(
                Method::PUT,
                "/v1/handlers/ghost/config",
                a,
                &json!({"k": 1}),
            )
            .await;
        r.error(StatusCode::NOT_FOUND, "not_found");
        let r = api
            .json(
                Method::POST,
                "/v1/handlers/ghost/rollback",
                a,
                &json!({"version": 3}),
            )
            .await;
        r.error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn a_handler_that_does_not_load_can_still_be_deleted() {
        let api = TestApi::new();
        api.record_handler("greeter");
        let r = api
            .send(
                Method::DELETE,
                "/v1/handlers/greeter",
                Some(&api.admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
        let r = api.get("/v1/handlers/greeter", &api.read).await;
        r.error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn optional_bodies_are_checked_when_present() {
        let api = TestApi::new();
        api.record_handler("greeter");
        let a = Some(api.admin.as_str());
        let uri = "/v1/handlers/greeter/disable";
        let r = api
            .send(
                Method::POST,
                uri,
                a,
                Some(("application/json", b"{\"reason\":".to_vec())),
            )
            .await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
        let r = api
            .send(
                Method::POST,
                uri,
                a,
                Some(("text/plain", b"because".to_vec())),
            )
            .await;
        r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        let r = api
            .json(Method::POST, uri, &api.admin, &json!({"reasn": "typo"}))
            .await;
        let m = r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(m.contains("reasn"), "{m}");
        let long = json!({"reason": "x".repeat(REASON_MAX_BYTES + 1)});
        let r = api.json(Method::POST, uri, &api.admin, &long).await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
        let r = api
            .json(
                Method::POST,
                "/v1/handlers/greeter/rollback",
                &api.admin,
                &json!({"version": "two"}),
            )
            .await;
        r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        // No version before 1: the store says so.
        let r = api
            .send(Method::POST, "/v1/handlers/greeter/rollback", a, None)
            .await;
        let m = r.error(StatusCode::NOT_FOUND, "not_found");
        assert!(m.contains("before 1"), "{m}");
    }
}
