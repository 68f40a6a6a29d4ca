//! GET /api/metrics/summary: statistics of one metric type over a window,
//! served read-through from a Redis cache that is versioned per type, plus
//! context from the external service behind the circuit breaker.

mod external;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::query::Query;
use analytics_platform::core::store::version_key;
use analytics_platform::core::summary::{decode_cached, encode_cached, window_aggregate, SummaryRequest};
use analytics_platform::kv::Kv;
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
fn handle(request: Request) -> anyhow::Result<Response> {
    Ok(match summarize(&request) {
        Ok((cache, body)) => respond::raw_json(200, body, &[("x-cache", cache.to_string())]),
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

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

/// The answer and how the cache took part; the body is serialised JSON.
fn summarize(request: &Request) -> Result<(Cache, Vec<u8>), ApiError> {
    respond::require_method(request.method(), ALLOW)?;
    let now = clock::now_ms();
    let summary = SummaryRequest::parse(&Query::parse(request.query())?, now)?;
    let ttl = settings::whole(config::lookup(), "cache_ttl_seconds", 0, 86_400 * 30)?;
    let mut kv = Kv::open_default().map_err(unavailable)?;
    // Every ingest bumps the type's version before it answers, so a cached
    // answer computed at an older version is never served.
    let version = kv.counter(&version_key(&summary.metric_type)).map_err(unavailable)?;

    let redis = Redis::connect().map_err(|e| eprintln!("summary cache unavailable: {e}")).ok();
    let cache_key = summary.cache_key();
    let mut cache = Cache::Bypass;
    if let (Some(redis), true) = (&redis, ttl > 0) {
        match redis.get(&cache_key) {
            Ok(Some(entry)) => match decode_cached(&entry) {
                Some((cached_version, body)) if cached_version == version => return Ok((Cache::Hit, body.to_vec())),
                _ => cache = Cache::Miss,
            },
            Ok(None) => cache = Cache::Miss,
            Err(e) => eprintln!("summary cache unavailable: {e}"),
        }
    }

    let aggregate = window_aggregate(&mut kv, &summary).map_err(unavailable)?;
    let mut body = summary.report(&aggregate, now);
    body["external_data"] = external::context(redis.as_ref(), &summary.metric_type)?;
    let body = body.to_string();
    if let (Cache::Miss, Some(redis)) = (cache, &redis) {
        if let Err(e) = redis.set_ex(&cache_key, &encode_cached(version, &body), ttl) {
            eprintln!("summary cache write failed: {e}");
        }
    }
    Ok((cache, body.into_bytes()))
}
