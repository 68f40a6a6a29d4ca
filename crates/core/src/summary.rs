//! Summary requests: which window a request covers, its cache key, and the
//! numbers reported for the aggregate of that window.

use serde_json::{json, Value};

use crate::aggregate::Aggregate;
use crate::api_error::ApiError;
use crate::metric::validate_type;
use crate::query::Query;
use crate::time::{decompose, format_timestamp, parse_timestamp, Bucket, MS_PER_SECOND};

/// A named period, or an explicit range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    All,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Range,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::All => "all",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Range => "range",
        }
    }

    fn seconds(self) -> Option<i64> {
        match self {
            Period::Hourly => Some(3_600),
            Period::Daily => Some(86_400),
            Period::Weekly => Some(7 * 86_400),
            Period::Monthly => Some(30 * 86_400),
            Period::All | Period::Range => None,
        }
    }

    fn parse(text: &str) -> Result<Period, ApiError> {
        Ok(match text {
            "all" => Period::All,
            "hourly" => Period::Hourly,
            "daily" => Period::Daily,
            "weekly" => Period::Weekly,
            "monthly" => Period::Monthly,
            other => {
                return Err(ApiError::bad_request(
                    "period",
                    format!("`{other}` is not one of all, hourly, daily, weekly, monthly"),
                ))
            }
        })
    }
}

/// Whole seconds `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_second: i64,
    pub to_second: i64,
}

impl Window {
    /// The last `seconds`, including the current second.
    pub fn trailing(seconds: i64, now_ms: i64) -> Window {
        let to_second = now_ms.div_euclid(MS_PER_SECOND) + 1;
        Window {
            from_second: to_second - seconds,
            to_second,
        }
    }

    pub fn buckets(&self) -> Vec<Bucket> {
        decompose(self.from_second, self.to_second)
    }

    pub fn contains_ms(&self, ms: i64) -> bool {
        ms >= self.from_second * MS_PER_SECOND && ms < self.to_second * MS_PER_SECOND
    }
}

/// A validated summary request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRequest {
    pub metric_type: String,
    pub period: Period,
    /// `None` for all time.
    pub window: Option<Window>,
}

impl SummaryRequest {
    /// Reads `type`, and `period` or `from`/`to` (from inclusive, to exclusive,
    /// both rounded outward to whole seconds; `to` defaults to now).
    pub fn parse(query: &Query, now_ms: i64) -> Result<SummaryRequest, ApiError> {
        let metric_type = query.required("type")?.to_string();
        validate_type(&metric_type).map_err(|m| ApiError::bad_request("type", m))?;
        let range = query.get("from").is_some() || query.get("to").is_some();
        if range {
            if query.get("period").is_some() {
                return Err(ApiError::bad_request("period", "give either period or from/to, not both"));
            }
            let from_ms = parse_timestamp(query.required("from")?).map_err(|m| ApiError::bad_request("from", m))?;
            let to_ms = match query.get("to") {
                Some(text) => parse_timestamp(text).map_err(|m| ApiError::bad_request("to", m))?,
                None => now_ms,
            };
            let window = Window {
                from_second: from_ms.div_euclid(MS_PER_SECOND),
                to_second: (to_ms + MS_PER_SECOND - 1).div_euclid(MS_PER_SECOND),
            };
            if window.to_second <= window.from_second {
                return Err(ApiError::bad_request("to", "must be later than from"));
            }
            return Ok(SummaryRequest { metric_type, period: Period::Range, window: Some(window) });
        }
        let period = Period::parse(query.get("period").unwrap_or("all"))?;
        let window = period.seconds().map(|s| Window::trailing(s, now_ms));
        Ok(SummaryRequest { metric_type, period, window })
    }

    /// The Redis key the cached answer lives under.
    pub fn cache_key(&self) -> String {
        match (self.period, self.window) {
            (Period::Range, Some(w)) => format!("summary:{}:range:{}:{}", self.metric_type, w.from_second, w.to_second),
            (period, _) => format!("summary:{}:{}", self.metric_type, period.name()),
        }
    }

