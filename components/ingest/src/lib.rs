//! POST /api/metrics and POST /api/metrics/batch: rate-limit the client,
//! validate, and store each metric once (idempotent by `id`) in the type's
//! journal; the journal is folded into the type's time-bucket aggregates as
//! it fills, so summaries never scan stored metrics (see
//! `analytics_core::ingest`). A batch counts once against the rate limit.

mod batch;

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::app_metrics::{add_args, Family, COUNTERS_KEY};
use analytics_platform::core::config as settings;
use analytics_platform::core::fold::Folded;
use analytics_platform::core::ingest::{ingest, Ingested};
use analytics_platform::core::kv::StoreError;
use analytics_platform::core::expiry::Expiry;
use analytics_platform::core::metric::{new_id, parse_new_metric, Metric, NewMetric, TimeLimits, MAX_BODY_BYTES};
use analytics_platform::core::rate_limit::{client_id, Decision, RateLimit, SLIDING_WINDOW_SCRIPT};
use analytics_platform::counters::Tally;
use analytics_platform::core::auth::Scope;
use analytics_platform::gate::{self, Admitted};
use analytics_platform::scoped::Scoped;
use analytics_platform::redis::Redis;
use analytics_platform::{clock, config, respond};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["POST"];

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    let mut admitted = match gate::admit(&request, ALLOW, Scope::Ingest) {
        Ok(admitted) => admitted,
        Err(response) => return Ok(response),
    };
    let response = ingest_request(&request, &mut admitted);
    Ok(admitted.finish(response))
}

fn ingest_request(request: &Request, admitted: &mut Admitted) -> Response {
    let policy = match settings::rate_limit(config::lookup()) {
        // A key counts on its own, at its own limit if it has one.
        Ok(p) => RateLimit { limit: admitted.principal.rate_limit_requests.unwrap_or(p.limit), ..p },
        Err(e) => return respond::error(&e, ALLOW),
    };
    let now = clock::now_ms();
    // Validation first (it is only CPU), so the rate-limit script can count
    // the outcome in the same round trip.
    let is_batch = request.path().trim_end_matches('/').ends_with("/batch");
    let parsed = if is_batch { batch::parse(request, now).map(Parsed::Many) } else { parse(request, now).map(Parsed::One) };
    let expected = expected_counts(&parsed);
    let (decision, redis) = match admit(request, admitted.principal.key_id.as_deref(), &policy, now, &expected) {
        Ok(d) => d,
        Err(e) => return respond::error(&e, ALLOW),
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
        return respond::json_with(429, &body, &headers);
    }
    let (answer, counted) = match parsed {
        Err(e) => (Err(e), expected.clone()),
        Ok(Parsed::One(new)) => store(&mut admitted.store, new, now),
        Ok(Parsed::Many(items)) => batch::store(&mut admitted.store, items, now),
    };
    // Only what the store changed costs a call: duplicates, conflicts, failures.
    counted.minus(&expected).send(redis.as_ref());
    match answer {
        Ok((status, body)) => respond::json_with(status, &body, &headers),
        Err(e) => respond::error_with(&e, ALLOW, &headers),
    }
}

/// A request's metrics, validated.
enum Parsed {
    One(NewMetric),
    Many(Vec<Result<NewMetric, ApiError>>),
}

/// The counts if every valid metric is stored.
fn expected_counts(parsed: &Result<Parsed, ApiError>) -> Tally {
    let mut tally = Tally::default();
    match parsed {
        Err(e) => tally.add(Family::Rejected, e.code, 1),
        Ok(Parsed::One(_)) => tally.add(Family::Metrics, "accepted", 1),
        Ok(Parsed::Many(items)) => {
            for item in items {
                match item {
                    Ok(_) => tally.add(Family::Metrics, "accepted", 1),
                    Err(e) => tally.add(Family::Rejected, e.code, 1),
                }
            }
        }
    }
    tally
}

/// How one stored item counts.
pub(crate) fn count_outcome(tally: &mut Tally, outcome: &Result<Ingested, ApiError>) {
    match outcome {
        Ok(Ingested::Stored { .. }) => tally.add(Family::Metrics, "accepted", 1),
        Ok(Ingested::Duplicate) => tally.add(Family::Metrics, "duplicate", 1),
        Ok(Ingested::Conflict) => tally.add(Family::Rejected, "id_conflict", 1),
        Err(e) => {
            tally.add(Family::Rejected, e.code, 1);
            if e.status == 503 {
                tally.add(Family::KeyValueFailures, "ingest", 1);
            }
        }
    }
}

fn rate_limit_headers(d: &Decision) -> Vec<(&'static str, String)> {
    vec![
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", d.reset_seconds.to_string()),
    ]
}

