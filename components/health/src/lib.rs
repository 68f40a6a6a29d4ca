//! GET /health: whether Redis and the key-value store answer, and whether
//! the API asks for keys (`auth`: `open` says so plainly).

use analytics_platform::core::kv::Reader;
use analytics_platform::store::Store;
use analytics_platform::redis::Redis;
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
    if let Err(e) = respond::require_method(request.method(), ALLOW) {
        return Ok(respond::error(&e, ALLOW));
    }
    let redis = Redis::connect().and_then(|r| r.ping());
    let key_value = Store::open().and_then(|mut kv| kv.get("health:probe").map(drop).map_err(|e| e.to_string()));
    let state = |r: &Result<(), String>| if r.is_ok() { "healthy" } else { "unhealthy" };
    for (part, result) in [("redis", &redis), ("key_value", &key_value)] {
        if let Err(e) = result {
            eprintln!("health: {part} is unhealthy: {e}");
        }
    }
    let healthy = redis.is_ok() && key_value.is_ok();
    let mut body = json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "redis": state(&redis),
        "key_value": state(&key_value),
    });
    match gate::mode() {
        Ok(mode) => body["auth"] = json!(mode.name()),
        Err(e) => return Ok(respond::error(&e, ALLOW)),
    }
    if body["auth"] == "open" {
        body["auth_note"] = json!("open: anyone who can reach this API may write and read the default project; set auth=required and admin_token");
    }
    Ok(respond::json(if healthy { 200 } else { 503 }, &body))
}
