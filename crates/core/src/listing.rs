//! Listing metrics newest first, a page at a time. The walk goes down the
//! bucket hierarchy (eras → blocks → days → hours → minutes → seconds)
//! through the aggregates' child marks to the seconds' entry chunks, so a page costs
//! O(limit + buckets visited) and never a scan of the store. Metrics not yet
//! folded come from the journal shards, read first (see [`crate::pending`]);
//! one that was folded in between is found twice and kept once.

use std::collections::HashSet;

use crate::aggregate::Aggregate;
use crate::api_error::ApiError;
use crate::entries::Chunk;
use crate::keys::{bucket_key, total_key};
use crate::kv::{Reader, StoreError};
use crate::metric::{validate_type, Metric};
use crate::pending::Pending;
use crate::query::Query;
use crate::time::{parse_timestamp, Bucket, Level, MS_PER_SECOND};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

/// Where the previous page stopped: the last metric returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.timestamp_ms, self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (ts, id) = text.split_once('.')?;
        let timestamp_ms = ts.parse().ok()?;
        (!id.is_empty()).then(|| Cursor { timestamp_ms, id: id.to_string() })
    }

    fn of(metric: &Metric) -> Cursor {
        Cursor { timestamp_ms: metric.timestamp_ms, id: metric.id.clone() }
    }

    /// Whether `metric` comes after this cursor in newest-first order.
    fn precedes(&self, metric: &Metric) -> bool {
        (metric.timestamp_ms, metric.id.as_str()) < (self.timestamp_ms, self.id.as_str())
    }
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub metric_type: Option<String>,
    pub limit: usize,
    /// Inclusive lower bound, ms.
    pub from_ms: i64,
    /// Exclusive upper bound, ms.
    pub to_ms: i64,
    pub cursor: Option<Cursor>,
}

impl ListRequest {
    pub fn parse(query: &Query) -> Result<ListRequest, ApiError> {
        let metric_type = match query.get("type") {
            None | Some("") => None,
            Some(t) => {
                validate_type(t).map_err(|m| ApiError::bad_request("type", m))?;
                Some(t.to_string())
            }
        };
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(ApiError::bad_request("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        };
        let bound = |name: &str| -> Result<Option<i64>, ApiError> {
            query.get(name).map(|t| parse_timestamp(t).map_err(|m| ApiError::bad_request(name, m))).transpose()
        };
        let from_ms = bound("from")?.unwrap_or(i64::MIN);
        let to_ms = bound("to")?.unwrap_or(i64::MAX);
        if from_ms >= to_ms {
            return Err(ApiError::bad_request("to", "must be later than from"));
        }
        let cursor = match query.get("cursor") {
            None => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
                ApiError::bad_request("cursor", "is not a cursor this API returned (take it from X-Next-Cursor)")
            })?),
        };
        Ok(ListRequest { metric_type, limit, from_ms, to_ms, cursor })
    }

    /// Whether `metric` belongs on a page of this request (an erased one never does).
    fn admits(&self, metric: &Metric) -> bool {
        !metric.is_erased()
            && metric.timestamp_ms >= self.from_ms
            && metric.timestamp_ms < self.to_ms
            && self.cursor.as_ref().is_none_or(|c| c.precedes(metric))
    }

    /// The newest instant (ms, exclusive) a page can contain.
    fn upper_ms(&self) -> i64 {
        match &self.cursor {
            Some(c) => self.to_ms.min(c.timestamp_ms.saturating_add(1)),
            None => self.to_ms,
        }
    }
}

/// One page, and the cursor for the next one if there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub metrics: Vec<Metric>,
    pub next: Option<Cursor>,
}

/// Newest-first order.
fn newest_first(a: &Metric, b: &Metric) -> std::cmp::Ordering {
    (b.timestamp_ms, &b.id).cmp(&(a.timestamp_ms, &a.id))
}

/// Aggregates under `keys`, `None` where missing.
fn read_aggregates(reader: &mut dyn Reader, keys: &[String]) -> Result<Vec<Option<Aggregate>>, StoreError> {
    let values = reader.get_many(keys)?;
    keys.iter()
        .zip(values)
        .map(|(key, value)| value.map(|bytes| Aggregate::decode(&bytes).map_err(|e| StoreError::corrupt(key, e))).transpose())
        .collect()
}

