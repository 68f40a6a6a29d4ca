//! What one ingest changes: the aggregates of the metric's second, minute,
//! hour and day and the all-time aggregate (each updated by compare-and-swap),
//! then one list entry. Kept here so the order and the content are testable.

use crate::aggregate::Aggregate;
use crate::metric::Metric;
use crate::store::{bucket_key, total_key, MemoryStore};
use crate::time::{Bucket, Level};

/// One aggregate an ingest updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Bucket(Bucket),
    Total,
}

impl Target {
    pub fn key(&self, metric_type: &str) -> String {
        match self {
            Target::Bucket(b) => bucket_key(metric_type, *b),
            Target::Total => total_key(metric_type),
        }
    }
}

/// Finest first. The second's aggregate comes first because its new count
/// numbers the metric's list entry; coarser levels mark which children hold
/// data, and are written after their children, so a reader walking down from
/// the top never reaches a child that does not exist yet.
pub fn targets(timestamp_ms: i64) -> Vec<Target> {
    Level::ALL
        .iter()
        .map(|&level| Target::Bucket(Bucket::containing(level, timestamp_ms)))
        .chain(std::iter::once(Target::Total))
        .collect()
}

/// Applies `metric` to the aggregate of `target`.
pub fn apply(target: &Target, aggregate: &mut Aggregate, metric: &Metric) {
    aggregate.record(metric.value, metric.timestamp_ms);
    match target {
        Target::Bucket(bucket) => {
            if let Some(finer) = bucket.level.finer() {
                let child = Bucket::containing(finer, metric.timestamp_ms);
                if let Some((_, position)) = child.position_in_parent() {
                    aggregate.mark_child(position);
                }
            }
        }
        Target::Total => aggregate.mark_day(Bucket::containing(Level::Day, metric.timestamp_ms).index),
    }
}

/// Ingests into a [`MemoryStore`] the way the component does into Spin's
/// store (without concurrency): for tests of summaries and listings.
pub fn ingest_into(store: &mut MemoryStore, metric: &Metric) {
    let mut entry_number = 0;
    for target in targets(metric.timestamp_ms) {
        let key = target.key(&metric.metric_type);
        let mut aggregate = store
            .values
            .get(&key)
            .and_then(|v| Aggregate::decode(v).ok().flatten())
            .unwrap_or_default();
        apply(&target, &mut aggregate, metric);
        if matches!(target, Target::Bucket(Bucket { level: Level::Second, .. })) {
            entry_number = aggregate.count;
        }
        store.values.insert(key, aggregate.encode());
    }
    let second = Bucket::containing(Level::Second, metric.timestamp_ms).index;
    store.values.insert(
        crate::store::entry_key(&metric.metric_type, second, entry_number),
        serde_json::to_vec(metric).unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_go_from_fine_to_coarse() {
        let t = targets(90_061_000);
        assert_eq!(t.len(), 5);
        assert_eq!(t[0], Target::Bucket(Bucket { level: Level::Second, index: 90_061 }));
        assert_eq!(t[3], Target::Bucket(Bucket { level: Level::Day, index: 1 }));
        assert_eq!(t[4], Target::Total);
        assert_eq!(t[1].key("cpu"), "agg:cpu:m:1501");
    }

    #[test]
    fn coarse_aggregates_mark_their_children() {
        let metric = Metric { id: "a".into(), metric_type: "cpu".into(), value: 1.0, timestamp_ms: 90_061_000 };
        let mut minute = Aggregate::default();
        apply(&targets(metric.timestamp_ms)[1], &mut minute, &metric);
        assert_eq!(minute.children, 1 << 1);
        let mut day = Aggregate::default();
        apply(&targets(metric.timestamp_ms)[3], &mut day, &metric);
        assert_eq!(day.children, 1 << 1);
        let mut total = Aggregate::default();
        apply(&Target::Total, &mut total, &metric);
        assert_eq!(total.days, vec![1]);
    }
}
