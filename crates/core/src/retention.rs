//! Cohort retention, kept exact at ingest.
//!
//! Per user, `user:{id}` holds the days the user was active (each with the
//! token of the request that added it). A metric on a day the user already
//! has costs one read; a new day costs one compare-and-swap and one or two
//! counter increments: `ret:d:{cohort day}:{offset}` and, when the week is
//! new too, `ret:w:{cohort week}:{offset}`, where the cohort is the user's
//! first day (week). A metric dated before the user's first day moves the
//! user to the earlier cohort: its counters are moved too (rare; a bulk
//! import of history in reverse order does it).
//!
//! Concurrent ingests of one user on any number of instances are serialised
//! by the compare-and-swap on the user's record, and a request recognises
//! its own landed write by its token, so every user-day is counted once, on
//! Spin v4.0.2's Redis store too. A request that dies between the record and
//! the increments leaves that user-day uncounted.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::kv::{decode_counter, update, Change, Kv, Reader, StoreError};
use crate::metric::Metric;
use crate::query::Query;
use crate::stats::Interval;
use crate::time::{format_timestamp, parse_instant, MS_PER_SECOND};

const DAY_MS: i64 = 86_400 * MS_PER_SECOND;
pub const MAX_PERIODS: usize = 60;
/// Most counters one request reads (cohorts × periods).
pub const MAX_CELLS: usize = 20_000;

pub fn user_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn counter_key(interval: Interval, cohort: i64, offset: i64) -> String {
    let tag = if interval == Interval::Week { 'w' } else { 'd' };
    format!("ret:{tag}:{cohort}:{offset}")
}

/// Days since 1970-01-01 (UTC).
fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// ISO weeks since the one holding 1970-01-01 (weeks start on Monday).
fn week_of(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

/// A user's record: active days with the token of the write that added each.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct UserDays {
    days: Vec<(i64, u64)>,
}

impl UserDays {
    fn decode(key: &str, bytes: &[u8]) -> Result<UserDays, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::corrupt(key, e))
    }

    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    fn token_of(&self, day: i64) -> Option<u64> {
        self.days.binary_search_by_key(&day, |(d, _)| *d).ok().map(|i| self.days[i].1)
    }

    /// Counter changes for the days held: daily and weekly cohort cells.
    fn cells(&self, sign: i64) -> Vec<(String, i64)> {
        let Some(&(first, _)) = self.days.first() else { return Vec::new() };
        let mut out: Vec<(String, i64)> = self.days.iter().map(|(d, _)| (counter_key(Interval::Day, first, d - first), sign)).collect();
        let mut weeks: Vec<i64> = self.days.iter().map(|(d, _)| week_of(*d)).collect();
        weeks.dedup();
        out.extend(weeks.iter().map(|w| (counter_key(Interval::Week, week_of(first), w - week_of(first)), sign)));
        out
    }
}

/// Records that `metric`'s user was active on its day; `token` must be
/// unique to this request. Returns the counter changes it made.
pub fn record<K: Kv>(kv: &mut K, metric: &Metric, token: u64) -> Result<usize, StoreError> {
    let Some(user) = &metric.user_id else { return Ok(0) };
    let key = user_key(user);
    let day = day_of(metric.timestamp_ms);
    if let Some(bytes) = kv.get(&key)? {
        if UserDays::decode(&key, &bytes)?.token_of(day).is_some() {
            return Ok(0);
        }
    }
    // What this request's own write changes, kept to be returned if a swap
    // reported failed turns out to have landed.
    let mut mine: Vec<(String, i64)> = Vec::new();
    let deltas = update(kv, &key, |current| {
        let record = match current {
            Some(bytes) => UserDays::decode(&key, bytes)?,
            None => UserDays::default(),
        };
        match record.token_of(day) {
            Some(t) if t == token => return Ok(Change::Done(mine.clone())),
            Some(_) => return Ok(Change::Done(Vec::new())),
            None => {}
        }
        let mut next = record.clone();
        let at = next.days.partition_point(|(d, _)| *d < day);
        next.days.insert(at, (day, token));
        // The difference between the cells of the two records.
        let mut changes = record.cells(-1);
        changes.extend(next.cells(1));
        changes.sort();
        let mut merged: Vec<(String, i64)> = Vec::new();
        for (cell, delta) in changes {
            match merged.last_mut() {
                Some((last, sum)) if *last == cell => *sum += delta,
                _ => merged.push((cell, delta)),
            }
        }
        merged.retain(|(_, delta)| *delta != 0);
        mine = merged.clone();
        Ok(Change::Write(next.encode(), merged))
    })?;
    for (cell, delta) in &deltas {
        kv.increment(cell, *delta)?;
    }
    Ok(deltas.len())
}

