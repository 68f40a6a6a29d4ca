//! GET /api/metrics/summary: statistics of one metric type over a window,
//! plus context from the external service behind the circuit breaker.
//!
//! Every answer includes every acknowledged metric. The type's journal
//! headers (one key-value read) say exactly which metrics exist; the Redis
//! cache answers in one `GET` when nothing changed since it was filled
//! (HIT), or hands back the window's folded aggregates when only the journal
//! changed, so only the journal's items are added (PARTIAL). See
//! `analytics_core::summary_cache`.

mod external;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::kv::Reader;
use analytics_platform::core::pending::{journal_keys, Pending};
use analytics_platform::core::query::Query;
use analytics_platform::core::summary::{window_aggregate, with_pending, SummaryRequest};
use analytics_platform::core::summary_cache::{
    cache_key, context_key, entry_ttl_ms, folded_key, read_answer, read_folded, store_args, STORE_SCRIPT,
};
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
    /// The cached answer, computed at the current state.
    Hit,
    /// The cached folded aggregates plus the journal's metrics.
    Partial,
    /// Computed from the aggregates.
    Miss,
    /// The cache is off or Redis is unreachable: computed without it.
    Bypass,
}

impl std::fmt::Display for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cache::Hit => "HIT",
            Cache::Partial => "PARTIAL",
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
    // The journal first: what it holds is what every answer must include.
    let keys = journal_keys(&summary.metric_type);
    let journals = kv.get_many(&keys).map_err(unavailable)?;
    let headers = Pending::headers(&keys, &journals).map_err(unavailable)?;
    let (state, folded_state) = (Pending::state(&headers), Pending::folded_state(&headers));

    let redis = Redis::connect().map_err(|e| eprintln!("summary cache unavailable: {e}")).ok();
    let (cache_key, folded_key) = (cache_key(&summary), folded_key(&summary));
    let context_key = context_key(&summary.metric_type);
    let mut cache = Cache::Bypass;
    let mut cached_folded = None;
    let mut cached_context = None;
    if let (Some(redis), true) = (&redis, ttl > 0) {
        let looked_up = redis.get(&cache_key).and_then(|entry| {
            if let Some(body) = entry.as_deref().and_then(|e| read_answer(e, &state)) {
                return Ok(Err(body.to_vec()));
            }
            redis.mget(&[&folded_key, &context_key]).map(Ok)
        });
        match looked_up {
            Ok(Err(body)) => return Ok((Cache::Hit, body)),
            Ok(Ok(mut found)) => {
                cache = Cache::Miss;
                cached_context = Some(found.pop().flatten());
                cached_folded = found.pop().flatten().and_then(|entry| read_folded(&entry, &folded_state));
            }
            Err(e) => eprintln!("summary cache unavailable: {e}"),
        }
    }

    let pending = Pending::decode(&keys, &journals).map_err(unavailable)?;
    let (aggregate, folded_to_keep) = match cached_folded {
        Some(folded) => {
            cache = Cache::Partial;
            (with_pending(&folded, &summary, &pending), None)
        }
        None => {
            let window = window_aggregate(&mut kv, &summary, &pending).map_err(unavailable)?;
            (window.total, window.folded)
        }
    };
    let mut body = summary.report(&aggregate, now);
    body["external_data"] = external::context(redis.as_ref(), &summary.metric_type, cached_context)?;
    let body = body.to_string();
    if let (Cache::Miss | Cache::Partial, Some(redis)) = (cache, &redis) {
        let folded = folded_to_keep.as_ref().map(|a| (folded_state.as_str(), a));
        let args = store_args(entry_ttl_ms(&summary, ttl, now), &state, body.as_bytes(), folded);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let keys: &[&str] = if folded.is_some() { &[&cache_key, &folded_key] } else { &[&cache_key] };
        if let Err(e) = redis.eval(STORE_SCRIPT, keys, &args) {
            eprintln!("summary cache write failed: {e}");
        }
    }
    Ok((cache, body.into_bytes()))
}
