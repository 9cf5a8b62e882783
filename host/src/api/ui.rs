//! The web dashboard: static files embedded in the binary (`host/ui/`),
//! served at `/` and `/ui/<hash>/<file>` on the API's own port. There is no
//! front-end build step: the files are plain HTML, CSS and JavaScript
//! modules, and everything the dashboard shows comes from the API with the
//! signed-in token (a Bearer header, no cookies).
//!
//! Every answer carries a Content-Security-Policy that allows scripts,
//! styles and connections from this origin only — no inline script, no
//! inline style, no `eval`, no framing — so a handler's log line or error
//! message that slipped into the page as markup still could not run. (The
//! scripts render every API string with `textContent`, never as HTML.)
//!
//! Asset paths carry a hash of all the files, so they can be cached for a
//! year (`immutable`); the page itself is revalidated (`no-cache` + ETag).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::Ctx;
use super::error::ApiError;

/// What the dashboard's pages may load: this origin's scripts, styles,
/// images and API, nothing inline, nothing else.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `index.html` names its assets under this placeholder.
const ASSETS_PLACEHOLDER: &str = "{{ASSETS}}";

/// The page.
const INDEX_HTML: &str = include_str!("../../ui/index.html");

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../ui/icon.svg"),
    ),
    ("app.js", JS, include_str!("../../ui/app.js")),
    ("api.js", JS, include_str!("../../ui/api.js")),
    ("dom.js", JS, include_str!("../../ui/dom.js")),
    ("handlers.js", JS, include_str!("../../ui/handlers.js")),
    ("live.js", JS, include_str!("../../ui/live.js")),
    ("event.js", JS, include_str!("../../ui/event.js")),
    ("charts.js", JS, include_str!("../../ui/charts.js")),
    (
        "dead_letters.js",
        JS,
        include_str!("../../ui/dead_letters.js"),
    ),
    ("sources.js", JS, include_str!("../../ui/sources.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// A hash of every embedded file: the asset directory, and the page's ETag.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    h.update(INDEX_HTML);
    for (name, _, body) in ASSETS {
        h.update(name);
        h.update(body);
    }
    hex::encode(&h.finalize()[..8])
});

/// The page with its asset paths filled in.
static INDEX: LazyLock<String> =
    LazyLock::new(|| INDEX_HTML.replace(ASSETS_PLACEHOLDER, &format!("/ui/{}", *VERSION)));

/// Adds the dashboard's routes to the API router.
pub(super) fn routes(router: Router<Ctx>) -> Router<Ctx> {
    router
        .route("/", get(index))
        .route("/ui/{version}/{file}", get(asset))
}

/// Headers every dashboard answer carries.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn index(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", *VERSION);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let cache = [
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag),
    ];
    let response = if fresh {
        (StatusCode::NOT_MODIFIED, cache).into_response()
    } else {
        (
            cache,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            INDEX.as_str(),
        )
            .into_response()
    };
    secured(response)
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return secured(ApiError::not_found(format!("no dashboard file {file:?}")).into_response());
    };
    // A page from before an upgrade asks for the old version's path: it
    // gets today's file, but not for keeps.
    let cache = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    secured(
        (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, cache),
            ],
            *body,
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode, header};

    use super::*;
    use crate::api::testutil::TestApi;

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
        let api = TestApi::new();
        let page = api.send(Method::GET, "/", None, None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(
            page.headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-cache");
        let html = std::str::from_utf8(&page.bytes).unwrap();
        assert!(!html.contains(ASSETS_PLACEHOLDER), "{html}");
        // No inline script or style anywhere in the page.
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("style="), "{html}");
        assert!(!html.contains("<style"), "{html}");

        for (name, content_type, _) in ASSETS {
            let path = format!("/ui/{}/{name}", *VERSION);
            assert!(
                html.contains(&path) || name.ends_with(".js"),
                "{name} is not linked"
            );
            let r = api.send(Method::GET, &path, None, None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(r.headers[header::CONTENT_TYPE], *content_type, "{path}");
            assert_eq!(
                r.headers[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable"
            );
            assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let old = api.send(Method::GET, "/ui/0000/app.js", None, None).await;
        assert_eq!(old.status, StatusCode::OK);
        assert_eq!(old.headers[header::CACHE_CONTROL], "no-cache");
        let missing = api.send(Method::GET, "/ui/0000/nope.js", None, None).await;
        missing.error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn an_unchanged_page_is_not_sent_again() {
        let api = TestApi::new();
        let page = api.send(Method::GET, "/", None, None).await;
        let etag = page.headers[header::ETAG].to_str().unwrap().to_string();
        let req = axum::http::Request::get("/")
            .header(header::IF_NONE_MATCH, &etag)
            .body(axum::body::Body::empty())
            .unwrap();
        let again = tower::ServiceExt::oneshot(api.router.clone(), req)
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let body = axum::body::to_bytes(again.into_body(), usize::MAX).await;
        assert!(body.unwrap().is_empty());
    }

    /// Every module the page imports is embedded (a missing one would only
    /// show in a browser).
    #[test]
    fn every_imported_module_is_embedded() {
        for (name, _, body) in ASSETS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(target) = line.split('"').nth(1) else {
                    continue;
                };
                let target = target.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == target),
                    "{name} imports {target}, which is not embedded"
                );
            }
        }
    }
}
