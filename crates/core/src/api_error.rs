//! The one error shape every endpoint returns:
//! `{"error": "<code>", "message": "...", "details": [{"field": "...", "message": "..."}]}`,
//! and [`ERROR_CODES`], the one list of the codes it may carry.

use serde::Serialize;

/// Every `error` code the API sends, by status as the README's table has
/// them. The one list: `components/schemas/ErrorCode` in openapi/openapi.yaml
/// must name exactly these, and every code the sources of the components and
/// of the crates they link write must be here (tests/error_codes.rs checks
/// both, so a new code fails the tests until it is listed and documented).
/// Kept as strings rather than an enum so that `ApiError::new` and the JSON
/// bodies written by hand stay as they are.
pub const ERROR_CODES: &[&str] = &[
    "invalid_parameter",      // 400
    "unauthorized",           // 401
    "forbidden",              // 403
    "origin_not_allowed",     // 403
    "not_found",              // 404
    "method_not_allowed",     // 405
    "id_conflict",            // 409 (also a batch item's)
    "payload_too_large",      // 413
    "unsupported_media_type", // 415
    "invalid_json",           // 422 (also a batch item's)
    "validation_failed",      // 422 (also a batch item's)
    "nothing_accepted",       // 422, a batch
    "rate_limited",           // 429
    "configuration_error",    // 500
    "service_unavailable",    // 503 (also a batch item's)
    "simulated_failure",      // 503, the simulated upstream
];

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field (for properties, `properties.<key>`) or query parameter.
    pub field: String,
    /// What is wrong with it, for a person.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error response: HTTP status, a stable snake_case code, and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status; not in the body.
    #[serde(skip)]
    pub status: u16,
    /// One of [`ERROR_CODES`], sent as `error`.
    #[serde(rename = "error")]
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// The fields at fault, if any (left out of the body when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    /// An error with no field details; `code` must be one of [`ERROR_CODES`].
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The same error, naming the fields at fault.
    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    /// 400: a query parameter is missing or malformed.
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(400, "invalid_parameter", format!("{field}: {message}"))
            .with_details(vec![FieldError::new(field, message)])
    }

    /// 404 for an unknown route.
    pub fn not_found(path: &str) -> Self {
        ApiError::new(404, "not_found", format!("no endpoint at {path}; GET / lists the endpoints"))
    }

    /// 405 for a known route and the wrong method; `allow` goes in the `Allow` header.
    pub fn method_not_allowed(method: &str, allow: &[&str]) -> Self {
        ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not supported here; use {}", allow.join(" or ")),
        )
    }

    /// 500 for a server-side configuration problem.
    pub fn configuration(message: impl Into<String>) -> Self {
        ApiError::new(500, "configuration_error", message)
    }

    /// 503 when a dependency the request cannot do without is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "service_unavailable", message)
    }

    /// The body, as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"error\":\"{}\"}}", self.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_the_documented_shape() {
        let e = ApiError::new(422, "validation_failed", "bad").with_details(vec![FieldError::new("value", "must be a number")]);
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "validation_failed", "message": "bad", "details": [{"field": "value", "message": "must be a number"}]})
        );
        let plain: serde_json::Value = serde_json::from_str(&ApiError::not_found("/x").to_json()).unwrap();
        assert!(plain.get("details").is_none());
    }
}
