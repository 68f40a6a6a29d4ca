//! GET /dashboard: a live page over the API. Plain HTML, CSS and a small
//! script, embedded here; the browser calls the API itself, so this
//! component needs no store, no Redis and no variables.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::respond;
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

/// The route's prefix, for hosts that do not send `spin-path-info`.
const PREFIX: &str = "/dashboard";

/// Only this origin's scripts, styles and API; nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";

/// (path under `/dashboard`, content type, body).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("", HTML, include_bytes!("../assets/index.html")),
    ("/", HTML, include_bytes!("../assets/index.html")),
    ("/index.html", HTML, include_bytes!("../assets/index.html")),
    ("/dashboard.css", "text/css; charset=utf-8", include_bytes!("../assets/dashboard.css")),
    ("/dashboard.js", "text/javascript; charset=utf-8", include_bytes!("../assets/dashboard.js")),
    ("/guard.js", "text/javascript; charset=utf-8", include_bytes!("../assets/guard.js")),
];

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    let path = asset_path(&request);
    let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return Ok(respond::error(&ApiError::not_found(request.path()), ALLOW));
    };
    if let Err(e) = respond::require_method(request.method(), ALLOW) {
        return Ok(respond::error(&e, ALLOW));
    }
    Ok(Response::builder()
        .status(200)
        .header("content-type", *content_type)
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", CSP)
        .body(body.to_vec())
        .build())
}

/// The part of the path after `/dashboard`: `""`, `"/"`, `"/dashboard.js"`, ...
fn asset_path(request: &Request) -> String {
    if let Some(info) = request.header("spin-path-info").and_then(|v| v.as_str()) {
        return info.to_string();
    }
    let path = request.path();
    path.strip_prefix(PREFIX).unwrap_or(path).to_string()
}
