//! GET /api/metrics/list: metrics newest first, a page at a time
//! (`X-Next-Cursor` carries the next page's cursor).

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::config as settings;
use analytics_platform::core::expiry::Expiry;
use analytics_platform::core::ingest::types;
use analytics_platform::core::listing::{list, ListRequest};
use analytics_platform::core::query::Query;
use analytics_platform::core::auth::Scope;
use analytics_platform::scoped::Scoped;
use analytics_platform::{clock, config, gate, respond};
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
    let response = match page(&request, &mut admitted.store) {
        Ok((body, next)) => {
            let headers: Vec<(&str, String)> = next.map(|c| ("x-next-cursor", c)).into_iter().collect();
            respond::json_with(200, &body, &headers)
        }
        Err(e) => {
            analytics_platform::counters::count_store_failure("list", &e);
            respond::error(&e, ALLOW)
        }
    };
    Ok(admitted.finish(response))
}

fn page(request: &Request, kv: &mut Scoped) -> Result<(Value, Option<String>), ApiError> {
    let mut list_request = ListRequest::parse(&Query::parse(request.query())?)?;
    // Past the retention period the raw metrics are (being) deleted: the walk stops there.
    if let Some(expiry) = Expiry::at(clock::now_ms(), settings::retention_days(config::lookup())?) {
        list_request.from_ms = list_request.from_ms.max(expiry.before_second * 1_000);
    }
    let unavailable = |e: String| ApiError::unavailable(format!("key-value store: {e}"));
    let types: Vec<String> = match &list_request.metric_type {
        Some(_) => Vec::new(),
        None => types(kv).map_err(|e| unavailable(e.to_string()))?,
    };
    let page = list(kv, &list_request, &types).map_err(|e| unavailable(e.to_string()))?;
    let body = Value::Array(page.metrics.iter().map(|m| m.to_json()).collect());
    Ok((body, page.next.map(|c| c.encode())))
}
