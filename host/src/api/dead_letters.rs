//! Dead letters: deliveries that exhausted their retry policy. List (paged),
//! show, replay (one, or a handler's in a time range; back into the queue,
//! optionally on another version) and purge. Tenant-restricted tokens see only their tenants' dead letters.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Ctx;
use super::auth::{Admin, Reader};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, OptionalJson, Path, Query, page_limit, parse_time, whole};
use crate::dispatch::BulkReplay;
use crate::store::{DeadLetter, DeadLetterQuery};

/// Query of `GET /v1/dead-letters`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only this handler.
    handler: Option<String>,
    /// Dead-lettered at or after: ms since the epoch, or an RFC 3339 date-time.
    #[param(schema_with = super::doc::time_param)]
    since: Option<String>,
    /// Dead-lettered at or before: ms since the epoch, or an RFC 3339 date-time.
    #[param(schema_with = super::doc::time_param)]
    until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = super::doc::ulid_cursor)]
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Body of `GET /v1/dead-letters`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterPage {
    /// Newest first.
    dead_letters: Vec<DeadLetter>,
    /// Pass as `cursor` for the next (older) page; `null` at the end.
    next_cursor: Option<String>,
}

/// Lists dead letters, newest first.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "dead-letters", operation_id = "list_dead_letters",
    security(("bearer" = ["read"])),
    params(ListParams),
    responses(
        (status = 200, body = DeadLetterPage),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<DeadLetterPage>> {
    let limit = page_limit(p.limit)?;
    let q = DeadLetterQuery {
        handler: p.handler,
        since_ms: parse_time("since", p.since.as_deref())?,
        until_ms: parse_time("until", p.until.as_deref())?,
        // ULIDs decode in any case; stored ids are upper case.
        cursor: p.cursor.map(|c| c.to_ascii_uppercase()),
        limit,
    };
    let mut dead_letters = ctx.with_store(move |s| s.dead_letters(&q)).await?;
    // A full page may have more behind it; the cursor is its last id.
    let next_cursor = (dead_letters.len() == limit)
        .then(|| dead_letters.last().map(|d| d.id.clone()))
        .flatten();
    dead_letters.retain(|d| caller.tenant_allowed(&d.event.tenant));
    Ok(axum::Json(DeadLetterPage {
        dead_letters,
        next_cursor,
    }))
}

/// One dead letter with its event and every attempt's error.
#[utoipa::path(
    get, path = "/v1/dead-letters/{id}", tag = "dead-letters", operation_id = "show_dead_letter",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Dead-letter id")),
    responses(
        (status = 200, body = DeadLetter),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn show(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeadLetter>> {
    let lookup = id.clone();
    ctx.with_store(move |s| s.dead_letter_get(&lookup))
        .await?
        .filter(|d| caller.tenant_allowed(&d.event.tenant))
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no dead letter with id {id:?}")))
}

/// Body of `POST /v1/dead-letters/{id}/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Run this handler version; omitted: the active one.
    #[serde(default, deserialize_with = "whole")]
    version: Option<u32>,
}

/// Body of a replay answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Replayed {
    /// The dead letter put back into the queue.
    replayed: String,
}

/// Puts a dead letter back into the delivery queue.
#[utoipa::path(
    post, path = "/v1/dead-letters/{id}/replay", tag = "dead-letters", operation_id = "replay_dead_letter",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Dead-letter id")),
    request_body(content = ReplayRequest, description = "Optional"),
    responses(
        (status = 202, body = Replayed),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn replay(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    OptionalJson(req): OptionalJson<ReplayRequest>,
) -> ApiResult<(StatusCode, axum::Json<Replayed>)> {
    let actor = caller.actor();
    let target = id.clone();
    ctx.with_dispatcher(move |d| {
        d.replay_dead_letter(&target, req.version)?;
        let detail = serde_json::json!({"version": req.version});
        d.store()
            .audit(&actor, "dead_letter_replay", &target, detail)?;
        d.store().sync_admin()?;
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Replayed { replayed: id })))
}

/// Body of `POST /v1/dead-letters/replay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkReplayRequest {
    /// The handler whose dead letters to replay.
    handler: String,
    /// Only those dead-lettered at or after this time, ms since the epoch.
    #[serde(default, deserialize_with = "whole")]
    since: Option<u64>,
    /// Only those dead-lettered at or before this time, ms since the epoch.
    #[serde(default, deserialize_with = "whole")]
    until: Option<u64>,
    /// Run this handler version; omitted: the active one.
    #[serde(default, deserialize_with = "whole")]
    version: Option<u32>,
}

