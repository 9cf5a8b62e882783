//! Bearer-token authentication and authorisation, as extractors: a handler
//! that takes [`Admin`], [`Publisher`] or [`Reader`] cannot run without a
//! valid token holding that scope (admin holds every scope).
//!
//! Missing, unknown or expired tokens are 401; a valid token without the
//! scope is 403. Tokens may also be restricted to tenants and event-type
//! patterns; [`Caller`] answers those questions for the routes that apply
//! them (publishing, reading logs, events, dead letters and the stream).
//! Routes whose data spans every tenant and cannot be narrowed to some
//! (stats, metrics, handler records) take [`AllTenantsReader`], which
//! refuses tokens restricted to tenants with a 403 saying why.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::Ctx;
use super::error::ApiError;
use crate::event::{EventInput, now_ms};
use crate::manifest::pattern_matches;
use crate::store::{Scope, TokenRecord};

/// Longest `Authorization` value we look at; real secrets are far shorter,
/// and this bounds the work done for garbage before touching the store.
const MAX_AUTHORIZATION_BYTES: usize = 512;

/// The authenticated token behind a request.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) token: TokenRecord,
}

impl Caller {
    /// The actor recorded in the audit log for changes made by this caller:
    /// the token's name.
    pub(crate) fn actor(&self) -> String {
        self.token.name.clone()
    }

    /// Whether the token may see or publish events of `tenant`.
    pub(crate) fn tenant_allowed(&self, tenant: &str) -> bool {
        self.token.tenants.is_empty() || self.token.tenants.iter().any(|t| t == tenant)
    }

    /// Whether the token may publish events of `event_type`.
    pub(crate) fn type_allowed(&self, event_type: &str) -> bool {
        self.token.event_types.is_empty()
            || self
                .token
                .event_types
                .iter()
                .any(|p| pattern_matches(p, event_type))
    }

    /// Refuses a batch if any event lies outside the token's tenants or types,
    /// naming the first such event.
    pub(crate) fn check_publish(&self, inputs: &[EventInput]) -> Result<(), ApiError> {
        for (index, input) in inputs.iter().enumerate() {
            if !self.tenant_allowed(&input.tenant) {
                return Err(ApiError::forbidden(format!(
                    "event {index}: this token may not publish to tenant {:?}",
                    input.tenant
                )));
            }
            if !self.type_allowed(&input.event_type) {
                return Err(ApiError::forbidden(format!(
                    "event {index}: this token may not publish events of type {:?}",
                    input.event_type
                )));
            }
        }
        Ok(())
    }

    /// Refuses an explicit tenant filter outside the token's tenants.
    pub(crate) fn check_tenant_filter(&self, tenant: Option<&str>) -> Result<(), ApiError> {
        match tenant {
            Some(t) if !self.tenant_allowed(t) => Err(ApiError::forbidden(format!(
                "this token may not read tenant {t:?}"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a token restricted to tenants on `route`, whose data spans
    /// every tenant and cannot be narrowed to the token's.
    pub(crate) fn check_all_tenants(&self, route: &str) -> Result<(), ApiError> {
        if self.token.tenants.is_empty() {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "`{route}` shows every tenant's data (handler configs and subscriptions, \
             delivery counts, metrics) and cannot be narrowed to some tenants; token {:?} \
             is restricted to tenants {:?}, so it may not read it. Its tenants' deliveries \
             are in /v1/logs, /v1/events, /v1/dead-letters and /v1/stream",
            self.token.name, self.token.tenants
        )))
    }

    fn has(&self, scope: Scope) -> bool {
        self.token
            .scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }
}

/// The lowercase name of a scope, as in the API.
pub(crate) fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Admin => "admin",
        Scope::Publish => "publish",
        Scope::Read => "read",
    }
}

/// Authenticates the bearer token of a request and checks one scope.
async fn authorise(parts: &Parts, ctx: &Ctx, scope: Scope) -> Result<Caller, ApiError> {
    let caller = authenticate(parts, ctx).await?;
    if !caller.has(scope) {
        return Err(ApiError::forbidden(format!(
            "this route needs a token with the `{}` scope; token {:?} lacks it",
            scope_name(scope),
            caller.token.name
        )));
    }
    Ok(caller)
}

/// Authenticates the bearer token of a request, whatever its scopes.
async fn authenticate(parts: &Parts, ctx: &Ctx) -> Result<Caller, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(ApiError::unauthorized("invalid token"));
    }
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the `Authorization` header must be `Bearer <token>`")
        })?
        .to_string();
    // A token that authenticated before is found without a store read, so
    // on this thread; any other goes to sled on the blocking pool.
    let token = match ctx.dispatcher().store().cached_token(&secret) {
        Some(token) => token,
        None => ctx
            .with_store(move |store| store.authenticate(&secret))
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?,
    };
    if token.expires_ms.is_some_and(|at| at <= now_ms()) {
        return Err(ApiError::unauthorized("invalid or expired token"));
    }
    Ok(Caller { token })
}

macro_rules! scope_extractor {
    ($(#[$doc:meta])* $name:ident => $scope:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub(crate) struct $name(pub Caller);

        impl FromRequestParts<Ctx> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
                authorise(parts, ctx, $scope).await.map($name)
            }
        }
    };
}

scope_extractor!(
    /// A caller holding the `admin` scope.
    Admin => Scope::Admin
);
scope_extractor!(
    /// A caller holding the `publish` scope (or `admin`).
    Publisher => Scope::Publish
);
scope_extractor!(
    /// A caller holding the `read` scope (or `admin`).
    Reader => Scope::Read
);

/// A caller with any valid token, whatever its scopes.
#[derive(Clone, Debug)]
pub(crate) struct Authenticated(pub Caller);

impl FromRequestParts<Ctx> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        authenticate(parts, ctx).await.map(Authenticated)
    }
}

/// A caller holding the `read` scope (or `admin`) for every tenant: a
/// token restricted to tenants is refused (403), because the route's data
/// spans all tenants and cannot be split per tenant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AllTenantsReader;

impl FromRequestParts<Ctx> for AllTenantsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        let caller = authorise(parts, ctx, Scope::Read).await?;
        caller.check_all_tenants(parts.uri.path())?;
        Ok(AllTenantsReader)
    }
}
