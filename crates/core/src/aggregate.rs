//! Per-type, per-bucket aggregates: count, sum, min, max, the latest value and
//! a quantile sketch, kept up to date at ingest so a summary reads a bounded
//! number of buckets instead of every metric.

use serde::{Deserialize, Serialize};

use crate::entries::ChunkRef;
use crate::hll::Hll;
use crate::metric::Metric;
use crate::watermarks::Watermarks;
use crate::sketch::Sketch;

/// First byte of an encoded aggregate (0xA6: the layout without watermarks;
/// 0xA7: with days in the total and entry lists outside the aggregates).
const MAGIC: u8 = 0xA8;

/// A value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored aggregate is corrupt: {0}")]
pub struct DecodeError(String);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Timestamp (ms) of the latest metric, by metric timestamp, not arrival.
    pub latest_ms: i64,
    pub latest_value: f64,
    pub sketch: Sketch,
    /// Bit `n` set: the bucket's `n`-th child bucket holds data. Lets a
    /// listing find non-empty buckets without probing every one.
    pub children: u64,
    /// Buckets of the top level ([`crate::time::Level::TOP`]) that hold
    /// data, by index; kept in the all-time aggregate only.
    pub tops: Vec<i64>,
    /// A second's entry chunks; kept in second aggregates only.
    pub chunks: Vec<ChunkRef>,
    /// Per journal shard, the last item folded in: this aggregate holds its
    /// bucket's items of that shard up to there, and none after.
    pub watermarks: Watermarks,
    /// Distinct users of the metrics that carry a `user_id`.
    pub users: Option<Hll>,
}

