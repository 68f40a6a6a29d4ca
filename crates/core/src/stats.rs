//! Event-analytics views over the aggregates: distinct users per day, week or
//! month (DAU/WAU/MAU), the busiest types of a window, and a time series of
//! one type for charts. Each reads buckets (and the journals), never metrics.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::aggregate::Aggregate;
use crate::api_error::ApiError;
use crate::hll::Hll;
use crate::kv::{Reader, StoreError};
use crate::metric::validate_type;
use crate::pending::Pending;
use crate::query::Query;
use crate::summary::{check_window, windows_aggregates, Window};
use crate::time::{format_timestamp, parse_instant, parse_step, MS_PER_SECOND};

const DAY_MS: i64 = 86_400 * MS_PER_SECOND;
/// Most intervals one active-users request may ask for.
pub const MAX_INTERVALS: usize = 400;
/// Most points of one series.
pub const MAX_POINTS: usize = 1_000;
pub const MAX_TOP_TYPES: usize = 100;

/// Calendar intervals of activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    /// ISO weeks, from Monday.
    Week,
    Month,
}

impl Interval {
    pub fn parse(text: &str, allowed: &[Interval]) -> Result<Interval, ApiError> {
        let interval = match text {
            "day" => Interval::Day,
            "week" => Interval::Week,
            "month" => Interval::Month,
            _ => return Err(ApiError::bad_request("interval", format!("`{text}` is not one of {}", names(allowed)))),
        };
        if allowed.contains(&interval) {
            Ok(interval)
        } else {
            Err(ApiError::bad_request("interval", format!("`{text}` is not one of {}", names(allowed))))
        }
    }

    /// The start of the interval holding `ms`.
    pub fn start_of(self, ms: i64) -> i64 {
        let day = ms.div_euclid(DAY_MS);
        match self {
            Interval::Day => day * DAY_MS,
            // 1970-01-01 was a Thursday: Monday is three days before.
            Interval::Week => (day - (day + 3).rem_euclid(7)) * DAY_MS,
            Interval::Month => {
                let date = date_of(ms);
                NaiveDate::from_ymd_opt(date.year(), date.month(), 1).map_or(day * DAY_MS, ms_of)
            }
        }
    }

    /// The start of the next interval after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Interval::Day => start + DAY_MS,
            Interval::Week => start + 7 * DAY_MS,
            Interval::Month => {
                let date = date_of(start);
                let (year, month) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
                NaiveDate::from_ymd_opt(year, month, 1).map_or(start + 31 * DAY_MS, ms_of)
            }
        }
    }

    /// The intervals overlapping `[from_ms, to_ms)`, whole.
    pub fn covering(self, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, i64)>, ApiError> {
        let mut out = Vec::new();
        let mut start = self.start_of(from_ms);
        while start < to_ms {
            let end = self.next(start);
            out.push((start, end));
            if out.len() > MAX_INTERVALS {
                return Err(ApiError::bad_request("from", format!("covers more than {MAX_INTERVALS} intervals; narrow the range")));
            }
            start = end;
        }
        Ok(out)
    }
}

fn names(allowed: &[Interval]) -> String {
    let name = |i: &Interval| match i {
        Interval::Day => "day",
        Interval::Week => "week",
        Interval::Month => "month",
    };
    allowed.iter().map(name).collect::<Vec<_>>().join(", ")
}

fn date_of(ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(NaiveDate::MIN, |t| t.date_naive())
}

fn ms_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis())
}

fn window(start_ms: i64, end_ms: i64) -> Window {
    Window { from_second: start_ms.div_euclid(MS_PER_SECOND), to_second: end_ms.div_euclid(MS_PER_SECOND) }
}

/// `from`/`to` as instants, `to` defaulting to now and `from` to `default_span_ms` before `to`.
fn range(query: &Query, now_ms: i64, default_span_ms: i64) -> Result<(i64, i64), ApiError> {
    let instant = |name: &str| query.get(name).map(|t| parse_instant(t).map_err(|m| ApiError::bad_request(name, m))).transpose();
    let to = instant("to")?.unwrap_or(now_ms);
    let from = instant("from")?.unwrap_or(to - default_span_ms);
    if from >= to {
        return Err(ApiError::bad_request("to", "must be later than from"));
    }
    Ok((from, to))
}

