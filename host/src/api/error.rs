//! The one error type of the HTTP API. [`ApiError`] owns the mapping from
//! every failure (ours, the dispatcher's, the store's, axum's extractors') to
//! a status and the JSON error shape
//! `{"error": {"code": "<snake_case>", "message": "<for humans>"}}`.
//!
//! Client mistakes get a 4xx with a precise message; our own failures get a
//! 5xx with a generic message, and the details go to the log, never to the
//! client.

use std::fmt;
use std::time::Duration;

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dispatch::{AcceptError, DeployError, DispatchError};
use crate::store::StoreError;

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `unprocessable`, `too_many_requests`,
    /// `unavailable` or `internal`.
    pub code: String,
    /// A precise explanation for humans (generic for 5xx).
    pub message: String,
}

/// An API failure: a status, a code and a message, plus `Retry-After` for 429.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

/// What clients see for any 5xx but 503: the details are in our log.
const INTERNAL_MESSAGE: &str = "internal error; the details are in the server log";

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    pub(crate) fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub(crate) fn too_many_requests(message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// One of our own failures: logged in full, answered generically.
    pub(crate) fn internal(context: &str, error: impl fmt::Display) -> Self {
        tracing::error!(error = %error, context, "Internal error in the API");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    }

    /// Maps an axum rejection (which knows its status and a precise text).
    fn from_rejection(status: StatusCode, text: String) -> Self {
        if status.is_server_error() {
            Self::internal("request extraction", text)
        } else {
            Self::new(status, text)
        }
    }

    /// The HTTP status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The snake_case code of a status.
    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "bad_request",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hookbox\""),
            );
        }
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(after).into());
        }
        response
    }
}

/// `Retry-After` is whole seconds: round up, and never say 0.
fn retry_after_secs(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The store's messages name the object ("not found: handler x").
        match e {
            e @ StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            e @ StoreError::Conflict(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            e @ StoreError::BadInput(_) => ApiError::bad_request(e.to_string()),
            e @ StoreError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            other => ApiError::internal("store", other),
        }
    }
}

impl From<AcceptError> for ApiError {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::Invalid { index, error } => {
                ApiError::unprocessable(format!("event {index}: {error}"))
            }
            e @ (AcceptError::BatchTooLarge { .. } | AcceptError::TooManyDeliveries { .. }) => {
                ApiError::payload_too_large(e.to_string())
            }
            e @ AcceptError::Empty => ApiError::bad_request(e.to_string()),
            e @ AcceptError::Busy { retry_after, .. } => {
                ApiError::too_many_requests(e.to_string(), retry_after)
            }
            e @ AcceptError::ShuttingDown => ApiError::unavailable(e.to_string()),
            AcceptError::Store(e) => e.into(),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            e @ DeployError::InvalidManifest(_) => ApiError::unprocessable(e.to_string()),
            e @ DeployError::InvalidComponent(_) => ApiError::unprocessable(e.to_string()),
            e @ DeployError::TooLarge { .. } => ApiError::payload_too_large(e.to_string()),
            DeployError::Compiler(e) => ApiError::internal("compiling an upload", e),
            DeployError::Store(e) => e.into(),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            e @ DispatchError::NotFound(_) => ApiError::not_found(e.to_string()),
            DispatchError::Invalid(what) => ApiError::bad_request(what),
            DispatchError::Store(e) => e.into(),
            e @ DispatchError::Runtime(_) => ApiError::internal("dispatch", e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::from_rejection(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::from_rejection(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::from_rejection(r.status(), r.body_text())
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        Self::from_rejection(r.status(), r.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(r: MultipartError) -> Self {
        Self::from_rejection(r.status(), r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        Self::from_rejection(r.status(), r.body_text())
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal("blocking task", e)
    }
}

/// The `Result` of API handlers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let r = ApiError::internal("test", "secret path /var/lib/x").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn busy_sets_retry_after() {
        let r = ApiError::too_many_requests("busy", Duration::from_millis(1500)).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
