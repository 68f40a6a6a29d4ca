//! Summary requests: which window a request covers, its cache key, and the
//! numbers reported for the aggregate of that window.

use serde_json::{json, Value};

use std::collections::HashMap;

use crate::aggregate::Aggregate;
use crate::api_error::ApiError;
use crate::fold::Target;
use crate::kv::{Reader, StoreError};
use crate::metric::validate_type;
use crate::pending::Pending;
use crate::query::Query;
use crate::time::{decompose, format_timestamp, parse_instant, Bucket, Level, MS_PER_SECOND};

/// A 400 unless `[from_ms, to_ms)` is ordered. Any length is fine: a window
/// is a few hundred buckets at most ([`crate::time::decompose`]).
pub fn check_window(from_ms: i64, to_ms: i64) -> Result<(), ApiError> {
    if to_ms <= from_ms {
        return Err(ApiError::bad_request("to", "must be later than from"));
    }
    Ok(())
}

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
            let from_ms = parse_instant(query.required("from")?).map_err(|m| ApiError::bad_request("from", m))?;
            let to_ms = match query.get("to") {
                Some(text) => parse_instant(text).map_err(|m| ApiError::bad_request("to", m))?,
                None => now_ms,
            };
            check_window(from_ms, to_ms)?;
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
            "unique_users": aggregate.unique_users(),
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
        assert_eq!(w.from_second * 1000, parse_instant("2026-02-18T11:00:00Z").unwrap());
        assert_eq!(w.to_second * 1000, parse_instant("2026-02-18T11:30:01Z").unwrap());
        assert_eq!(request("type=cpu&from=2026-02-18T11:00:00Z&to=2026-02-18T10:00:00Z").unwrap_err().status, 400);
        assert_eq!(request("type=cpu&from=2026-02-18T11:00:00Z&period=daily").unwrap_err().status, 400);
        assert_eq!(request("type=cpu&to=2026-02-18T11:00:00Z").unwrap_err().status, 400);
    }

    #[test]
    fn bad_parameters_are_400s() {
        for q in [
            "",
            "type=",
            "type=a%20b",
            "type=cpu&period=yearly",
            "type=cpu&from=yesterday",
            "type=cpu&from=2026-01-01T00:00:00Z&to=9999-12-31T23:59:59.5Z",
        ] {
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
    }
}

/// The buckets covering `window` (or the all-time aggregate).
fn window_targets(window: Option<Window>) -> Vec<Target> {
    match window {
        None => vec![Target::Total],
        Some(window) => window.buckets().into_iter().map(Target::Bucket).collect(),
    }
}

/// Which of a window's targets holds the instant `ms` (they do not overlap).
fn target_of(window: Option<Window>, positions: &HashMap<Target, usize>, ms: i64) -> Option<usize> {
    match window {
        None => positions.get(&Target::Total).copied(),
        Some(window) if window.contains_ms(ms) => {
            Level::ALL.iter().find_map(|&level| positions.get(&Target::Bucket(Bucket::containing(level, ms))).copied())
        }
        Some(_) => None,
    }
}

/// The aggregate of `request`'s window: at most a few hundred buckets, plus
/// the items `pending` (read first) holds that the buckets do not.
pub fn window_aggregate(reader: &mut dyn Reader, request: &SummaryRequest, pending: &Pending) -> Result<Aggregate, StoreError> {
    let mut all = windows_aggregates(reader, &request.metric_type, &[request.window], pending)?;
    Ok(all.pop().unwrap_or_default())
}

/// The aggregates of several windows of one type (`None`: all time), their
/// buckets read in one batch; `pending` is the type's journal, read first.
pub fn windows_aggregates(
    reader: &mut dyn Reader,
    metric_type: &str,
    windows: &[Option<Window>],
    pending: &Pending,
) -> Result<Vec<Aggregate>, StoreError> {
    let targets: Vec<Vec<Target>> = windows.iter().map(|w| window_targets(*w)).collect();
    let keys: Vec<String> = targets.iter().flatten().map(|t| t.key(metric_type)).collect();
    let mut values = reader.get_many(&keys)?.into_iter().zip(keys.iter());
    let mut out = Vec::with_capacity(windows.len());
    for (window, targets) in windows.iter().zip(&targets) {
        let mut buckets = Vec::with_capacity(targets.len());
        for (value, key) in values.by_ref().take(targets.len()) {
            buckets.push(match value {
                Some(bytes) => Aggregate::decode(&bytes).map_err(|e| StoreError::corrupt(key, e))?,
                None => Aggregate::default(),
            });
        }
        let positions: HashMap<Target, usize> = targets.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let mut total = Aggregate::merged(&buckets);
        for item in &pending.items {
            if let Some(i) = target_of(*window, &positions, item.metric.timestamp_ms) {
                if item.seq > buckets[i].watermark(item.shard) {
                    total.record_metric(&item.metric);
                }
            }
        }
        total.watermarks.clear();
        out.push(total);
    }
    Ok(out)
}