/// [`range`], checked as a summary window.
fn bounded_range(query: &Query, now_ms: i64, default_span_ms: i64) -> Result<(i64, i64), ApiError> {
    let (from, to) = range(query, now_ms, default_span_ms)?;
    check_window(from, to)?;
    Ok((from, to))
}

fn optional_type(query: &Query) -> Result<Option<String>, ApiError> {
    match query.get("type") {
        None | Some("") => Ok(None),
        Some(t) => {
            validate_type(t).map_err(|m| ApiError::bad_request("type", m))?;
            Ok(Some(t.to_string()))
        }
    }
}

/// `GET /api/stats/active-users?type=&from=&to=&interval=day|week|month`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveUsersRequest {
    pub metric_type: Option<String>,
    pub interval: Interval,
    pub intervals: Vec<(i64, i64)>,
}

impl ActiveUsersRequest {
    /// Without `from`, the last 30 intervals up to `to` (default now).
    pub fn parse(query: &Query, now_ms: i64) -> Result<ActiveUsersRequest, ApiError> {
        let interval = Interval::parse(query.get("interval").unwrap_or("day"), &[Interval::Day, Interval::Week, Interval::Month])?;
        let span = match interval {
            Interval::Day => 30 * DAY_MS,
            Interval::Week => 30 * 7 * DAY_MS,
            Interval::Month => 30 * 31 * DAY_MS,
        };
        let (from, to) = range(query, now_ms, span)?;
        Ok(ActiveUsersRequest { metric_type: optional_type(query)?, interval, intervals: interval.covering(from, to)? })
    }
}

/// Each interval's distinct users, across `types` (the request's type if it names one).
pub fn active_users(reader: &mut dyn Reader, request: &ActiveUsersRequest, types: &[String]) -> Result<Value, StoreError> {
    let windows: Vec<Option<Window>> = request.intervals.iter().map(|(s, e)| Some(window(*s, *e))).collect();
    let mut users = vec![Hll::default(); windows.len()];
    for metric_type in request.metric_type.iter().chain(types.iter().filter(|_| request.metric_type.is_none())) {
        let pending = Pending::read(reader, metric_type)?;
        for (union, window) in users.iter_mut().zip(windows_aggregates(reader, metric_type, &windows, &pending)?) {
            if let Some(hll) = &window.users {
                union.merge(hll);
            }
        }
    }
    let points: Vec<Value> = request
        .intervals
        .iter()
        .zip(users)
        .map(|((start, end), hll)| json!({"start": format_timestamp(*start), "end": format_timestamp(*end), "active_users": hll.estimate()}))
        .collect();
    Ok(json!({"type": request.metric_type, "interval": names(&[request.interval]), "data": points}))
}

/// `GET /api/stats/top-types?from=&to=&limit=`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopTypesRequest {
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: usize,
}

impl TopTypesRequest {
    /// Without `from`, the last 24 hours up to `to` (default now); `limit` 1–100, default 10.
    pub fn parse(query: &Query, now_ms: i64) -> Result<TopTypesRequest, ApiError> {
        let (from_ms, to_ms) = bounded_range(query, now_ms, DAY_MS)?;
        let limit = match query.get("limit") {
            None => 10,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_TOP_TYPES).contains(&n) => n,
                _ => return Err(ApiError::bad_request("limit", format!("must be a whole number from 1 to {MAX_TOP_TYPES}"))),
            },
        };
        Ok(TopTypesRequest { from_ms, to_ms, limit })
    }
}

