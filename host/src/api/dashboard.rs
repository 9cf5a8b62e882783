//! The two read routes the dashboard needs beyond the rest of the API:
//! `GET /v1/whoami` (which token is signed in, so the dashboard shows only
//! what it may see) and `GET /v1/series` (the last hour of outcomes and
//! latency, from the dispatcher's in-memory ring, for the charts). Both are
//! plain API routes, usable by any client.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::Ctx;
use super::auth::{AllTenantsReader, Authenticated};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Query;
use crate::dispatch::{SERIES_SECONDS, SeriesWindow};
use crate::store::TokenRecord;

/// The token this request was made with (never its secret).
#[utoipa::path(
    get, path = "/v1/whoami", tag = "tokens", operation_id = "whoami",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's token: name, scopes, tenants, event types",
         body = TokenRecord),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn whoami(Authenticated(caller): Authenticated) -> axum::Json<TokenRecord> {
    axum::Json(caller.token)
}

/// Query of `GET /v1/series`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SeriesParams {
    /// How far back, in seconds: 1 to 3600 (default 3600).
    #[param(minimum = 1, maximum = 3600)]
    seconds: Option<u64>,
    /// Seconds per point: 1 to `seconds` (default 10).
    #[param(minimum = 1, maximum = 3600)]
    step: Option<u64>,
}

/// Default seconds per point: 360 points for the hour.
const DEFAULT_STEP_S: u64 = 10;

/// Deliveries by outcome and p50/p99 latency over the last hour, kept in
/// memory per second (a restart starts it empty).
///
/// Tokens restricted to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/v1/series", tag = "logs", operation_id = "series",
    security(("bearer" = ["read"])),
    params(SeriesParams),
    responses(
        (status = 200, body = SeriesWindow),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn series(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
    Query(p): Query<SeriesParams>,
) -> ApiResult<axum::Json<SeriesWindow>> {
    let seconds = p.seconds.unwrap_or(SERIES_SECONDS);
    if !(1..=SERIES_SECONDS).contains(&seconds) {
        return Err(ApiError::bad_request(format!(
            "`seconds` must be 1 to {SERIES_SECONDS}, not {seconds}"
        )));
    }
    let step = p.step.unwrap_or(DEFAULT_STEP_S.min(seconds));
    if !(1..=seconds).contains(&step) {
        return Err(ApiError::bad_request(format!(
            "`step` must be 1 to `seconds` ({seconds}), not {step}"
        )));
    }
    Ok(axum::Json(ctx.dispatcher().metrics().series(seconds, step)))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testutil::TestApi;
    use crate::store::Scope;

    #[tokio::test]
    async fn whoami_names_the_token_and_never_its_secret() {
        let api = TestApi::new();
        let r = api.get("/v1/whoami", &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["scopes"], json!(["read"]));
        assert!(!r.json.to_string().contains(&api.read), "{}", r.json);
        let r = api.get("/v1/whoami", "hbx_nope").await;
        r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    #[tokio::test]
    async fn series_counts_deliveries_and_checks_its_query() {
        let api = TestApi::new();
        api.dispatcher
            .metrics()
            .delivery("h", "ok", std::time::Duration::from_micros(50), 1);
        let r = api.get("/v1/series?seconds=60&step=60", &api.read).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["step_s"], 60);
        assert_eq!(r.json["points"][0]["deliveries"]["ok"], 1, "{}", r.json);
        let r = api.get("/v1/series", &api.read).await;
        assert_eq!(r.json["points"].as_array().unwrap().len(), 360);
        for bad in ["seconds=0", "seconds=3601", "seconds=10&step=11", "step=0"] {
            let r = api.get(&format!("/v1/series?{bad}"), &api.read).await;
            r.error(StatusCode::BAD_REQUEST, "bad_request");
        }
        let acme = api.scoped_token(Scope::Read, &["acme"], &[]);
        let r = api.get("/v1/series", &acme).await;
        r.error(StatusCode::FORBIDDEN, "forbidden");
    }
}
