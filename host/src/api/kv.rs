//! `GET /v1/handlers/{name}/kv` and `GET /v1/handlers/{name}/kv/{key}`:
//! read access for operators to a handler's KV namespace of one tenant —
//! what a handler remembered, without deploying a debug version of it.
//!
//! Read scope; the `tenant` query parameter is required (every namespace
//! belongs to one tenant; `tenant=` is the namespace of events without a
//! tenant) and must be one the token may read. Nothing here writes.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::Ctx;
use super::auth::Reader;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Path, Query, page_limit};
use crate::store::{KvItem, KvPage};

/// Query of `GET /v1/handlers/{name}/kv`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// The tenant whose namespace to read (empty: events without a tenant).
    tenant: String,
    /// Only keys starting with this.
    prefix: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Query of `GET /v1/handlers/{name}/kv/{key}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetParams {
    /// The tenant whose namespace to read (empty: events without a tenant).
    tenant: String,
}

/// Lists a handler's KV entries of one tenant, in key order.
#[utoipa::path(
    get, path = "/v1/handlers/{name}/kv", tag = "handlers", operation_id = "list_kv",
    security(("bearer" = ["read"])),
    params(("name" = String, Path, description = "Handler name"), ListParams),
    responses(
        (status = 200, body = KvPage),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<KvPage>> {
    caller.check_tenant_filter(Some(&p.tenant))?;
    let limit = page_limit(p.limit)?;
    let page = ctx
        .with_dispatcher(move |d| {
            let Some(handler) = d.store().handler(&name)? else {
                return Err(ApiError::not_found(format!("handler {name}")));
            };
            let prefix = p.prefix.unwrap_or_default();
            Ok(d.kv_list(&handler, &p.tenant, &prefix, p.cursor.as_deref(), limit)?)
        })
        .await?;
    Ok(axum::Json(page))
}

/// One key of a handler's KV namespace of one tenant.
#[utoipa::path(
    get, path = "/v1/handlers/{name}/kv/{key}", tag = "handlers", operation_id = "get_kv",
    security(("bearer" = ["read"])),
    params(
        ("name" = String, Path, description = "Handler name"),
        ("key" = String, Path, description = "The key (URL-encoded)"),
        GetParams,
    ),
    responses(
        (status = 200, body = KvItem),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Path((name, key)): Path<(String, String)>,
    Query(p): Query<GetParams>,
) -> ApiResult<axum::Json<KvItem>> {
    caller.check_tenant_filter(Some(&p.tenant))?;
    let item = ctx
        .with_dispatcher(move |d| {
            let Some(handler) = d.store().handler(&name)? else {
                return Err(ApiError::not_found(format!("handler {name}")));
            };
            d.kv_get(&handler, &p.tenant, &key)?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "key {key:?} of handler {name} for tenant {:?}",
                    p.tenant
                ))
            })
        })
        .await?;
    Ok(axum::Json(item))
}
