//! Reading a type's journal shards: the metrics acknowledged but not yet
//! folded, and the state that says whether anything changed since a cached
//! answer was computed.
//!
//! Readers read the journal shards before the aggregates. An item folded
//! and trimmed in between is then in the aggregates when they are read; an
//! item still in a shard is added to an aggregate only if the aggregate's
//! watermark for that shard is below the item's `seq`. So every acknowledged
//! metric is counted, once, even on a store whose reads are not a snapshot.

use crate::aggregate::Aggregate;
use crate::journal::{Header, Journal, SHARDS};
use crate::keys::journal_key;
use crate::kv::{Reader, StoreError};
use crate::metric::Metric;

/// One unfolded item.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingItem {
    pub shard: usize,
    pub seq: u64,
    pub metric: Metric,
}

/// The journal shards of one type, as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pending {
    pub headers: Vec<Header>,
    pub items: Vec<PendingItem>,
}

pub fn journal_keys(metric_type: &str) -> Vec<String> {
    (0..SHARDS).map(|shard| journal_key(metric_type, shard)).collect()
}

impl Pending {
    /// Reads every shard of `metric_type`.
    pub fn read(reader: &mut dyn Reader, metric_type: &str) -> Result<Pending, StoreError> {
        let keys = journal_keys(metric_type);
        let values = reader.get_many(&keys)?;
        Pending::decode(&keys, &values)
    }

    /// From the values of [`journal_keys`], items and all.
    pub fn decode(keys: &[String], values: &[Option<Vec<u8>>]) -> Result<Pending, StoreError> {
        let mut pending = Pending::default();
        for (shard, (key, value)) in keys.iter().zip(values).enumerate() {
            let Some(bytes) = value else {
                pending.headers.push(Header { next_seq: 1, folded_through: 0 });
                continue;
            };
            let journal = Journal::decode(key, bytes)?;
            pending.headers.push(journal.header());
            pending.items.extend(journal.numbered().map(|(seq, metric)| PendingItem { shard, seq, metric: metric.clone() }));
        }
        Ok(pending)
    }

    /// From the values of [`journal_keys`], headers only (cheap: no items decoded).
    pub fn headers(keys: &[String], values: &[Option<Vec<u8>>]) -> Result<Vec<Header>, StoreError> {
        keys.iter()
            .zip(values)
            .map(|(key, value)| match value {
                Some(bytes) => Journal::read_header(key, bytes),
                None => Ok(Header { next_seq: 1, folded_through: 0 }),
            })
            .collect()
    }

    /// Changes with every append: equal states mean the same metrics.
    pub fn state(headers: &[Header]) -> String {
        join(headers.iter().map(|h| h.next_seq))
    }

    /// Changes with every fold: equal states mean the same folded aggregates.
    pub fn folded_state(headers: &[Header]) -> String {
        join(headers.iter().map(|h| h.folded_through))
    }

    /// Whether `aggregate` holds an item of some shard beyond what that
    /// shard says is folded: a fold was under way when it was read.
    pub fn ahead_of_folds(&self, aggregate: &Aggregate) -> bool {
        self.headers.iter().enumerate().any(|(shard, h)| aggregate.watermark(shard) > h.folded_through)
    }
}

fn join(numbers: impl Iterator<Item = u64>) -> String {
    numbers.map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_shards_read_as_empty_and_states_track_appends_and_folds() {
        let keys = journal_keys("t");
        let mut journal = Journal::default();
        journal.append(Metric::new("a", "t", 1.0, 5));
        let mut values = vec![None; SHARDS];
        values[3] = Some(journal.encode());
        let pending = Pending::decode(&keys, &values).unwrap();
        assert_eq!(pending.items.len(), 1);
        assert_eq!((pending.items[0].shard, pending.items[0].seq), (3, 1));
        let headers = Pending::headers(&keys, &values).unwrap();
        assert_eq!(headers, pending.headers);
        let before = (Pending::state(&headers), Pending::folded_state(&headers));
        journal.trim_through(1);
        values[3] = Some(journal.encode());
        let after = Pending::headers(&keys, &values).unwrap();
        assert_eq!(Pending::state(&after), before.0, "a fold changes no metric");
        assert_ne!(Pending::folded_state(&after), before.1);
        let mut aggregate = Aggregate::default();
        aggregate.set_watermark(3, 1);
        assert!(pending.ahead_of_folds(&aggregate));
        assert!(!Pending::decode(&keys, &values).unwrap().ahead_of_folds(&aggregate));
    }
}
