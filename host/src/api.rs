//! The admin HTTP API: the only module that touches axum.
//!
//! Every route is listed once, in [`routes()`]; each is an annotated handler
//! (`#[utoipa::path]`) registered through `utoipa_axum::routes!`, so the
//! router and the OpenAPI document (`/v1/openapi.json`) are built from the
//! same list and cannot drift. [`router`] turns the list into an
//! [`axum::Router`] (testable without a socket); [`serve`] runs it.
//!
//! Handlers live one concern per file under `api/`; all failures go through
//! [`error::ApiError`], which owns the HTTP mapping and the one error shape.
//! Every store or dispatcher call blocks (sled), so handlers run them with
//! [`Ctx::with_store`] / [`Ctx::with_dispatcher`] on the blocking pool.

mod auth;
mod cluster;
mod connectors;
mod dashboard;
mod dead_letters;
mod deploy;
mod doc;
mod error;
mod events;
mod extract;
mod handlers;
mod kv;
mod logs;
mod meta;
mod schemas;
mod server;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod tokens;
mod ui;
mod zulip;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use tokio::sync::watch;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::connectors::redis::RedisStatus;
use crate::connectors::webhook::WebhookStatus;
use crate::connectors::zulip::ZulipStatus;
use crate::dispatch::Dispatcher;
use crate::store::Store;
use error::{ApiError, ApiResult};

pub use error::{ErrorBody, ErrorDetail};
pub use server::raise_open_files_limit;

/// Size and time bounds of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request body on JSON routes (an event batch is the big one).
    pub max_body_bytes: usize,
    /// Largest component accepted by a deploy.
    pub max_component_bytes: usize,
    /// Longest a `POST /v1/events?wait=true` may wait for outcomes.
    pub max_wait: Duration,
    /// Longest a `POST /v1/events` waits for room in a full queue (or
    /// under its tenant's share) before it is answered 429; zero: at once.
    pub queue_wait: Duration,
}

/// The default of [`ApiLimits::queue_wait`]: room for a few dozen waiting
/// batches of 100 at the rates BENCHMARKS.md measures, and a quarter of
/// the `Retry-After` a refused client is told to wait anyway.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_millis(250);
/// The most `[api] queue_wait` may be: a publish is not a long poll.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            // 16 MiB: a full batch of small events, with room to spare.
            max_body_bytes: 16 * 1024 * 1024,
            // 50 MiB: larger than any sensible handler, even unoptimised.
            max_component_bytes: 50 * 1024 * 1024,
            // A synchronous publisher should not hold a connection for longer.
            max_wait: Duration::from_secs(60),
            queue_wait: DEFAULT_QUEUE_WAIT,
        }
    }
}

/// What the API serves from.
#[derive(Clone)]
pub struct AppState {
    /// The running dispatcher (and, through it, the store).
    pub dispatcher: Dispatcher,
    /// Body sizes and waits.
    pub limits: ApiLimits,
    /// The Zulip realms' live status (`Default`: Zulip not configured).
    pub zulip: ZulipStatus,
    /// The Redis buses' live status (`Default`: none configured).
    pub redis: RedisStatus,
    /// The webhook endpoints' counters (`Default`: none configured).
    pub webhooks: WebhookStatus,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The router's state: the [`AppState`] plus the shutdown signal that ends
/// long-lived responses (the SSE stream) so a graceful shutdown can finish.
#[derive(Clone)]
pub(crate) struct Ctx {
    app: AppState,
    shutdown: Arc<watch::Sender<bool>>,
}

impl Ctx {
    pub(crate) fn dispatcher(&self) -> &Dispatcher {
        &self.app.dispatcher
    }

    pub(crate) fn limits(&self) -> &ApiLimits {
        &self.app.limits
    }

    pub(crate) fn zulip(&self) -> &ZulipStatus {
        &self.app.zulip
    }

    pub(crate) fn redis(&self) -> &RedisStatus {
        &self.app.redis
    }

    pub(crate) fn webhooks(&self) -> &WebhookStatus {
        &self.app.webhooks
    }

