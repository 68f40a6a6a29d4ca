//! GET /api/metrics/summary: statistics of one metric type over a window,
//! plus context from the external service behind the circuit breaker; and
//! GET /api/metrics/stream, the same summary as Server-Sent Events
//! whenever it changes (`stream`).
//!
//! Every answer includes every acknowledged metric. One store read fetches
//! the type's journal headers, which say exactly which metrics exist, and
//! the window's cache entry (`analytics_core::summary_cache`): its answer is
//! served as is if it was computed at the current state (HIT); if metrics
//! were appended since and the journal still holds them, only they are
//! decoded and added to the entry's aggregate (PARTIAL); otherwise the
//! window's buckets are read (MISS). Redis is opened only for the upstream
//! context when the one inside the entry is too old, and to count misses
//! (hits and partials are counted 1 in [`HIT_SAMPLE`]).

mod external;
mod stream;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::journal::{HEADER, SHARDS};
use analytics_platform::core::kv::{Kv, Reader, Swap};
use analytics_platform::core::pending::{journal_keys, Pending};
use analytics_platform::core::query::Query;
use analytics_platform::core::summary::{window_aggregate, with_items, SummaryRequest};
use analytics_platform::core::summary_cache::{answer_key, worth_keeping, Entry, Use};
use analytics_platform::core::app_metrics::{Family, HIT_SAMPLE};
use analytics_platform::counters::Tally;
use analytics_platform::core::auth::Scope;
use analytics_platform::gate::{self, Admitted, Ahead};
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use analytics_platform::handler;
use spin_sdk::http::{IncomingRequest, Request, Response, ResponseOutparam};
use spin_sdk::http_component;

pub(crate) const ALLOW: &[&str] = &["GET"];

/// The path of the streaming route (see spin.toml).
const STREAM_PATH: &str = "/api/metrics/stream";

// The handler takes the response outparam so that the stream can keep
// writing after its head is sent; a summary is sent whole.
#[http_component]
async fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
    let request = match handler::receive(incoming).await {
        Ok(request) => request,
        Err(response) => return handler::send(out, response).await,
    };
    if request.path() == STREAM_PATH {
        stream::serve(request, out).await
    } else {
        handler::send(out, summary(request)).await
    }
}

