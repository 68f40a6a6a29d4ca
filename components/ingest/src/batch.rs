//! POST /api/metrics/batch: up to 1 000 independent metrics (a JSON array or
//! NDJSON) in one request. Each shard of a type's journal the batch touches
//! is written once, whatever the number of items.

use analytics_platform::core::api_error::{ApiError, FieldError};
use analytics_platform::core::batch::{parse_batch, BatchFormat};
use analytics_platform::core::ingest::{ingest_batch, Ingested};
use analytics_platform::core::app_metrics::Family;
use analytics_platform::core::metric::{new_id, NewMetric};
use analytics_platform::counters::Tally;
use analytics_platform::clock;
use analytics_platform::scoped::Scoped;
use serde_json::{json, Value};

fn rejected(index: usize, error: &ApiError) -> Value {
    let details: Vec<&FieldError> = error.details.iter().collect();
    json!({"index": index, "error": error.code, "message": error.message, "details": details})
}

/// Checks the media type and size, and validates every item.
pub fn parse(request: &spin_sdk::http::Request, now: i64) -> Result<Vec<Result<NewMetric, ApiError>>, ApiError> {
    let content_type = request.header("content-type").and_then(|v| v.as_str()).unwrap_or("");
    let format = BatchFormat::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(415, "unsupported_media_type", "send a JSON array (application/json) or one metric per line (application/x-ndjson)")
    })?;
    parse_batch(request.body(), format, &crate::time_limits(now)?)
}

/// Stores the valid items: `(status, body)` (200 with the counts, 422 when
/// nothing was accepted), and how they count.
pub fn store(kv: &mut Scoped, parsed: Vec<Result<NewMetric, ApiError>>, now: i64) -> (Result<(u16, Value), ApiError>, Tally) {
    let mut tally = Tally::default();
    let random = clock::random_u128();
    let mut items = Vec::new();
    let mut positions = Vec::new();
    let mut rejections = Vec::new();
    for (index, item) in parsed.into_iter().enumerate() {
        match item {
            Ok(new) => {
                let client_id = new.id.is_some();
                let id = new.id.clone().unwrap_or_else(|| new_id(now, random ^ ((index as u128) << 64) ^ index as u128));
                items.push((new.with_id(id), client_id));
                positions.push(index);
            }
            Err(e) => {
                tally.add(Family::Rejected, e.code, 1);
                rejections.push(rejected(index, &e));
            }
        }
    }
    let expiry = match crate::expiry(now) {
        Ok(expiry) => expiry,
        Err(e) => return (Err(e), tally),
    };
    let outcomes: Vec<Result<Ingested, ApiError>> =
        ingest_batch(kv, &items, random as u64, expiry).into_iter().map(|o| o.map_err(|e| ApiError::unavailable(e.to_string()))).collect();
    let (mut accepted, mut duplicates, mut failures) = (0, 0, 0);
    for (outcome, (&index, (metric, _))) in outcomes.into_iter().zip(positions.iter().zip(&items)) {
        crate::count_outcome(&mut tally, &outcome);
        match outcome {
            Ok(Ingested::Stored { fold, retention, .. }) => {
                accepted += 1;
                crate::log_follow_ups(metric, fold, retention);
            }
            Ok(Ingested::Duplicate) => duplicates += 1,
            Ok(Ingested::Conflict) => rejections.push(rejected(
                index,
                &ApiError::new(409, "id_conflict", format!("id `{}` is already used by a different metric; use a new id", metric.id)),
            )),
            Err(e) => {
                failures += 1;
                rejections.push(rejected(index, &e));
            }
        }
    }
    if failures > 0 && failures == items.len() {
        let error = ApiError::unavailable("key-value store: no item of the batch could be stored; retry it".to_string());
        return (Err(error), tally);
    }
    rejections.sort_by_key(|r| r["index"].as_u64());
    let mut body = json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejections});
    if accepted + duplicates == 0 {
        body["error"] = json!("nothing_accepted");
        body["message"] = json!("no metric of the batch was accepted; see `rejected`");
        return (Ok((422, body)), tally);
    }
    (Ok((200, body)), tally)
}
