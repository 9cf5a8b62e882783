//! The delivery log (`GET /v1/logs`, filtered and paginated) and the
//! per-handler stats with the queue depths (`GET /v1/stats`).
//!
//! Tokens restricted to tenants see only those tenants' log lines: a tenant
//! filter outside them is refused, and without one the page is filtered
//! (so a page may hold fewer lines than `limit`; follow `next_cursor`).
//! Stats are kept per handler, not per tenant: tokens restricted to
//! tenants are refused them.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Ctx;
use super::auth::{AllTenantsReader, Reader};
use super::error::{ApiResult, ErrorBody};
use super::extract::{Query, page_limit, parse_time};
use crate::dispatch::{CircuitStatus, Residency};
use crate::event::Priority;
use crate::store::{HandlerStats, LogEntry, LogPage, LogQuery};

/// Query of `GET /v1/logs`; every given filter must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsParams {
    /// Only this handler.
    handler: Option<String>,
    /// Only this event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only this tenant.
    tenant: Option<String>,
    /// Only this outcome (`ok`, `trap`, `out_of_fuel`, `timeout`, …).
    outcome: Option<String>,
    /// Only failed attempts (any outcome but `ok` and `expired`).
    #[serde(default)]
    failed: bool,
    /// At or after: ms since the epoch, or an RFC 3339 date-time.
    #[param(schema_with = super::doc::time_param)]
    since: Option<String>,
    /// At or before: ms since the epoch, or an RFC 3339 date-time.
    #[param(schema_with = super::doc::time_param)]
    until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = super::doc::log_cursor)]
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Body of `GET /v1/logs`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogsPage {
    entries: Vec<LogEntry>,
    /// Pass as `cursor` for the next (older) page; `null` at the end.
    next_cursor: Option<String>,
}

/// Reads the delivery log, newest first.
#[utoipa::path(
    get, path = "/v1/logs", tag = "logs", operation_id = "read_logs",
    security(("bearer" = ["read"])),
    params(LogsParams),
    responses(
        (status = 200, body = LogsPage),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn logs(
    Reader(caller): Reader,
    State(ctx): State<Ctx>,
    Query(p): Query<LogsParams>,
) -> ApiResult<axum::Json<LogsPage>> {
    caller.check_tenant_filter(p.tenant.as_deref())?;
    let mut q = LogQuery {
        since_ms: parse_time("since", p.since.as_deref())?,
        until_ms: parse_time("until", p.until.as_deref())?,
        limit: page_limit(p.limit)?,
        handler: p.handler,
        event_type: p.event_type,
        tenant: p.tenant,
        outcome: p.outcome,
        failed_only: p.failed,
        cursor: p.cursor,
    };
    // One allowed tenant: let the store filter, so pages stay full.
    if q.tenant.is_none() && caller.token.tenants.len() == 1 {
        q.tenant = caller.token.tenants.first().cloned();
    }
    let LogPage {
        mut entries,
        next_cursor,
    } = ctx.with_store(move |s| s.logs(&q)).await?;
    entries.retain(|e| caller.tenant_allowed(&e.tenant));
    Ok(axum::Json(LogsPage {
        entries,
        next_cursor,
    }))
}

/// Ready deliveries per priority.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueDepths {
    critical: usize,
    high: usize,
    normal: usize,
    low: usize,
}

impl From<[usize; 4]> for QueueDepths {
    fn from(d: [usize; 4]) -> Self {
        QueueDepths {
            critical: d[Priority::Critical.index()],
            high: d[Priority::High.index()],
            normal: d[Priority::Normal.index()],
            low: d[Priority::Low.index()],
        }
    }
}

/// Body of `GET /v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Stats {
    /// One per handler, by name.
    handlers: Vec<HandlerStats>,
    queue: QueueDepths,
    /// Every loaded handler's circuit breaker, by name.
    circuits: Vec<CircuitStatus>,
    /// How much compiled handler code is loaded, against the budget.
    resident: Residency,
}

