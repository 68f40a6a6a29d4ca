//! Context from the external service, through the shared circuit breaker,
//! cached per type for `external_context_ttl_seconds`: the upstream sees at
//! most one call per type per TTL, made by the one request that holds the
//! refresh lock while the others answer with the context it replaces. The
//! summary answers either way: a failure becomes a fallback value.

use std::time::Duration;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::breaker::{Admission, Breaker, Policy, COMPARE_AND_SET_SCRIPT, STATE_KEY, SUCCESSES_KEY};
use analytics_platform::core::app_metrics::Family;
use analytics_platform::core::config as settings;
use analytics_platform::counters::Tally;
use analytics_platform::core::summary_cache::{context_keep_ms, context_key, context_refresh_key, CachedContext};
use analytics_platform::http_out::{self, CallError};
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config};
use serde_json::{json, Value};

/// Retries of a compare-and-set that lost a race.
const CAS_ATTEMPTS: usize = 16;

fn fallback(reason: &str) -> Value {
    json!({"status": "fallback", "reason": reason})
}

/// How often a request without any context polls for the one being fetched.
const CONTEXT_POLL_MS: u64 = 10;

fn success(context: Value) -> Value {
    json!({"status": "success", "external_metric_context": context})
}

/// `external_data` for a summary, and until when it may be served again
/// without asking (0: not at all, e.g. a fallback or a stale context).
pub struct Context {
    pub data: Value,
    pub fresh_until_ms: i64,
}

impl Context {
    fn once(data: Value) -> Context {
        Context { data, fresh_until_ms: 0 }
    }

    fn cached(c: CachedContext, ttl_ms: u64) -> Context {
        Context { fresh_until_ms: c.fetched_at_ms.saturating_add(ttl_ms as i64), data: success(c.context) }
    }
}

/// `external_data` for a summary of `metric_type`.
pub fn context(redis: Option<&Redis>, metric_type: &str) -> Result<Context, ApiError> {
    let lookup = config::lookup();
    let ttl_ms = settings::whole(lookup, "external_context_ttl_seconds", 0, 86_400)? * 1_000;
    let timeout_ms = settings::external_timeout_ms(lookup)?;
    let fetch = || fetch(redis, metric_type).map(Context::once);
    let Some(redis) = redis.filter(|_| ttl_ms > 0) else {
        return fetch();
    };
    let cached = redis.get(&context_key(metric_type)).unwrap_or_else(|e| {
        eprintln!("context cache unavailable: {e}");
        None
    });
    let cached = cached.and_then(|bytes| CachedContext::decode(&bytes));
    let now = clock::now_ms();
    if let Some(c) = cached.as_ref().filter(|c| c.fresh(now, ttl_ms)) {
        return Ok(Context::cached(c.clone(), ttl_ms));
    }
    // Stale or missing: one request refreshes, the others use what there is.
    let lock = context_refresh_key(metric_type);
    match redis.set_nx_px(&lock, b"1", timeout_ms + 1_000) {
        Ok(true) => {
            // The previous holder may have stored a fresh one since we looked.
            if let Ok(Some(c)) = redis.get(&context_key(metric_type)).map(|b| b.and_then(|b| CachedContext::decode(&b))) {
                if c.fresh(clock::now_ms(), ttl_ms) {
                    let _ = redis.del(&lock);
                    return Ok(Context::cached(c, ttl_ms));
                }
            }
            let result = fetch()?;
            let mut context = result;
            if context.data["status"] == "success" {
                let fresh = CachedContext { fetched_at_ms: clock::now_ms(), context: context.data["external_metric_context"].clone() };
                if let Err(e) = redis.set_px(&context_key(metric_type), &fresh.encode(), context_keep_ms(ttl_ms)) {
                    eprintln!("context cache write failed: {e}");
                }
                context = Context::cached(fresh, ttl_ms);
            }
            let _ = redis.del(&lock);
            Ok(context)
        }
        Ok(false) => match cached {
            Some(stale) => Ok(Context::once(success(stale.context))),
            None => wait_for_context(redis, metric_type, timeout_ms).map(Context::once),
        },
        Err(e) => {
            eprintln!("context cache unavailable ({e}); calling the upstream");
            fetch()
        }
    }
}

