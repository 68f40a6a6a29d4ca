//! POST /api/metrics and POST /api/metrics/batch: rate-limit the client,
//! validate, and store each metric once (idempotent by `id`) in the type's
//! journal; the journal is folded into the type's time-bucket aggregates as
//! it fills, so summaries never scan stored metrics (see
//! `analytics_core::ingest`). A batch counts once against the rate limit.

mod batch;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::ingest::{ingest, Ingested};
use analytics_platform::core::metric::{new_id, parse_new_metric, Metric, MAX_BODY_BYTES};
use analytics_platform::core::rate_limit::{client_id, Decision, RateLimit, SLIDING_WINDOW_SCRIPT};
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
    let accepted = if request.path().trim_end_matches('/').ends_with("/batch") {
        batch::accept(&request, now)
    } else {
        accept(&request, now)
    };
    Ok(match accepted {
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

/// `max_clock_skew_seconds`.
pub(crate) fn clock_skew() -> Result<u64, ApiError> {
    settings::whole(config::lookup(), "max_clock_skew_seconds", 0, 86_400 * 365)
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
    let new = parse_new_metric(request.body(), now, clock_skew()?)?;
    let mut kv = Kv::open_default().map_err(|e| ApiError::unavailable(format!("key-value store: {e}")))?;
    let random = clock::random_u128();
    let client_given = new.id.is_some();
    let id = new.id.clone().unwrap_or_else(|| new_id(now, random));
    let metric = new.with_id(id);
    let outcome = ingest(&mut kv, &metric, client_given, (random >> 96) as usize)
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    match outcome {
        Ingested::Stored { fold, retention, .. } => {
            if let Some(Err(e)) = fold {
                // Stored all the same: the items wait in the journal for the next fold.
                eprintln!("fold of `{}` failed, left for the next one: {e}", metric.metric_type);
            }
            if let Some(e) = retention {
                eprintln!("retention of `{}`'s user not recorded: {e}", metric.metric_type);
            }
            Ok((201, created(&metric)))
        }
        Ingested::Duplicate => {
            let mut body = created(&metric);
            body["duplicate"] = json!(true);
            Ok((200, body))
        }
        Ingested::Conflict => Err(ApiError::new(
            409,
            "id_conflict",
            format!("id `{}` is already used by a different metric; use a new id", metric.id),
        )),
        Ingested::InProgress => Err(ApiError::new(
            409,
            "id_in_progress",
            format!("a request with id `{}` is still being processed; retry shortly", metric.id),
        )),
    }
}

pub(crate) fn created(metric: &Metric) -> serde_json::Value {
    let mut body = metric.to_json();
    body["message"] = json!("Metric received");
    body
}