/// Delivery stats of every handler and the queue depths.
///
/// Tokens restricted to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/v1/stats", tag = "logs", operation_id = "read_stats",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, body = Stats),
        (status = "4XX", body = ErrorBody),
    ),
)]
pub(crate) async fn stats(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
) -> ApiResult<axum::Json<Stats>> {
    let handlers = ctx.with_store(|s| s.stats()).await?;
    let queue = ctx.dispatcher().queue_depths().into();
    let circuits = ctx.dispatcher().circuits();
    let resident = ctx.dispatcher().residency();
    Ok(axum::Json(Stats {
        handlers,
        queue,
        circuits,
        resident,
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testutil::{TestApi, failed_attempt};
    use crate::store::Scope;

    /// Logs one failed attempt of a fresh event of `tenant`.
    fn log_attempt(api: &TestApi, tenant: &str, time_ms: u64) {
        let (p, entry) = failed_attempt(api, tenant, time_ms);
        api.store().finish(&p, &entry).unwrap();
    }

    #[tokio::test]
    async fn filters_pages_and_tenant_scope() {
        let api = TestApi::new();
        let r = api.get("/v1/logs", &api.read).await;
        assert_eq!(r.json, json!({"entries": [], "next_cursor": null}));

        log_attempt(&api, "acme", 1_000);
        log_attempt(&api, "other", 2_000);
        log_attempt(&api, "acme", 3_000);
        let r = api
            .get("/v1/logs?failed=true&type=message&handler=h", &api.read)
            .await;
        assert_eq!(r.json["entries"].as_array().unwrap().len(), 3, "{r:?}");
        let r = api
            .get(
                "/v1/logs?since=1500&until=1970-01-01T00:00:02.5Z",
                &api.read,
            )
            .await;
        assert_eq!(r.json["entries"].as_array().unwrap().len(), 1, "{r:?}");
        assert_eq!(r.json["entries"][0]["tenant"], "other");
        let r = api.get("/v1/logs?outcome=ok", &api.read).await;
        assert_eq!(r.json["entries"], json!([]));
        let r = api.get("/v1/logs?limit=2", &api.read).await;
        assert_eq!(r.json["entries"].as_array().unwrap().len(), 2);
        let cursor = r.json["next_cursor"].as_str().unwrap().to_string();
        let r = api
            .get(&format!("/v1/logs?limit=2&cursor={cursor}"), &api.read)
            .await;
        assert_eq!(r.json["entries"][0]["time_ms"], 1_000);

        let acme = api.scoped_token(Scope::Read, &["acme"], &[]);
        let r = api.get("/v1/logs", &acme).await;
        let tenants: Vec<_> = r.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["tenant"].clone())
            .collect();
        assert_eq!(tenants, [json!("acme"), json!("acme")]);
        api.get("/v1/logs?tenant=other", &acme)
            .await
            .error(StatusCode::FORBIDDEN, "forbidden");
        let two = api.scoped_token(Scope::Read, &["acme", "third"], &[]);
        let r = api.get("/v1/logs", &two).await;
        assert_eq!(r.json["entries"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn bad_queries_are_400s() {
        let api = TestApi::new();
        for (uri, needle) in [
            ("/v1/logs?since=tomorrow", "since"),
            ("/v1/logs?until=2024-13-01T00:00:00Z", "until"),
            ("/v1/logs?limit=0", "limit"),
            ("/v1/logs?limit=ten", "limit"),
            ("/v1/logs?failed=maybe", "failed"),
            ("/v1/logs?handlr=x", "handlr"),
            ("/v1/logs?cursor=zz", "cursor"),
        ] {
            let m = api
                .get(uri, &api.read)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
            assert!(m.contains(needle), "{uri}: {m}");
        }
    }

    #[tokio::test]
    async fn stats_include_the_queue() {
        let api = TestApi::new();
        api.record_handler("greeter");
        let r = api.get("/v1/stats", &api.read).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["handlers"][0]["handler"], "greeter");
        assert_eq!(
            r.json["queue"],
            json!({"critical": 0, "high": 0, "normal": 0, "low": 0})
        );
        let resident = &r.json["resident"];
        assert_eq!(resident["modules"], 0, "{resident}");
        assert_eq!(resident["code_bytes"], 0);
        assert_eq!(resident["evictions"], 0);
        assert!(resident["budget_modules"].as_u64().unwrap() > 0);
        assert!(resident["budget_bytes"].as_u64().unwrap() > 0);
    }
}