/// Another request is fetching the first context of this type: wait for it,
/// as long as the upstream's own deadline.
fn wait_for_context(redis: &Redis, metric_type: &str, timeout_ms: u64) -> Result<Value, ApiError> {
    let mut waited = 0;
    while waited <= timeout_ms {
        clock::sleep_ms(CONTEXT_POLL_MS);
        waited += CONTEXT_POLL_MS;
        if let Ok(Some(bytes)) = redis.get(&context_key(metric_type)) {
            if let Some(c) = CachedContext::decode(&bytes) {
                return Ok(success(c.context));
            }
        }
    }
    Ok(fallback("timeout"))
}

/// Calls the upstream through the breaker.
fn fetch(redis: Option<&Redis>, metric_type: &str) -> Result<Value, ApiError> {
    let lookup = config::lookup();
    let policy = settings::breaker(lookup)?;
    let timeout = Duration::from_millis(settings::external_timeout_ms(lookup)?);
    let base = settings::url(lookup, "external_service_url")?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}type={metric_type}");

    // Without Redis the breaker cannot be shared; the call's own timeout still bounds the cost.
    let Some(redis) = redis else {
        return Ok(outcome(call(&url, timeout)));
    };
    let admission = match admit(redis, &policy) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("circuit breaker state unavailable ({e}); calling without it");
            return Ok(counted(redis, outcome(call(&url, timeout))));
        }
    };
    if admission == Admission::Reject {
        return Ok(counted(redis, fallback("circuit_open")));
    }
    let result = call(&url, timeout);
    if let Err(e) = record(redis, &policy, admission, result.is_ok()) {
        eprintln!("circuit breaker update failed: {e}");
    }
    Ok(counted(redis, outcome(result)))
}

/// Counts an upstream outcome (`short_circuited` when the breaker refused it).
fn counted(redis: &Redis, data: Value) -> Value {
    let label = match data["reason"].as_str() {
        None => "success",
        Some("circuit_open") => "short_circuited",
        Some(reason) => reason,
    };
    Tally::one(Family::Upstream, label).send(Some(redis));
    data
}

fn outcome(result: Result<Value, CallError>) -> Value {
    match result {
        Ok(context) => success(context),
        Err(CallError::Timeout) => fallback("timeout"),
        Err(CallError::Transport(e)) => {
            eprintln!("external service call failed: {e}");
            fallback("error")
        }
    }
}

/// A 2xx with a JSON body counts as success; anything else is a failure.
fn call(url: &str, timeout: Duration) -> Result<Value, CallError> {
    let reply = http_out::get(url, timeout)?;
    if !(200..300).contains(&reply.status) {
        return Err(CallError::Transport(format!("status {}", reply.status)));
    }
    serde_json::from_slice(&reply.body).map_err(|e| CallError::Transport(format!("body is not JSON: {e}")))
}

/// Reads the shared state and stores this request's transition, if any.
fn admit(redis: &Redis, policy: &Policy) -> Result<Admission, String> {
    transition(redis, |breaker| breaker.admit(policy, clock::now_ms()))
}

fn record(redis: &Redis, policy: &Policy, admission: Admission, success: bool) -> Result<(), String> {
    if success {
        redis.incr(SUCCESSES_KEY)?;
    }
    transition(redis, |breaker| ((), breaker.record(policy, admission, success, clock::now_ms())))
}

/// Applies `step` to the stored state with compare-and-set, retrying when
/// another request changed it first (each loss means another request made
/// progress, so a handful of attempts is plenty).
fn transition<T>(redis: &Redis, mut step: impl FnMut(&Breaker) -> (T, Option<Breaker>)) -> Result<T, String> {
    for _ in 0..CAS_ATTEMPTS {
        let raw = redis.get(STATE_KEY)?;
        let current = Breaker::decode(raw.as_deref());
        let (outcome, next) = step(&current);
        let Some(next) = next else {
            return Ok(outcome);
        };
        let expected = raw.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        if redis.eval_ints(COMPARE_AND_SET_SCRIPT, &[STATE_KEY], &[expected.as_bytes(), next.encode().as_bytes()])? == [1] {
            if next.state != current.state {
                redis.del(SUCCESSES_KEY)?;
                Tally::one(Family::BreakerTransitions, next.state.name()).send(Some(redis));
            }
            return Ok(outcome);
        }
    }
    Err("circuit breaker state kept changing".into())
}