/// `earlier`, the aggregate of `request`'s window at some journal state,
/// plus the items `since` holds in the window: the aggregate at the later
/// state, when `since` is what [`Pending::since`] gave for the earlier one.
pub fn with_items(earlier: &Aggregate, request: &SummaryRequest, since: &Pending) -> Aggregate {
    let mut total = earlier.clone();
    for item in &since.items {
        if request.window.is_none_or(|w| w.contains_ms(item.metric.timestamp_ms)) {
            total.record_metric(&item.metric);
        }
    }
    total
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use crate::ingest::{fold_all, ingest};
    use crate::memory_store::MemoryStore;
    use crate::metric::Metric;

    const NOW: i64 = 1_771_416_000_500;

    fn request(q: &str) -> SummaryRequest {
        SummaryRequest::parse(&Query::parse(q).unwrap(), NOW).unwrap()
    }

    /// Stores `points` in `shards` journal shards, round robin.
    fn store_in(points: &[(f64, i64)], shards: usize) -> MemoryStore {
        let mut store = MemoryStore::default();
        for (i, (value, ts)) in points.iter().enumerate() {
            let metric = Metric::new(format!("m{i}"), "cpu", *value, *ts);
            ingest(&mut store, &metric, false, i % shards, None).unwrap();
        }
        store
    }

    fn store_with(points: &[(f64, i64)]) -> MemoryStore {
        store_in(points, crate::journal::SHARDS)
    }

    fn sum(store: &mut MemoryStore, q: &str) -> f64 {
        let request = request(q);
        let pending = Pending::read(store, &request.metric_type).unwrap();
        window_aggregate(store, &request, &pending).unwrap().sum
    }

    #[test]
    fn windows_include_exactly_their_metrics_folded_or_not() {
        let points = [(1.0, NOW), (2.0, NOW - 3_599_000), (4.0, NOW - 3_600_000), (8.0, NOW - 86_399_000), (16.0, NOW + 60_000)];
        let mut store = store_with(&points);
        for folded in [false, true] {
            assert_eq!(sum(&mut store, "type=cpu&period=hourly"), 3.0, "folded: {folded}");
            assert_eq!(sum(&mut store, "type=cpu&period=daily"), 15.0);
            assert_eq!(sum(&mut store, "type=cpu"), 31.0);
            assert_eq!(sum(&mut store, "type=other"), 0.0);
            fold_all(&mut store, "cpu", None).unwrap();
        }
    }

    /// The window's aggregate and the journal state it was read at.
    fn at_state(store: &mut MemoryStore, request: &SummaryRequest) -> (Aggregate, String) {
        let pending = Pending::read(store, &request.metric_type).unwrap();
        (window_aggregate(store, request, &pending).unwrap(), Pending::state(&pending.headers))
    }

    /// What [`Pending::since`] gives for `state` now.
    fn since(store: &mut MemoryStore, state: &str) -> Option<Pending> {
        let keys = crate::pending::journal_keys("cpu");
        let values = store.get_many(&keys).unwrap();
        Pending::since(&keys, &values, state).unwrap()
    }

    #[test]
    fn an_earlier_answer_plus_the_items_since_is_the_whole() {
        let points: Vec<(f64, i64)> = (0..300).map(|i| (i as f64, NOW - i * 7_000)).collect();
        for q in ["type=cpu&period=hourly", "type=cpu", "type=cpu&from=2026-02-18T11:00:00Z&to=2026-02-18T11:30:00Z"] {
            let mut store = store_in(&points, 2);
            let request = request(q);
            let (earlier, state) = at_state(&mut store, &request);
            let mut later = store.clone();
            for i in 0..20 {
                let metric = Metric::new(format!("n{i}"), "cpu", 1_000.0 + i as f64, NOW - i * 60_000);
                ingest(&mut later, &metric, false, i as usize % 2, None).unwrap();
            }
            let since = since(&mut later, &state).expect("the new items are still in the journal");
            assert_eq!(since.items.len(), 20);
            assert_eq!(with_items(&earlier, &request, &since), at_state(&mut later, &request).0, "{q}");
        }
    }

    #[test]
    fn a_fold_that_dies_anywhere_leaves_every_metric_counted_once() {
        let points: Vec<(f64, i64)> = (0..70).map(|i| (1.0 + i as f64, NOW - i * 1_000)).collect();
        let exact: f64 = points.iter().map(|(v, _)| v).sum();
        let key = crate::keys::journal_key("cpu", 0);
        let queries = ["type=cpu&period=hourly", "type=cpu", "type=cpu&from=2026-02-18T11:58:00Z&to=2026-02-18T11:59:30Z"];
        for writes in 0..80 {
            // One shard: the 64th append folded, six items wait in the journal.
            let mut store = store_in(&points, 1);
            let journal = crate::journal::Journal::decode(&key, &store.value(&key).unwrap()).unwrap();
            assert_eq!(journal.items.len(), 6);
            let earlier: Vec<(Aggregate, String)> = queries.iter().map(|q| at_state(&mut store, &request(q))).collect();
            let pending = Pending::read(&mut store, "cpu").unwrap();
            let mut dying = store.request();
            dying.writes_left = Some(writes);
            let finished = crate::fold::fold(&mut dying, "cpu", 0, &journal, None).is_ok();
            let metric = Metric::new("late", "cpu", 1_000.0, NOW);
            ingest(&mut store, &metric, false, 0, None).unwrap();
            for (q, (earlier, state)) in queries.iter().zip(&earlier) {
                let request = request(q);
                let window = window_aggregate(&mut store, &request, &pending).unwrap();
                if *q == "type=cpu&period=hourly" {
                    assert_eq!((window.count, window.sum), (70, exact), "died after {writes} writes");
                }
                let now = at_state(&mut store, &request).0;
                if let Some(since) = since(&mut store, state) {
                    assert_eq!(with_items(earlier, &request, &since), now, "{q}, died after {writes} writes");
                }
            }
            if finished {
                break;
            }
        }
    }

    #[test]
    fn a_window_of_decades_is_exact_and_reads_a_few_hundred_buckets() {
        let day = 86_400_000;
        let start = parse_instant("1990-06-01T00:00:00Z").unwrap();
        let points: Vec<(f64, i64)> = (0..25 * 365).map(|d| (1.0 + (d % 7) as f64, start + d * day + 1_234)).collect();
        let mut store = store_with(&points);
        fold_all(&mut store, "cpu", None).unwrap();
        let q = "type=cpu&from=1991-01-01T00:00:00Z&to=2011-01-01T00:00:00Z";
        let (from, to) = (parse_instant("1991-01-01T00:00:00Z").unwrap(), parse_instant("2011-01-01T00:00:00Z").unwrap());
        let exact: Vec<f64> = points.iter().filter(|(_, t)| (from..to).contains(t)).map(|(v, _)| *v).collect();
        let mut reader = store.request();
        let request = request(q);
        let pending = Pending::read(&mut reader, "cpu").unwrap();
        reader.reads = 0;
        let window = window_aggregate(&mut reader, &request, &pending).unwrap();
        assert_eq!((window.count, window.sum), (exact.len() as u64, exact.iter().sum::<f64>()));
        assert!(reader.reads < 600, "{} buckets for 20 years", reader.reads);
        assert_eq!(sum(&mut store, "type=cpu"), points.iter().map(|(v, _)| v).sum::<f64>(), "all time");
    }

    #[test]
    fn cost_does_not_grow_with_the_number_of_metrics() {
        let q = request("type=cpu&period=monthly");
        let reads = |n: i64| {
            let points: Vec<(f64, i64)> = (0..n).map(|i| (i as f64, NOW - (i * 2_592_000_000 / n))).collect();
            let mut store = store_with(&points);
            fold_all(&mut store, "cpu", None).unwrap();
            let mut reader = store.request();
            let pending = Pending::read(&mut reader, "cpu").unwrap();
            let aggregate = window_aggregate(&mut reader, &q, &pending).unwrap();
            assert_eq!(aggregate.count as i64, n);
            reader.reads
        };
        assert_eq!(reads(100), reads(5_000));
    }
}
