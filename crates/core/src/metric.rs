//! A metric, and the validation of an ingest request body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api_error::{ApiError, FieldError};
use crate::time::{format_timestamp, parse_timestamp, MS_PER_SECOND};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted magnitude, so sums over millions of metrics stay finite.
pub const MAX_ABS_VALUE: f64 = 1e15;
pub const MAX_TYPE_LEN: usize = 100;
pub const MAX_ID_LEN: usize = 128;
pub const MAX_PROPERTIES: usize = 32;
/// Largest `properties` object, serialised.
pub const MAX_PROPERTIES_BYTES: usize = 2 * 1024;

/// A stored metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub id: String,
    #[serde(rename = "type")]
    pub metric_type: String,
    pub value: f64,
    /// Unix milliseconds.
    #[serde(rename = "ts")]
    pub timestamp_ms: i64,
    /// Who did it, for distinct-user counts and retention.
    pub user_id: Option<String>,
    /// A flat JSON object, kept as its compact text (stored and listed, not aggregated).
    pub properties: Option<String>,
}

impl Metric {
    /// A metric without user or properties.
    pub fn new(id: impl Into<String>, metric_type: impl Into<String>, value: f64, timestamp_ms: i64) -> Metric {
        Metric { id: id.into(), metric_type: metric_type.into(), value, timestamp_ms, user_id: None, properties: None }
    }

    /// The public JSON form: `{"id", "type", "value", "timestamp"}`, plus
    /// `user_id` and `properties` when the metric has them.
    pub fn to_json(&self) -> Value {
        let mut json = serde_json::json!({
            "id": self.id,
            "type": self.metric_type,
            "value": self.value,
            "timestamp": format_timestamp(self.timestamp_ms),
        });
        if let Some(user) = &self.user_id {
            json["user_id"] = Value::String(user.clone());
        }
        if let Some(properties) = self.properties.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()) {
            json["properties"] = properties;
        }
        json
    }

    /// The metric as erasure leaves it when it cannot be removed (it waits in
    /// a journal and must still be counted): no id, user or properties. It
    /// is counted in aggregates and never listed.
    pub fn erased(&self) -> Metric {
        Metric { id: String::new(), user_id: None, properties: None, ..self.clone() }
    }

    /// Whether erasure left this metric only to be counted.
    pub fn is_erased(&self) -> bool {
        self.id.is_empty()
    }

    /// Same metric, ignoring the id: used to tell a retry from a conflicting reuse of an id.
    pub fn same_content(&self, other: &Metric) -> bool {
        self.metric_type == other.metric_type
            && self.value == other.value
            && self.timestamp_ms == other.timestamp_ms
            && self.user_id == other.user_id
            && self.properties == other.properties
    }
}

/// A validated ingest request; `id` is `None` when the server should assign one.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    pub id: Option<String>,
    pub metric_type: String,
    pub value: f64,
    pub timestamp_ms: i64,
    pub user_id: Option<String>,
    pub properties: Option<String>,
}

impl NewMetric {
    pub fn with_id(self, id: String) -> Metric {
        Metric {
            id,
            metric_type: self.metric_type,
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            user_id: self.user_id,
            properties: self.properties,
        }
    }
}

