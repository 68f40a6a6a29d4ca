//! GET /: what this API is and which endpoints it has. Also the catch-all
//! route, so an unknown path gets a JSON 404 instead of an empty one.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::auth::Mode;
use analytics_platform::{gate, respond};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    let path = request.path();
    if path != "/" && !path.is_empty() {
        return Ok(respond::error(&ApiError::not_found(path), ALLOW));
    }
    if let Err(e) = respond::require_method(request.method(), ALLOW) {
        return Ok(respond::error(&e, ALLOW));
    }
    let endpoint = |method: &str, path: &str, description: &str| json!({"method": method, "path": path, "description": description});
    let auth = match gate::mode() {
        Ok(Mode::Open) => "open: requests without a key may write and read the default project (set auth=required)",
        Ok(Mode::Required) => "required: send an API key as Authorization: Bearer <key> or X-API-Key",
        Err(e) => return Ok(respond::error(&e, ALLOW)),
    };
    Ok(respond::json(
        200,
        &json!({
            "name": "Resilient Analytics API",
            "version": env!("CARGO_PKG_VERSION"),
            "auth": auth,
            "endpoints": [
                endpoint("POST", "/api/metrics", "ingest a metric {timestamp, value, type, id?, user_id?, properties?}"),
                endpoint("POST", "/api/metrics/batch", "ingest up to 1000 metrics: a JSON array or NDJSON"),
                endpoint("GET", "/api/metrics/summary", "statistics for ?type= over ?period= (all|hourly|daily|weekly|monthly) or ?from=&to="),
                endpoint("GET", "/api/metrics/stream", "the summary's query as Server-Sent Events, sent again whenever it changes"),
                endpoint("GET", "/api/metrics/series", "one point per ?step= for ?type= from ?from= to ?to="),
                endpoint("GET", "/api/metrics/list", "metrics newest first: ?type=&limit=&from=&to=&cursor="),
                endpoint("GET", "/api/stats/active-users", "distinct users per ?interval= (day|week|month), ?type= optional"),
                endpoint("GET", "/api/stats/retention", "cohorts by first active ?interval= (day|week) over ?periods="),
                endpoint("GET", "/api/stats/top-types", "types by number of metrics from ?from= to ?to=, ?limit="),
                endpoint("POST", "/api/keys", "create an API key {name, scopes, rate_limit_requests?, allowed_origins?} (admin)"),
                endpoint("GET", "/api/keys", "the project's API keys, without their secrets (admin)"),
                endpoint("DELETE", "/api/keys/{id}", "revoke an API key (admin)"),
                endpoint("GET", "/api/users/{user_id}/export", "everything stored about a user (admin)"),
                endpoint("DELETE", "/api/users/{user_id}", "erase a user's metrics and records; aggregates keep counting them (admin)"),
                endpoint("GET", "/api/circuit-breaker/status", "state of the circuit breaker around the external service"),
                endpoint("GET", "/api/simulator/config", "the external-service simulator's settings and call count"),
                endpoint("PUT", "/api/simulator/config", "change the simulator's failure_rate and latency_ms"),
                endpoint("GET", "/health", "health of Redis and the key-value store"),
                endpoint("GET", "/openapi.json", "this API's OpenAPI 3.1 document"),
                endpoint("GET", "/docs", "interactive API reference (Swagger UI) with try-it-out"),
                endpoint("GET", "/dashboard", "a live dashboard page: types, summary, chart, breaker and health"),
            ],
        }),
    ))
}
