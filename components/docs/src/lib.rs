//! `GET /openapi.json`: the API's OpenAPI 3.1 document, and `GET /docs`:
//! Swagger UI rendering it, with try-it-out against this server.
//!
//! The document is written by hand in `openapi/openapi.yaml`; `build.rs`
//! checks it and renders it as JSON, embedded here. Swagger UI is the npm
//! package `swagger-ui-dist` (version below): `assets/` holds the files the
//! page needs, unchanged from the package, with its LICENSE and NOTICE, all
//! embedded, so nothing is fetched at build or run time. To update it:
//! `npm pack swagger-ui-dist@<version>`, copy the same files from the
//! tarball's `package/` into `assets/`, and change `SWAGGER_UI_VERSION`.
//!
//! Every answer carries an `ETag` and `Cache-Control`; `If-None-Match` with
//! the current tag gets a `304`. The page and the document are revalidated on
//! every use (`no-cache`); the UI's files are cached for a day, and the page
//! names them with `?v=<tag>`, so a new build is picked up at once.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::respond;
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

include!(concat!(env!("OUT_DIR"), "/etags.rs"));

/// The version of `swagger-ui-dist` in `assets/`.
pub const SWAGGER_UI_VERSION: &str = "5.35.0";

const ALLOW: &[&str] = &["GET"];

const OPENAPI_JSON: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapi.json"));
const INDEX_HTML: &str = include_str!("index.html");

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const PNG: &str = "image/png";

/// Revalidate on every use (cheap: a 304 while the ETag holds).
const REVALIDATE: &str = "no-cache";
/// The UI's files: the page asks for them by version, so a day is safe.
const ONE_DAY: &str = "public, max-age=86400";

/// The page may load only what this server serves; Swagger UI needs inline
/// styles and `data:` images (its icons).
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                           script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Files under `/docs/`: name, body, content type.
const ASSETS: &[(&str, &[u8], &str)] = &[
    ("swagger-ui.css", include_bytes!("../assets/swagger-ui.css"), CSS),
    ("swagger-ui-bundle.js", include_bytes!("../assets/swagger-ui-bundle.js"), JAVASCRIPT),
    ("swagger-initializer.js", include_bytes!("swagger-initializer.js"), JAVASCRIPT),
    ("favicon-32x32.png", include_bytes!("../assets/favicon-32x32.png"), PNG),
    ("LICENSE", include_bytes!("../assets/LICENSE"), TEXT),
    ("NOTICE", include_bytes!("../assets/NOTICE"), TEXT),
    ("swagger-ui-bundle.js.LICENSE.txt", include_bytes!("../assets/swagger-ui-bundle.js.LICENSE.txt"), TEXT),
];

/// What a path serves.
struct Served {
    body: Vec<u8>,
    content_type: &'static str,
    cache_control: &'static str,
    etag: &'static str,
    page: bool,
}

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    let path = request.path();
    let Some(served) = lookup(path) else {
        return Ok(respond::error(&ApiError::not_found(path), ALLOW));
    };
    if let Err(e) = respond::require_method(request.method(), ALLOW) {
        return Ok(respond::error(&e, ALLOW));
    }
    let if_none_match = request.header("if-none-match").and_then(|v| v.as_str());
    let mut builder = Response::builder();
    builder.header("etag", served.etag).header("cache-control", served.cache_control);
    if if_none_match.is_some_and(|tags| matches(tags, served.etag)) {
        return Ok(builder.status(304).body(Vec::new()).build());
    }
    builder.status(200).header("content-type", served.content_type).header("x-content-type-options", "nosniff");
    if served.page {
        builder.header("content-security-policy", PAGE_POLICY);
    }
    Ok(builder.body(served.body).build())
}

fn lookup(path: &str) -> Option<Served> {
    let path = path.trim_end_matches('/');
    if path == "/openapi.json" {
        return Some(Served { body: OPENAPI_JSON.to_vec(), content_type: JSON, cache_control: REVALIDATE, etag: OPENAPI_ETAG, page: false });
    }
    match path.strip_prefix("/docs")? {
        "" | "/index.html" => Some(Served {
            body: index_html().into_bytes(),
            content_type: HTML,
            cache_control: REVALIDATE,
            etag: UI_ETAG,
            page: true,
        }),
        file => {
            let name = file.strip_prefix('/')?;
            let &(_, body, content_type) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
            Some(Served { body: body.to_vec(), content_type, cache_control: ONE_DAY, etag: UI_ETAG, page: false })
        }
    }
}

/// The page, naming the UI's files by this build's tag.
fn index_html() -> String {
    INDEX_HTML.replace("{{version}}", UI_ETAG.trim_matches('"'))
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as for GET).
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_document_the_page_and_its_files() {
        for path in ["/openapi.json", "/openapi.json/", "/docs", "/docs/", "/docs/index.html", "/docs/swagger-ui-bundle.js"] {
            assert!(lookup(path).is_some(), "{path}");
        }
        for path in ["/docs/nope.js", "/docs/swagger-ui.css/x", "/docsx", "/docs/../openapi.json", "/"] {
            assert!(lookup(path).is_none(), "{path}");
        }
        let page = index_html();
        assert!(!page.contains("{{"), "{page}");
        for (name, _, _) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js") || n.ends_with(".css")) {
            assert!(page.contains(&format!("/docs/{name}?v=")), "{name}");
        }
    }

    #[test]
    fn the_bundle_is_the_version_named() {
        let (_, bundle, _) = ASSETS.iter().find(|(n, _, _)| *n == "swagger-ui-bundle.js").unwrap();
        let quoted = format!("\"{SWAGGER_UI_VERSION}\"");
        assert!(bundle.windows(quoted.len()).any(|w| w == quoted.as_bytes()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let tag = "\"0123\"";
        assert!(matches("\"0123\"", tag));
        assert!(matches("W/\"0123\"", tag));
        assert!(matches("\"x\", \"0123\"", tag));
        assert!(matches("*", tag));
        assert!(!matches("\"0124\"", tag));
        assert!(!matches("0123", tag));
    }
}
