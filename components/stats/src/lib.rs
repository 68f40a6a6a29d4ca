//! Event analytics over the same aggregates as the summaries:
//! `GET /api/stats/active-users`, `GET /api/stats/top-types`,
//! `GET /api/stats/retention` and `GET /api/metrics/series`. Each reads
//! buckets, journals and counters, never stored metrics.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::ingest::types;
use analytics_platform::core::query::Query;
use analytics_platform::core::retention::{retention, RetentionRequest};
use analytics_platform::core::stats::{active_users, series, top_types, ActiveUsersRequest, SeriesRequest, TopTypesRequest};
use analytics_platform::core::auth::Scope;
use analytics_platform::scoped::Scoped;
use analytics_platform::{clock, gate, respond};
use serde_json::Value;
use spin_sdk::http::{IncomingRequest, Request, Response};
use spin_sdk::http_component;

const ALLOW: &[&str] = &["GET"];

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    let mut admitted = match gate::admit(&request, ALLOW, Scope::Read) {
        Ok(admitted) => admitted,
        Err(response) => return Ok(response),
    };
    let response = match answer(&request, &mut admitted.store) {
        Ok(body) => respond::json(200, &body),
        Err(e) => {
            analytics_platform::counters::count_store_failure("stats", &e);
            respond::error(&e, ALLOW)
        }
    };
    Ok(admitted.finish(response))
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

fn answer(request: &Request, kv: &mut Scoped) -> Result<Value, ApiError> {
    let query = Query::parse(request.query())?;
    let now = clock::now_ms();
    let path = request.path().trim_end_matches('/');
    match path.rsplit('/').next().unwrap_or("") {
        "active-users" => {
            let request = ActiveUsersRequest::parse(&query, now)?;
            let all = match request.metric_type {
                Some(_) => Vec::new(),
                None => types(kv).map_err(unavailable)?,
            };
            active_users(kv, &request, &all).map_err(unavailable)
        }
        "top-types" => {
            let request = TopTypesRequest::parse(&query, now)?;
            let all = types(kv).map_err(unavailable)?;
            top_types(kv, &request, &all).map_err(unavailable)
        }
        "retention" => retention(kv, &RetentionRequest::parse(&query, now)?).map_err(unavailable),
        "series" => series(kv, &SeriesRequest::parse(&query, now)?).map_err(unavailable),
        _ => Err(ApiError::new(404, "not_found", format!("no endpoint at {path}; GET / lists the endpoints"))),
    }
}
