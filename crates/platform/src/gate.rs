//! The door of every endpoint that touches a project's data: the method,
//! CORS (preflight answers and response headers), the caller's credential
//! (at most one key-value read, shared with the endpoint's first when the
//! key names its project), and a store scoped to the caller's project.
//!
//! Variables: `auth` (`open` or `required`), `admin_token` (the bootstrap
//! credential) and `cors_allowed_origins` (comma-separated origins any
//! caller may use, `*` for all; a key adds its own `allowed_origins`).

use analytics_core::auth::{self, authorize, credential, key_hash, key_record_key, KeyRecord, Mode, Principal, Scope};
use analytics_core::config as settings;
use analytics_core::kv::Reader;
use analytics_core::ApiError;
use spin_sdk::http::{Method, Request, Response};

use crate::scoped::Scoped;
use crate::store::Store;
use crate::{config, respond};

/// Headers a browser may read from a cross-origin response.
const EXPOSED: &str = "ratelimit-limit, ratelimit-remaining, ratelimit-reset, retry-after, x-cache, x-next-cursor";
/// Headers a cross-origin request may send.
const ALLOWED_HEADERS: &str = "authorization, x-api-key, content-type";

/// A request let in.
pub struct Admitted {
    pub principal: Principal,
    /// The durable store, as the caller's project sees it.
    pub store: Scoped,
    cors: Vec<(&'static str, String)>,
}

impl Admitted {
    /// `response` with the CORS headers this request earned.
    pub fn finish(&self, mut response: Response) -> Response {
        for (name, value) in &self.cors {
            response.set_header(*name, value.as_str());
        }
        response
    }

    /// A Redis key of the caller's project.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.principal.key_prefix())
    }
}

/// `auth`.
pub fn mode() -> Result<Mode, ApiError> {
    let text = settings::text(config::lookup(), "auth")?;
    Mode::parse(&text).ok_or_else(|| ApiError::configuration(format!("variable `auth` has the value `{text}`; expected open or required")))
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.header(name).and_then(|v| v.as_str())
}

/// The origins any caller may use (`*`: all).
fn configured_origins() -> Result<Vec<String>, ApiError> {
    Ok(settings::text(config::lookup(), "cors_allowed_origins")?
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect())
}

/// The request's `Origin` if it is another origin than the API's own.
fn foreign_origin(request: &Request) -> Option<String> {
    let origin = header(request, "origin")?.trim_end_matches('/');
    let own = header(request, "host").unwrap_or("");
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    (!host.eq_ignore_ascii_case(own)).then(|| origin.to_string())
}

/// Lets `request` in to do `needed`, or answers it: a CORS preflight, a 405,
/// a 401 or 403, an origin this caller may not use, or the store down.
pub fn admit(request: &Request, allow: &[&str], needed: Scope) -> Result<Admitted, Response> {
    admit_reading(request, allow, needed, &Ahead::default()).map(|(admitted, _)| admitted)
}

/// Keys of the caller's project an endpoint reads first, read with the
/// caller's key record in one store call when the key names its project
/// ([`auth::project_hint`]): checking a key then costs no read of its own.
#[derive(Debug, Default)]
pub struct Ahead {
    pub keys: Vec<String>,
    /// As [`Reader::get_many_heads`]: the first `heads` values may be cut to `bytes`.
    pub heads: usize,
    pub bytes: usize,
}

/// [`admit`], and the values of `ahead.keys` in the caller's project.
pub fn admit_reading(request: &Request, allow: &[&str], needed: Scope, ahead: &Ahead) -> Result<(Admitted, Vec<Option<Vec<u8>>>), Response> {
    crate::trace::remember(header(request, "traceparent"));
    let origin = foreign_origin(request);
    if *request.method() == Method::Options {
        return Err(preflight(origin.as_deref(), allow));
    }
    // Errors before the caller is known may still be read by any page
    // allowed by configuration.
    let early = |e: ApiError| {
        let mut response = respond::error(&e, allow);
        if let (Some(origin), Ok(allowed)) = (&origin, configured_origins()) {
            if allowed.iter().any(|a| a == "*" || a == origin) {
                cors_headers(origin).into_iter().for_each(|(n, v)| response.set_header(n, v));
            }
        }
        response
    };
    respond::require_method(request.method(), allow).map_err(early)?;
    let unavailable = |e: analytics_core::kv::StoreError| ApiError::unavailable(format!("key-value store: {e}"));
    let let_in = (|| {
        let mode = mode()?;
        let admin_token = settings::text(config::lookup(), "admin_token")?;
        let secret = credential(header(request, "authorization"), header(request, "x-api-key"))?;
        let mut store = Store::open().map_err(|e| ApiError::unavailable(format!("key-value store: {e}")))?;
        // Who the caller will turn out to be, as far as can be told unread.
        let key = secret.as_deref().filter(|s| !auth::is_admin_token(s, &admin_token));
        let project = key.map_or(auth::DEFAULT_PROJECT, auth::project_hint);
        let mut keys: Vec<String> = ahead.keys.iter().map(|k| format!("{}{k}", auth::project_prefix(project))).collect();
        keys.extend(key.map(|k| key_record_key(&key_hash(k))));
        let mut values = match keys.len() {
            0 => Vec::new(),
            1 => vec![store.get(&keys[0]).map_err(unavailable)?],
            // Only the endpoint's keys may come back cut, never the record.
            _ => store.get_many_heads(&keys, ahead.heads.min(ahead.keys.len()), ahead.bytes).map_err(unavailable)?,
        };
        let record = match key {
            Some(_) => values.pop().flatten().and_then(|bytes| serde_json::from_slice::<KeyRecord>(&bytes).ok()),
            None => None,
        };
        let principal = authorize(mode, secret.as_deref(), &admin_token, record, needed)?;
        let mut store = Scoped::new(store, principal.key_prefix());
        if principal.project != project && !ahead.keys.is_empty() {
            // The hint was wrong (a key from before hints, or a made-up one): read again.
            values = store.get_many_heads(&ahead.keys, ahead.heads, ahead.bytes).map_err(unavailable)?;
        }
        Ok::<_, ApiError>((principal, store, values))
    })();
    let (principal, store, values) = let_in.map_err(early)?;
    let mut cors = Vec::new();
    if let Some(origin) = &origin {
        let configured = configured_origins().map_err(early)?;
        let allowed = configured.iter().chain(&principal.allowed_origins).any(|a| a == "*" || a == origin);
        if !allowed {
            let e = ApiError::new(403, "origin_not_allowed", format!("this key may not be used from {origin}; add it to the key's allowed_origins"));
            return Err(respond::error(&e, allow));
        }
        cors = cors_headers(origin);
    }
    Ok((Admitted { principal, store, cors }, values))
}

fn cors_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_string()),
        ("access-control-expose-headers", EXPOSED.to_string()),
        ("vary", "origin".to_string()),
    ]
}

/// A preflight is answered for any origin: it carries no credential, and
/// the request that follows is let in (or not) by its key's origins.
fn preflight(origin: Option<&str>, allow: &[&str]) -> Response {
    let mut builder = Response::builder();
    builder.status(204).header("allow", [allow, &["OPTIONS"]].concat().join(", "));
    if let Some(origin) = origin {
        builder
            .header("access-control-allow-origin", origin)
            .header("access-control-allow-methods", allow.join(", "))
            .header("access-control-allow-headers", ALLOWED_HEADERS)
            .header("access-control-max-age", "600")
            .header("vary", "origin");
    }
    builder.build()
}
