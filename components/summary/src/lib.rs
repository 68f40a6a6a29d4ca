//! GET /api/metrics/summary: statistics of one metric type over a window,
//! plus context from the external service behind the circuit breaker.
//!
//! Every answer includes every acknowledged metric. One key-value read
//! fetches the type's journal headers, which say exactly which metrics
//! exist, and the last answer for the window: at the current state it is
//! served as is (HIT), without Redis. Otherwise Redis hands back the window's
//! folded aggregates, and when only the journal changed since they were
//! cached, only the journal's items are added (PARTIAL). See
//! `analytics_core::summary_cache`.

mod external;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::kv::{Kv as _, Reader};
use analytics_platform::core::pending::{journal_keys, Pending};
use analytics_platform::core::query::Query;
use analytics_platform::core::summary::{window_aggregate, with_pending, SummaryRequest};
use analytics_platform::core::summary_cache::{
    answer_key, context_key, encode_answer, encode_folded, fill_key, folded_key, folded_ttl_ms, read_answer, read_folded, FILL_SCRIPT,
};
use analytics_platform::core::app_metrics::{field, Family, COUNTERS_KEY, HIT_SAMPLE};
use analytics_platform::counters::Tally;
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
        Err(e) => {
            analytics_platform::counters::count_store_failure("summary", &e);
            respond::error(&e, ALLOW)
        }
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
    /// The cache is off (`cache_ttl_seconds` 0): computed without it.
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

/// Hits do not touch Redis: one in [`HIT_SAMPLE`] counts for all of them.
fn count_sampled_hit() {
    if clock::random_u128() % HIT_SAMPLE as u128 == 0 {
        let mut tally = Tally::default();
        tally.add(Family::Summaries, "hit", HIT_SAMPLE as i64);
        tally.send(Redis::connect().ok().as_ref());
    }
}

/// How long one request holds the right to store a window's new answer.
const FILL_LOCK_MS: u64 = 2_000;

/// The answer and how the cache took part; the body is serialised JSON.
fn summarize(request: &Request) -> Result<(Cache, Vec<u8>), ApiError> {
    respond::require_method(request.method(), ALLOW)?;
    let now = clock::now_ms();
    let summary = SummaryRequest::parse(&Query::parse(request.query())?, now)?;
    let ttl = settings::whole(config::lookup(), "cache_ttl_seconds", 0, 86_400 * 30)?;
    let mut kv = Kv::open_default().map_err(unavailable)?;
    // The journal first (what it holds is what every answer must include),
    // and the last answer, in one read.
    let mut keys = journal_keys(&summary.metric_type);
    let answer_key = answer_key(&summary);
    if ttl > 0 {
        keys.push(answer_key.clone());
    }
    let mut journals = kv.get_many(&keys).map_err(unavailable)?;
    let last_answer = if ttl > 0 { keys.pop().and(journals.pop().flatten()) } else { None };
    let headers = Pending::headers(&keys, &journals).map_err(unavailable)?;
    let (state, folded_state) = (Pending::state(&headers), Pending::folded_state(&headers));
    if let Some(body) = last_answer.as_deref().and_then(|e| read_answer(e, &summary, &state, now, ttl * 1_000)) {
        count_sampled_hit();
        return Ok((Cache::Hit, body.to_vec()));
    }

    let redis = Redis::connect().map_err(|e| eprintln!("summary cache unavailable: {e}")).ok();
    let folded_key = folded_key(&summary);
    let mut cached_folded = None;
    let mut cached_context = None;
    if let (Some(redis), true) = (&redis, ttl > 0) {
        match redis.mget(&[&folded_key, &context_key(&summary.metric_type)]) {
            Ok(mut found) => {
                cached_context = Some(found.pop().flatten());
                cached_folded = found.pop().flatten().and_then(|entry| read_folded(&entry, &folded_state));
            }
            Err(e) => eprintln!("summary cache unavailable: {e}"),
        }
    }

    let pending = Pending::decode(&keys, &journals).map_err(unavailable)?;
    let (cache, aggregate, folded_to_keep) = match (ttl, cached_folded) {
        (0, _) => (Cache::Bypass, window_aggregate(&mut kv, &summary, &pending).map_err(unavailable)?.total, None),
        (_, Some(folded)) => (Cache::Partial, with_pending(&folded, &summary, &pending), None),
        (_, None) => {
            let window = window_aggregate(&mut kv, &summary, &pending).map_err(unavailable)?;
            (Cache::Miss, window.total, window.folded)
        }
    };
    let mut body = summary.report(&aggregate, now);
    body["external_data"] = external::context(redis.as_ref(), &summary.metric_type, cached_context)?;
    let body = body.to_string();
    if cache == Cache::Bypass {
        Tally::one(Family::Summaries, "bypass").send(redis.as_ref());
    } else {
        // Of the requests that computed this answer, one stores it.
        let fill = fill_key(&summary, &state);
        let stores = match &redis {
            Some(redis) => {
                let folded = folded_to_keep.as_ref().map(|a| encode_folded(&folded_state, a));
                let keys: Vec<&str> =
                    [COUNTERS_KEY, fill.as_str()].into_iter().chain(folded.as_ref().map(|_| folded_key.as_str())).collect();
                let lock_ms = FILL_LOCK_MS.to_string();
                let folded_ms = folded_ttl_ms(&summary, ttl, now).to_string();
                let counted = field(Family::Summaries, if cache == Cache::Partial { "partial" } else { "miss" });
                let mut args: Vec<&[u8]> = vec![counted.as_bytes(), lock_ms.as_bytes()];
                if let Some(folded) = &folded {
                    args.extend([folded_ms.as_bytes(), folded.as_slice()]);
                }
                redis.eval_ints(FILL_SCRIPT, &keys, &args).map(|r| r == [1]).unwrap_or_else(|e| {
                    eprintln!("summary cache write failed: {e}");
                    true
                })
            }
            None => true,
        };
        if stores {
            if let Err(e) = kv.set(&answer_key, &encode_answer(&summary, &state, now, body.as_bytes())) {
                eprintln!("summary cache write failed: {e}");
            }
        }
    }
    Ok((cache, body.into_bytes()))
}