fn charset_ok(text: &str, extra: &[char]) -> bool {
    text.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Checks a metric type: 1–100 characters of `[A-Za-z0-9_.-]`.
pub fn validate_type(text: &str) -> Result<(), String> {
    if text.is_empty() || text.chars().count() > MAX_TYPE_LEN {
        return Err(format!("must be 1 to {MAX_TYPE_LEN} characters long"));
    }
    if !charset_ok(text, &['_', '.', '-']) {
        return Err("may contain only letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

/// Checks an id or user id: 1–128 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_id(text: &str) -> Result<(), String> {
    if text.is_empty() || text.chars().count() > MAX_ID_LEN {
        return Err(format!("must be 1 to {MAX_ID_LEN} characters long"));
    }
    if !charset_ok(text, &['_', '.', ':', '-']) {
        return Err("may contain only letters, digits, '_', '.', ':' and '-'".into());
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(details: Vec<FieldError>) -> ApiError {
    let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
    ApiError::new(422, "validation_failed", format!("invalid fields: {}", fields.join(", "))).with_details(details)
}

/// The timestamps a metric may carry, as of `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    pub now_ms: i64,
    /// How far in the future.
    pub max_clock_skew_seconds: u64,
    /// How far in the past: raw metrics are kept this many days (0: forever).
    pub retention_days: u64,
}

impl TimeLimits {
    /// No limit in the past.
    pub fn at(now_ms: i64, max_clock_skew_seconds: u64) -> TimeLimits {
        TimeLimits { now_ms, max_clock_skew_seconds, retention_days: 0 }
    }

    /// Why `ms` is refused, if it is.
    fn check(&self, ms: i64) -> Result<i64, String> {
        if ms > self.now_ms.saturating_add(self.max_clock_skew_seconds as i64 * MS_PER_SECOND) {
            return Err(format!("is more than {} s in the future", self.max_clock_skew_seconds));
        }
        match crate::expiry::Expiry::earliest_accepted_ms(self.now_ms, self.retention_days) {
            Some(earliest) if ms < earliest => Err(format!(
                "is older than the {} days raw metrics are kept (raw_retention_days); the earliest accepted now is {}",
                self.retention_days,
                format_timestamp(earliest)
            )),
            _ => Ok(ms),
        }
    }
}

/// Parses and validates an ingest body. Every problem is reported at once,
/// field by field.
pub fn parse_new_metric(body: &[u8], limits: &TimeLimits) -> Result<NewMetric, ApiError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        let message = if std::str::from_utf8(body).is_err() {
            "the body is not UTF-8 text".to_string()
        } else {
            format!("the body is not valid JSON: {e}")
        };
        ApiError::new(422, "invalid_json", message)
    })?;
    validate_metric(json, limits)
}

/// Validates one metric given as JSON (a body, or an item of a batch).
pub fn validate_metric(json: Value, limits: &TimeLimits) -> Result<NewMetric, ApiError> {
    let Value::Object(object) = json else {
        return Err(ApiError::new(
            422,
            "invalid_json",
            format!("a metric must be a JSON object, not {}", json_type(&json)),
        ));
    };
    let mut errors = Vec::new();

    let timestamp_ms = match object.get("timestamp") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("timestamp", "is required (RFC 3339, e.g. 2026-02-18T12:00:00Z)"));
            None
        }
        Some(Value::String(text)) => match parse_timestamp(text).and_then(|ms| limits.check(ms)) {
            Ok(ms) => Some(ms),
            Err(message) => {
                errors.push(FieldError::new("timestamp", message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new("timestamp", format!("must be a string, not {}", json_type(other))));
            None
        }
    };

    let value = match object.get("value") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("value", "is required (a finite number)"));
            None
        }
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && v.abs() <= MAX_ABS_VALUE => Some(v),
            _ => {
                errors.push(FieldError::new("value", format!("must be a finite number within ±{MAX_ABS_VALUE:e}")));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new("value", format!("must be a number, not {}", json_type(other))));
            None
        }
    };

    let metric_type = match object.get("type") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("type", "is required"));
            None
        }
        Some(Value::String(text)) => match validate_type(text) {
            Ok(()) => Some(text.clone()),
            Err(message) => {
                errors.push(FieldError::new("type", message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new("type", format!("must be a string, not {}", json_type(other))));
            None
        }
    };

    let id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match validate_id(text) {
            Ok(()) => Some(text.clone()),
            Err(message) => {
                errors.push(FieldError::new("id", message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new("id", format!("must be a string, not {}", json_type(other))));
            None
        }
    };

    let user_id = match object.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match validate_id(text) {
            Ok(()) => Some(text.clone()),
            Err(message) => {
                errors.push(FieldError::new("user_id", message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new("user_id", format!("must be a string, not {}", json_type(other))));
            None
        }
    };

    let properties = match object.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => validate_properties(map, &mut errors),
        Some(other) => {
            errors.push(FieldError::new("properties", format!("must be an object, not {}", json_type(other))));
            None
        }
    };

    match (timestamp_ms, value, metric_type) {
        (Some(timestamp_ms), Some(value), Some(metric_type)) if errors.is_empty() => Ok(NewMetric {
            id,
            metric_type,
            value,
            timestamp_ms,
            user_id,
            properties,
        }),
        _ => Err(invalid(errors)),
    }
}

/// A flat object of at most [`MAX_PROPERTIES`] keys, whose values are
/// strings, numbers, booleans or null, at most [`MAX_PROPERTIES_BYTES`]
/// serialised. Returns its compact text.
fn validate_properties(map: &serde_json::Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    let before = errors.len();
    if map.len() > MAX_PROPERTIES {
        errors.push(FieldError::new("properties", format!("has {} keys; at most {MAX_PROPERTIES} are allowed", map.len())));
    }
    for (key, value) in map {
        if key.is_empty() || key.chars().count() > MAX_TYPE_LEN {
            errors.push(FieldError::new("properties", format!("key names must be 1 to {MAX_TYPE_LEN} characters long")));
        }
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            errors.push(FieldError::new(
                format!("properties.{key}"),
                format!("must be a string, number, boolean or null, not {}", json_type(value)),
            ));
        }
    }
    let text = Value::Object(map.clone()).to_string();
    if text.len() > MAX_PROPERTIES_BYTES {
        errors.push(FieldError::new("properties", format!("is {} bytes serialised; at most {MAX_PROPERTIES_BYTES} are allowed", text.len())));
    }
    (errors.len() == before).then_some(text)
}

