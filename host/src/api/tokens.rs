//! API tokens (create, list, revoke) and the audit log of administrative
//! actions. All admin-only. A token's secret is returned once, on creation.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Ctx;
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path, Query, page_limit};
use crate::event::now_ms;
use crate::manifest::validate_pattern;
use crate::store::{AuditEntry, Scope, TokenRecord};

/// Longest token name, in characters.
const NAME_MAX_CHARS: usize = 128;
/// Tenants or event-type patterns on one token.
const RESTRICTIONS_MAX: usize = 1024;

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// A label for operators (shown in the audit log): 1 to 128 characters,
    /// not all white space, no control characters.
    #[schema(
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    /// What the token may do; `admin` implies the others.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// Tenants it may publish to or read; empty or omitted means all.
    #[serde(default)]
    #[schema(max_items = 1024)]
    tenants: Vec<String>,
    /// Event-type patterns it may publish (`message`, `reaction.*`, `*`);
    /// empty means all.
    #[serde(default)]
    #[schema(schema_with = super::doc::event_type_patterns)]
    event_types: Vec<String>,
    /// Lifetime (`30d`, `12h`, `90m`); omitted: never expires.
    #[schema(pattern = r"^[0-9]{1,9}(s|m|h|d|w)$")]
    expires_in: Option<String>,
}

/// Body of a `POST /v1/tokens` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    token: TokenRecord,
    /// The secret (`hbx_…`); shown only now.
    secret: String,
}

/// Body of `GET /v1/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    /// Oldest first, without secrets.
    tokens: Vec<TokenRecord>,
}

impl CreateToken {
    /// Checks the request; returns the expiry time.
    fn validate(&self) -> ApiResult<Option<u64>> {
        let bad = |m: String| Err(ApiError::bad_request(m));
        if self.name.trim().is_empty() || self.name.chars().count() > NAME_MAX_CHARS {
            return bad(format!(
                "`name` must be 1 to {NAME_MAX_CHARS} characters, not all white space"
            ));
        }
        if self.name.chars().any(char::is_control) {
            return bad("`name` must not contain control characters".into());
        }
        if self.scopes.is_empty() {
            return bad("`scopes` must name at least one of admin, publish, read".into());
        }
        if self.tenants.len() > RESTRICTIONS_MAX || self.event_types.len() > RESTRICTIONS_MAX {
            return bad(format!(
                "`tenants` and `event_types` take at most {RESTRICTIONS_MAX} entries"
            ));
        }
        for p in &self.event_types {
            if let Err(e) = validate_pattern(p) {
                return bad(format!("`event_types`: {}", e.0));
            }
        }
        let Some(text) = &self.expires_in else {
            return Ok(None);
        };
        let d = humantime::parse_duration(text).map_err(|e| {
            ApiError::bad_request(format!(
                "`expires_in` {text:?} is not a duration like `30d`: {e}"
            ))
        })?;
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(Some(now_ms().saturating_add(ms)))
    }
}

/// Creates a token; the answer holds its secret, which is not stored.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens", operation_id = "create_token",
    security(("bearer" = ["admin"])),
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Json(req): Json<CreateToken>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    let expires_ms = req.validate()?;
    let actor = caller.actor();
    let (token, secret) = ctx
        .with_dispatcher(move |d| {
            let s = d.store();
            let (token, secret) = d.create_token(
                &req.name,
                &req.scopes,
                req.tenants,
                req.event_types,
                expires_ms,
            )?;
            let detail = serde_json::json!({"name": token.name, "scopes": token.scopes});
            s.audit(&actor, "token_create", &token.id, detail)?;
            Ok::<_, crate::store::StoreError>((token, secret))
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken { token, secret }),
    ))
}

/// Lists tokens, without their secrets.
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens", operation_id = "list_tokens",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, body = TokenList),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn list(_: Admin, State(ctx): State<Ctx>) -> ApiResult<axum::Json<TokenList>> {
    let tokens = ctx.with_store(|s| s.tokens()).await?;
    Ok(axum::Json(TokenList { tokens }))
}