    /// The response body for `aggregate`, without `external_data`, which the caller adds.
    pub fn report(&self, aggregate: &Aggregate, computed_at_ms: i64) -> Value {
        let count = aggregate.count;
        let number = |v: f64| if count == 0 { 0.0 } else { v };
        // A sketch estimate never lies outside the exact extremes.
        let quantile = |q: f64| {
            aggregate
                .sketch
                .quantile(q)
                .map_or(0.0, |v| v.clamp(aggregate.min, aggregate.max))
        };
        let (from, to) = match self.window {
            Some(w) => (
                Value::String(format_timestamp(w.from_second * MS_PER_SECOND)),
                Value::String(format_timestamp(w.to_second * MS_PER_SECOND)),
            ),
            None => (Value::Null, Value::Null),
        };
        json!({
            "type": self.metric_type,
            "period": self.period.name(),
            "from": from,
            "to": to,
            "count": count,
            "sum": number(aggregate.sum),
            "average_value": if count == 0 { 0.0 } else { aggregate.sum / count as f64 },
            "min_value": number(aggregate.min),
            "max_value": number(aggregate.max),
            "latest_value": number(aggregate.latest_value),
            "latest_timestamp": if count == 0 { Value::Null } else { Value::String(format_timestamp(aggregate.latest_ms)) },
            "p50": quantile(0.50),
            "p95": quantile(0.95),
            "p99": quantile(0.99),
            "computed_at": format_timestamp(computed_at_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_771_416_000_500; // 2026-02-18T12:00:00.5Z

    fn request(query: &str) -> Result<SummaryRequest, ApiError> {
        SummaryRequest::parse(&Query::parse(query).unwrap(), NOW)
    }

    #[test]
    fn periods_are_trailing_windows_including_this_second() {
        let r = request("type=cpu&period=hourly").unwrap();
        let w = r.window.unwrap();
        assert_eq!(w.to_second - w.from_second, 3_600);
        assert!(w.contains_ms(NOW));
        assert!(!w.contains_ms(NOW - 3_600_000));
        assert!(w.contains_ms(NOW - 3_599_000));
        assert_eq!(request("type=cpu").unwrap().period, Period::All);
        assert_eq!(request("type=cpu").unwrap().window, None);
    }

    #[test]
    fn ranges_round_outward_and_must_be_ordered() {
        let r = request("type=cpu&from=2026-02-18T11:00:00.5Z&to=2026-02-18T11:30:00.2Z").unwrap();
        let w = r.window.unwrap();
        assert_eq!(w.from_second * 1000, parse_timestamp("2026-02-18T11:00:00Z").unwrap());
        assert_eq!(w.to_second * 1000, parse_timestamp("2026-02-18T11:30:01Z").unwrap());
        assert!(r.cache_key().starts_with("summary:cpu:range:"));
        assert_eq!(request("type=cpu&from=2026-02-18T11:00:00Z&to=2026-02-18T10:00:00Z").unwrap_err().status, 400);
        assert_eq!(request("type=cpu&from=2026-02-18T11:00:00Z&period=daily").unwrap_err().status, 400);
        assert_eq!(request("type=cpu&to=2026-02-18T11:00:00Z").unwrap_err().status, 400);
    }

    #[test]
    fn bad_parameters_are_400s() {
        for q in ["", "type=", "type=a%20b", "type=cpu&period=yearly", "type=cpu&from=yesterday"] {
            assert_eq!(request(q).unwrap_err().status, 400, "{q}");
        }
    }

    #[test]
    fn reports_zeros_without_data_and_clamped_quantiles_with_data() {
        let r = request("type=cpu&period=daily").unwrap();
        let empty = r.report(&Aggregate::default(), NOW);
        assert_eq!(empty["count"], 0);
        assert_eq!(empty["p99"], 0.0);
        assert!(empty["latest_timestamp"].is_null());
        let mut a = Aggregate::default();
        for v in [10.0, 20.0, 30.0] {
            a.record(v, NOW);
        }
        let report = r.report(&a, NOW);
        assert_eq!(report["average_value"], 20.0);
        assert!(report["p99"].as_f64().unwrap() <= 30.0);
        assert_eq!(r.cache_key(), "summary:cpu:daily");
    }
}

/// A cache entry: the type's version when the answer was computed, then the
/// answer's JSON, so a hit is served without parsing it.
pub fn encode_cached(version: i64, body: &str) -> Vec<u8> {
    format!("{version}\n{body}").into_bytes()
}

/// The version and body of a cache entry, if it is one.
pub fn decode_cached(entry: &[u8]) -> Option<(i64, &[u8])> {
    let newline = entry.iter().position(|b| *b == b'\n')?;
    let version = std::str::from_utf8(&entry[..newline]).ok()?.parse().ok()?;
    Some((version, &entry[newline + 1..]))
}

/// The aggregate of `request`'s window, read from at most a few hundred
/// buckets however many metrics the type holds.
pub fn window_aggregate(reader: &mut dyn crate::store::Reader, request: &SummaryRequest) -> Result<Aggregate, crate::store::ReadError> {
    let keys: Vec<String> = match request.window {
        None => vec![crate::store::total_key(&request.metric_type)],
        Some(window) => window
            .buckets()
            .into_iter()
            .map(|b| crate::store::bucket_key(&request.metric_type, b))
            .collect(),
    };
    let mut total = Aggregate::default();
    for aggregate in reader.aggregates(&keys)?.into_iter().flatten() {
        total.merge(&aggregate);
    }
    Ok(total)
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn cache_entries_round_trip_and_refuse_garbage() {
        let entry = encode_cached(42, r#"{"count":1}"#);
        assert_eq!(decode_cached(&entry), Some((42, &br#"{"count":1}"#[..])));
        assert_eq!(decode_cached(b"{\"version\": 1}"), None);
        assert_eq!(decode_cached(b"x\n{}"), None);
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use crate::ingest::ingest_into;
    use crate::metric::Metric;
    use crate::store::MemoryStore;

    fn store_with(points: &[(f64, i64)]) -> MemoryStore {
        let mut store = MemoryStore::default();
        for (i, (value, ts)) in points.iter().enumerate() {
            ingest_into(&mut store, &Metric { id: format!("m{i}"), metric_type: "cpu".into(), value: *value, timestamp_ms: *ts });
        }
        store
    }

    #[test]
    fn windows_include_exactly_their_metrics() {
        let now = 1_771_416_000_500;
        let store_points = [(1.0, now), (2.0, now - 3_599_000), (4.0, now - 3_600_000), (8.0, now - 86_399_000), (16.0, now + 60_000)];
        let mut store = store_with(&store_points);
        let sum = |store: &mut MemoryStore, q: &str| {
            let request = SummaryRequest::parse(&Query::parse(q).unwrap(), now).unwrap();
            window_aggregate(store, &request).unwrap().sum
        };
        assert_eq!(sum(&mut store, "type=cpu&period=hourly"), 3.0);
        assert_eq!(sum(&mut store, "type=cpu&period=daily"), 15.0);
        assert_eq!(sum(&mut store, "type=cpu"), 31.0);
        assert_eq!(sum(&mut store, "type=other"), 0.0);
    }

    #[test]
    fn cost_does_not_grow_with_the_number_of_metrics() {
        let now = 1_771_416_000_500;
        let request = SummaryRequest::parse(&Query::parse("type=cpu&period=monthly").unwrap(), now).unwrap();
        let reads = |n: i64| {
            let points: Vec<(f64, i64)> = (0..n).map(|i| (i as f64, now - (i * 2_592_000_000 / n))).collect();
            let mut store = store_with(&points);
            let aggregate = window_aggregate(&mut store, &request).unwrap();
            assert_eq!(aggregate.count as i64, n);
            store.reads
        };
        assert_eq!(reads(10), reads(5_000));
    }
}