/// The sliding-window decision, made in Redis, which also raises
/// `counts` if the request is admitted; without Redis, let the request
/// through. Gives back the connection for later counts.
fn admit(request: &Request, key_id: Option<&str>, policy: &RateLimit, now: i64, counts: &Tally) -> Result<(Decision, Option<Redis>), ApiError> {
    let client = match key_id {
        Some(id) => format!("key:{id}"),
        None => {
            let trust = settings::boolean(config::lookup(), "trust_forwarded_for")?;
            let header = |name: &str| request.header(name).and_then(|v| v.as_str());
            client_id(header("spin-client-addr"), header("x-forwarded-for"), trust)
        }
    };
    let member = format!("{now}-{:x}", clock::random_u128() as u64);
    let redis = Redis::connect();
    let decided = redis.as_ref().map_err(Clone::clone).and_then(|redis| {
        let mut args: Vec<Vec<u8>> = policy.script_args(now, &member).into_iter().map(String::into_bytes).collect();
        args.extend(add_args(&counts.deltas()));
        let reply = redis.eval_ints(SLIDING_WINDOW_SCRIPT, &[&RateLimit::key(&client), COUNTERS_KEY], &args)?;
        policy.decide(&reply, now).map_err(|e| e.to_string())
    });
    let decision = decided.unwrap_or_else(|e| {
        eprintln!("rate limiter unavailable, allowing request: {e}");
        policy.fail_open()
    });
    Ok((decision, redis.ok()))
}

/// The timestamps accepted now (`max_clock_skew_seconds`, `raw_retention_days`).
pub(crate) fn time_limits(now_ms: i64) -> Result<TimeLimits, ApiError> {
    Ok(TimeLimits {
        now_ms,
        max_clock_skew_seconds: settings::whole(config::lookup(), "max_clock_skew_seconds", 0, 86_400 * 365)?,
        retention_days: settings::retention_days(config::lookup())?,
    })
}

/// Raw metrics of seconds before this are not kept (with `raw_retention_days`).
pub(crate) fn expiry(now_ms: i64) -> Result<Option<Expiry>, ApiError> {
    Ok(Expiry::at(now_ms, settings::retention_days(config::lookup())?))
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Checks the media type and size, and validates the metric.
fn parse(request: &Request, now: i64) -> Result<NewMetric, ApiError> {
    if !is_json(request.header("content-type").and_then(|v| v.as_str())) {
        return Err(ApiError::new(415, "unsupported_media_type", "send the metric as JSON with Content-Type: application/json"));
    }
    if request.body().len() > MAX_BODY_BYTES {
        return Err(ApiError::new(413, "payload_too_large", format!("the body is over {} KiB", MAX_BODY_BYTES / 1024)));
    }
    parse_new_metric(request.body(), &time_limits(now)?)
}

/// Stores one metric: `(status, body)`, and how it counts.
fn store(kv: &mut Scoped, new: NewMetric, now: i64) -> (Result<(u16, serde_json::Value), ApiError>, Tally) {
    let random = clock::random_u128();
    let client_given = new.id.is_some();
    let id = new.id.clone().unwrap_or_else(|| new_id(now, random));
    let metric = new.with_id(id);
    let outcome = expiry(now)
        .and_then(|expiry| ingest(kv, &metric, client_given, (random >> 96) as usize, expiry).map_err(|e| ApiError::unavailable(e.to_string())));
    let mut tally = Tally::default();
    count_outcome(&mut tally, &outcome);
    let answer = outcome.and_then(|outcome| match outcome {
        Ingested::Stored { fold, retention, .. } => {
            log_follow_ups(&metric, fold, retention);
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
    });
    (answer, tally)
}

/// What a stored metric's request did after storing it and could not finish.
pub(crate) fn log_follow_ups(metric: &Metric, fold: Option<Result<Folded, StoreError>>, retention: Option<StoreError>) {
    match fold {
        // Stored all the same: the items wait in the journal for the next fold.
        Some(Err(e)) => eprintln!("fold of `{}` failed, left for the next one: {e}", metric.metric_type),
        Some(Ok(Folded { swept: Some(Err(e)), .. })) => {
            eprintln!("retention sweep of `{}` failed, the next fold goes on: {e}", metric.metric_type)
        }
        _ => {}
    }
    if let Some(e) = retention {
        eprintln!("retention of `{}`'s user not recorded: {e}", metric.metric_type);
    }
}

pub(crate) fn created(metric: &Metric) -> serde_json::Value {
    let mut body = metric.to_json();
    body["message"] = json!("Metric received");
    body
}
