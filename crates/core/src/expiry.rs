//! Bounded disk: with `raw_retention_days` set, raw metrics (the entry
//! chunks that listings read, and the claims of their client ids) older
//! than that are deleted; aggregates are kept, so summaries and series of
//! any window still count them.
//!
//! No request pays for a sweep. Each fold of a type takes one bounded step
//! ([`sweep_step`]): it walks the type's buckets from where the last step
//! stopped (`swept:{type}`), oldest first, collects at most [`STEP_CHUNKS`]
//! chunks of seconds before the horizon, and deletes them and their claims
//! in one `delete_many`. A fold deletes more chunks per step than it writes,
//! so the sweep keeps up with any ingest rate. A fold does not write chunks
//! for seconds already past the horizon (it deletes their claims instead),
//! so nothing lands behind the sweep.
//!
//! Ingest refuses metrics older than the retention period (as a time-series
//! database's retention policy drops such writes), and the sweep's horizon
//! trails that by [`MARGIN_DAYS`], so an id is remembered for as long as a
//! post of its metric could be accepted: a retry is never stored twice.

use crate::aggregate::Aggregate;
use crate::entries::Chunk;
use crate::keys::{bucket_key, claim_key, swept_key, total_key};
use crate::kv::{Kv, Reader, StoreError};
use crate::time::{Bucket, Level, MS_PER_SECOND};

/// How far the sweep's horizon trails the oldest timestamp ingest accepts.
pub const MARGIN_DAYS: i64 = 1;
/// Most chunks one step deletes.
pub const STEP_CHUNKS: usize = 256;

const DAY_SECONDS: i64 = 86_400;

/// Raw metrics of seconds before `before_second` are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub before_second: i64,
}

impl Expiry {
    /// At `now_ms`, with raw metrics kept `retention_days` (0: forever).
    pub fn at(now_ms: i64, retention_days: u64) -> Option<Expiry> {
        (retention_days > 0).then(|| Expiry {
            before_second: now_ms.div_euclid(MS_PER_SECOND) - (retention_days as i64 + MARGIN_DAYS) * DAY_SECONDS,
        })
    }

    /// The oldest timestamp ingest accepts at `now_ms`, if any is refused.
    pub fn earliest_accepted_ms(now_ms: i64, retention_days: u64) -> Option<i64> {
        (retention_days > 0).then(|| now_ms - retention_days as i64 * DAY_SECONDS * MS_PER_SECOND)
    }

    pub fn keeps(&self, second: i64) -> bool {
        second >= self.before_second
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub chunks: usize,
    /// Every second before this one is swept now.
    pub through_second: i64,
}

/// Deletes up to [`STEP_CHUNKS`] expired chunks of `metric_type`, oldest
/// first, with the claims of their metrics' ids, and records how far it got.
pub fn sweep_step<K: Kv>(kv: &mut K, metric_type: &str, expiry: Expiry) -> Result<Swept, StoreError> {
    let cursor_key = swept_key(metric_type);
    let from = match kv.get(&cursor_key)? {
        Some(bytes) => std::str::from_utf8(&bytes).ok().and_then(|t| t.parse().ok()).ok_or_else(|| StoreError::corrupt(&cursor_key, "not a second"))?,
        None => i64::MIN,
    };
    if from >= expiry.before_second {
        return Ok(Swept { chunks: 0, through_second: from });
    }
    let mut walk = Walk { reader: &mut *kv, metric_type, from, to: expiry.before_second, chunks: Vec::new(), full_at: None };
    walk.run()?;
    let through_second = walk.full_at.unwrap_or(expiry.before_second);
    let chunks = std::mem::take(&mut walk.chunks);
    let chunk_keys: Vec<String> = chunks.iter().map(|(second, reference)| reference.key(metric_type, *second)).collect();
    let mut doomed = chunk_keys.clone();
    for (key, value) in chunk_keys.iter().zip(kv.get_many(&chunk_keys)?) {
        if let Some(bytes) = value {
            doomed.extend(Chunk::decode(key, &bytes)?.items.iter().map(|(_, m)| claim_key(&m.id)));
        }
    }
    if !doomed.is_empty() {
        kv.delete_many(&doomed)?;
    }
    kv.set(&cursor_key, through_second.to_string().as_bytes())?;
    Ok(Swept { chunks: chunks.len(), through_second })
}

/// The oldest-first walk down one type's buckets, collecting the chunks of
/// whole seconds in `[from, to)` until [`STEP_CHUNKS`] are found.
struct Walk<'a> {
    reader: &'a mut dyn Reader,
    metric_type: &'a str,
    from: i64,
    to: i64,
    chunks: Vec<(i64, crate::entries::ChunkRef)>,
    /// Set when the step is full: the first second not collected.
    full_at: Option<i64>,
}