/// Puts every dead letter of a handler in a time range back into the queue.
#[utoipa::path(
    post, path = "/v1/dead-letters/replay", tag = "dead-letters", operation_id = "replay_dead_letters",
    security(("bearer" = ["admin"])),
    request_body = BulkReplayRequest,
    responses(
        (status = 202, body = BulkReplay),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn replay_bulk(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Json(req): Json<BulkReplayRequest>,
) -> ApiResult<(StatusCode, axum::Json<BulkReplay>)> {
    if let (Some(since), Some(until)) = (req.since, req.until)
        && since > until
    {
        return Err(ApiError::bad_request(format!(
            "`since` ({since}) is after `until` ({until})"
        )));
    }
    let actor = caller.actor();
    let done = ctx
        .with_dispatcher(move |d| {
            let done = d.replay_dead_letters(&req.handler, req.since, req.until, req.version)?;
            let detail = serde_json::json!({
                "since_ms": req.since, "until_ms": req.until, "version": req.version,
                "replayed": done.replayed, "skipped": done.skipped,
            });
            d.store()
                .audit(&actor, "dead_letter_bulk_replay", &req.handler, detail)?;
            d.store().sync_admin()?;
            Ok::<_, ApiError>(done)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(done)))
}

/// Query of `DELETE /v1/dead-letters`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PurgeParams {
    /// Only this handler's dead letters.
    handler: Option<String>,
    /// Only those dead-lettered before: ms since the epoch, or an RFC 3339 date-time.
    #[param(schema_with = super::doc::time_param)]
    before: Option<String>,
}

/// Body of a purge answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Purged {
    /// How many dead letters were deleted.
    purged: u64,
}