/// Lists a page across `types` (the request's own type, if it names one).
pub fn list(reader: &mut dyn Reader, request: &ListRequest, types: &[String]) -> Result<Page, StoreError> {
    let wanted = request.limit + 1;
    let mut found = Vec::new();
    let single;
    let types = match &request.metric_type {
        Some(t) => {
            single = [t.clone()];
            &single[..]
        }
        None => types,
    };
    for metric_type in types {
        let pending = Pending::read(reader, metric_type)?;
        found.extend(pending.items.into_iter().map(|item| item.metric).filter(|m| request.admits(m)));
        found.extend(TypeWalk { reader: &mut *reader, request, metric_type, wanted }.run()?);
    }
    found.sort_by(newest_first);
    let mut seen = HashSet::new();
    found.retain(|m| seen.insert(m.id.clone()));
    found.truncate(wanted);
    let next = (found.len() > request.limit).then(|| {
        found.truncate(request.limit);
        found.last().map(Cursor::of)
    });
    Ok(Page { metrics: found, next: next.flatten() })
}

/// The walk down one type's buckets.
struct TypeWalk<'a> {
    reader: &'a mut dyn Reader,
    request: &'a ListRequest,
    metric_type: &'a str,
    wanted: usize,
}

fn overlaps(bucket: Bucket, from_ms: i64, to_ms: i64) -> bool {
    let start = bucket.start_second().saturating_mul(MS_PER_SECOND);
    let end = start.saturating_add(bucket.level.seconds() * MS_PER_SECOND);
    start < to_ms && end > from_ms
}