/// GET /api/metrics/summary.
fn summary(request: Request) -> Response {
    // The request is read before the caller is let in, so that its first
    // store read goes with the key check; its errors are answered after the gate's.
    let asked = ask(&request);
    let ahead = Ahead { keys: asked.as_ref().map(first_read).unwrap_or_default(), heads: SHARDS, bytes: HEADER };
    let (mut admitted, heads) = match gate::admit_reading(&request, ALLOW, Scope::Read, &ahead) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let response = match asked.and_then(|asked| summarize(asked, ahead.keys, heads, &mut admitted)) {
        Ok((cache, body)) => respond::raw_json(200, body, &[("x-cache", cache.to_string())]),
        Err(e) => {
            analytics_platform::counters::count_store_failure("summary", &e);
            respond::error(&e, ALLOW)
        }
    };
    admitted.finish(response)
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

impl Cache {
    /// The `cache` label of `analytics_summaries`.
    fn label(self) -> &'static str {
        match self {
            Cache::Hit => "hit",
            Cache::Partial => "partial",
            Cache::Miss => "miss",
            Cache::Bypass => "bypass",
        }
    }
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

pub(crate) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

/// Hits and partials do not touch Redis: one in [`HIT_SAMPLE`] counts for all of them.
fn count_sampled(cache: Cache) {
    if clock::random_u128() % HIT_SAMPLE as u128 == 0 {
        let mut tally = Tally::default();
        tally.add(Family::Summaries, cache.label(), HIT_SAMPLE as i64);
        tally.send(Redis::connect().ok().as_ref());
    }
}

/// What a summary request asks.
pub(crate) struct Asked {
    summary: SummaryRequest,
    /// `cache_ttl_seconds`.
    ttl: u64,
    now: i64,
}

fn ask(request: &Request) -> Result<Asked, ApiError> {
    ask_at(&Query::parse(request.query())?, clock::now_ms())
}

/// What `query` asks at `now` (a stream asks again at every summary: a
/// trailing window moves).
pub(crate) fn ask_at(query: &Query, now: i64) -> Result<Asked, ApiError> {
    let summary = SummaryRequest::parse(query, now)?;
    let ttl = settings::whole(config::lookup(), "cache_ttl_seconds", 0, 86_400 * 30)?;
    Ok(Asked { summary, ttl, now })
}

/// The first read: the journal's headers (what it holds is what every
/// answer must include) and the last answer kept in the store.
pub(crate) fn first_read(asked: &Asked) -> Vec<String> {
    let mut keys = journal_keys(&asked.summary.metric_type);
    if asked.ttl > 0 {
        keys.push(answer_key(&asked.summary));
    }
    keys
}

/// The answer and how the cache took part; the body is serialised JSON.
/// `keys` and `heads` are [`first_read`] and what it found.
pub(crate) fn summarize(asked: Asked, mut keys: Vec<String>, mut heads: Vec<Option<Vec<u8>>>, admitted: &mut Admitted) -> Result<(Cache, Vec<u8>), ApiError> {
    let Asked { summary, ttl, now } = asked;
    let ttl_ms = ttl * 1_000;
    let kv = &mut admitted.store;
    let stored = if ttl > 0 { keys.pop().and(heads.pop().flatten()) } else { None };
    let entry = stored.as_deref().and_then(Entry::decode);
    let state = Pending::state(&Pending::headers(&keys, &heads).map_err(unavailable)?);
    let earlier = match entry.as_ref().map(|e| e.serve(&summary, &state, now, ttl_ms)) {
        Some(Use::Hit(body)) => {
            count_sampled(Cache::Hit);
            return Ok((Cache::Hit, body.to_vec()));
        }
        Some(Use::Extend(total)) => Some(total),
        Some(Use::Stale) | None => None,
    };

    // The journal's items in full now (a store that read whole values the
    // first time gave them already: a cut one is its header only).
    let whole = heads.iter().flatten().all(|v| v.len() > HEADER);
    let journals = if whole { heads } else { kv.get_many(&keys).map_err(unavailable)? };
    // Only what was appended since the entry, while the journal holds it all.
    let since = match (&entry, earlier) {
        (Some(entry), Some(total)) => Pending::since(&keys, &journals, &entry.state).map_err(unavailable)?.map(|since| (total, since)),
        _ => None,
    };
    let (cache, total, state) = match since {
        _ if ttl == 0 => {
            let pending = Pending::decode(&keys, &journals).map_err(unavailable)?;
            (Cache::Bypass, window_aggregate(kv, &summary, &pending).map_err(unavailable)?, String::new())
        }
        Some((earlier, since)) => (Cache::Partial, with_items(&earlier, &summary, &since), Pending::state(&since.headers)),
        None => {
            let pending = Pending::decode(&keys, &journals).map_err(unavailable)?;
            (Cache::Miss, window_aggregate(kv, &summary, &pending).map_err(unavailable)?, Pending::state(&pending.headers))
        }
    };

    let mut body = summary.report(&total, now);
    let mut redis = None;
    let context = match entry.as_ref().and_then(|e| Some((e.context(now)?, e.context_until_ms))) {
        Some((data, fresh_until_ms)) => external::Context { data, fresh_until_ms },
        None => {
            redis = Redis::connect().map_err(|e| eprintln!("summary cache unavailable: {e}")).ok();
            external::context(redis.as_ref(), &summary.metric_type)?
        }
    };
    body["external_data"] = context.data;
    let body = body.to_string().into_bytes();
    match cache {
        Cache::Partial => count_sampled(cache),
        _ => {
            let redis = redis.or_else(|| Redis::connect().ok());
            Tally::one(Family::Summaries, cache.label()).send(redis.as_ref());
        }
    }
    if cache == Cache::Bypass || !worth_keeping(cache == Cache::Miss, entry.as_ref().map(|e| e.computed_at_ms), now, kv.cheap_writes()) {
        return Ok((cache, body));
    }
    let kept = Entry::new(&summary, &state, &total, now, context.fresh_until_ms, body);
    keep(kv, &answer_key(&summary), stored.as_deref(), &kept.encode());
    Ok((cache, kept.body))
}

/// Writes `entry` under `key` if the store still holds what this request
/// read there (`read`), in one compare-and-swap attempt: of the requests
/// that computed an answer from the same entry, one keeps it. Losing
/// costs nothing but a cache write.
fn keep(kv: &mut impl Kv, key: &str, read: Option<&[u8]>, entry: &[u8]) {
    let written = kv.watch(key).and_then(|(cas, current)| match current.as_deref() == read {
        true => kv.swap(cas, entry).map(|swap| matches!(swap, Swap::Written)),
        false => Ok(false),
    });
    if let Err(e) = written {
        eprintln!("summary cache write failed: {e}");
    }
}