impl Walk<'_> {
    fn overlaps(&self, bucket: Bucket) -> bool {
        let start = bucket.start_second();
        start < self.to && start.saturating_add(bucket.level.seconds()) > self.from
    }

    fn read(&mut self, buckets: &[Bucket]) -> Result<Vec<Option<Aggregate>>, StoreError> {
        let keys: Vec<String> = buckets.iter().map(|b| bucket_key(self.metric_type, *b)).collect();
        let values = self.reader.get_many(&keys)?;
        keys.iter()
            .zip(values)
            .map(|(key, value)| value.map(|bytes| Aggregate::decode(&bytes).map_err(|e| StoreError::corrupt(key, e))).transpose())
            .collect()
    }

    fn run(&mut self) -> Result<(), StoreError> {
        let key = total_key(self.metric_type);
        let Some(bytes) = self.reader.get(&key)? else { return Ok(()) };
        let total = Aggregate::decode(&bytes).map_err(|e| StoreError::corrupt(&key, e))?;
        let tops: Vec<Bucket> = total.tops.iter().map(|&index| Bucket { level: Level::TOP, index }).filter(|b| self.overlaps(*b)).collect();
        for top in tops {
            if let Some(aggregate) = self.read(&[top])?.pop().flatten() {
                self.descend(top, &aggregate)?;
            }
            if self.full_at.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn descend(&mut self, bucket: Bucket, aggregate: &Aggregate) -> Result<(), StoreError> {
        let mut children: Vec<Bucket> = aggregate.children_descending().filter_map(|p| bucket.child(p)).filter(|c| self.overlaps(*c)).collect();
        children.reverse();
        if bucket.level > Level::Day {
            // Coarse levels one child at a time: one day may fill the step.
            for child in children {
                if let Some(aggregate) = self.read(&[child])?.pop().flatten() {
                    self.descend(child, &aggregate)?;
                }
                if self.full_at.is_some() {
                    break;
                }
            }
            return Ok(());
        }
        let found = self.read(&children)?;
        for (child, aggregate) in children.into_iter().zip(found) {
            let Some(aggregate) = aggregate else { continue };
            if child.level == Level::Second {
                if self.chunks.len() + aggregate.chunks.len() > STEP_CHUNKS && !self.chunks.is_empty() {
                    self.full_at = Some(child.index);
                    return Ok(());
                }
                self.chunks.extend(aggregate.chunks.iter().map(|c| (child.index, *c)));
            } else {
                self.descend(child, &aggregate)?;
            }
            if self.full_at.is_some() {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{fold_all, ingest};
    use crate::memory_store::MemoryStore;
    use crate::metric::Metric;

    const DAY_MS: i64 = DAY_SECONDS * MS_PER_SECOND;
    const NOW: i64 = 1_771_416_000_500;

    fn chunk_keys(store: &MemoryStore) -> usize {
        store.snapshot().keys().filter(|k| k.starts_with("ent:")).count()
    }

    #[test]
    fn the_horizon_trails_what_ingest_accepts() {
        assert_eq!(Expiry::at(NOW, 0), None);
        let expiry = Expiry::at(NOW, 30).unwrap();
        let earliest = Expiry::earliest_accepted_ms(NOW, 30).unwrap();
        assert_eq!(earliest, NOW - 30 * DAY_MS);
        assert!(expiry.before_second * MS_PER_SECOND < earliest - DAY_MS + 1_000);
        assert!(expiry.keeps(earliest / 1000) && !expiry.keeps(expiry.before_second - 1));
    }

    /// 120 days of metrics, four a day, two with client ids; 30 days kept:
    /// steps delete exactly the chunks and claims of expired seconds, a
    /// bounded number each, and summaries still count everything.
    #[test]
    fn steps_delete_expired_chunks_and_claims_a_bounded_number_at_a_time() {
        let mut store = MemoryStore::default();
        let start = NOW - 120 * DAY_MS;
        let mut n = 0;
        for day in 0..120 {
            for k in 0..4 {
                let m = Metric::new(format!("m{day}-{k}"), "cpu", 1.0, start + day * DAY_MS + k * 3_600_000);
                ingest(&mut store, &m, k % 2 == 0, n, None).unwrap();
                n += 1;
            }
        }
        fold_all(&mut store, "cpu", None).unwrap();
        assert_eq!(chunk_keys(&store), 480);
        let claims = |s: &MemoryStore| s.snapshot().keys().filter(|k| k.starts_with("claim:")).count();
        assert_eq!(claims(&store), 240);
        let expiry = Expiry::at(NOW, 30).unwrap();
        let kept = (0..120).filter(|d| expiry.keeps((start + d * DAY_MS) / 1000 + 3 * 3_600)).count();
        let mut steps = 0;
        loop {
            let mut request = store.request();
            let swept = sweep_step(&mut request, "cpu", expiry).unwrap();
            assert!(swept.chunks <= STEP_CHUNKS);
            assert!(request.writes <= 2, "one delete_many and the cursor");
            steps += 1;
            if swept.chunks == 0 {
                break;
            }
        }
        assert!(steps >= 3, "{steps} steps: each is bounded");
        let left = chunk_keys(&store);
        assert!((kept * 4 - 4..=kept * 4).contains(&left), "{left} chunks left, {kept} days kept");
        assert!(claims(&store) <= kept * 2 && claims(&store) >= kept * 2 - 2);
        let mut reader = store.request();
        let request = crate::summary::SummaryRequest::parse(&crate::query::Query::parse("type=cpu").unwrap(), NOW).unwrap();
        let pending = crate::pending::Pending::read(&mut reader, "cpu").unwrap();
        assert_eq!(crate::summary::window_aggregate(&mut reader, &request, &pending).unwrap().count, 480, "aggregates are kept");
        // Nothing more to do until time moves on.
        assert_eq!(sweep_step(&mut store.request(), "cpu", expiry).unwrap().chunks, 0);
    }

    /// Folds under an expiry write no chunk for seconds past it (and drop
    /// their ids' claims), and each fold sweeps a step: an old backlog
    /// disappears as ingest goes on, with no sweep of its own.
    #[test]
    fn folds_skip_expired_seconds_and_sweep_as_they_go() {
        let mut store = MemoryStore::default();
        // 600 metrics a day old, 600 from 90 days ago, all with ids, kept forever at first.
        for i in 0..1_200i64 {
            let age = if i % 2 == 0 { DAY_MS } else { 90 * DAY_MS };
            ingest(&mut store, &Metric::new(format!("k{i}"), "cpu", 1.0, NOW - age - i * 1_000), true, 0, None).unwrap();
        }
        fold_all(&mut store, "cpu", None).unwrap();
        assert_eq!(chunk_keys(&store), 1_200);
        // Now 30 days are kept; new metrics (some already past the horizon) come in.
        let expiry = Expiry::at(NOW, 30);
        for i in 0..2_048i64 {
            let age = if i % 4 == 0 { 60 * DAY_MS } else { 0 };
            ingest(&mut store, &Metric::new(format!("n{i}"), "cpu", 1.0, NOW - age - i), true, i as usize, expiry).unwrap();
        }
        let snapshot = store.snapshot();
        let old_chunks = snapshot.keys().filter(|k| k.starts_with("ent:")).filter(|k| {
            let second: i64 = k.split(':').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            !expiry.unwrap().keeps(second)
        });
        assert_eq!(old_chunks.count(), 0, "every expired chunk is gone");
        let claims = snapshot.keys().filter(|k| k.starts_with("claim:")).count();
        let kept_new = 2_048 - 512;
        // The day-old 600 and the new ones not already past the horizon (some may wait in journals).
        assert!(claims >= 600 + kept_new && claims <= 600 + 2_048, "{claims} claims");
        assert!(snapshot.keys().filter(|k| k.starts_with("claim:k")).all(|k| k[7..].parse::<i64>().map_or(true, |i| i % 2 == 0)));
        let mut reader = store.request();
        let request = crate::summary::SummaryRequest::parse(&crate::query::Query::parse("type=cpu").unwrap(), NOW).unwrap();
        let pending = crate::pending::Pending::read(&mut reader, "cpu").unwrap();
        assert_eq!(crate::summary::window_aggregate(&mut reader, &request, &pending).unwrap().count, 3_248);
    }
}
