//! Extractors that wrap axum's so that every rejection (bad JSON, wrong
//! content type, body too large, bad query string, bad path) is an
//! [`ApiError`] in the one JSON error shape, never axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body (`Content-Type: application/json` required).
#[derive(Debug)]
pub(crate) struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

/// A JSON body that may be left out entirely (an empty body is `T::default()`);
/// when present it must be JSON with a JSON content type.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        Ok(OptionalJson(parse_json(&headers, &bytes)?))
    }
}

/// Checks the content type, then parses `bytes` as JSON with a message that
/// names the path to the offending field.
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    require_json_content_type(headers)?;
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
    Ok(value)
}

/// `application/json` or `application/<something>+json`, parameters allowed.
pub(crate) fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence {
        Some(m) if m == "application/json" => Ok(()),
        Some(m) if m.starts_with("application/") && m.ends_with("+json") => Ok(()),
        Some(m) => Err(ApiError::unsupported_media_type(format!(
            "expected `Content-Type: application/json`, got `{m}`"
        ))),
        None => Err(ApiError::unsupported_media_type(
            "expected `Content-Type: application/json`; the request has no content type",
        )),
    }
}

/// A query string; unknown parameters and bad values are 400s naming them.
#[derive(Debug)]
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Path parameters.
#[derive(Debug)]
pub(crate) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// Page size when a query gives no `limit`.
pub(crate) const PAGE_DEFAULT: usize = 100;
/// Largest `limit` a query may ask for (the store caps pages at the same size).
pub(crate) const PAGE_MAX: usize = 1000;

/// The page size of a `limit` query parameter: 1 to [`PAGE_MAX`].
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(n @ 1..=PAGE_MAX) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "`limit` is {n}; it must be 1 to {PAGE_MAX}"
        ))),
    }
}

/// A time query parameter (`since`, `until`, `before`): milliseconds since
/// the Unix epoch, or an RFC 3339 timestamp in UTC (`2024-05-01T12:00:00Z`).
pub(crate) fn parse_time(param: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(v) = value else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Some(ms));
    }
    let t = humantime::parse_rfc3339_weak(v).map_err(|e| {
        ApiError::bad_request(format!(
            "`{param}` {v:?} is neither milliseconds since the epoch nor an RFC 3339 UTC time: {e}"
        ))
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::bad_request(format!("`{param}` {v:?} is before 1970")))?
        .as_millis();
    Ok(Some(u64::try_from(ms).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    #[test]
    fn times_are_ms_or_rfc3339() {
        assert_eq!(parse_time("since", None).unwrap(), None);
        assert_eq!(
            parse_time("since", Some("1700000000000")).unwrap(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("since", Some("2024-01-01T00:00:00Z")).unwrap(),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_time("since", Some("2024-01-01T00:00:00.5Z")).unwrap(),
            Some(1_704_067_200_500)
        );
        let e = parse_time("until", Some("yesterday")).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None).unwrap(), PAGE_DEFAULT);
        assert_eq!(page_limit(Some(PAGE_MAX)).unwrap(), PAGE_MAX);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(PAGE_MAX + 1)).is_err());
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            require_json_content_type(&h).is_ok()
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(with("application/problem+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(require_json_content_type(&HeaderMap::new()).is_err());
    }
}