/// A new time-ordered unique id (a ULID) from the time and 80 random bits.
pub fn new_id(now_ms: i64, random: u128) -> String {
    ulid::Ulid::from_parts(now_ms.max(0) as u64, random).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_771_416_000_000; // 2026-02-18T12:00:00Z

    fn parse(body: &str) -> Result<NewMetric, ApiError> {
        parse_new_metric(body.as_bytes(), &TimeLimits::at(NOW, 300))
    }

    fn fields(err: ApiError) -> Vec<String> {
        err.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn with_a_retention_period_older_metrics_are_refused_by_name() {
        let limits = TimeLimits { retention_days: 30, ..TimeLimits::at(NOW, 300) };
        let old = r#"{"timestamp": "2026-01-18T11:59:59Z", "value": 1, "type": "cpu"}"#;
        let err = parse_new_metric(old.as_bytes(), &limits).unwrap_err();
        assert_eq!((err.status, fields(err.clone())), (422, vec!["timestamp".to_string()]));
        assert!(err.details[0].message.contains("30 days") && err.details[0].message.contains("2026-01-19T12:00:00Z"), "{:?}", err.details);
        let recent = r#"{"timestamp": "2026-01-19T12:00:00Z", "value": 1, "type": "cpu"}"#;
        assert!(parse_new_metric(recent.as_bytes(), &limits).is_ok());
        assert!(parse(old).is_ok(), "kept forever by default");
    }

    #[test]
    fn accepts_a_valid_metric() {
        let m = parse(r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 85.5, "type": "cpu_usage", "id": "a:1"}"#).unwrap();
        assert_eq!(
            m,
            NewMetric { id: Some("a:1".into()), metric_type: "cpu_usage".into(), value: 85.5, timestamp_ms: NOW, user_id: None, properties: None }
        );
        let m = parse(r#"{"timestamp": "2026-02-18T12:00:00", "value": -3, "type": "t"}"#).unwrap();
        assert_eq!((m.id, m.value), (None, -3.0));
    }

    #[test]
    fn reports_every_bad_field() {
        let err = parse(r#"{"timestamp": 5, "value": "85", "type": ""}"#).unwrap_err();
        assert_eq!(err.status, 422);
        assert_eq!(fields(err), vec!["timestamp", "value", "type"]);
        let err = parse("{}").unwrap_err();
        assert_eq!(fields(err), vec!["timestamp", "value", "type"]);
    }

    #[test]
    fn refuses_hostile_values() {
        for body in [
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 1e16, "type": "t"}"#,
            // Just over the bound: parsed with correct rounding (1e15 + 0.125), not rounded down onto it.
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 1000000000000000.1, "type": "t"}"#,
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": -1000000000000000.1, "type": "t"}"#,
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": null, "type": "t"}"#,
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": "NaN", "type": "t"}"#,
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 1, "type": "a b"}"#,
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 1, "type": "a\u0000b"}"#,
            r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 1, "type": "t", "id": "has space"}"#,
            r#"{"timestamp": "2026-02-18T12:05:01Z", "value": 1, "type": "t"}"#,
        ] {
            assert_eq!(parse(body).unwrap_err().status, 422, "{body}");
        }
        let long = format!(r#"{{"timestamp": "2026-02-18T12:00:00Z", "value": 1, "type": "{}"}}"#, "a".repeat(101));
        assert_eq!(fields(parse(&long).unwrap_err()), vec!["type"]);
        let ok = format!(r#"{{"timestamp": "2026-02-18T12:05:00Z", "value": 1, "type": "{}"}}"#, "a".repeat(100));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn refuses_malformed_bodies() {
        assert_eq!(parse("{").unwrap_err().code, "invalid_json");
        assert_eq!(parse("[1]").unwrap_err().code, "invalid_json");
        assert_eq!(parse(r#"{"value": 1e400}"#).unwrap_err().code, "invalid_json");
        let nested = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(parse(&nested).unwrap_err().code, "invalid_json");
        let err = parse_new_metric(&[0xff, 0xfe, b'{'], &TimeLimits::at(NOW, 300)).unwrap_err();
        assert!(err.message.contains("UTF-8"), "{}", err.message);
    }

    #[test]
    fn users_and_properties_are_optional_and_checked() {
        let m = parse(r#"{"timestamp": "2026-02-18T12:00:00Z", "value": 1, "type": "t", "user_id": "u-1", "properties": {"plan": "pro", "n": 3, "ok": true, "x": null}}"#).unwrap();
        assert_eq!(m.user_id.as_deref(), Some("u-1"));
        assert_eq!(m.properties.as_deref(), Some(r#"{"n":3,"ok":true,"plan":"pro","x":null}"#));
        let metric = m.with_id("a".into());
        assert_eq!(metric.to_json()["properties"]["plan"], "pro");
        let base = r#""timestamp": "2026-02-18T12:00:00Z", "value": 1, "type": "t""#;
        for (extra, field) in [
            (r#""user_id": "has space""#, "user_id"),
            (r#""user_id": 5"#, "user_id"),
            (r#""user_id": """#, "user_id"),
            (r#""properties": [1]"#, "properties"),
            (r#""properties": {"nested": {"a": 1}}"#, "properties.nested"),
            (r#""properties": {"list": [1]}"#, "properties.list"),
        ] {
            let err = parse(&format!("{{{base}, {extra}}}")).unwrap_err();
            assert_eq!(fields(err), vec![field], "{extra}");
        }
        let many: Vec<String> = (0..33).map(|i| format!(r#""k{i}": 1"#)).collect();
        assert_eq!(fields(parse(&format!("{{{base}, \"properties\": {{{}}}}}", many.join(","))).unwrap_err()), vec!["properties"]);
        let big = format!(r#"{{{base}, "properties": {{"s": "{}"}}}}"#, "x".repeat(2_100));
        assert_eq!(fields(parse(&big).unwrap_err()), vec!["properties"]);
        let mut other = metric.clone();
        other.user_id = Some("u-2".into());
        assert!(!metric.same_content(&other));
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = new_id(1_000, u128::MAX);
        let b = new_id(1_001, 0);
        assert_eq!(a.len(), 26);
        assert!(a < b);
    }
}
