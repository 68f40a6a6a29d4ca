//! GET /api/circuit-breaker/status: the shared circuit breaker's state.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::breaker::{Breaker, STATE_KEY, SUCCESSES_KEY};
use analytics_platform::core::config as settings;
use analytics_platform::core::time::format_timestamp;
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use serde_json::{json, Value};
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    Ok(match status(&request) {
        Ok(body) => respond::json(200, &body),
        Err(e) => respond::error(&e, ALLOW),
    })
}

fn status(request: &Request) -> Result<Value, ApiError> {
    respond::require_method(request.method(), ALLOW)?;
    let policy = settings::breaker(config::lookup())?;
    let unavailable = |e: String| ApiError::unavailable(format!("the circuit breaker's state lives in Redis, which is unavailable: {e}"));
    let redis = Redis::connect().map_err(unavailable)?;
    let breaker = Breaker::decode(redis.get(STATE_KEY).map_err(unavailable)?.as_deref());
    let successes = redis
        .get(SUCCESSES_KEY)
        .map_err(unavailable)?
        .and_then(|b| String::from_utf8(b).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let time = |ms: Option<i64>| ms.map_or(Value::Null, |t| Value::String(format_timestamp(t)));
    Ok(json!({
        "state": breaker.effective_state(&policy, clock::now_ms()).name(),
        "failure_count": breaker.failure_count,
        "success_count": successes,
        "failure_threshold": policy.failure_threshold,
        "reset_timeout_seconds": policy.reset_timeout_ms as f64 / 1000.0,
        "opened_at": time(breaker.opened_at_ms),
        "next_attempt_at": time(breaker.next_attempt_ms(&policy)),
    }))
}
