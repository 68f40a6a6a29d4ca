//! A user's data (admin scope): `GET /api/users/{id}/export` returns
//! everything stored about them (an access request); `DELETE
//! /api/users/{id}` erases it, within the caller's project, on every
//! replica at once (the store is shared), idempotently. What is and is not
//! removed: `analytics_core::erasure`.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::auth::Scope;
use analytics_platform::core::erasure::visit;
use analytics_platform::core::ingest::types;
use analytics_platform::core::metric::validate_id;
use analytics_platform::gate::{self, Admitted};
use analytics_platform::respond;
use serde_json::{json, Value};
use spin_sdk::http::{Method, IncomingRequest, Request, Response};
use spin_sdk::http_component;

/// The methods of `path`: a user's export, or the user.
fn allowed(path: &str) -> &'static [&'static str] {
    match user_and_export(path) {
        (_, true) => &["GET"],
        (_, false) => &["DELETE"],
    }
}

/// The (still percent-encoded) user id of `path`, and whether it asks for the export.
fn user_and_export(path: &str) -> (&str, bool) {
    let rest = path.trim_end_matches('/').strip_prefix("/api/users/").unwrap_or("");
    match rest.strip_suffix("/export") {
        Some(user) => (user, true),
        None => (rest, false),
    }
}

#[http_component]
async fn handle(incoming: IncomingRequest) -> anyhow::Result<Response> {
    analytics_platform::handler::serve(incoming, handle_request).await
}

fn handle_request(request: Request) -> anyhow::Result<Response> {
    let allow = allowed(request.path());
    let mut admitted = match gate::admit(&request, allow, Scope::Admin) {
        Ok(admitted) => admitted,
        Err(response) => return Ok(response),
    };
    let response = match answer(&request, &mut admitted) {
        Ok(body) => respond::json(200, &body),
        Err(e) => respond::error(&e, allow),
    };
    Ok(admitted.finish(response))
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

fn answer(request: &Request, admitted: &mut Admitted) -> Result<Value, ApiError> {
    let (user, export) = user_and_export(request.path());
    let user = percent_decoded(user);
    validate_id(&user).map_err(|m| ApiError::new(404, "not_found", format!("`{user}` is not a user id: it {m}")))?;
    let kv = &mut admitted.store;
    let all = types(kv).map_err(unavailable)?;
    match (request.method(), export) {
        (Method::Get, true) => Ok(visit(kv, &user, &all, false).map_err(unavailable)?.export(&user)),
        (Method::Delete, false) => {
            let erased = visit(kv, &user, &all, true).map_err(unavailable)?;
            Ok(json!({
                "user_id": user,
                "metrics_removed": erased.metrics.len(),
                "active_days_forgotten": erased.days.len(),
                "kept": "aggregates (counts, sums, percentiles, distinct-user estimates) and cohort counters, which hold no user id",
            }))
        }
        (method, _) => Err(ApiError::method_not_allowed(&method.to_string(), allowed(request.path()))),
    }
}

/// `%XX` escapes decoded (user ids may hold `:`).
fn percent_decoded(text: &str) -> String {
    form_urlencoded::parse(format!("u={text}").as_bytes()).next().map_or_else(|| text.to_string(), |(_, v)| v.into_owned())
}
