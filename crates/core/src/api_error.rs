//! The one error shape every endpoint returns:
//! `{"error": "<code>", "message": "...", "details": [{"field": "...", "message": "..."}]}`.

use serde::Serialize;

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
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
    #[serde(skip)]
    pub status: u16,
    #[serde(rename = "error")]
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

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
