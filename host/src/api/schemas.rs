//! Payload schemas per event type: register, show, list, remove. Once a type
//! has a schema, events of that type whose payload does not match are
//! refused at accept (422 naming the failing path).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::Ctx;
use super::auth::{Admin, Reader};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path};

/// One registered schema.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TypeSchema {
    /// The event type it applies to.
    #[serde(rename = "type")]
    event_type: String,
    /// The JSON Schema document.
    #[schema(value_type = super::doc::JsonSchemaDocument, inline)]
    schema: serde_json::Value,
}

/// Body of `GET /v1/schemas`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SchemaList {
    /// Sorted by event type.
    schemas: Vec<TypeSchema>,
}

/// Lists every registered payload schema.
#[utoipa::path(
    get, path = "/v1/schemas", tag = "schemas", operation_id = "list_schemas",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, body = SchemaList),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn list(_: Reader, State(ctx): State<Ctx>) -> ApiResult<axum::Json<SchemaList>> {
    let schemas = ctx.with_store(|s| s.schemas()).await?;
    Ok(axum::Json(SchemaList {
        schemas: schemas
            .into_iter()
            .map(|(event_type, schema)| TypeSchema { event_type, schema })
            .collect(),
    }))
}

/// Shows the payload schema of one event type.
#[utoipa::path(
    get, path = "/v1/schemas/{type}", tag = "schemas", operation_id = "show_schema",
    security(("bearer" = ["read"])),
    params(("type" = String, Path, description = "Event type", pattern = r"^[A-Za-z0-9._:/-]{1,128}$")),
    responses(
        (status = 200, body = TypeSchema),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn show(
    _: Reader,
    State(ctx): State<Ctx>,
    Path(event_type): Path<String>,
) -> ApiResult<axum::Json<TypeSchema>> {
    let schemas = ctx.with_store(|s| s.schemas()).await?;
    schemas
        .into_iter()
        .find(|(t, _)| *t == event_type)
        .map(|(event_type, schema)| axum::Json(TypeSchema { event_type, schema }))
        .ok_or_else(|| ApiError::not_found(format!("no schema for event type {event_type:?}")))
}

/// Registers or replaces the payload schema of an event type (a JSON Schema
/// document, drafts 4 to 2020-12; remote `$ref`s are not resolved).
#[utoipa::path(
    put, path = "/v1/schemas/{type}", tag = "schemas", operation_id = "put_schema",
    security(("bearer" = ["admin"])),
    params(("type" = String, Path, description = "Event type", pattern = r"^[A-Za-z0-9._:/-]{1,128}$")),
    request_body(content = super::doc::JsonSchemaDocument, description = "A JSON Schema document"),
    responses(
        (status = 200, body = TypeSchema),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn put(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(event_type): Path<String>,
    Json(schema): Json<serde_json::Value>,
) -> ApiResult<axum::Json<TypeSchema>> {
    let actor = caller.actor();
    let (t, s) = (event_type.clone(), schema.clone());
    ctx.with_dispatcher(move |d| d.put_schema(&t, &s, &actor))
        .await?;
    Ok(axum::Json(TypeSchema { event_type, schema }))
}

/// Removes the payload schema of an event type.
#[utoipa::path(
    delete, path = "/v1/schemas/{type}", tag = "schemas", operation_id = "delete_schema",
    security(("bearer" = ["admin"])),
    params(("type" = String, Path, description = "Event type", pattern = r"^[A-Za-z0-9._:/-]{1,128}$")),
    responses(
        (status = 204, description = "Removed"),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Path(event_type): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = caller.actor();
    let t = event_type.clone();
    if ctx
        .with_dispatcher(move |d| d.delete_schema(&t, &actor))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no schema for event type {event_type:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::testutil::TestApi;

    #[tokio::test]
    async fn register_enforce_list_and_remove() {
        let api = TestApi::new();
        let schema = json!({"type": "object", "required": ["tenantId"],
                            "properties": {"tenantId": {"type": "string"}}});
        let r = api
            .json(
                Method::PUT,
                "/v1/schemas/TICKET_CREATED",
                &api.admin,
                &schema,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);

        let bad = json!({"type": "TICKET_CREATED", "payload": {"tenantId": 7}});
        let r = api.json(Method::POST, "/v1/events", &api.admin, &bad).await;
        let msg = r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(msg.contains("/tenantId"), "{msg}");
        let good = json!({"type": "TICKET_CREATED", "payload": {"tenantId": "acme"}});
        let r = api
            .json(Method::POST, "/v1/events", &api.admin, &good)
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json);

        let r = api.get("/v1/schemas", &api.read).await;
        assert_eq!(r.json["schemas"][0]["type"], "TICKET_CREATED");
        let r = api.get("/v1/schemas/TICKET_CREATED", &api.read).await;
        assert_eq!(r.json["schema"], schema);

        let r = api
            .json(
                Method::PUT,
                "/v1/schemas/x",
                &api.admin,
                &json!({"type": "nonsense"}),
            )
            .await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
        let r = api
            .json(Method::PUT, "/v1/schemas/a%20b", &api.admin, &json!({}))
            .await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");

        let r = api
            .send(
                Method::DELETE,
                "/v1/schemas/TICKET_CREATED",
                Some(&api.admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = api.json(Method::POST, "/v1/events", &api.admin, &bad).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json);
        let r = api
            .send(
                Method::DELETE,
                "/v1/schemas/TICKET_CREATED",
                Some(&api.admin),
                None,
            )
            .await;
        r.error(StatusCode::NOT_FOUND, "not_found");
    }
}
