//! `POST /v1/handlers`: deploy a handler from a multipart upload of exactly
//! two parts, `manifest` (JSON) and `component` (the wasm bytes). Each part
//! is read with its own cap, so an oversized part is refused as soon as it
//! crosses the line, naming the part.

use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Admin;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiLimits, Ctx};
use crate::dispatch::Deployed;
use crate::manifest::Manifest;

/// Largest manifest part; configs are capped at 64 KiB, the rest is small.
const MANIFEST_MAX_BYTES: usize = 1024 * 1024;
/// Multipart framing (boundaries, part headers) on top of the two parts.
const FRAMING_BYTES: usize = 64 * 1024;

/// The body limit of the deploy route.
pub(crate) fn body_limit(limits: &ApiLimits) -> usize {
    limits
        .max_component_bytes
        .saturating_add(MANIFEST_MAX_BYTES + FRAMING_BYTES)
}

/// The multipart form, as documented (the handler reads the parts as a stream).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DeployForm {
    /// The handler manifest, JSON.
    manifest: Manifest,
    /// The component, wasm bytes.
    #[schema(value_type = String, format = Binary)]
    component: Vec<u8>,
}

/// The result of a deploy.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
pub(crate) struct DeployedBody(Deployed);

/// A `multipart/form-data` body; any other content type is a 415.
pub(crate) struct Form(Multipart);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if essence.as_deref() != Some("multipart/form-data") {
            return Err(ApiError::unsupported_media_type(format!(
                "expected `Content-Type: multipart/form-data` with parts `manifest` and `component`, got {}",
                essence.map_or_else(|| "none".to_string(), |m| format!("`{m}`"))
            )));
        }
        Ok(Form(Multipart::from_request(req, state).await?))
    }
}

/// Reads one part, refusing it once it passes `max` bytes.
async fn read_part(mut field: Field<'_>, part: &str, max: usize) -> ApiResult<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if buf.len() + chunk.len() > max {
            return Err(ApiError::payload_too_large(format!(
                "part `{part}` is larger than {max} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Deploys a handler: validates the manifest, compiles the component,
/// stores both as a new version and activates it.
#[utoipa::path(
    post, path = "/v1/handlers", tag = "handlers", operation_id = "deploy_handler",
    security(("bearer" = ["admin"])),
    request_body(content = DeployForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = DeployedBody),
        (status = 400, description = "Not multipart, a part missing, unknown or twice, or a `manifest` that is not JSON", body = ErrorBody),
        (status = 422, description = "A manifest of the wrong shape or with invalid values, or a component that is not a valid handler", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn deploy(
    Admin(caller): Admin,
    State(ctx): State<Ctx>,
    Form(mut form): Form,
) -> ApiResult<(StatusCode, axum::Json<DeployedBody>)> {
    let mut manifest = None;
    let mut component = None;
    while let Some(field) = form.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "manifest" if manifest.is_some() => return Err(duplicate("manifest")),
            "component" if component.is_some() => return Err(duplicate("component")),
            "manifest" => {
                let bytes = read_part(field, "manifest", MANIFEST_MAX_BYTES).await?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| ApiError::bad_request("part `manifest` is not UTF-8"))?;
                manifest = Some(parse_manifest(text)?);
            }
            "component" => {
                let max = ctx.limits().max_component_bytes;
                component = Some(read_part(field, "component", max).await?);
            }
            "" => {
                return Err(ApiError::bad_request(
                    "a multipart part has no name; expected `manifest` and `component`",
                ));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown multipart part `{other}`; expected `manifest` and `component`"
                )));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| missing("manifest"))?;
    let wasm = component.ok_or_else(|| missing("component"))?;
    let actor = caller.actor();
    let deployed = ctx
        .with_dispatcher(move |d| d.deploy(manifest, &wasm, &actor))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(DeployedBody(deployed))))
}

/// The `manifest` part: text that is not JSON is a malformed request
/// (400); JSON of the wrong shape or with invalid values is unprocessable
/// (422, naming the field), as for every other JSON body.
fn parse_manifest(text: &str) -> ApiResult<Manifest> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::bad_request(format!("part `manifest` is not valid JSON: {e}")))?;
    Manifest::from_json(text).map_err(|e| ApiError::unprocessable(format!("part `manifest`: {e}")))
}

fn duplicate(part: &str) -> ApiError {
    ApiError::bad_request(format!("multipart part `{part}` is given twice"))
}

