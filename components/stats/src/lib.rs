//! Event analytics over the same aggregates as the summaries:
//! `GET /api/stats/active-users`, `GET /api/stats/top-types`,
//! `GET /api/stats/retention` and `GET /api/metrics/series`. Each reads
//! buckets, journals and counters, never stored metrics.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::ingest::types;
use analytics_platform::core::query::Query;
use analytics_platform::core::retention::{retention, RetentionRequest};
use analytics_platform::core::stats::{active_users, series, top_types, ActiveUsersRequest, SeriesRequest, TopTypesRequest};
use analytics_platform::store::Store;
use analytics_platform::{clock, respond};
use serde_json::Value;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
fn handle(request: Request) -> anyhow::Result<Response> {
    Ok(match answer(&request) {
        Ok(body) => respond::json(200, &body),
        Err(e) => {
            analytics_platform::counters::count_store_failure("stats", &e);
            respond::error(&e, ALLOW)
        }
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

fn answer(request: &Request) -> Result<Value, ApiError> {
    respond::require_method(request.method(), ALLOW)?;
    let query = Query::parse(request.query())?;
    let now = clock::now_ms();
    let mut kv = Store::open().map_err(unavailable)?;
    let path = request.path().trim_end_matches('/');
    match path.rsplit('/').next().unwrap_or("") {
        "active-users" => {
            let request = ActiveUsersRequest::parse(&query, now)?;
            let all = match request.metric_type {
                Some(_) => Vec::new(),
                None => types(&mut kv).map_err(unavailable)?,
            };
            active_users(&mut kv, &request, &all).map_err(unavailable)
        }
        "top-types" => {
            let request = TopTypesRequest::parse(&query, now)?;
            let all = types(&mut kv).map_err(unavailable)?;
            top_types(&mut kv, &request, &all).map_err(unavailable)
        }
        "retention" => retention(&mut kv, &RetentionRequest::parse(&query, now)?).map_err(unavailable),
        "series" => series(&mut kv, &SeriesRequest::parse(&query, now)?).map_err(unavailable),
        _ => Err(ApiError::new(404, "not_found", format!("no endpoint at {path}; GET / lists the endpoints"))),
    }
}
