//! `GET /v1/cluster`: the nodes of a cluster (`[cluster]` in the config),
//! each as its last heartbeat says — its load and the handlers it takes
//! deliveries for; in single-node mode, just that.

use axum::extract::State;

use super::Ctx;
use super::auth::AllTenantsReader;
use super::error::{ApiResult, ErrorBody};
use crate::dispatch::ClusterStatus;

/// The cluster's nodes, their load and what they run.
///
/// Every node with a heartbeat in the last few seconds. Tokens restricted
/// to tenants are refused (403): this spans every tenant.
#[utoipa::path(
    get, path = "/v1/cluster", tag = "meta", operation_id = "read_cluster",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, body = ClusterStatus),
        (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody, description = "NATS did not answer"),
    ),
)]
pub(crate) async fn cluster(
    _: AllTenantsReader,
    State(ctx): State<Ctx>,
) -> ApiResult<axum::Json<ClusterStatus>> {
    let status = ctx.with_dispatcher(|d| d.cluster()).await?;
    Ok(axum::Json(status))
}