fn missing(part: &str) -> ApiError {
    ApiError::bad_request(format!("missing multipart part `{part}`"))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use super::*;
    use crate::api::testutil::{Reply, TestApi};

    const BOUNDARY: &str = "hookbox-test-boundary";

    /// Multipart parts: name and content.
    type Parts<'a> = &'a [(&'a str, &'a [u8])];

    fn form(parts: Parts<'_>) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, bytes) in parts {
            body.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    async fn deploy(api: &TestApi, parts: Parts<'_>) -> Reply {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        api.send(
            Method::POST,
            "/v1/handlers",
            Some(&api.admin),
            Some((&ct, form(parts))),
        )
        .await
    }

    fn manifest() -> Vec<u8> {
        json!({"name": "greeter", "subscription": {"events": ["message"]}})
            .to_string()
            .into_bytes()
    }

    /// An empty component: the preamble only. Valid binary, no handler export.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[tokio::test]
    async fn parts_are_checked_by_name() {
        let api = TestApi::new();
        let m = manifest();
        let cases: &[(Parts<'_>, &str)] = &[
            (&[("manifest", &m)], "`component`"),
            (&[("component", EMPTY_COMPONENT)], "`manifest`"),
            (
                &[("manifest", &m), ("manifest", &m)],
                "`manifest` is given twice",
            ),
            (
                &[("component", b"a"), ("component", b"b")],
                "`component` is given twice",
            ),
            (&[("manifest", &m), ("readme", b"hi")], "`readme`"),
            (&[("manifest", b"{\"name\": ")], "not valid JSON"),
            (&[("manifest", b"\xff\xfe")], "UTF-8"),
        ];
        for (parts, needle) in cases {
            let m = deploy(&api, parts)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
            assert!(m.contains(needle), "{needle}: {m}");
        }
    }

    #[tokio::test]
    async fn a_manifest_of_the_wrong_shape_is_unprocessable() {
        let api = TestApi::new();
        let cases: &[(serde_json::Value, &str)] = &[
            (json!({}), "name"),
            (
                json!({"name": 1, "subscription": {"events": ["x"]}}),
                "name",
            ),
            (
                json!({"name": "Bad Name", "subscription": {"events": ["x"]}}),
                "name",
            ),
            (
                json!({"name": "a", "subscription": {"events": []}}),
                "subscription.events",
            ),
            (
                json!({"name": "a", "subscription": {"events": ["x"]}, "retries": 3}),
                "retries",
            ),
            (
                json!({"name": "a", "subscription": {"events": ["x"]}, "limits": {"fuel": 0}}),
                "fuel",
            ),
        ];
        for (m, needle) in cases {
            let text = m.to_string().into_bytes();
            let r = deploy(&api, &[("manifest", &text), ("component", EMPTY_COMPONENT)]).await;
            let msg = r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
            assert!(msg.contains(needle), "{m}: {msg}");
        }
        assert!(api.store().handlers().unwrap().is_empty());
    }

    #[tokio::test]
    async fn only_multipart_is_accepted() {
        let api = TestApi::new();
        let r = api
            .json(
                Method::POST,
                "/v1/handlers",
                &api.admin,
                &json!({"manifest": {}}),
            )
            .await;
        let m = r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        assert!(m.contains("multipart/form-data"), "{m}");
        let r = api
            .send(
                Method::POST,
                "/v1/handlers",
                Some(&api.admin),
                Some(("multipart/form-data", b"x".to_vec())),
            )
            .await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
    }

    #[tokio::test]
    async fn a_component_that_is_not_a_handler_is_unprocessable() {
        let api = TestApi::new();
        let m = manifest();
        let r = deploy(&api, &[("manifest", &m), ("component", EMPTY_COMPONENT)]).await;
        r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        let r = deploy(&api, &[("manifest", &m), ("component", b"garbage")]).await;
        r.error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert!(api.store().handlers().unwrap().is_empty());
    }

    #[tokio::test]
    async fn oversized_components_are_refused_by_name() {
        let api = TestApi::with_limits(ApiLimits {
            max_component_bytes: 1000,
            ..ApiLimits::default()
        });
        let m = manifest();
        let big = vec![0u8; 1001];
        let r = deploy(&api, &[("manifest", &m), ("component", &big)]).await;
        let msg = r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        assert!(msg.contains("`component`"), "{msg}");
        // The route's own body limit, hit before any part (in the preamble).
        let mut body = vec![b'x'; body_limit(&api.limits()) + 1];
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&form(&[("manifest", &m)]));
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let r = api
            .send(
                Method::POST,
                "/v1/handlers",
                Some(&api.admin),
                Some((&ct, body)),
            )
            .await;
        r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
}