impl TypeWalk<'_> {
    fn run(mut self) -> Result<Vec<Metric>, StoreError> {
        let Some(total) = read_aggregates(self.reader, &[total_key(self.metric_type)])?.pop().flatten() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let (from, upper) = (self.request.from_ms, self.request.upper_ms());
        for &top in total.tops.iter().rev() {
            let bucket = Bucket { level: Level::TOP, index: top };
            if !overlaps(bucket, from, upper) {
                continue;
            }
            if let Some(aggregate) = read_aggregates(self.reader, &[bucket_key(self.metric_type, bucket)])?.pop().flatten() {
                self.descend(bucket, &aggregate, &mut out)?;
            }
            if out.len() >= self.wanted {
                break;
            }
        }
        Ok(out)
    }

    /// Collects from the children of `bucket`, newest first: from a day
    /// down, each level's children in one batch; blocks and eras one child
    /// at a time, since one day may fill the page.
    fn descend(&mut self, bucket: Bucket, aggregate: &Aggregate, out: &mut Vec<Metric>) -> Result<(), StoreError> {
        let (from, upper) = (self.request.from_ms, self.request.upper_ms());
        let children: Vec<Bucket> = aggregate
            .children_descending()
            .filter_map(|p| bucket.child(p))
            .filter(|c| overlaps(*c, from, upper))
            .collect();
        if bucket.level > Level::Day {
            for child in children {
                if let Some(aggregate) = read_aggregates(self.reader, &[bucket_key(self.metric_type, child)])?.pop().flatten() {
                    self.descend(child, &aggregate, out)?;
                }
                if out.len() >= self.wanted {
                    break;
                }
            }
            return Ok(());
        }
        let keys: Vec<String> = children.iter().map(|c| bucket_key(self.metric_type, *c)).collect();
        let found = children.into_iter().zip(read_aggregates(self.reader, &keys)?);
        if bucket.level == Level::Minute {
            // Seconds: fetch the entries of as many seconds as the page still
            // needs at once; the cursor may hide some, so go on until it is full.
            let mut batch = Vec::new();
            let mut batch_count = 0;
            for (second, aggregate) in found {
                let Some(aggregate) = aggregate else { continue };
                batch_count += aggregate.count as usize;
                batch.push((second, aggregate));
                if out.len() + batch_count >= self.wanted {
                    self.collect_seconds(&batch, out)?;
                    if out.len() >= self.wanted {
                        return Ok(());
                    }
                    (batch, batch_count) = (Vec::new(), 0);
                }
            }
            return self.collect_seconds(&batch, out);
        }
        for (child, aggregate) in found {
            if let Some(aggregate) = aggregate {
                self.descend(child, &aggregate, out)?;
            }
            if out.len() >= self.wanted {
                break;
            }
        }
        Ok(())
    }

    /// Appends the admitted entries of consecutive `seconds` (newest first),
    /// read from the chunks their aggregates list.
    fn collect_seconds(&mut self, seconds: &[(Bucket, Aggregate)], out: &mut Vec<Metric>) -> Result<(), StoreError> {
        let chunks: Vec<_> = seconds.iter().flat_map(|(second, aggregate)| aggregate.chunks.iter().map(move |c| (second.index, *c))).collect();
        let keys: Vec<String> = chunks.iter().map(|(second, c)| c.key(self.metric_type, *second)).collect();
        let mut metrics = Vec::new();
        for ((key, value), (_, reference)) in keys.iter().zip(self.reader.get_many(&keys)?).zip(&chunks) {
            // A chunk past the retention period may be gone already.
            if let Some(bytes) = value {
                metrics.extend(reference.metrics(Chunk::decode(key, &bytes)?).filter(|m| self.request.admits(m)));
            }
        }
        metrics.sort_by(newest_first);
        out.extend(metrics);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{fold_all, ingest};
    use crate::memory_store::MemoryStore;

    /// Stores `metric`, spreading metrics over the shards.
    fn ingest_into(store: &mut MemoryStore, metric: &Metric) {
        let shard = metric.id.len() + metric.timestamp_ms as usize;
        ingest(store, metric, false, shard, None).unwrap();
    }

    fn metric(i: usize, metric_type: &str, ts: i64) -> Metric {
        Metric::new(format!("id{i:05}"), metric_type, i as f64, ts)
    }

    fn request(query: &str) -> ListRequest {
        ListRequest::parse(&Query::parse(query).unwrap()).unwrap()
    }

    fn all_pages(store: &mut MemoryStore, query: &str, types: &[String]) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut req = request(query);
        loop {
            let page = list(store, &req, types).unwrap();
            pages.push(page.metrics.iter().map(|m| m.id.clone()).collect());
            match page.next {
                Some(c) => req.cursor = Some(Cursor::decode(&c.encode()).unwrap()),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_walk_every_metric_newest_first_exactly_once() {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        let mut expected = Vec::new();
        // Spread over days, with several metrics sharing a millisecond.
        for i in 0..250 {
            let ts = base - (i as i64 / 3) * 7_777_777;
            ingest_into(&mut store, &metric(i, "cpu", ts));
            expected.push((ts, format!("id{i:05}")));
        }
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        // Partly folded, then wholly.
        for _ in 0..2 {
            let pages = all_pages(&mut store, "type=cpu&limit=40", &[]);
            assert_eq!(pages.len(), 7);
            assert!(pages[..6].iter().all(|p| p.len() == 40));
            assert_eq!(pages.concat(), expected);
            fold_all(&mut store, "cpu", None).unwrap();
        }
    }

    #[test]
    fn a_page_boundary_inside_a_busy_minute_skips_nothing() {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        let mut expected = Vec::new();
        for i in 0..300 {
            let ts = base - (i as i64 % 20) * 1_000;
            ingest_into(&mut store, &metric(i, "busy", ts));
            expected.push((ts, format!("id{i:05}")));
        }
        fold_all(&mut store, "busy", None).unwrap();
        expected.sort_by(|a, b| b.cmp(a));
        let pages = all_pages(&mut store, "type=busy&limit=7", &[]);
        assert_eq!(pages.concat(), expected.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
    }

    #[test]
    fn all_types_merge_and_bounds_apply() {
        let mut store = MemoryStore::default();
        let base = 1_771_416_000_000;
        for i in 0..30 {
            let t = if i % 2 == 0 { "cpu" } else { "mem" };
            ingest_into(&mut store, &metric(i, t, base + i as i64 * 1_000));
        }
        let types = vec!["cpu".to_string(), "mem".to_string()];
        let page = list(&mut store, &request("limit=5"), &types).unwrap();
        let ids: Vec<&str> = page.metrics.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["id00029", "id00028", "id00027", "id00026", "id00025"]);
        let bounded = request("from=2026-02-18T12:00:10Z&to=2026-02-18T12:00:12Z");
        let page = list(&mut store, &bounded, &types).unwrap();
        let ids: Vec<&str> = page.metrics.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["id00011", "id00010"]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn a_first_page_reads_a_bounded_number_of_keys() {
        // One metric a minute; both stores hold every minute of the newest
        // day, so the walk is the same and only the history behind it grows.
        let base = 1_771_416_000_000;
        let reads = |n: usize| {
            let mut store = MemoryStore::default();
            for i in 0..n {
                ingest_into(&mut store, &metric(i, "cpu", base - i as i64 * 60_000));
            }
            store.reads = 0;
            list(&mut store, &request("type=cpu&limit=10"), &[]).unwrap();
            store.reads
        };
        let few = reads(3_000);
        assert_eq!(few, reads(20_000));
        assert!(few < 200, "{few} keys for a page of 10");
    }

    #[test]
    fn bad_parameters_are_400s() {
        for q in ["limit=0", "limit=1001", "limit=x", "type=a%20b", "from=nope", "cursor=junk", "from=2026-02-18T12:00:00Z&to=2026-02-18T11:00:00Z"] {
            assert_eq!(ListRequest::parse(&Query::parse(q).unwrap()).unwrap_err().status, 400, "{q}");
        }
    }
}