/// Revokes a token at once.
#[utoipa::path(
    delete, path = "/v1/tokens/{id}", tag = "tokens", operation_id = "revoke_token",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn revoke(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = caller.actor();
    let lookup = id.clone();
    let existed = ctx
        .with_dispatcher(move |d| {
            let s = d.store();
            let existed = d.revoke_token(&lookup)?;
            if existed {
                s.audit(&actor, "token_revoke", &lookup, serde_json::Value::Null)?;
            }
            Ok::<_, crate::store::StoreError>(existed)
        })
        .await?;
    if existed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no token with id {id:?}")))
    }
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// `next_cursor` of the previous page.
    #[param(schema_with = super::doc::ulid_cursor)]
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Body of `GET /v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// Newest first.
    entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; `null` at the end.
    next_cursor: Option<String>,
}

/// The audit log of administrative actions, newest first.
#[utoipa::path(
    get, path = "/v1/audit", tag = "tokens", operation_id = "read_audit_log",
    security(("bearer" = ["admin"])),
    params(AuditParams),
    responses(
        (status = 200, body = AuditPage),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn audit(
    _: Admin,
    State(ctx): State<Ctx>,
    Query(p): Query<AuditParams>,
) -> ApiResult<axum::Json<AuditPage>> {
    let limit = page_limit(p.limit)?;
    let (entries, next_cursor) = ctx
        .with_store(move |s| {
            // ULIDs decode in any case; stored ids are upper case.
            let cursor = p.cursor.map(|c| c.to_ascii_uppercase());
            s.audit_log(limit, cursor.as_deref())
        })
        .await?;
    Ok(axum::Json(AuditPage {
        entries,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use super::*;
    use crate::api::testutil::TestApi;

    #[tokio::test]
    async fn create_use_list_and_revoke() {
        let api = TestApi::new();
        let body =
            json!({"name": "ci", "scopes": ["read"], "tenants": ["acme"], "expires_in": "1h"});
        let r = api
            .json(Method::POST, "/v1/tokens", &api.admin, &body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        let secret = r.json["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("hbx_"));
        assert_eq!(r.json["token"]["tenants"], json!(["acme"]));
        let expires = r.json["token"]["expires_ms"].as_u64().unwrap();
        assert!(expires > now_ms() + 3_500_000 && expires <= now_ms() + 3_600_000);
        let id = r.json["token"]["id"].as_str().unwrap().to_string();

        assert_eq!(api.get("/v1/logs", &secret).await.status, StatusCode::OK);
        let r = api.get("/v1/tokens", &api.admin).await;
        let names: Vec<_> = r.json["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["admin", "publisher", "reader", "ci"]);
        assert!(
            !r.bytes.windows(4).any(|w| w == b"hbx_"),
            "no secrets in lists"
        );

        let uri = format!("/v1/tokens/{id}");
        let r = api.send(Method::DELETE, &uri, Some(&api.admin), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = api.send(Method::DELETE, &uri, Some(&api.admin), None).await;
        r.error(StatusCode::NOT_FOUND, "not_found");
        api.get("/v1/logs", &secret)
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");

        let r = api.get("/v1/audit?limit=10", &api.admin).await;
        let actions: Vec<_> = r.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(actions, ["token_revoke", "token_create"]);
        assert_eq!(r.json["entries"][0]["actor"], "admin");
    }

    #[tokio::test]
    async fn bad_requests_name_the_field() {
        let api = TestApi::new();
        let cases = [
            (
                json!({"name": "x", "scopes": ["root"]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "root",
            ),
            (
                json!({"name": "x", "scopes": []}),
                StatusCode::BAD_REQUEST,
                "scopes",
            ),
            (
                json!({"name": "", "scopes": ["read"]}),
                StatusCode::BAD_REQUEST,
                "name",
            ),
            (
                json!({"name": "x", "scopes": ["read"], "expires_in": "soon"}),
                StatusCode::BAD_REQUEST,
                "expires_in",
            ),
            (
                json!({"name": "x", "scopes": ["publish"], "event_types": ["a*b"]}),
                StatusCode::BAD_REQUEST,
                "event_types",
            ),
            (
                json!({"name": "x", "scopes": ["read"], "tenant": ["a"]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "tenant",
            ),
            (
                json!({"scopes": ["read"]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name",
            ),
            (
                json!({"name": " \t", "scopes": ["read"]}),
                StatusCode::BAD_REQUEST,
                "name",
            ),
            (
                json!({"name": "é".repeat(129), "scopes": ["read"]}),
                StatusCode::BAD_REQUEST,
                "128 characters",
            ),
        ];
        for (body, status, needle) in cases {
            let r = api
                .json(Method::POST, "/v1/tokens", &api.admin, &body)
                .await;
            assert_eq!(r.status, status, "{body}: {r:?}");
            let m = r.json["error"]["message"].as_str().unwrap();
            assert!(m.contains(needle), "{body}: {m}");
        }
    }

    #[tokio::test]
    async fn names_are_counted_in_characters() {
        // What the OpenAPI document says (`maxLength` counts characters).
        let api = TestApi::new();
        let body = json!({"name": "😀".repeat(128), "scopes": ["read"]});
        let r = api
            .json(Method::POST, "/v1/tokens", &api.admin, &body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    }

    #[tokio::test]
    async fn audit_pages_are_bounded() {
        let api = TestApi::new();
        let r = api.get("/v1/audit?limit=0", &api.admin).await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
        let r = api.get("/v1/audit?limit=1001", &api.admin).await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
        let r = api.get("/v1/audit?cursor=nonsense", &api.admin).await;
        let m = r.error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(m.contains("cursor"), "{m}");
        let r = api.get("/v1/audit", &api.admin).await;
        assert_eq!(r.json, json!({"entries": [], "next_cursor": null}));
    }
}