/// The days (since 1970) a user was recorded active, oldest first.
pub fn active_days(reader: &mut dyn Reader, user_id: &str) -> Result<Vec<i64>, StoreError> {
    let key = user_key(user_id);
    match reader.get(&key)? {
        Some(bytes) => Ok(UserDays::decode(&key, &bytes)?.days.into_iter().map(|(day, _)| day).collect()),
        None => Ok(Vec::new()),
    }
}

/// `GET /api/stats/retention?from=&to=&interval=day|week&periods=N`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRequest {
    pub interval: Interval,
    /// Cohort numbers (days or weeks since 1970), in order.
    pub cohorts: Vec<i64>,
    pub periods: usize,
    /// The current day or week: later offsets are not reported.
    pub now: i64,
}

impl RetentionRequest {
    /// Cohorts starting in `[from, to)`; without `from`, the last `periods` intervals.
    pub fn parse(query: &Query, now_ms: i64) -> Result<RetentionRequest, ApiError> {
        let interval = Interval::parse(query.get("interval").unwrap_or("day"), &[Interval::Day, Interval::Week])?;
        let periods = match query.get("periods") {
            None => 7,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PERIODS).contains(&n) => n,
                _ => return Err(ApiError::bad_request("periods", format!("must be a whole number from 1 to {MAX_PERIODS}"))),
            },
        };
        let number = |ms: i64| if interval == Interval::Week { week_of(day_of(ms)) } else { day_of(ms) };
        let instant = |name: &str| query.get(name).map(|t| parse_instant(t).map_err(|m| ApiError::bad_request(name, m))).transpose();
        let to = instant("to")?.unwrap_or(now_ms);
        let last = number(to - 1);
        let first = match instant("from")? {
            Some(from) if from >= to => return Err(ApiError::bad_request("to", "must be later than from")),
            Some(from) => number(from),
            None => last - periods as i64 + 1,
        };
        let cohorts: Vec<i64> = (first..=last).collect();
        if cohorts.len() * (periods + 1) > MAX_CELLS {
            return Err(ApiError::bad_request("from", format!("asks for more than {MAX_CELLS} cohort cells; narrow the range or the periods")));
        }
        Ok(RetentionRequest { interval, cohorts, periods, now: number(now_ms) })
    }

    fn start_ms(&self, cohort: i64) -> i64 {
        match self.interval {
            Interval::Week => (cohort * 7 - 3) * DAY_MS,
            _ => cohort * DAY_MS,
        }
    }
}