/// Types by number of metrics in the window (most first, then by name).
pub fn top_types(reader: &mut dyn Reader, request: &TopTypesRequest, types: &[String]) -> Result<Value, StoreError> {
    // Whole seconds, rounded outward as summaries round them.
    let w = Window {
        from_second: request.from_ms.div_euclid(MS_PER_SECOND),
        to_second: (request.to_ms + MS_PER_SECOND - 1).div_euclid(MS_PER_SECOND),
    };
    let mut counts = Vec::new();
    for metric_type in types {
        let pending = Pending::read(reader, metric_type)?;
        let total = windows_aggregates(reader, metric_type, &[Some(w)], &pending)?.pop().unwrap_or_default();
        if total.count > 0 {
            counts.push((metric_type.clone(), total));
        }
    }
    counts.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(request.limit);
    let rows: Vec<Value> = counts
        .iter()
        .map(|(t, a)| json!({"type": t, "count": a.count, "unique_users": a.unique_users()}))
        .collect();
    Ok(json!({
        "from": format_timestamp(w.from_second * MS_PER_SECOND),
        "to": format_timestamp(w.to_second * MS_PER_SECOND),
        "types": rows,
    }))
}

/// `GET /api/metrics/series?type=&from=&to=&step=` (`start`/`end` too, as in Prometheus).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRequest {
    pub metric_type: String,
    pub step_seconds: i64,
    /// Each point's first second; a point covers `[start, start + step)`.
    pub starts: Vec<i64>,
}

impl SeriesRequest {
    /// Points start at `from` rounded down to a multiple of `step` and go on
    /// while they start before `to` (default now).
    pub fn parse(query: &Query, now_ms: i64) -> Result<SeriesRequest, ApiError> {
        let metric_type = query.required("type")?.to_string();
        validate_type(&metric_type).map_err(|m| ApiError::bad_request("type", m))?;
        let step_seconds = parse_step(query.required("step")?).map_err(|m| ApiError::bad_request("step", m))?;
        fn pick<'q>(query: &'q Query, a: &'static str, b: &'static str) -> Option<(&'static str, &'q str)> {
            query.get(a).map(|v| (a, v)).or_else(|| query.get(b).map(|v| (b, v)))
        }
        let instant = |name: &str, text: &str| parse_instant(text).map_err(|m| ApiError::bad_request(name, m));
        let (from_name, from_text) = pick(query, "from", "start").ok_or_else(|| ApiError::bad_request("from", "is required"))?;
        let from = instant(from_name, from_text)?;
        let to = match pick(query, "to", "end") {
            Some((name, text)) => instant(name, text)?,
            None => now_ms,
        };
        check_window(from, to)?;
        let first = from.div_euclid(MS_PER_SECOND).div_euclid(step_seconds) * step_seconds;
        let last = to.div_euclid(MS_PER_SECOND);
        let points = ((last - first) / step_seconds + 1) as usize;
        if points > MAX_POINTS {
            return Err(ApiError::bad_request(
                "step",
                format!("gives {points} points; at most {MAX_POINTS} are allowed: use a larger step or a shorter range"),
            ));
        }
        let starts = (0..points as i64).map(|i| first + i * step_seconds).filter(|s| s * MS_PER_SECOND < to).collect();
        Ok(SeriesRequest { metric_type, step_seconds, starts })
    }
}

fn point(start_second: i64, a: &Aggregate) -> Value {
    let count = a.count;
    let number = |v: f64| if count == 0 { 0.0 } else { v };
    let quantile = |q: f64| a.sketch.quantile(q).map_or(0.0, |v| v.clamp(a.min, a.max));
    let mut p = json!({
        "start": format_timestamp(start_second * MS_PER_SECOND),
        "count": count,
        "sum": number(a.sum),
        "avg": if count == 0 { 0.0 } else { a.sum / count as f64 },
        "min": number(a.min),
        "max": number(a.max),
        "p50": quantile(0.50),
        "p95": quantile(0.95),
        "p99": quantile(0.99),
    });
    if a.users.is_some() {
        p["unique_users"] = json!(a.unique_users());
    }
    p
}

