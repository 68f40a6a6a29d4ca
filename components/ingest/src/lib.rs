//! POST /api/metrics: rate-limit the client, validate the metric, store it
//! once (idempotent by `id`), and fold it into its type's time-bucket
//! aggregates so summaries never scan stored metrics.

use analytics_platform::core::aggregate::Aggregate;
use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::ingest::{apply, targets, Target};
use analytics_platform::core::metric::{new_id, parse_new_metric, Metric, MAX_BODY_BYTES};
use analytics_platform::core::rate_limit::{client_id, Decision, RateLimit, SLIDING_WINDOW_SCRIPT};
use analytics_platform::core::store::{claim_key, entry_key, metric_key, version_key, TYPES_KEY};
use analytics_platform::core::time::{Bucket, Level};
use analytics_platform::kv::Kv;
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use serde_json::json;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["POST"];

#[http_component]
fn handle(request: Request) -> anyhow::Result<Response> {
    if let Err(e) = respond::require_method(request.method(), ALLOW) {
        return Ok(respond::error(&e, ALLOW));
    }
    let policy = match settings::rate_limit(config::lookup()) {
        Ok(p) => p,
        Err(e) => return Ok(respond::error(&e, ALLOW)),
    };
    let now = clock::now_ms();
    let decision = match admit(&request, &policy, now) {
        Ok(d) => d,
        Err(e) => return Ok(respond::error(&e, ALLOW)),
    };
    let headers = rate_limit_headers(&decision);
    if let Some(retry_after) = decision.retry_after_seconds {
        let body = json!({
            "error": "rate_limited",
            "message": format!("more than {} requests in {} s from this client; retry in {retry_after} s", policy.limit, policy.window_ms / 1000),
            "retry_after_seconds": retry_after,
        });
        let mut headers = headers;
        headers.push(("retry-after", retry_after.to_string()));
        return Ok(respond::json_with(429, &body, &headers));
    }
    Ok(match accept(&request, now) {
        Ok((status, body)) => respond::json_with(status, &body, &headers),
        Err(e) => respond::error_with(&e, ALLOW, &headers),
    })
}

fn rate_limit_headers(d: &Decision) -> Vec<(&'static str, String)> {
    vec![
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", d.reset_seconds.to_string()),
    ]
}