/// Each cohort's size and how many of its users were active in each
/// following interval (offset 0 is the cohort itself).
pub fn retention(reader: &mut dyn Reader, request: &RetentionRequest) -> Result<Value, StoreError> {
    let offsets = |cohort: i64| (0..=request.periods as i64).filter(move |o| cohort + o <= request.now);
    let keys: Vec<String> =
        request.cohorts.iter().flat_map(|c| offsets(*c).map(move |o| counter_key(request.interval, *c, o))).collect();
    let mut values = reader.get_many(&keys)?.into_iter();
    let mut rows = Vec::new();
    for &cohort in &request.cohorts {
        let counts: Vec<i64> = offsets(cohort)
            .map(|_| values.next().flatten().and_then(|b| decode_counter(&b)).unwrap_or(0).max(0))
            .collect();
        let size = counts.first().copied().unwrap_or(0);
        let rates: Vec<f64> = counts.iter().map(|n| if size == 0 { 0.0 } else { *n as f64 / size as f64 }).collect();
        rows.push(json!({"start": format_timestamp(request.start_ms(cohort)), "size": size, "retained": counts, "rates": rates}));
    }
    let interval = if request.interval == Interval::Week { "week" } else { "day" };
    Ok(json!({"interval": interval, "periods": request.periods, "cohorts": rows}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_store::{MemoryStore, SwapBehaviour};
    use crate::time::parse_timestamp;

    fn at(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    fn event(user: &str, ms: i64) -> Metric {
        Metric { user_id: Some(user.into()), ..Metric::new("e", "t", 1.0, ms) }
    }

    fn table(store: &mut MemoryStore, q: &str, now: i64) -> Vec<Vec<i64>> {
        let request = RetentionRequest::parse(&Query::parse(q).unwrap(), now).unwrap();
        let value = retention(store, &request).unwrap();
        value["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["retained"].as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).collect())
            .collect()
    }

    #[test]
    fn cohorts_count_each_user_day_once_and_move_with_late_data() {
        let mut store = MemoryStore::default();
        let d = |n: i64| at("2026-02-16T10:00:00Z") + n * DAY_MS;
        let mut token = 0;
        let mut rec = |store: &mut MemoryStore, user: &str, day: i64| {
            token += 1;
            record(store, &event(user, d(day)), token).unwrap()
        };
        // a: days 0, 1, 1, 3; b: days 0, 3; c: day 1, then a late event on day 0.
        for (user, day) in [("a", 0), ("a", 1), ("a", 1), ("a", 3), ("b", 0), ("b", 3), ("c", 1), ("c", 0)] {
            rec(&mut store, user, day);
        }
        let now = d(4);
        let rows = table(&mut store, "from=2026-02-16T00:00:00Z&to=2026-02-18T00:00:00Z&periods=3", now);
        assert_eq!(rows, vec![vec![3, 2, 0, 2], vec![0, 0, 0, 0]]);
        let weekly = table(&mut store, "interval=week&from=2026-02-16T00:00:00Z&to=2026-02-17T00:00:00Z&periods=1", now);
        assert_eq!(weekly, vec![vec![3]]);
    }

    #[test]
    fn concurrent_events_of_one_user_count_once_on_every_store() {
        for swaps in [SwapBehaviour::SpinSqlite, SwapBehaviour::Correct, SwapBehaviour::SpinV4_0_2] {
            let mut store = MemoryStore::with_swaps(swaps);
            store.real_sleep = true;
            let day = at("2026-02-16T10:00:00Z");
            let threads: Vec<_> = (0..8u64)
                .map(|t| {
                    let mut kv = store.request();
                    std::thread::spawn(move || {
                        for i in 0..20u64 {
                            record(&mut kv, &event("same", day + (i as i64 % 3) * DAY_MS), t * 100 + i + 1).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let rows = table(&mut store, "from=2026-02-16T00:00:00Z&to=2026-02-17T00:00:00Z&periods=2", day + 5 * DAY_MS);
            assert_eq!(rows, vec![vec![1, 1, 1]], "{swaps:?}");
        }
    }

    #[test]
    fn bad_parameters_are_400s() {
        let now = at("2026-02-18T00:00:00Z");
        for q in ["interval=month", "periods=0", "periods=61", "from=nope", "from=2026-02-18T00:00:00Z&to=2026-02-17T00:00:00Z", "from=1970-01-02T00:00:00Z&periods=60"] {
            assert_eq!(RetentionRequest::parse(&Query::parse(q).unwrap(), now).unwrap_err().status, 400, "{q}");
        }
    }
}
