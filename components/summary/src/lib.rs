//! GET /api/metrics/summary: statistics of one metric type over a window,
//! plus context from the external service behind the circuit breaker.
//!
//! Every answer includes every acknowledged metric. One store read fetches
//! the type's journal headers, which say exactly which metrics exist, and
//! the last answer kept in the store for the window: at the current state it
//! is served as is (HIT), without Redis. Otherwise Redis hands back the
//! answer kept there (HIT), or the window's folded aggregates, and when only
//! the journal changed since they were cached, only the journal's items are
//! added (PARTIAL). A new answer goes to the store or to Redis by what each
//! costs (`analytics_core::summary_cache::placement`).

mod external;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::journal::{HEADER, SHARDS};
use analytics_platform::core::kv::{Kv as _, Reader};
use analytics_platform::core::pending::{journal_keys, Pending};
use analytics_platform::core::query::Query;
use analytics_platform::core::summary::{window_aggregate, with_pending, SummaryRequest};
use analytics_platform::core::summary_cache::{
    answer_key, cache_answer_key, computed_at, context_key, encode_answer, encode_folded, fill_key, folded_key, folded_ttl_ms, placement,
    read_answer, read_folded, Placement, FILL_SCRIPT,
};
use analytics_platform::core::app_metrics::{field, Family, COUNTERS_KEY, HIT_SAMPLE};
use analytics_platform::counters::Tally;
use analytics_platform::core::auth::Scope;
use analytics_platform::gate::{self, Admitted, Ahead};
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
fn handle(request: Request) -> anyhow::Result<Response> {
    // The request is read before the caller is let in, so that its first
    // store read goes with the key check; its errors are answered after the gate's.
    let asked = ask(&request);
    let ahead = Ahead { keys: asked.as_ref().map(first_read).unwrap_or_default(), heads: SHARDS, bytes: HEADER };
    let (mut admitted, heads) = match gate::admit_reading(&request, ALLOW, Scope::Read, &ahead) {
        Ok(admitted) => admitted,
        Err(response) => return Ok(response),
    };
    let response = match asked.and_then(|asked| summarize(asked, ahead.keys, heads, &mut admitted)) {
        Ok((cache, body)) => respond::raw_json(200, body, &[("x-cache", cache.to_string())]),
        Err(e) => {
            analytics_platform::counters::count_store_failure("summary", &e);
            respond::error(&e, ALLOW)
        }
    };
    Ok(admitted.finish(response))
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

/// What a summary request asks.
struct Asked {
    summary: SummaryRequest,
    /// `cache_ttl_seconds`.
    ttl: u64,
    now: i64,
}

fn ask(request: &Request) -> Result<Asked, ApiError> {
    let now = clock::now_ms();
    let summary = SummaryRequest::parse(&Query::parse(request.query())?, now)?;
    let ttl = settings::whole(config::lookup(), "cache_ttl_seconds", 0, 86_400 * 30)?;
    Ok(Asked { summary, ttl, now })
}

/// The first read: the journal's headers (what it holds is what every
/// answer must include) and the last answer kept in the store.
fn first_read(asked: &Asked) -> Vec<String> {
    let mut keys = journal_keys(&asked.summary.metric_type);
    if asked.ttl > 0 {
        keys.push(answer_key(&asked.summary));
    }
    keys
}

/// The answer and how the cache took part; the body is serialised JSON.
/// `keys` and `heads` are [`first_read`] and what it found.
fn summarize(asked: Asked, mut keys: Vec<String>, mut heads: Vec<Option<Vec<u8>>>, admitted: &mut Admitted) -> Result<(Cache, Vec<u8>), ApiError> {
    let Asked { summary, ttl, now } = asked;
    let (folded_key, cached_answer_key) = (admitted.redis_key(&folded_key(&summary)), admitted.redis_key(&cache_answer_key(&summary)));
    let admitted_prefix = admitted.principal.key_prefix();
    let kv = &mut admitted.store;
    let answer_key = answer_key(&summary);
    let stored_answer = if ttl > 0 { keys.pop().and(heads.pop().flatten()) } else { None };
    let headers = Pending::headers(&keys, &heads).map_err(unavailable)?;
    let (state, folded_state) = (Pending::state(&headers), Pending::folded_state(&headers));
    if let Some(body) = stored_answer.as_deref().and_then(|e| read_answer(e, &summary, &state, now, ttl * 1_000)) {
        count_sampled_hit();
        return Ok((Cache::Hit, body.to_vec()));
    }

    // Redis: the answer kept there, the folded part, the upstream context.
    let redis = Redis::connect().map_err(|e| eprintln!("summary cache unavailable: {e}")).ok();
    let (mut cached_answer, mut cached_folded, mut cached_context) = (None, None, None);
    if let (Some(redis), true) = (&redis, ttl > 0) {
        match redis.mget(&[&cached_answer_key, &folded_key, &context_key(&summary.metric_type)]) {
            Ok(mut found) => {
                cached_context = Some(found.pop().flatten());
                cached_folded = found.pop().flatten().and_then(|entry| read_folded(&entry, &folded_state));
                cached_answer = found.pop().flatten();
            }
            Err(e) => eprintln!("summary cache unavailable: {e}"),
        }
    }
    if let Some(body) = cached_answer.as_deref().and_then(|e| read_answer(e, &summary, &state, now, ttl * 1_000)) {
        count_sampled_hit();
        return Ok((Cache::Hit, body.to_vec()));
    }

    // Computed: the journal's items in full now (a store that read whole
    // values the first time gave them already: a cut one is its header only).
    let whole = heads.iter().flatten().all(|v| v.len() > HEADER);
    let journals = if whole { heads } else { kv.get_many(&keys).map_err(unavailable)? };
    let pending = Pending::decode(&keys, &journals).map_err(unavailable)?;
    let (cache, aggregate, folded_to_keep) = match (ttl, cached_folded) {
        (0, _) => (Cache::Bypass, window_aggregate(kv, &summary, &pending).map_err(unavailable)?.total, None),
        (_, Some(folded)) if Pending::folded_state(&pending.headers) == folded_state => {
            (Cache::Partial, with_pending(&folded, &summary, &pending), None)
        }
        _ => {
            let window = window_aggregate(kv, &summary, &pending).map_err(unavailable)?;
            (Cache::Miss, window.total, window.folded)
        }
    };
    let mut body = summary.report(&aggregate, now);
    body["external_data"] = external::context(redis.as_ref(), &summary.metric_type, cached_context)?;
    let body = body.to_string();
    if cache == Cache::Bypass {
        Tally::one(Family::Summaries, "bypass").send(redis.as_ref());
        return Ok((cache, body.into_bytes()));
    }
    // The journal state the answer holds: the one read just now.
    let state = Pending::state(&pending.headers);
    let folded_state = Pending::folded_state(&pending.headers);
    let answer = encode_answer(&summary, &state, now, body.as_bytes());
    let replaced = stored_answer.as_deref().and_then(computed_at).max(cached_answer.as_deref().and_then(computed_at));
    let placement = placement(replaced, now, kv.cheap_writes());
    // Of the requests that computed this answer, one stores it.
    let fill = format!("{}{}", admitted_prefix, fill_key(&summary, &state));
    let stores = match &redis {
        Some(redis) => {
            let folded = folded_to_keep.as_ref().map(|a| encode_folded(&folded_state, a));
            let counted = field(Family::Summaries, if cache == Cache::Partial { "partial" } else { "miss" });
            let (lock_ms, keep_ms) = (FILL_LOCK_MS.to_string(), folded_ttl_ms(&summary, ttl, now).to_string());
            let empty: &[u8] = b"";
            let args: [&[u8]; 6] = [
                counted.as_bytes(),
                lock_ms.as_bytes(),
                if folded.is_some() { keep_ms.as_bytes() } else { empty },
                folded.as_deref().unwrap_or(empty),
                if placement == Placement::Redis { keep_ms.as_bytes() } else { empty },
                if placement == Placement::Redis { answer.as_slice() } else { empty },
            ];
            let keys = [COUNTERS_KEY, fill.as_str(), folded_key.as_str(), cached_answer_key.as_str()];
            redis.eval_ints(FILL_SCRIPT, &keys, &args).map(|r| r == [1]).unwrap_or_else(|e| {
                eprintln!("summary cache write failed: {e}");
                true
            })
        }
        None => true,
    };
    // Without Redis the store is the only place for it.
    if stores && (placement == Placement::Store || redis.is_none()) {
        if let Err(e) = kv.set(&answer_key, &answer) {
            eprintln!("summary cache write failed: {e}");
        }
    }
    Ok((cache, body.into_bytes()))
}
