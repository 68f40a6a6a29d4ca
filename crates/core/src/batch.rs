//! The body of `POST /api/metrics/batch`: a JSON array of metrics, or one
//! metric per line (NDJSON). Items are independent: each is validated on its
//! own, so one bad item is reported by its index and the others go on.

use serde_json::Value;

use crate::api_error::ApiError;
use crate::metric::{validate_metric, NewMetric, TimeLimits};

pub const MAX_BATCH_ITEMS: usize = 1_000;
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// How the items are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// `application/json`: an array.
    Json,
    /// `application/x-ndjson`: one object per line; blank lines are skipped.
    Ndjson,
}

impl BatchFormat {
    /// From a `Content-Type` header; `None` for anything else.
    pub fn from_content_type(value: &str) -> Option<BatchFormat> {
        let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Some(BatchFormat::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => Some(BatchFormat::Ndjson),
            _ => None,
        }
    }
}

fn too_many(count: usize) -> ApiError {
    ApiError::new(413, "payload_too_large", format!("the batch has {count} items; at most {MAX_BATCH_ITEMS} are allowed"))
}

/// Every item of `body`, validated against `limits`, in order.
pub fn parse_batch(body: &[u8], format: BatchFormat, limits: &TimeLimits) -> Result<Vec<Result<NewMetric, ApiError>>, ApiError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(ApiError::new(413, "payload_too_large", format!("the body is over {} MiB", MAX_BATCH_BYTES >> 20)));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::new(422, "invalid_json", "the body is not UTF-8 text"))?;
    let items: Vec<Result<Value, ApiError>> = match format {
        BatchFormat::Json => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items.into_iter().map(Ok).collect(),
            Ok(_) => return Err(ApiError::new(422, "invalid_json", "a batch is a JSON array of metrics")),
            Err(e) => return Err(ApiError::new(422, "invalid_json", format!("the body is not valid JSON: {e}"))),
        },
        BatchFormat::Ndjson => text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| ApiError::new(422, "invalid_json", format!("the line is not valid JSON: {e}")))
            })
            .collect(),
    };
    if items.len() > MAX_BATCH_ITEMS {
        return Err(too_many(items.len()));
    }
    if items.is_empty() {
        return Err(ApiError::new(422, "invalid_json", "the batch holds no metric"));
    }
    Ok(items.into_iter().map(|item| item.and_then(|json| validate_metric(json, limits))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_771_416_000_000;

    fn item(i: usize) -> String {
        format!(r#"{{"timestamp": "2026-02-18T12:00:00Z", "value": {i}, "type": "t"}}"#)
    }

    #[test]
    fn arrays_and_lines_give_the_same_items_bad_ones_in_place() {
        let array = format!("[{}, {{\"value\": 1}}, {}]", item(1), item(2));
        let lines = format!("{}\n\n{{\"value\": 1}}\n{}\n", item(1), item(2));
        for (body, format) in [(array, BatchFormat::Json), (lines, BatchFormat::Ndjson)] {
            let items = parse_batch(body.as_bytes(), format, &TimeLimits::at(NOW, 300)).unwrap();
            assert_eq!(items.len(), 3, "{format:?}");
            assert_eq!(items[0].as_ref().unwrap().value, 1.0);
            assert_eq!(items[1].as_ref().unwrap_err().status, 422);
            assert_eq!(items[2].as_ref().unwrap().value, 2.0);
        }
        let broken = parse_batch(format!("{}\n{{nope\n", item(1)).as_bytes(), BatchFormat::Ndjson, &TimeLimits::at(NOW, 300)).unwrap();
        assert_eq!(broken[1].as_ref().unwrap_err().code, "invalid_json");
    }

    #[test]
    fn limits_and_shapes_are_enforced() {
        let many = format!("[{}]", (0..1_001).map(item).collect::<Vec<_>>().join(","));
        assert_eq!(parse_batch(many.as_bytes(), BatchFormat::Json, &TimeLimits::at(NOW, 300)).unwrap_err().status, 413);
        assert_eq!(parse_batch(&vec![b' '; MAX_BATCH_BYTES + 1], BatchFormat::Json, &TimeLimits::at(NOW, 300)).unwrap_err().status, 413);
        for body in ["{}", "[", "[]", ""] {
            assert_eq!(parse_batch(body.as_bytes(), BatchFormat::Json, &TimeLimits::at(NOW, 300)).unwrap_err().status, 422, "{body}");
        }
        assert_eq!(BatchFormat::from_content_type("application/x-ndjson; charset=utf-8"), Some(BatchFormat::Ndjson));
        assert_eq!(BatchFormat::from_content_type("text/csv"), None);
    }
}
