//! Building responses.

use analytics_core::ApiError;
use spin_sdk::http::Response;

/// A JSON response.
pub fn json(status: u16, body: &serde_json::Value) -> Response {
    json_with(status, body, &[])
}

/// A JSON response with extra headers.
pub fn json_with(status: u16, body: &serde_json::Value, headers: &[(&str, String)]) -> Response {
    raw_json(status, body.to_string().into_bytes(), headers)
}

/// A response whose JSON body is already serialised.
pub fn raw_json(status: u16, body: Vec<u8>, headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder();
    builder.status(status).header("content-type", "application/json");
    for (name, value) in headers {
        builder.header(*name, value.as_str());
    }
    builder.body(body).build()
}

/// The documented error body; a 405 carries `Allow`.
pub fn error(error: &ApiError, allow: &[&str]) -> Response {
    error_with(error, allow, &[])
}

/// An error with extra headers (for example the rate-limit ones).
pub fn error_with(error: &ApiError, allow: &[&str], headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder();
    builder.status(error.status).header("content-type", "application/json");
    if error.status == 405 {
        builder.header("allow", allow.join(", "));
    }
    for (name, value) in headers {
        builder.header(*name, value.as_str());
    }
    builder.body(error.to_json()).build()
}

/// Rejects any method but `allowed` with a 405.
pub fn require_method(method: &spin_sdk::http::Method, allowed: &[&str]) -> Result<(), ApiError> {
    let name = method.to_string();
    if allowed.iter().any(|m| m.eq_ignore_ascii_case(&name)) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(&name, allowed))
    }
}
