//! GET /api/metrics/summary: statistics of one metric type over a window,
//! served read-through from a Redis cache that is versioned per type, plus
//! context from the external service behind the circuit breaker.

mod external;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::query::Query;
use analytics_platform::core::store::version_key;
use analytics_platform::core::summary::{window_aggregate, SummaryRequest};
use analytics_platform::kv::Kv;
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use serde_json::{json, Value};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
fn handle(request: Request) -> anyhow::Result<Response> {
    Ok(match summarize(&request) {
        Ok((cache, body)) => respond::json_with(200, &body, &[("x-cache", cache.to_string())]),
        Err(e) => respond::error(&e, ALLOW),
    })
}

/// How the cache took part in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    Hit,
    Miss,
    /// The cache is off or Redis is unreachable: computed without it.
    Bypass,
}

impl std::fmt::Display for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cache::Hit => "HIT",
            Cache::Miss => "MISS",
            Cache::Bypass => "BYPASS",
        })
    }
}

fn summarize(request: &Request) -> Result<(Cache, Value), ApiError> {
    respond::require_method(request.method(), ALLOW)?;
    let now = clock::now_ms();
    let summary = SummaryRequest::parse(&Query::parse(request.query())?, now)?;
    let ttl = settings::whole(config::lookup(), "cache_ttl_seconds", 0, 86_400 * 30)?;
    let mut kv = Kv::open_default().map_err(|e| ApiError::unavailable(format!("key-value store: {e}")))?;
    // Every ingest bumps the type's version before it answers, so a cached
    // answer computed at an older version is never served.
    // Read through `increment(.., 0)`: the stored encoding differs by backend
    // (8 bytes on SQLite, decimal text on Redis), the returned number does not.
    let version = kv
        .increment(&version_key(&summary.metric_type), 0)
        .map_err(|e| ApiError::unavailable(format!("key-value store: {e}")))?;

    let redis = Redis::connect().map_err(|e| eprintln!("summary cache unavailable: {e}")).ok();
    let cache_key = summary.cache_key();
    let mut cache = Cache::Bypass;
    if let (Some(redis), true) = (&redis, ttl > 0) {
        match redis.get(&cache_key) {
            Ok(Some(bytes)) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(cached) if cached["version"] == json!(version) => return Ok((Cache::Hit, cached["body"].clone())),
                _ => cache = Cache::Miss,
            },
            Ok(None) => cache = Cache::Miss,
            Err(e) => eprintln!("summary cache unavailable: {e}"),
        }
    }

    let aggregate = window_aggregate(&mut kv, &summary).map_err(|e| ApiError::unavailable(e.to_string()))?;
    let mut body = summary.report(&aggregate, now);
    body["external_data"] = external::context(redis.as_ref(), &summary.metric_type)?;
    if let (Cache::Miss, Some(redis)) = (cache, &redis) {
        let entry = json!({"version": version, "body": body});
        if let Err(e) = redis.set_ex(&cache_key, entry.to_string().as_bytes(), ttl) {
            eprintln!("summary cache write failed: {e}");
        }
    }
    Ok((cache, body))
}
