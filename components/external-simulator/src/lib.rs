//! The stand-in for an unreliable upstream, reached by the summary through
//! outbound HTTP (service chaining). It fails with a configurable probability
//! after a configurable latency; the settings live in Redis so every
//! instance shares them, and can be changed at run time.
//!
//! - `GET /api/simulator/data?type=T`: the upstream call.
//! - `GET /api/simulator/config`: settings and the number of calls served.
//! - `PUT /api/simulator/config`: change `failure_rate` and/or `latency_ms`
//!   (requires `Authorization: Bearer <admin_token>` when that variable is set).

use analytics_platform::core::api_error::{ApiError, FieldError};
use analytics_platform::core::config as settings;
use analytics_platform::core::time::format_timestamp;
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use serde_json::{json, Value};
use spin_sdk::http::{Method, IncomingRequest, Request, Response};
use spin_sdk::http_component;

const CONFIG_KEY: &str = "simulator:config";
const CALLS_KEY: &str = "simulator:calls";
const MAX_LATENCY_MS: u64 = 60_000;

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    // The full path, not spin-path-info: a chained request's path-info is the whole path.
    let path = request.path().trim_end_matches('/').to_string();
    let (result, allow): (Result<Response, ApiError>, &[&str]) = match path.strip_prefix("/api/simulator").unwrap_or("") {
        "/data" => (respond::require_method(request.method(), &["GET"]).and_then(|()| data(&request)), &["GET"]),
        "/config" => (
            match request.method() {
                Method::Get => read_config().map(|c| respond::json(200, &c)),
                Method::Put => update_config(&request).map(|c| respond::json(200, &c)),
                other => Err(ApiError::method_not_allowed(&other.to_string(), &["GET", "PUT"])),
            },
            &["GET", "PUT"],
        ),
        _ => (Err(ApiError::not_found(request.path())), &[]),
    };
    Ok(result.unwrap_or_else(|e| respond::error(&e, allow)))
}

/// Current settings: Redis overrides over the variables' defaults.
#[derive(Debug, Clone, Copy)]
struct Settings {
    failure_rate: f64,
    latency_ms: u64,
}

fn defaults() -> Result<Settings, ApiError> {
    let lookup = config::lookup();
    Ok(Settings {
        failure_rate: settings::decimal(lookup, "external_service_failure_rate", 0.0, 1.0)?,
        latency_ms: settings::whole(lookup, "external_service_latency_ms", 0, MAX_LATENCY_MS)?,
    })
}

fn current(redis: Option<&Redis>) -> Result<Settings, ApiError> {
    let mut s = defaults()?;
    let stored = redis.and_then(|r| r.get(CONFIG_KEY).ok().flatten());
    if let Some(stored) = stored.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        s.failure_rate = stored["failure_rate"].as_f64().unwrap_or(s.failure_rate);
        s.latency_ms = stored["latency_ms"].as_u64().unwrap_or(s.latency_ms);
    }
    Ok(s)
}

fn data(request: &Request) -> Result<Response, ApiError> {
    let redis = Redis::connect().ok();
    let s = current(redis.as_ref())?;
    if let Some(r) = &redis {
        let _ = r.incr(CALLS_KEY);
    }
    if s.latency_ms > 0 {
        clock::sleep_ms(s.latency_ms);
    }
    if clock::random_unit() < s.failure_rate {
        return Err(ApiError::new(503, "simulated_failure", "the simulated upstream failed, as configured"));
    }
    let metric_type = request
        .query()
        .split('&')
        .find_map(|p| p.strip_prefix("type="))
        .unwrap_or("")
        .to_string();
    Ok(respond::json(
        200,
        &json!({
            "source": "external-simulator",
            "type": metric_type,
            "region": "simulated-eu-1",
            "benchmark": 50.0 + clock::random_unit() * 10.0,
            "generated_at": format_timestamp(clock::now_ms()),
        }),
    ))
}

fn read_config() -> Result<Value, ApiError> {
    let redis = Redis::connect().ok();
    let s = current(redis.as_ref())?;
    let calls = redis
        .as_ref()
        .and_then(|r| r.get(CALLS_KEY).ok().flatten())
        .and_then(|b| String::from_utf8(b).ok()?.parse::<i64>().ok())
        .unwrap_or(0);
    Ok(json!({"failure_rate": s.failure_rate, "latency_ms": s.latency_ms, "calls": calls}))
}

fn authorize(request: &Request) -> Result<(), ApiError> {
    let token = settings::text(config::lookup(), "admin_token")?;
    if token.is_empty() {
        return Ok(());
    }
    let given = request.header("authorization").and_then(|v| v.as_str()).and_then(|h| h.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(401, "unauthorized", "send Authorization: Bearer <admin_token> to change the simulator"))
    }
}

fn update_config(request: &Request) -> Result<Value, ApiError> {
    authorize(request)?;
    let body: Value = serde_json::from_slice(request.body())
        .map_err(|e| ApiError::new(422, "invalid_json", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = &body else {
        return Err(ApiError::new(422, "invalid_json", "the body must be a JSON object"));
    };
    let mut errors = Vec::new();
    let failure_rate = fields.get("failure_rate").map(|v| match v.as_f64() {
        Some(f) if (0.0..=1.0).contains(&f) => Some(f),
        _ => {
            errors.push(FieldError::new("failure_rate", "must be a number from 0 to 1"));
            None
        }
    });
    let latency_ms = fields.get("latency_ms").map(|v| match v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)) {
        Some(ms) if ms <= MAX_LATENCY_MS => Some(ms),
        _ => {
            errors.push(FieldError::new("latency_ms", format!("must be a whole number from 0 to {MAX_LATENCY_MS}")));
            None
        }
    });
    if failure_rate.is_none() && latency_ms.is_none() && errors.is_empty() {
        errors.push(FieldError::new("failure_rate", "give failure_rate and/or latency_ms"));
    }
    if !errors.is_empty() {
        return Err(ApiError::new(422, "validation_failed", "invalid simulator settings").with_details(errors));
    }
    let redis = Redis::connect().map_err(|e| ApiError::unavailable(format!("simulator settings live in Redis: {e}")))?;
    let mut s = current(Some(&redis))?;
    if let Some(Some(f)) = failure_rate {
        s.failure_rate = f;
    }
    if let Some(Some(ms)) = latency_ms {
        s.latency_ms = ms;
    }
    let stored = json!({"failure_rate": s.failure_rate, "latency_ms": s.latency_ms});
    redis
        .set(CONFIG_KEY, stored.to_string().as_bytes())
        .map_err(|e| ApiError::unavailable(format!("simulator settings live in Redis: {e}")))?;
    read_config()
}