/// One point per step, empty steps included.
pub fn series(reader: &mut dyn Reader, request: &SeriesRequest) -> Result<Value, StoreError> {
    let pending = Pending::read(reader, &request.metric_type)?;
    let windows: Vec<Option<Window>> =
        request.starts.iter().map(|s| Some(Window { from_second: *s, to_second: s + request.step_seconds })).collect();
    let aggregates = windows_aggregates(reader, &request.metric_type, &windows, &pending)?;
    let points: Vec<Value> = request.starts.iter().zip(&aggregates).map(|(s, a)| point(*s, a)).collect();
    Ok(json!({"type": request.metric_type, "step_seconds": request.step_seconds, "points": points}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{fold_all, ingest};
    use crate::memory_store::MemoryStore;
    use crate::metric::Metric;
    use crate::time::parse_timestamp;

    fn at(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    fn user_metric(i: usize, t: &str, user: &str, ts: i64) -> Metric {
        Metric { user_id: Some(user.into()), ..Metric::new(format!("m{i}"), t, 1.0, ts) }
    }

    /// History from decades ago answers like yesterday's: a yearly series
    /// over 20 years of daily metrics is exact and reads a few hundred
    /// buckets per point, not one per day.
    #[test]
    fn a_yearly_series_over_twenty_years_is_exact_and_cheap() {
        let mut store = MemoryStore::default();
        let start = at("1995-01-01T00:00:00Z");
        let days = 20 * 365 + 5;
        for d in 0..days {
            let m = Metric::new(format!("d{d}"), "price", (d % 100) as f64, start + d * DAY_MS + 36_000_000);
            ingest(&mut store, &m, false, d as usize, None).unwrap();
        }
        fold_all(&mut store, "price", None).unwrap();
        let request = SeriesRequest::parse(&Query::parse("type=price&from=1995-01-01T00:00:00Z&to=2015-01-01T00:00:00Z&step=1y").unwrap(), at("2026-01-01T00:00:00Z")).unwrap();
        let mut reader = store.request();
        let s = series(&mut reader, &request).unwrap();
        let points = s["points"].as_array().unwrap();
        let total: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
        let in_range = (0..days).filter(|d| start + d * DAY_MS + 36_000_000 < at("2015-01-01T00:00:00Z")).count() as u64;
        let first_start = request.starts[0] * 1000;
        let skipped = (0..days).filter(|d| start + d * DAY_MS + 36_000_000 < first_start).count() as u64;
        assert_eq!(total + skipped, in_range, "every day's metric in exactly one yearly point");
        assert!(points.iter().skip(1).take(18).all(|p| (365..=366).contains(&p["count"].as_u64().unwrap())), "{points:?}");
        assert!(reader.reads < points.len() * 600, "{} keys for {} points", reader.reads, points.len());
    }

    #[test]
    fn intervals_are_calendar_days_iso_weeks_and_months() {
        let ms = at("2026-02-18T13:00:00Z"); // a Wednesday
        assert_eq!(Interval::Day.start_of(ms), at("2026-02-18T00:00:00Z"));
        assert_eq!(Interval::Week.start_of(ms), at("2026-02-16T00:00:00Z"));
        assert_eq!(Interval::Month.start_of(ms), at("2026-02-01T00:00:00Z"));
        assert_eq!(Interval::Month.next(at("2026-12-01T00:00:00Z")), at("2027-01-01T00:00:00Z"));
        let months = Interval::Month.covering(at("2026-01-15T00:00:00Z"), at("2026-03-02T00:00:00Z")).unwrap();
        assert_eq!(months.len(), 3);
        assert!(Interval::Day.covering(0, 500 * DAY_MS).is_err());
    }

    #[test]
    fn active_users_count_distinct_users_per_interval_folded_or_not() {
        let mut store = MemoryStore::default();
        let day = |d: i64| at("2026-02-16T12:00:00Z") + d * DAY_MS;
        // Monday: u0..u9; Tuesday: u5..u14; both in one week, also in another type.
        let mut i = 0;
        for (d, users) in [(0, 0..10), (1, 5..15)] {
            for u in users {
                for t in ["a", "b"] {
                    ingest(&mut store, &user_metric(i, t, &format!("u{u}"), day(d)), false, i, None).unwrap();
                    i += 1;
                }
            }
        }
        for folded in [false, true] {
            let q = |text: &str| ActiveUsersRequest::parse(&Query::parse(text).unwrap(), day(3)).unwrap();
            let types = vec!["a".to_string(), "b".to_string()];
            let daily = active_users(&mut store, &q("from=2026-02-16T00:00:00Z&to=2026-02-18T00:00:00Z"), &types).unwrap();
            let counts: Vec<u64> = daily["data"].as_array().unwrap().iter().map(|p| p["active_users"].as_u64().unwrap()).collect();
            assert_eq!(counts, [10, 10], "folded: {folded}");
            let weekly = active_users(&mut store, &q("type=a&interval=week&from=2026-02-16T00:00:00Z&to=2026-02-17T00:00:00Z"), &[]).unwrap();
            assert_eq!(weekly["data"][0]["active_users"], 15);
            fold_all(&mut store, "a", None).unwrap();
            fold_all(&mut store, "b", None).unwrap();
        }
    }

    #[test]
    fn top_types_rank_by_count() {
        let mut store = MemoryStore::default();
        let now = at("2026-02-18T12:00:00Z");
        for (t, n) in [("x", 3), ("y", 7), ("z", 1)] {
            for i in 0..n {
                ingest(&mut store, &Metric::new(format!("{t}{i}"), t, 1.0, now - 60_000), false, i, None).unwrap();
            }
        }
        ingest(&mut store, &Metric::new("old", "z", 1.0, now - 3 * DAY_MS), false, 0, None).unwrap();
        let request = TopTypesRequest::parse(&Query::parse("limit=2").unwrap(), now).unwrap();
        let types = ["x".to_string(), "y".to_string(), "z".to_string()];
        let top = top_types(&mut store, &request, &types).unwrap();
        let rows: Vec<(String, u64)> =
            top["types"].as_array().unwrap().iter().map(|r| (r["type"].as_str().unwrap().to_string(), r["count"].as_u64().unwrap())).collect();
        assert_eq!(rows, [("y".to_string(), 7), ("x".to_string(), 3)]);
    }

    #[test]
    fn series_have_one_point_per_step_empty_ones_included() {
        let mut store = MemoryStore::default();
        let base = at("2026-02-18T12:00:00Z");
        for i in 0..120 {
            // Every 30 s for an hour, skipping minutes 10 to 19.
            let ts = base + i * 30_000;
            if !(20..40).contains(&i) {
                ingest(&mut store, &Metric::new(format!("s{i}"), "cpu", i as f64, ts), false, i as usize, None).unwrap();
            }
        }
        let q = |text: &str| SeriesRequest::parse(&Query::parse(text).unwrap(), base + 3_600_000);
        let request = q("type=cpu&from=2026-02-18T12:00:00Z&to=2026-02-18T13:00:00Z&step=5m").unwrap();
        assert_eq!(request.starts.len(), 12);
        for folded in [false, true] {
            let s = series(&mut store, &request).unwrap();
            let counts: Vec<u64> = s["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).collect();
            assert_eq!(counts, [10, 10, 0, 0, 10, 10, 10, 10, 10, 10, 10, 10], "folded: {folded}");
            assert_eq!(s["points"][0]["start"], "2026-02-18T12:00:00Z");
            assert_eq!(s["points"][1]["avg"], 14.5);
            fold_all(&mut store, "cpu", None).unwrap();
        }
        // Unix seconds and Prometheus' names work too; too many points do not.
        let unix = q(&format!("type=cpu&start={}&end={}&step=60", base / 1000, base / 1000 + 600)).unwrap();
        assert_eq!(unix.starts.len(), 10);
        assert_eq!(q("type=cpu&from=2026-02-18T12:00:00Z&step=1s").unwrap_err().status, 400);
        assert_eq!(q("type=cpu&from=2026-02-18T12:00:00Z&step=0").unwrap_err().status, 400);
        assert_eq!(q("type=cpu&step=1m").unwrap_err().status, 400);
        assert_eq!(q("type=cpu&from=1990-01-01T00:00:00Z&step=1d").unwrap_err().status, 400, "over 1 000 points");
        let decades = q("type=cpu&from=1990-01-01T00:00:00Z&to=2010-01-01T00:00:00Z&step=1y").unwrap();
        assert_eq!((decades.step_seconds, decades.starts.len()), (365 * 86_400, 21), "yearly points over 20 years");
    }
}