/// Deletes dead letters (all, one handler's, or older ones).
#[utoipa::path(
    delete, path = "/v1/dead-letters", tag = "dead-letters", operation_id = "purge_dead_letters",
    security(("bearer" = ["admin"])),
    params(PurgeParams),
    responses(
        (status = 200, body = Purged),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn purge(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Query(p): Query<PurgeParams>,
) -> ApiResult<axum::Json<Purged>> {
    let before = parse_time("before", p.before.as_deref())?;
    let actor = caller.actor();
    let purged = ctx
        .with_dispatcher(move |d| {
            let n = d.purge_dead_letters(p.handler.as_deref(), before)?;
            let s = d.store();
            let detail =
                serde_json::json!({"handler": p.handler, "before_ms": before, "purged": n});
            s.audit(&actor, "dead_letter_purge", "dead-letters", detail)?;
            // Acknowledged administrative changes stick (see `Durability`).
            s.sync_admin()?;
            Ok::<_, crate::store::StoreError>(n)
        })
        .await?;
    Ok(axum::Json(Purged { purged }))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use super::*;
    use crate::api::testutil::{TestApi, failed_attempt};
    use crate::store::Scope;

    /// Dead-letters one event of `tenant` for handler `h`; returns the id.
    fn dead_letter(api: &TestApi, tenant: &str) -> String {
        let (p, entry) = failed_attempt(api, tenant, crate::event::now_ms());
        api.store().dead_letter(&p, &entry).unwrap().id
    }

    #[tokio::test]
    async fn list_show_and_tenant_scope() {
        let api = TestApi::new();
        let r = api.get("/v1/dead-letters", &api.read).await;
        assert_eq!(r.json, json!({"dead_letters": [], "next_cursor": null}));

        let acme = dead_letter(&api, "acme");
        let other = dead_letter(&api, "other");
        let r = api.get("/v1/dead-letters", &api.read).await;
        assert_eq!(r.json["dead_letters"].as_array().unwrap().len(), 2);
        assert_eq!(r.json["dead_letters"][0]["id"], other, "newest first");

        let r = api.get("/v1/dead-letters?limit=1", &api.read).await;
        assert_eq!(r.json["next_cursor"], other);
        let r = api
            .get(
                &format!("/v1/dead-letters?limit=1&cursor={other}"),
                &api.read,
            )
            .await;
        assert_eq!(r.json["dead_letters"][0]["id"], acme);
        // ULIDs decode in any case: a lower-case cursor pages the same.
        let lower = other.to_ascii_lowercase();
        let r = api
            .get(
                &format!("/v1/dead-letters?limit=1&cursor={lower}"),
                &api.read,
            )
            .await;
        assert_eq!(r.json["dead_letters"][0]["id"], acme, "{r:?}");

        let scoped = api.scoped_token(Scope::Read, &["acme"], &[]);
        let r = api.get("/v1/dead-letters", &scoped).await;
        let ids: Vec<_> = r.json["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].clone())
            .collect();
        assert_eq!(ids, [json!(acme)]);
        let r = api.get(&format!("/v1/dead-letters/{acme}"), &scoped).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["event"]["tenant"], "acme");
        api.get(&format!("/v1/dead-letters/{other}"), &scoped)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        api.get("/v1/dead-letters/nope", &api.read)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn purge_and_replay() {
        let api = TestApi::new();
        dead_letter(&api, "acme");
        dead_letter(&api, "acme");
        let r = api
            .send(
                Method::DELETE,
                "/v1/dead-letters?before=yesterday",
                Some(&api.admin),
                None,
            )
            .await;
        let m = r.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(m.contains("before"), "{m}");
        let r = api
            .send(
                Method::DELETE,
                "/v1/dead-letters?before=1",
                Some(&api.admin),
                None,
            )
            .await;
        assert_eq!(r.json, json!({"purged": 0}));
        let r = api
            .send(
                Method::DELETE,
                "/v1/dead-letters?handler=h",
                Some(&api.admin),
                None,
            )
            .await;
        assert_eq!(r.json, json!({"purged": 2}));

        let r = api
            .send(
                Method::POST,
                "/v1/dead-letters/nope/replay",
                Some(&api.admin),
                None,
            )
            .await;
        r.error(StatusCode::NOT_FOUND, "not_found");
        let r = api
            .json(
                Method::POST,
                "/v1/dead-letters/nope/replay",
                &api.admin,
                &json!({"version": -1}),
            )
            .await;
        r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    }

    #[tokio::test]
    async fn bulk_replay_by_handler_and_time() {
        let api = TestApi::new();
        api.record_handler("h");
        let times: Vec<(String, u64)> = (0..3)
            .map(|_| {
                // Distinct milliseconds, so the time bounds can split them.
                let start = crate::event::now_ms();
                while crate::event::now_ms() == start {
                    std::thread::yield_now();
                }
                let id = dead_letter(&api, "acme");
                let t = api.store().dead_letter_get(&id).unwrap().unwrap().time_ms;
                (id, t)
            })
            .collect();
        async fn bulk(api: &TestApi, body: serde_json::Value) -> crate::api::testutil::Reply {
            api.json(Method::POST, "/v1/dead-letters/replay", &api.admin, &body)
                .await
        }
        let replay = |body| bulk(&api, body);
        let r = replay(json!({"handler": "h", "since": times[1].1})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!(r.json, json!({"replayed": 2, "skipped": 0}));
        let left = api.get("/v1/dead-letters?handler=h", &api.read).await;
        assert_eq!(left.json["dead_letters"][0]["id"], times[0].0);
        assert_eq!(left.json["dead_letters"].as_array().unwrap().len(), 1);
        let pending = api.store().pending().unwrap();
        assert_eq!(pending.iter().filter(|p| p.handler == "h").count(), 2);
        assert!(
            pending
                .iter()
                .all(|p| p.attempt == 1 && p.version.is_none())
        );

        let r = replay(json!({"handler": "h", "until": times[0].1 - 1})).await;
        assert_eq!(r.json, json!({"replayed": 0, "skipped": 0}));
        let r = replay(json!({"handler": "h"})).await;
        assert_eq!(r.json, json!({"replayed": 1, "skipped": 0}));

        replay(json!({"handler": "nope"}))
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        replay(json!({"handler": "h", "version": 9}))
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        let m = replay(json!({"handler": "h", "since": 2, "until": 1}))
            .await
            .error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(m.contains("since"), "{m}");
        let m = replay(json!({"handler": "h", "sinse": 1}))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(m.contains("sinse"), "{m}");
        let r = api
            .json(
                Method::POST,
                "/v1/dead-letters/replay",
                &api.read,
                &json!({"handler": "h"}),
            )
            .await;
        r.error(StatusCode::FORBIDDEN, "forbidden");
    }

    #[tokio::test]
    async fn bad_queries() {
        let api = TestApi::new();
        for uri in [
            "/v1/dead-letters?since=later",
            "/v1/dead-letters?limit=-1",
            "/v1/dead-letters?tenant=acme",
        ] {
            api.get(uri, &api.read)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
        }
    }
}