    /// Runs a (blocking) store call on the blocking pool.
    pub(crate) async fn with_store<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> ApiResult<T>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let store = self.app.dispatcher.store().clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await?
            .map_err(Into::into)
    }

    /// Runs a (blocking) dispatcher call on the blocking pool.
    pub(crate) async fn with_dispatcher<T, E>(
        &self,
        f: impl FnOnce(&Dispatcher) -> Result<T, E> + Send + 'static,
    ) -> ApiResult<T>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let dispatcher = self.app.dispatcher.clone();
        tokio::task::spawn_blocking(move || f(&dispatcher))
            .await?
            .map_err(Into::into)
    }

    /// Resolves once the server starts shutting down.
    pub(crate) fn shutting_down(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone: nothing will stop us then.
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The OpenAPI metadata that is not derived from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookbox admin API",
        description = "Deploy sandboxed WebAssembly event handlers, publish events, read outcomes."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "meta", description = "Health, readiness, metrics, the cluster's nodes, this document"),
        (name = "handlers", description = "Deploy and manage handlers"),
        (name = "events", description = "Publish events and follow their deliveries"),
        (name = "logs", description = "Delivery log, stats and the live stream"),
        (name = "dead-letters", description = "Deliveries that exhausted their retries"),
        (name = "tokens", description = "API tokens and the audit log"),
        (name = "zulip", description = "Zulip realms: connection state and counters"),
        (name = "connectors", description = "Redis buses and webhook endpoints: state and counters"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` scheme the routes' `security(...)` refer to; the
/// scope a route needs is the role listed there (OpenAPI 3.1).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route of the API, in one place.
fn routes(limits: &ApiLimits) -> OpenApiRouter<Ctx> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(handlers::list))
        .routes(routes!(deploy::deploy).layer(DefaultBodyLimit::max(deploy::body_limit(limits))))
        .routes(routes!(handlers::show, handlers::delete))
        .routes(routes!(handlers::versions))
        .routes(routes!(handlers::rollback))
        .routes(routes!(handlers::enable))
        .routes(routes!(handlers::disable))
        .routes(routes!(handlers::set_config))
        .routes(routes!(kv::list))
        .routes(routes!(kv::get))
        .routes(routes!(events::publish))
        .routes(routes!(events::show))
        .routes(routes!(logs::logs))
        .routes(routes!(logs::stats))
        .routes(routes!(cluster::cluster))
        .routes(routes!(stream::stream))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(schemas::list))
        .routes(routes!(schemas::show, schemas::put, schemas::delete))
        .routes(routes!(tokens::audit))
        .routes(routes!(dead_letters::list, dead_letters::purge))
        .routes(routes!(dead_letters::show))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(dead_letters::replay_bulk))
        .routes(routes!(zulip::status))
        .routes(routes!(connectors::redis))
        .routes(routes!(connectors::webhooks))
        .routes(routes!(dashboard::whoami))
        .routes(routes!(dashboard::series))
}

/// The OpenAPI document of [`routes()`].
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes(&ApiLimits::default()).into_openapi();
    doc::mark_optional_bodies(&mut doc);
    doc
}

/// The API as a router, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    build(state, Arc::new(watch::channel(false).0))
}

fn build(state: AppState, shutdown: Arc<watch::Sender<bool>>) -> Router {
    let (router, _) = routes(&state.limits).split_for_parts();
    let limits = state.limits.clone();
    let ctx = Ctx {
        app: state,
        shutdown,
    };
    ui::routes(router)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(server::read_small_body))
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            server::gate,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(ctx)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} does not accept {method} (see the `Allow` header)",
        uri.path()
    ))
}

/// Serves the API on `listener` until `shutdown` resolves, then stops taking
/// connections, ends the live streams and lets in-flight requests finish.
/// Slow clients time out ([`server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = Arc::new(watch::channel(false).0);
    let app = build(state, stop.clone());
    server::run(listener, app, async move {
        shutdown.await;
        stop.send_replace(true);
    })
    .await
}