impl Aggregate {
    /// Adds one metric.
    pub fn record(&mut self, value: f64, timestamp_ms: i64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
            self.latest_ms = timestamp_ms;
            self.latest_value = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
            if (timestamp_ms, value) > (self.latest_ms, self.latest_value) {
                self.latest_ms = timestamp_ms;
                self.latest_value = value;
            }
        }
        self.count += 1;
        self.sum += value;
        self.sketch.add(value);
    }

    /// Adds one metric, its user included.
    pub fn record_metric(&mut self, metric: &Metric) {
        self.record(metric.value, metric.timestamp_ms);
        if let Some(user) = &metric.user_id {
            self.users.get_or_insert_with(Hll::default).add_user(user);
        }
    }

    /// Distinct users (0 without any).
    pub fn unique_users(&self) -> u64 {
        self.users.as_ref().map_or(0, Hll::estimate)
    }

    /// Folds `other` (a disjoint set of metrics) into this one.
    pub fn merge(&mut self, other: &Aggregate) {
        if other.count > 0 {
            self.merge_all_but_sketch(other);
            self.sketch.merge(&other.sketch);
        }
    }

    /// The merge of many disjoint aggregates: equal to merging them one at a
    /// time, with their sketches added up in one pass ([`Sketch::merged`]).
    pub fn merged(parts: &[Aggregate]) -> Aggregate {
        let mut out = Aggregate::default();
        parts.iter().filter(|p| p.count > 0).for_each(|p| out.merge_all_but_sketch(p));
        out.sketch = Sketch::merged(parts.iter().map(|p| &p.sketch));
        out
    }

    fn merge_all_but_sketch(&mut self, other: &Aggregate) {
        if let Some(users) = &other.users {
            self.users.get_or_insert_with(Hll::default).merge(users);
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
            self.latest_ms = other.latest_ms;
            self.latest_value = other.latest_value;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
            if (other.latest_ms, other.latest_value) > (self.latest_ms, self.latest_value) {
                self.latest_ms = other.latest_ms;
                self.latest_value = other.latest_value;
            }
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn mark_child(&mut self, position: u32) {
        self.children |= 1u64 << position;
    }

    /// Child positions holding data, highest first.
    pub fn children_descending(&self) -> impl Iterator<Item = u32> + '_ {
        (0..64u32).rev().filter(move |p| self.children & (1u64 << p) != 0)
    }

    /// The last item of journal shard `shard` this value holds.
    pub fn watermark(&self, shard: usize) -> u64 {
        self.watermarks.get(shard)
    }

    pub fn set_watermark(&mut self, shard: usize, seq: u64) {
        self.watermarks.set(shard, seq);
    }

    /// Records that the top-level bucket `index` holds data.
    pub fn mark_top(&mut self, index: i64) {
        if let Err(pos) = self.tops.binary_search(&index) {
            self.tops.insert(pos, index);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MAGIC];
        // Serialising plain numbers and vectors cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Aggregate, DecodeError> {
        let aggregate: Aggregate = match bytes.split_first() {
            Some((&MAGIC, rest)) => postcard::from_bytes(rest).map_err(|e| DecodeError(e.to_string()))?,
            _ => return Err(DecodeError("not an aggregate".into())),
        };
        if !aggregate.sketch.well_formed() {
            return Err(DecodeError("its quantile sketch is malformed".into()));
        }
        if aggregate.users.as_ref().is_some_and(|users| !users.well_formed()) {
            return Err(DecodeError("its distinct-user sketch is malformed".into()));
        }
        Ok(aggregate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Sketch {
        /// The positive bins in descending order: what no sketch holds.
        fn reverse_for_test(&mut self) {
            let mut value: serde_json::Value = serde_json::to_value(&*self).unwrap();
            value["positive"].as_array_mut().unwrap().reverse();
            *self = serde_json::from_value(value).unwrap();
        }
    }

    #[test]
    fn latest_is_by_timestamp_not_arrival() {
        let mut a = Aggregate::default();
        a.record(1.0, 2_000);
        a.record(2.0, 1_000);
        assert_eq!((a.latest_ms, a.latest_value), (2_000, 1.0));
        assert_eq!((a.count, a.sum, a.min, a.max), (2, 3.0, 1.0, 2.0));
    }

    #[test]
    fn merge_matches_recording_everything_in_one() {
        let values = [(5.0, 10), (-2.0, 30), (7.5, 20), (0.0, 40), (3.0, 5)];
        let mut whole = Aggregate::default();
        let (mut left, mut right) = (Aggregate::default(), Aggregate::default());
        for (i, (v, t)) in values.iter().enumerate() {
            whole.record(*v, *t);
            if i % 2 == 0 { left.record(*v, *t) } else { right.record(*v, *t) }
        }
        let mut merged = Aggregate::default();
        merged.merge(&left);
        merged.merge(&Aggregate::default());
        merged.merge(&right);
        assert_eq!(merged, whole);
        assert_eq!(Aggregate::merged(&[left, Aggregate::default(), right]), whole);
    }

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let mut a = Aggregate::default();
        a.record(85.5, 1_700_000_000_000);
        a.mark_child(59);
        a.mark_top(3);
        a.mark_top(1);
        a.mark_top(3);
        a.chunks.push(ChunkRef { shard: 2, through: 64, after: 0 });
        a.set_watermark(5, 42);
        assert_eq!(Aggregate::decode(&a.encode()), Ok(a.clone()));
        assert_eq!(a.tops, vec![1, 3]);
        assert_eq!(a.children_descending().collect::<Vec<_>>(), vec![59]);
        assert_eq!((a.watermark(5), a.watermark(0), a.watermark(15)), (42, 0, 0));
        assert!(Aggregate::decode(&0i64.to_le_bytes()).is_err());
        assert!(Aggregate::decode(&[0xA6, 0]).is_err(), "the layout before watermarks");
        assert!(Aggregate::decode(&[0xA7, 0]).is_err(), "the layout before eras and chunks");
        assert!(Aggregate::decode(&[MAGIC, 0xFF, 0xFF]).is_err());
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/stored_values.rs`): a value whose
    /// sketch bins were out of order made merging allocate without bound.
    #[test]
    fn a_malformed_sketch_is_refused_not_merged() {
        let crash = b"\xa8\x22\xa8\xa8\xc8\xa8\xa8\x20\x2e\xa8\x20\x61\x22\x00\x00\x00\x00\x00\x00\x00\x00\x00\xa8\xa8\xa8\x00\x00\x00\x00\x00\x00\x00\xa8\xa8\xa8\xa8\xa8\xff\xff\xff\x09\x03\x20\x00\x00\x00\x00\x00\x00\xe7\x00\x00\x00\x00\x00\x00\x00";
        match Aggregate::decode(crash) {
            Ok(a) => {
                let _ = Aggregate::merged(&[a.clone(), a]);
            }
            Err(e) => assert!(e.0.contains("malformed") || !e.0.is_empty()),
        }
        let mut unsorted = Aggregate::default();
        unsorted.record(1.0, 1);
        unsorted.record(1_000.0, 2);
        let mut bytes = unsorted.encode();
        let encoded = postcard::to_allocvec(&unsorted.sketch).unwrap();
        let mut swapped = unsorted.sketch.clone();
        swapped.reverse_for_test();
        let bad = postcard::to_allocvec(&swapped).unwrap();
        let at = bytes.windows(encoded.len()).position(|w| w == encoded.as_slice()).unwrap();
        bytes.splice(at..at + encoded.len(), bad);
        assert!(Aggregate::decode(&bytes).unwrap_err().0.contains("malformed"));
    }
}