/// The sliding-window decision, made in Redis; without Redis, let the request through.
fn admit(request: &Request, policy: &RateLimit, now: i64) -> Result<Decision, ApiError> {
    let trust = settings::boolean(config::lookup(), "trust_forwarded_for")?;
    let header = |name: &str| request.header(name).and_then(|v| v.as_str());
    let client = client_id(header("spin-client-addr"), header("x-forwarded-for"), trust);
    let member = format!("{now}-{:x}", clock::random_u128() as u64);
    let decided = Redis::connect().and_then(|redis| {
        let args = policy.script_args(now, &member);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = redis.eval_ints(SLIDING_WINDOW_SCRIPT, &[&RateLimit::key(&client)], &args)?;
        policy.decide(&reply, now).map_err(|e| e.to_string())
    });
    Ok(decided.unwrap_or_else(|e| {
        eprintln!("rate limiter unavailable, allowing request: {e}");
        policy.fail_open()
    }))
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Validates and stores; `(status, body)` on success.
fn accept(request: &Request, now: i64) -> Result<(u16, serde_json::Value), ApiError> {
    if !is_json(request.header("content-type").and_then(|v| v.as_str())) {
        return Err(ApiError::new(415, "unsupported_media_type", "send the metric as JSON with Content-Type: application/json"));
    }
    if request.body().len() > MAX_BODY_BYTES {
        return Err(ApiError::new(413, "payload_too_large", format!("the body is over {} KiB", MAX_BODY_BYTES / 1024)));
    }
    let skew = settings::whole(config::lookup(), "max_clock_skew_seconds", 0, 86_400 * 365)?;
    let new = parse_new_metric(request.body(), now, skew)?;
    let kv = Kv::open_default().map_err(|e| ApiError::unavailable(format!("key-value store: {e}")))?;
    match &new.id {
        Some(id) => {
            let id = id.clone();
            let metric = new.with_id(id.clone());
            if kv.increment(&claim_key(&id), 1).map_err(store_failed)? > 1 {
                return duplicate(&kv, &metric);
            }
            store(&kv, &metric, true).inspect_err(|_| {
                // Let a retry with the same id start over.
                let _ = kv.delete(&claim_key(&id));
            })?;
            Ok((201, created(&metric)))
        }
        None => {
            let metric = new.with_id(new_id(now, clock::random_u128()));
            store(&kv, &metric, false)?;
            Ok((201, created(&metric)))
        }
    }
}

fn store_failed(e: String) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

fn created(metric: &Metric) -> serde_json::Value {
    let mut body = metric.to_json();
    body["message"] = json!("Metric received");
    body
}

/// The id was claimed before: answer with what was stored, once it is there.
fn duplicate(kv: &Kv, metric: &Metric) -> Result<(u16, serde_json::Value), ApiError> {
    // The first request may still be writing; give it a moment.
    for _ in 0..20 {
        if let Some(bytes) = kv.get(&metric_key(&metric.id)).map_err(store_failed)? {
            let stored: Metric = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::new(500, "corrupt_record", format!("stored metric {} is unreadable: {e}", metric.id)))?;
            if !stored.same_content(metric) {
                return Err(ApiError::new(
                    409,
                    "id_conflict",
                    format!("id `{}` is already used by a different metric; use a new id", metric.id),
                ));
            }
            let mut body = created(&stored);
            body["duplicate"] = json!(true);
            return Ok((200, body));
        }
        clock::sleep_ms(50);
    }
    Err(ApiError::new(409, "id_in_progress", format!("a request with id `{}` is still being processed; retry shortly", metric.id)))
}

/// Stores a metric and folds it into its aggregates. With a client `id` the
/// metric is also kept under that id, to answer retries.
fn store(kv: &Kv, metric: &Metric, client_id: bool) -> Result<(), ApiError> {
    let record = serde_json::to_vec(metric).map_err(|e| ApiError::new(500, "internal_error", e.to_string()))?;
    if client_id {
        kv.set(&metric_key(&metric.id), &record).map_err(store_failed)?;
    }
    for target in targets(metric.timestamp_ms) {
        let count = kv
            .update(&target.key(&metric.metric_type), |current| {
                let mut aggregate = match current {
                    Some(bytes) => Aggregate::decode(bytes).map_err(|e| e.to_string())?.unwrap_or_default(),
                    None => Aggregate::default(),
                };
                apply(&target, &mut aggregate, metric);
                Ok((aggregate.encode(), aggregate.count))
            })
            .map_err(store_failed)?;
        // The second's new count numbers this metric's list entry.
        if let Target::Bucket(Bucket { level: Level::Second, index }) = target {
            kv.set(&entry_key(&metric.metric_type, index, count), &record).map_err(store_failed)?;
        }
    }
    register_type(kv, &metric.metric_type)?;
    kv.increment(&version_key(&metric.metric_type), 1).map_err(store_failed)?;
    Ok(())
}

/// Adds the type to the registry the all-types listing walks.
fn register_type(kv: &Kv, metric_type: &str) -> Result<(), ApiError> {
    let known = |bytes: Option<&[u8]>| -> Vec<String> { bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default() };
    if known(kv.get(TYPES_KEY).map_err(store_failed)?.as_deref()).iter().any(|t| t == metric_type) {
        return Ok(());
    }
    kv.update(TYPES_KEY, |current| {
        let mut types = known(current);
        if let Err(pos) = types.binary_search_by(|t| t.as_str().cmp(metric_type)) {
            types.insert(pos, metric_type.to_string());
        }
        Ok((serde_json::to_vec(&types).unwrap_or_default(), ()))
    })
    .map_err(store_failed)
}
