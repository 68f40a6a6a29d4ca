//! API keys (admin scope): `POST /api/keys` creates one and shows its secret
//! this once, `GET /api/keys` lists the project's keys without secrets,
//! `DELETE /api/keys/{id}` revokes one (at once, on every replica: requests
//! read the key's record every time). Rotation is a new key, then revoking
//! the old one. The admin token may name another project (`project` in the
//! body, `?project=` otherwise), which is how a project gets its first key.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::api_keys;
use analytics_platform::core::auth::{new_secret, validate_project, NewKey, Principal, Scope};
use analytics_platform::core::query::Query;
use analytics_platform::gate::{self, Admitted};
use analytics_platform::{clock, respond};
use serde_json::{json, Value};
use spin_sdk::http::{Method, IncomingRequest, Request, Response};
use spin_sdk::http_component;

/// The methods of `path`: the collection, or one key.
fn allowed(path: &str) -> &'static [&'static str] {
    if key_id(path).is_empty() {
        &["GET", "POST"]
    } else {
        &["DELETE"]
    }
}

fn key_id(path: &str) -> &str {
    path.trim_end_matches('/').strip_prefix("/api/keys").unwrap_or("").trim_start_matches('/')
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
        Ok((status, body)) => respond::json(status, &body),
        Err(e) => respond::error(&e, allow),
    };
    Ok(admitted.finish(response))
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("key-value store: {e}"))
}

/// The project a request manages: its own, or for the admin token the one it names.
fn project(principal: &Principal, query: &Query) -> Result<String, ApiError> {
    match query.get("project") {
        Some(p) if principal.bootstrap => {
            validate_project(p).map_err(|m| ApiError::bad_request("project", m))?;
            Ok(p.to_string())
        }
        Some(p) if p != principal.project => Err(ApiError::new(403, "forbidden", "only the admin token manages another project's keys")),
        _ => Ok(principal.project.clone()),
    }
}

fn answer(request: &Request, admitted: &mut Admitted) -> Result<(u16, Value), ApiError> {
    let query = Query::parse(request.query())?;
    // Keys live outside every project's prefix.
    let store = &mut admitted.store.store;
    let id = key_id(request.path()).to_string();
    match (request.method(), id.is_empty()) {
        (Method::Post, true) => {
            let new = NewKey::parse(request.body())?;
            let mut random = [0u8; 24];
            random[..16].copy_from_slice(&clock::random_u128().to_le_bytes());
            random[16..].copy_from_slice(&clock::random_u128().to_le_bytes()[..8]);
            let secret = new_secret(random, &new.project(&admitted.principal)?);
            let record = new.record(&admitted.principal, &secret, clock::now_ms())?;
            api_keys::create(store, &record).map_err(unavailable)?;
            let mut body = record.to_json();
            body["key"] = json!(secret);
            Ok((201, body))
        }
        (Method::Get, true) => {
            let project = project(&admitted.principal, &query)?;
            let keys = api_keys::list(store, &project).map_err(unavailable)?;
            Ok((200, json!({"project": project, "keys": keys.iter().map(|k| k.to_json()).collect::<Vec<_>>()})))
        }
        (Method::Delete, false) => {
            let project = project(&admitted.principal, &query)?;
            match api_keys::revoke(store, &project, &id, clock::now_ms()).map_err(unavailable)? {
                Some(record) => Ok((200, record.to_json())),
                None => Err(ApiError::new(404, "not_found", format!("project {project} has no key {id}"))),
            }
        }
        (method, _) => Err(ApiError::method_not_allowed(&method.to_string(), allowed(request.path()))),
    }
}
